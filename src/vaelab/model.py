"""The article's VAE under its first name and arguments: `VAE(data_size=784, latent_size=48, hidden_size=None)`.

The network itself lives in vaelab.models.mlp (the article's two three-layer
perceptrons, layer names matching its `Encode` and `Decode` classes) beside the
other architectures in vaelab.models; new code builds models through that
registry. This module keeps `from vaelab.model import VAE` working.
"""

from __future__ import annotations

import math

from vaelab.models.mlp import MLPVAE, Decoder, Encoder
from vaelab.objectives import ElboTerms

__all__ = ["VAE", "Encoder", "Decoder", "ElboTerms"]


class VAE(MLPVAE):
    """The mlp architecture built from the old arguments: D pixels, latent size, one hidden width (None: 2 x latent).

    D pixels make a square image where they can (784 -> 28 x 28), else one row of D.
    It is an mlp model in every other way: `name`, `args` and checkpoints are mlp's,
    so `vaelab.models.MODELS["mlp"](**model.args)` rebuilds it.
    """

    def __init__(self, *, data_size: int = 784, latent_size: int = 48, hidden_size: int | None = None):
        side = math.isqrt(data_size)
        super().__init__(image_shape=(side, side) if side * side == data_size else (1, data_size),
                         latent_size=latent_size, hidden=None if hidden_size is None else (hidden_size, hidden_size))

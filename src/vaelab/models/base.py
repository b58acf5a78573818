"""The contract every architecture keeps, so objectives, evaluation and checkpoints need not know which it is.

A model sees images of `image_shape` (H, W) as flat rows of D = H * W binary
pixels: `encode` maps x (B, D) to the posterior's mean and variance, (B, L)
each, and `decode` maps codes z (..., L) to Bernoulli logits (..., D). Its
`args` are the JSON-able constructor arguments, so `MODELS[model.name](**model.args)`
rebuilds the architecture (vaelab.models).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vaelab.objectives import ElboTerms, elbo

ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh}  # vaelab.config.ACTIVATIONS
VARIANCES = ("softplus", "exp")  # vaelab.config.VARIANCES


def posterior_variance(pre: torch.Tensor, variance: str) -> torch.Tensor:
    """The encoder's variance output made positive.

    softplus: var = log(1 + e^pre), the article's. exp: pre is log sigma and var = exp(2 log sigma),
    the log-variance parameterisation of Kingma & Welling (2014, appendix C.2), halved.
    """
    if variance == "softplus":
        return F.softplus(pre)
    if variance == "exp":
        return torch.exp(2 * pre)
    raise ValueError(f"variance {variance!r} is not one of {', '.join(VARIANCES)}")


def split_posterior(out: torch.Tensor, latent_size: int, variance: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The last encoder layer's output (..., 2L) as mean and variance, (..., L) each."""
    mu, pre_var = out.split(latent_size, dim=-1)
    return mu, posterior_variance(pre_var, variance)


def activation_function(activation: str) -> Any:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r} is not one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[activation]


class VAEModel(nn.Module, metaclass=ABCMeta):
    """A variational autoencoder (Kingma & Welling 2014) over H x W binary images.

    Subclasses set `name`, build `self.encoder` (x (B, D) -> mu, var) and
    `self.decoder` (z (..., L) -> logits (..., D)), and say their `args`.
    """

    name: ClassVar[str]
    hierarchical: ClassVar[bool] = False  # True: several stochastic layers, scored by `log_weights` (mlp2)

    def __init__(self, *, image_shape: tuple[int, int] | list[int], latent_size: int):
        super().__init__()
        height, width = image_shape
        self.image_shape: tuple[int, int] = (height, width)
        self.latent_size = latent_size

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Units of each stochastic layer, lowest first: (L,), or (L1, L) for mlp2."""
        return (self.latent_size,)

    @property
    def noise_size(self) -> int:
        """Standard normal numbers one draw of the latent variables takes (L; every stochastic layer's for mlp2)."""
        return self.latent_size

    @property
    def data_size(self) -> int:
        """Pixels per image, D = H * W."""
        return self.image_shape[0] * self.image_shape[1]

    @classmethod
    def check_shapes(cls, args: dict[str, Any]) -> None:
        """A one-line ValueError if well-typed `args` still cannot make this architecture (none by default)."""

    @property
    @abstractmethod
    def args(self) -> dict[str, Any]:
        """Constructor arguments, JSON-able: `MODELS[model.name](**model.args)` rebuilds the architecture."""

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance, (B, L) each, of images x (B, D)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of the pixels, (..., D), for codes z (..., L)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> ElboTerms:
        """One-sample ELBO terms for a batch of binary images x of shape (B, D) (vaelab.objectives.elbo)."""
        terms = elbo(self, x, generator)
        return ElboTerms(loglike=terms.loglike, kl=terms.kl)

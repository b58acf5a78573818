"""Initialisations other than PyTorch's, applied to a built perceptron VAE (vaelab.models.mlp) in place.

Burda, Grosse & Salakhutdinov (2015), section 5, initialise "with the heuristic of
Glorot & Bengio (2010)"; their code (github.com/yburda/iwae, nnet.Linear.random)
draws every linear layer's weights W (n_in, n_out) uniformly from ±sqrt(6 / (n_in +
n_out)) with a fresh numpy RandomState(123), so layers of the same shape start equal,
and sets every bias to zero but the decoder's output bias, which is the logit of the
training set's mean pixel clipped to [0.001, 0.999] (datasets.get_train_bias_np).
Their encoder has separate mean and log-sigma layers; here they are the two halves
of the encoder's last layer, each initialised as theirs was, with n_out = latent size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from vaelab.models.base import VAEModel
from vaelab.models.mlp import Decoder, Encoder

AUTHORS_SEED = 123  # nnet.Linear.random(n_in, n_out, factor=1., seed=123)
BIAS_CLIP = (0.001, 0.999)  # datasets.get_train_bias_np


def glorot_bound(n_in: int, n_out: int) -> float:
    """Glorot & Bengio (2010)'s uniform bound for a layer followed by tanh."""
    return math.sqrt(6.0 / (n_in + n_out))


def authors_weights(n_in: int, n_out: int) -> torch.Tensor:
    """The weights Burda et al.'s code gives a linear layer, float32, in PyTorch's (n_out, n_in) layout."""
    bound = glorot_bound(n_in, n_out)
    w = np.random.RandomState(AUTHORS_SEED).uniform(low=-bound, high=bound, size=(n_in, n_out))
    return torch.from_numpy(w.astype(np.float32)).T.contiguous()


def _blocks(model: VAEModel) -> list[tuple[nn.Linear, list[tuple[int, int]]]]:
    """Each linear layer with its row blocks: a Gaussian's last layer is two (mean, log sigma), others one.

    The Gaussians are every `Encoder` the model holds: q(z | x) for the mlp; q(h1 | x), q(z | h1) and
    p(h1 | z) for the two-layer mlp2. Layers come in the order the model registered them.
    """
    out = []
    for module in model.modules():
        if not isinstance(module, Encoder | Decoder):
            continue
        last = getattr(module, f"layer{module.n_layers}") if isinstance(module, Encoder) else None
        for m in module.children():
            if isinstance(m, nn.Linear):
                half = m.out_features // 2
                out.append((m, [(0, half), (half, m.out_features)] if m is last else [(0, m.out_features)]))
    return out


@torch.no_grad()
def initialise(model: VAEModel, init: str) -> None:
    """Re-initialise `model` as `init` says: pytorch (left as built), iwae (the authors' arrays) or glorot
    (their distribution, drawn from torch's global generator, which the caller seeds)."""
    if init == "pytorch":
        return
    if init not in ("iwae", "glorot"):
        raise ValueError(f"init {init!r} is not one of pytorch, iwae, glorot")
    for layer, blocks in _blocks(model):
        layer.bias.zero_()
        for start, stop in blocks:
            n_out = stop - start
            if init == "iwae":
                layer.weight[start:stop] = authors_weights(layer.in_features, n_out)
            else:
                bound = glorot_bound(layer.in_features, n_out)
                layer.weight[start:stop].uniform_(-bound, bound)


def output_bias(pixel_mean: torch.Tensor) -> torch.Tensor:
    """log(p / (1 - p)) of the mean pixel p (D,), clipped to [0.001, 0.999], computed in float64, as float32."""
    p = pixel_mean.double().clamp(*BIAS_CLIP)
    return (-torch.log(1.0 / p - 1.0)).float()  # their expression: -log(1/clip(mean) - 1)


@torch.no_grad()
def set_output_bias(model: VAEModel, pixel_mean: torch.Tensor) -> None:
    """Set the decoder's last layer's bias to the logit of the clipped mean pixel (Burda et al. 2015)."""
    last = getattr(model.decoder, f"layer{model.decoder.n_layers}")
    last.bias.copy_(output_bias(pixel_mean).to(last.bias.device))

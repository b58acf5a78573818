"""The article's VAE, generalised: two multilayer perceptrons and a Gaussian latent code.

Encoder: x (D = 784) -> hidden -> hidden -> (mu, softplus -> variance), latent each.
Decoder: z -> hidden -> hidden -> 784 Bernoulli logits. ReLU between layers;
hidden = 2 x latent unless set. Layer names match the article's `Encode` and
`Decode` classes (layer1, layer2, layer3), so its weights map one to one.

Generalised: any list of hidden widths (layers layer1 ... layer{n+1}), tanh
instead of ReLU, and the variance as exp(2 log sigma) instead of softplus. With
two hidden layers, relu and softplus it is the article's network to the last
bit: the same parameters, created in the same order, and the same operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vaelab.models.base import VAEModel, activation_function, split_posterior


def add_layers(module: nn.Module, sizes: Sequence[int]) -> int:
    """Linear layers layer1, layer2, ... from sizes[0] through to sizes[-1]; returns how many."""
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
        module.add_module(f"layer{i}", nn.Linear(n_in, n_out))
    return len(sizes) - 1


def run_layers(module: nn.Module, h: torch.Tensor, n: int, activation: Any, *, last: bool = False) -> torch.Tensor:
    """layer1 ... layer{n} of `module` in turn, the activation between them (and after the last if `last`)."""
    for i in range(1, n + 1):
        h = getattr(module, f"layer{i}")(h)
        if i < n or last:
            h = activation(h)
    return h


class Encoder(nn.Module):
    """q(z | x) = N(mu(x), diag var(x))."""

    def __init__(self, data_size: int, latent_size: int, hidden: Sequence[int], activation: str = "relu",
                 variance: str = "softplus"):
        super().__init__()
        self.latent_size, self.variance = latent_size, variance
        self.nonlinearity = activation_function(activation)
        self.n_layers = add_layers(self, [data_size, *hidden, 2 * latent_size])  # the last: mean and variance

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = run_layers(self, x, self.n_layers, self.nonlinearity)
        return split_posterior(out, self.latent_size, self.variance)  # (B, L) each


class Decoder(nn.Module):
    """p(x | z): independent Bernoulli pixels; returns their logits."""

    def __init__(self, data_size: int, latent_size: int, hidden: Sequence[int], activation: str = "relu"):
        super().__init__()
        self.nonlinearity = activation_function(activation)
        self.n_layers = add_layers(self, [latent_size, *reversed(hidden), data_size])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return run_layers(self, z, self.n_layers, self.nonlinearity)  # (..., D) logits


class MLPVAE(VAEModel):
    """Variational autoencoder (Kingma & Welling 2014) with the article's networks, generalised."""

    name = "mlp"

    def __init__(self, *, image_shape: Sequence[int] = (28, 28), latent_size: int = 48,
                 hidden: Sequence[int] | None = None, activation: str = "relu", variance: str = "softplus"):
        super().__init__(image_shape=tuple(image_shape), latent_size=latent_size)
        self.hidden = tuple(hidden) if hidden is not None else (2 * latent_size,) * 2
        self.activation, self.variance = activation, variance
        self.encoder = Encoder(self.data_size, latent_size, self.hidden, activation, variance)
        self.decoder = Decoder(self.data_size, latent_size, self.hidden, activation)

    @property
    def args(self) -> dict[str, Any]:
        return {"image_shape": list(self.image_shape), "latent_size": self.latent_size, "hidden": list(self.hidden),
                "activation": self.activation, "variance": self.variance}

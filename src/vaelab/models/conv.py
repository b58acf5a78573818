"""A small convolutional VAE, of the kind pytorch/examples users expect, for square images.

Encoder: x (B, D) -> (B, 1, H, W) -> one Conv2d(kernel 4, stride 2, padding 1)
per width in `channels`, each halving the side (28 -> 14 -> 7) -> flatten ->
the dense `hidden` layers -> a Linear to 2 x latent: the mean and the variance,
made positive as in the perceptron VAE (vaelab.models.mlp). Decoder: the mirror
image, z -> reversed hidden widths -> channels[-1] x s x s -> ConvTranspose2d
back through the reversed channels to one channel of logits, flattened to D.
The activation follows every layer but the encoder's last and the decoder's last.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vaelab.models.base import VAEModel, activation_function, split_posterior
from vaelab.models.mlp import add_layers, run_layers

KERNEL, STRIDE, PADDING = 4, 2, 1  # each convolution halves the side exactly


def check_image(image_shape: Sequence[int], channels: Sequence[int]) -> int:
    """The side after the convolutions, or a one-line ValueError if the images do not suit them."""
    height, width = image_shape
    step = 2 ** len(channels)
    if height != width:
        raise ValueError(f"image_shape {list(image_shape)} is not square, which the conv model needs")
    if height % step:
        raise ValueError(f"image side {height} is not divisible by {step}, as {len(channels)} stride-2 "
                         f"convolutions (channels {list(channels)}) need")
    return height // step


class ConvEncoder(nn.Module):
    """q(z | x) = N(mu(x), diag var(x)), through convolutions and then dense layers."""

    def __init__(self, image_shape: tuple[int, int], latent_size: int, hidden: Sequence[int],
                 channels: Sequence[int], activation: str, variance: str):
        super().__init__()
        self.image_shape, self.latent_size, self.variance = image_shape, latent_size, variance
        self.nonlinearity = activation_function(activation)
        side = check_image(image_shape, channels)
        for i, (n_in, n_out) in enumerate(zip([1, *channels[:-1]], channels, strict=True), start=1):
            self.add_module(f"conv{i}", nn.Conv2d(n_in, n_out, KERNEL, STRIDE, PADDING))
        self.n_convs = len(channels)
        self.n_layers = add_layers(self, [channels[-1] * side * side, *hidden, 2 * latent_size])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lead = x.shape[:-1]
        h = x.reshape(-1, 1, *self.image_shape)  # (N, 1, H, W)
        for i in range(1, self.n_convs + 1):
            h = self.nonlinearity(getattr(self, f"conv{i}")(h))  # (N, C_i, H / 2^i, W / 2^i)
        out = run_layers(self, h.flatten(1), self.n_layers, self.nonlinearity)  # (N, 2L)
        return split_posterior(out.reshape(*lead, -1), self.latent_size, self.variance)  # (B, L) each


class ConvDecoder(nn.Module):
    """p(x | z): independent Bernoulli pixels; returns their logits."""

    def __init__(self, image_shape: tuple[int, int], latent_size: int, hidden: Sequence[int],
                 channels: Sequence[int], activation: str):
        super().__init__()
        self.latent_size, self.data_size = latent_size, image_shape[0] * image_shape[1]
        self.nonlinearity = activation_function(activation)
        self.side, self.width = check_image(image_shape, channels), channels[-1]
        self.n_layers = add_layers(self, [latent_size, *reversed(hidden), self.width * self.side ** 2])
        widths = [*reversed(channels), 1]
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True), start=1):
            self.add_module(f"deconv{i}", nn.ConvTranspose2d(n_in, n_out, KERNEL, STRIDE, PADDING))
        self.n_deconvs = len(channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]  # (B,), or (K, B) for several samples per image
        h = run_layers(self, z.reshape(-1, self.latent_size), self.n_layers, self.nonlinearity, last=True)
        h = h.reshape(-1, self.width, self.side, self.side)  # (N, C, s, s)
        for i in range(1, self.n_deconvs + 1):
            h = getattr(self, f"deconv{i}")(h)
            if i < self.n_deconvs:
                h = self.nonlinearity(h)
        return h.reshape(*lead, self.data_size)  # (..., D) logits


class ConvVAE(VAEModel):
    """Variational autoencoder (Kingma & Welling 2014) with convolutional networks, for square images."""

    name = "conv"

    def __init__(self, *, image_shape: Sequence[int] = (28, 28), latent_size: int = 48,
                 hidden: Sequence[int] | None = None, activation: str = "relu", variance: str = "softplus",
                 channels: Sequence[int] = (32, 64)):
        super().__init__(image_shape=tuple(image_shape), latent_size=latent_size)
        self.hidden = tuple(hidden) if hidden is not None else (2 * latent_size,) * 2
        self.activation, self.variance, self.channels = activation, variance, tuple(channels)
        if not self.channels:
            raise ValueError("channels is empty; the conv model needs at least one convolution")
        self.encoder = ConvEncoder(self.image_shape, latent_size, self.hidden, self.channels, activation, variance)
        self.decoder = ConvDecoder(self.image_shape, latent_size, self.hidden, self.channels, activation)

    @classmethod
    def check_shapes(cls, args: dict[str, Any]) -> None:
        check_image(args["image_shape"], args["channels"])

    @property
    def args(self) -> dict[str, Any]:
        return {"image_shape": list(self.image_shape), "latent_size": self.latent_size, "hidden": list(self.hidden),
                "activation": self.activation, "variance": self.variance, "channels": list(self.channels)}

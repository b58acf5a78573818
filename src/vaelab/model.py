"""The article's VAE: two three-layer perceptrons and a Gaussian latent code.

Encoder: x (784) -> hidden -> hidden -> (mu, softplus -> variance), latent each.
Decoder: z -> hidden -> hidden -> 784 Bernoulli logits. ReLU between layers;
hidden = 2 x latent unless set. Layer names match the article's `Encode` and
`Decode` classes, so its weights map one to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaelab.objectives import ElboTerms, elbo

__all__ = ["VAE", "Encoder", "Decoder", "ElboTerms"]


class Encoder(nn.Module):
    """q(z | x) = N(mu(x), diag var(x))."""

    def __init__(self, data_size: int, latent_size: int, hidden_size: int):
        super().__init__()
        self.latent_size = latent_size
        self.layer1 = nn.Linear(data_size, hidden_size)
        self.layer2 = nn.Linear(hidden_size, hidden_size)
        self.layer3 = nn.Linear(hidden_size, 2 * latent_size)  # mean and variance

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.layer1(x))
        h = F.relu(self.layer2(h))
        mu, pre_var = self.layer3(h).split(self.latent_size, dim=-1)  # (B, L) each
        return mu, F.softplus(pre_var)  # softplus keeps the variance positive


class Decoder(nn.Module):
    """p(x | z): independent Bernoulli pixels; returns their logits."""

    def __init__(self, data_size: int, latent_size: int, hidden_size: int):
        super().__init__()
        self.layer1 = nn.Linear(latent_size, hidden_size)
        self.layer2 = nn.Linear(hidden_size, hidden_size)
        self.layer3 = nn.Linear(hidden_size, data_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.layer1(z))
        h = F.relu(self.layer2(h))
        return self.layer3(h)  # (..., D) logits


class VAE(nn.Module):
    """Variational autoencoder (Kingma & Welling 2014) with the article's networks."""

    def __init__(self, *, data_size: int = 784, latent_size: int = 48, hidden_size: int | None = None):
        super().__init__()
        hidden_size = hidden_size if hidden_size is not None else 2 * latent_size
        self.data_size, self.latent_size, self.hidden_size = data_size, latent_size, hidden_size
        self.encoder = Encoder(data_size, latent_size, hidden_size)
        self.decoder = Decoder(data_size, latent_size, hidden_size)

    @property
    def args(self) -> dict[str, int]:
        """Constructor arguments: `VAE(**model.args)` rebuilds the architecture."""
        return {
            "data_size": self.data_size,
            "latent_size": self.latent_size,
            "hidden_size": self.hidden_size,
        }

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance, (B, L) each."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of the pixels, (..., D)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> ElboTerms:
        """One-sample ELBO terms for a batch of binary images x of shape (B, D) (vaelab.objectives.elbo)."""
        terms = elbo(self, x, generator)
        return ElboTerms(loglike=terms.loglike, kl=terms.kl)

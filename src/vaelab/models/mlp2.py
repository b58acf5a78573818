"""Two stochastic layers: Burda, Grosse & Salakhutdinov (2015), section 5, "two stochastic layers".

Generative model: z ~ N(0, I) (L units), h1 | z ~ N(mu_p(z), diag var_p(z)) (L1
units), x | h1 ~ Bernoulli(sigmoid(logits(h1))). Recognition model: h1 | x ~
N(mu_q(x), diag var_q(x)), z | h1 ~ N(mu_q(h1), diag var_q(h1)). Each arrow is a
perceptron: `hidden` widths between x and h1 (both ways), `upper_hidden` between
h1 and z. Their code (github.com/yburda/iwae, experiments.py, layers = 2) uses
latent [100, 50], hidden [200, 200] and upper_hidden [100, 100], tanh, sigma = exp.

    log w = log p(x | h1) + log p(h1 | z) + log p(z) - log q(h1 | x) - log q(z | h1)   (eq. 8's weight)

There is no closed-form KL here: the objectives average (ELBO) or log-mean-exp
(IWAE) these sampled weights, as their code does (iwae.log_weightsIq_samples).

For the figures and the explorer, `encode` and `decode` follow the means:
encode(x) is q(z | h1 = mu_q(x)), decode(z) the logits at h1 = mu_p(z).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vaelab.models.base import VAEModel
from vaelab.models.mlp import Decoder, Encoder
from vaelab.objectives import (
    ElboTerms,
    bernoulli_log_likelihood,
    gaussian_log_density,
    reparameterize,
    standard_normal_log_density,
)


class TwoLayerVAE(VAEModel):
    """A VAE with two stochastic layers, x <-> h1 <-> z, each link a perceptron (Burda et al. 2015)."""

    name = "mlp2"
    hierarchical = True

    def __init__(self, *, image_shape: Sequence[int] = (28, 28), latent_size: int = 50,
                 lower_latent_size: int = 100, hidden: Sequence[int] = (200, 200),
                 upper_hidden: Sequence[int] = (100, 100), activation: str = "tanh", variance: str = "exp"):
        super().__init__(image_shape=tuple(image_shape), latent_size=latent_size)
        self.lower_latent_size = lower_latent_size
        self.hidden, self.upper_hidden = tuple(hidden), tuple(upper_hidden)
        self.activation, self.variance = activation, variance
        self.encoder = Encoder(self.data_size, lower_latent_size, self.hidden, activation, variance)  # q(h1 | x)
        self.upper_encoder = Encoder(lower_latent_size, latent_size, self.upper_hidden, activation, variance)  # q(z|h1)
        # p(h1 | z): a Gaussian from z, through the upper widths reversed (their GaussianSampler([50, 100, 100, 100]))
        self.upper_decoder = Encoder(latent_size, lower_latent_size, tuple(reversed(self.upper_hidden)),
                                     activation, variance)
        self.decoder = Decoder(self.data_size, lower_latent_size, self.hidden, activation)  # p(x | h1)

    @property
    def args(self) -> dict[str, Any]:
        return {"image_shape": list(self.image_shape), "latent_size": self.latent_size,
                "lower_latent_size": self.lower_latent_size, "hidden": list(self.hidden),
                "upper_hidden": list(self.upper_hidden), "activation": self.activation, "variance": self.variance}

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return (self.lower_latent_size, self.latent_size)

    @property
    def noise_size(self) -> int:
        return sum(self.layer_sizes)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | h1) at h1 = the mean of q(h1 | x): the top code's mean and variance, (B, L) each."""
        mu1, _ = self.encoder(x)
        return self.upper_encoder(mu1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits (..., D) at h1 = the mean of p(h1 | z)."""
        mu1, _ = self.upper_decoder(z)
        return self.decoder(mu1)

    @torch.no_grad()
    def layer_means(self, x: torch.Tensor, generator: torch.Generator | None, batch_size: int = 5000
                    ) -> list[torch.Tensor]:
        """The posterior mean of each stochastic layer for images x (N, D): h1's (N, L1), then z's (N, L) given
        one sample of h1, as Burda et al.'s code gathers them to count active units (iwae.get_units_variances)."""
        lower, upper = [], []
        for i in range(0, len(x), batch_size):
            mu1, var1 = self.encoder(x[i:i + batch_size])
            h1 = reparameterize(mu1, var1, torch.randn(mu1.shape, generator=generator, device=mu1.device,
                                                       dtype=mu1.dtype))
            lower.append(mu1)
            upper.append(self.upper_encoder(h1)[0])
        return [torch.cat(lower), torch.cat(upper)]

    def noise(self, samples: int, batch: int, generator: torch.Generator | None, device: torch.device | None = None,
              dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Standard normal noise for K draws of (h1, z): h1's (K, B, L1) first, then z's (K, B, L)."""
        return tuple(torch.randn((samples, batch, n), generator=generator, device=device, dtype=dtype)
                     for n in (self.lower_latent_size, self.latent_size))

    def log_weights(self, x: torch.Tensor, samples: int, generator: torch.Generator | None,
                    noise: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """log w and log p(x | h1), (K, B) each, for K draws of (h1, z) from q(h1 | x) q(z | h1).

        The draws come from `noise` (see `noise`), or are drawn from `generator` as `noise` draws them.
        """
        mu1, var1 = self.encoder(x)  # (B, L1)
        eps1, eps2 = noise if noise is not None else self.noise(samples, x.shape[0], generator, x.device, x.dtype)
        h1 = reparameterize(mu1, var1, eps1)  # (K, B, L1)
        mu2, var2 = self.upper_encoder(h1)  # (K, B, L)
        z = reparameterize(mu2, var2, eps2)
        prior_mu1, prior_var1 = self.upper_decoder(z)
        loglike = bernoulli_log_likelihood(self.decoder(h1), x)
        log_w = (loglike + gaussian_log_density(h1, prior_mu1, prior_var1) + standard_normal_log_density(z)
                 - gaussian_log_density(h1, mu1, var1) - gaussian_log_density(z, mu2, var2))
        return log_w, loglike

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> ElboTerms:
        """One-sample ELBO terms (B,): log p(x | h1), and the sampled KL, log q(h1, z | x) - log p(h1, z)."""
        log_w, loglike = self.log_weights(x, 1, generator)
        return ElboTerms(loglike=loglike[0], kl=(loglike - log_w)[0])


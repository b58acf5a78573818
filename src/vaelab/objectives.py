"""The maths of the VAE, as pure per-example functions, and the training objectives built from them.

Every function returns one value per example (shape `(B,)`, or `(K, B)` for K
samples), in nats; the caller reduces. Notation follows Kingma & Welling (2014),
"Auto-Encoding Variational Bayes", and Burda, Grosse & Salakhutdinov (2015),
"Importance Weighted Autoencoders".

An objective takes any network that encodes x into (mu, var) and decodes z into
Bernoulli logits, and returns `Terms`: the per-example value it maximises, and
the ELBO's two terms that the per-epoch log shows. `OBJECTIVES` names them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | z) for independent Bernoulli pixels with the given logits. (..., D) -> (...)

    The article's `loglike`: -BCEWithLogits, summed over pixels.
    """
    logits, x = torch.broadcast_tensors(logits, x)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def kl_to_standard_normal(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag var) || N(0, I)), analytically. (B, L) -> (B,)

    Kingma & Welling (2014), appendix B: -KL = 1/2 sum(1 + log var - mu^2 - var).
    The article's `reg` is this with the opposite sign.
    """
    return -0.5 * (1.0 + torch.log(var) - mu.pow(2) - var).sum(-1)


def reparameterize(mu: torch.Tensor, var: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """z = mu + sqrt(var) * eps, with eps ~ N(0, I) given (Kingma & Welling 2014, eq. 10)."""
    return mu + torch.sqrt(var) * noise


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag var), every constant kept. (..., L) -> (...)"""
    return -0.5 * (LOG_2PI + torch.log(var) + (z - mu).pow(2) / var).sum(-1)


def standard_normal_log_density(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), every constant kept. (..., L) -> (...)"""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def importance_weighted_log_likelihood(log_weights: torch.Tensor) -> torch.Tensor:
    """log (1/K sum_k w_k) from log w_k of shape (K, B): Burda et al. (2015), eq. 8. -> (B,)

    With log w_k = log p(x, z_k) - log q(z_k | x), z_k ~ q(z | x), this is a lower
    bound on log p(x) that tightens as K grows and equals the ELBO for K = 1.
    """
    return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])


# --- objectives -----------------------------------------------------------------
class ElboTerms(NamedTuple):
    """Per-example terms of the evidence lower bound, each (B,), in nats."""

    loglike: torch.Tensor  # E_q[log p(x|z)], estimated with the objective's samples
    kl: torch.Tensor  # KL(q(z|x) || p(z)), analytic; the article's reg is -kl

    @property
    def elbo(self) -> torch.Tensor:
        return self.loglike - self.kl


class Terms(NamedTuple):
    """What an objective gives for a batch, each (B,): the value it maximises and the ELBO's terms."""

    value: torch.Tensor
    loglike: torch.Tensor
    kl: torch.Tensor


class Autoencoder(Protocol):
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...  # (B, D) -> (B, L), (B, L)
    def decode(self, z: torch.Tensor) -> torch.Tensor: ...  # (..., L) -> (..., D) logits


def _sample(model: Autoencoder, x: torch.Tensor, generator: torch.Generator | None, samples: int):
    """mu, var (B, L), z ((B, L) for one sample, else (K, B, L)) and log p(x|z) ((B,) or (K, B))."""
    mu, var = model.encode(x)
    shape = mu.shape if samples == 1 else (samples, *mu.shape)
    noise = torch.randn(shape, generator=generator, device=mu.device, dtype=mu.dtype)
    z = reparameterize(mu, var, noise)
    return mu, var, z, bernoulli_log_likelihood(model.decode(z), x)


def elbo(model: Autoencoder, x: torch.Tensor, generator: torch.Generator | None = None, *,
         samples: int = 1, beta: float = 1.0) -> Terms:
    """The ELBO, E_q[log p(x|z)] - KL (Kingma & Welling 2014, eq. 10), the article's objective.

    With `samples` K > 1 the reconstruction term is the mean over K draws of z (K
    single-sample bounds averaged); with `beta` the KL is weighted by beta
    (Higgins et al. 2017, eq. 4), which is a bound on log p(x) only for beta >= 1.
    A model with several stochastic layers (`hierarchical`) has no closed-form KL:
    its K sampled log-weights are averaged (the VAE of Burda et al.'s code).
    """
    if getattr(model, "hierarchical", False):  # no closed-form KL: average sampled weights, as Burda et al.
        log_w, loglike = model.log_weights(x, samples, generator)
        kl = (loglike - log_w).mean(0)
        loglike = loglike.mean(0)
        return Terms(loglike - kl if beta == 1.0 else loglike - beta * kl, loglike, kl)
    mu, var, _, loglike = _sample(model, x, generator, samples)
    if samples > 1:
        loglike = loglike.mean(0)
    kl = kl_to_standard_normal(mu, var)
    value = loglike - kl if beta == 1.0 else loglike - beta * kl
    return Terms(value, loglike, kl)


def iwae(model: Autoencoder, x: torch.Tensor, generator: torch.Generator | None = None, *,
         samples: int = 1, beta: float = 1.0) -> Terms:
    """The importance-weighted bound with K samples (Burda et al. 2015, eq. 8), trained directly.

    log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x); value = logsumexp_k log w_k - log K.
    The ELBO's terms come from the same samples. K = 1 is the ELBO with a sampled KL.
    """
    if getattr(model, "hierarchical", False):  # several stochastic layers: the model gives its weights
        log_w, loglike = model.log_weights(x, samples, generator)
        return Terms(importance_weighted_log_likelihood(log_w), loglike.mean(0), (loglike - log_w).mean(0))
    mu, var, z, loglike = _sample(model, x, generator, samples)
    if samples == 1:
        z, loglike = z[None], loglike[None]
    log_w = loglike + standard_normal_log_density(z) - gaussian_log_density(z, mu, var)  # (K, B)
    return Terms(importance_weighted_log_likelihood(log_w), loglike.mean(0), kl_to_standard_normal(mu, var))


Objective = Callable[..., Terms]
OBJECTIVES: dict[str, Objective] = {"elbo": elbo, "beta": elbo, "iwae": iwae}  # beta: the ELBO with a weight

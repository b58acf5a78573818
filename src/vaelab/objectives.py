"""The maths of the VAE, as pure per-example functions.

Every function returns one value per example (shape `(B,)`, or `(K, B)` for K
samples), in nats; the caller reduces. Notation follows Kingma & Welling (2014),
"Auto-Encoding Variational Bayes", and Burda, Grosse & Salakhutdinov (2015),
"Importance Weighted Autoencoders".
"""

from __future__ import annotations

import math

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

"""The maths, checked exactly against torch.distributions."""

import math

import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from vaelab.objectives import (
    bernoulli_log_likelihood,
    gaussian_log_density,
    importance_weighted_log_likelihood,
    kl_to_standard_normal,
    reparameterize,
    standard_normal_log_density,
)


def _gaussian(seed=0, b=7, latent=5):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(b, latent, generator=g, dtype=torch.float64) * 2
    var = torch.rand(b, latent, generator=g, dtype=torch.float64) * 3 + 0.05
    return mu, var


def test_kl_matches_torch_distributions():
    mu, var = _gaussian()
    expected = kl_divergence(Normal(mu, var.sqrt()), Normal(0.0, 1.0)).sum(-1)
    got = kl_to_standard_normal(mu, var)
    assert got.shape == (7,)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_kl_is_zero_only_at_the_prior():
    zeros, ones = torch.zeros(3, 4), torch.ones(3, 4)
    assert torch.equal(kl_to_standard_normal(zeros, ones), torch.zeros(3))
    assert (kl_to_standard_normal(zeros + 0.1, ones) > 0).all()


def test_bernoulli_log_likelihood_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 784, generator=g, dtype=torch.float64) * 4
    x = (torch.rand(6, 784, generator=g, dtype=torch.float64) > 0.5).double()
    expected = Bernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(bernoulli_log_likelihood(logits, x), expected, rtol=1e-12, atol=1e-10)


def test_bernoulli_log_likelihood_broadcasts_over_samples():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 4, 10, generator=g)  # (K, B, D)
    x = (torch.rand(4, 10, generator=g) > 0.5).float()  # (B, D)
    got = bernoulli_log_likelihood(logits, x)
    assert got.shape == (3, 4)
    torch.testing.assert_close(got[2], bernoulli_log_likelihood(logits[2], x))


def test_gaussian_densities_keep_every_constant():
    mu, var = _gaussian(3)
    z = torch.randn(mu.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    expected = Normal(mu, var.sqrt()).log_prob(z).sum(-1)
    torch.testing.assert_close(gaussian_log_density(z, mu, var), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        standard_normal_log_density(z), Normal(0.0, 1.0).log_prob(z).sum(-1), rtol=1e-12, atol=1e-12
    )
    # One dimension at the mean with unit variance: -log(2 pi) / 2 exactly.
    at_mean = standard_normal_log_density(torch.zeros(1, 1)).item()
    assert math.isclose(at_mean, -0.5 * math.log(2 * math.pi), rel_tol=1e-7)


def test_reparameterize_is_mean_plus_scaled_noise():
    mu, var = _gaussian(5)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    torch.testing.assert_close(reparameterize(mu, var, eps), mu + var.sqrt() * eps, rtol=0, atol=0)
    # Many draws have the requested mean and variance.
    big = torch.randn(200_000, 1, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    z = reparameterize(torch.tensor([[1.5]]), torch.tensor([[4.0]]), big)
    assert abs(z.mean().item() - 1.5) < 5 * 2 / math.sqrt(200_000)
    assert abs(z.var().item() - 4.0) < 0.05


def test_importance_weighted_log_likelihood_is_log_mean_exp():
    g = torch.Generator().manual_seed(8)
    log_w = torch.randn(50, 4, generator=g, dtype=torch.float64) * 3 - 100
    expected = torch.log(torch.exp(log_w + 100).mean(0)) - 100
    torch.testing.assert_close(importance_weighted_log_likelihood(log_w), expected, rtol=1e-12, atol=1e-12)
    # K = 1 is the weight itself; equal weights give that weight back.
    torch.testing.assert_close(importance_weighted_log_likelihood(log_w[:1]), log_w[0], rtol=0, atol=0)
    same = torch.full((1000, 3), -93.5, dtype=torch.float64)
    torch.testing.assert_close(importance_weighted_log_likelihood(same), same[0], rtol=1e-12, atol=1e-12)

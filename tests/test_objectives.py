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


# --- objectives ------------------------------------------------------------------
def _net(seed=0, data=12, latent=3):
    from vaelab.model import VAE

    torch.manual_seed(seed)
    model = VAE(data_size=data, latent_size=latent, hidden_size=8).double()
    x = (torch.rand(5, data, dtype=torch.float64) > 0.5).double()
    return model, x


def test_the_registry_names_every_objective_the_config_offers():
    from vaelab.config import OBJECTIVES as NAMES
    from vaelab.objectives import OBJECTIVES

    assert tuple(OBJECTIVES) == NAMES


def test_the_elbo_is_the_articles_loss_term_for_term():
    from vaelab.objectives import elbo

    model, x = _net()
    terms = elbo(model, x, torch.Generator().manual_seed(3))
    mu, var = model.encode(x)
    noise = torch.randn(mu.shape, generator=torch.Generator().manual_seed(3), dtype=mu.dtype)
    z = mu + var.sqrt() * noise
    loglike = -torch.nn.functional.binary_cross_entropy_with_logits(model.decode(z), x, reduction="none").sum(-1)
    reg = 0.5 * (1 + var.log() - mu.pow(2) - var).sum(-1)  # the article's `reg`
    assert torch.equal(terms.loglike, loglike) and torch.equal(terms.kl, -reg)
    assert torch.equal(terms.value, loglike + reg)


def test_k_samples_average_k_single_sample_bounds():
    from vaelab.objectives import elbo

    model, x = _net()
    many = elbo(model, x, torch.Generator().manual_seed(4), samples=6)
    mu, var = model.encode(x)
    noise = torch.randn((6, *mu.shape), generator=torch.Generator().manual_seed(4), dtype=mu.dtype)
    each = torch.stack([bernoulli_log_likelihood(model.decode(mu + var.sqrt() * e), x) for e in noise])
    torch.testing.assert_close(many.loglike, each.mean(0), rtol=0, atol=1e-12)
    assert many.value.shape == (5,)


def test_beta_weights_the_kl_and_zero_leaves_the_reconstruction():
    from vaelab.objectives import elbo

    model, x = _net()
    plain = elbo(model, x, torch.Generator().manual_seed(5))
    weighted = elbo(model, x, torch.Generator().manual_seed(5), beta=4.0)
    zero = elbo(model, x, torch.Generator().manual_seed(5), beta=0.0)
    torch.testing.assert_close(weighted.value, plain.loglike - 4.0 * plain.kl, rtol=0, atol=1e-12)
    assert torch.equal(zero.value, plain.loglike) and torch.equal(weighted.kl, plain.kl)


def test_iwae_is_the_importance_weighted_bound_of_its_samples():
    from vaelab.objectives import iwae

    model, x = _net()
    k = 7
    terms = iwae(model, x, torch.Generator().manual_seed(6), samples=k)
    mu, var = model.encode(x)
    noise = torch.randn((k, *mu.shape), generator=torch.Generator().manual_seed(6), dtype=mu.dtype)
    z = mu + var.sqrt() * noise
    log_w = (Bernoulli(logits=model.decode(z)).log_prob(x).sum(-1) + Normal(0.0, 1.0).log_prob(z).sum(-1)
             - Normal(mu, var.sqrt()).log_prob(z).sum(-1))
    expected = torch.logsumexp(log_w, 0) - math.log(k)
    torch.testing.assert_close(terms.value, expected, rtol=1e-12, atol=1e-10)


def test_iwae_tightens_with_k_and_equals_the_sampled_elbo_at_k1():
    from vaelab.objectives import iwae

    model, x = _net()
    one = iwae(model, x, torch.Generator().manual_seed(7), samples=1)
    mu, var = model.encode(x)
    z = mu + var.sqrt() * torch.randn(mu.shape, generator=torch.Generator().manual_seed(7), dtype=mu.dtype)
    sampled = bernoulli_log_likelihood(model.decode(z), x) + standard_normal_log_density(z) - gaussian_log_density(
        z, mu, var)
    torch.testing.assert_close(one.value, sampled, rtol=0, atol=1e-12)
    many = x.repeat(400, 1)
    means = [iwae(model, many, torch.Generator().manual_seed(8), samples=k).value.mean() for k in (1, 5, 50)]
    assert means[0] < means[1] < means[2]  # Burda et al. (2015), theorem 1, in expectation over 2,000 images

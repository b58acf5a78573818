"""Latent-space operations: the article's recipes, checked against hand-computed numbers."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vaelab.errors import VaelabError
from vaelab.latent import (
    ACTIVE_THRESHOLD,
    active_units,
    class_statistics,
    decode_images,
    embed,
    encode_all,
    interpolate,
    kl_per_dimension,
    lerp,
    mix_matrix,
    require_embedding,
    sample_class,
    sample_prior,
    slerp,
)
from vaelab.model import VAE
from vaelab.objectives import kl_to_standard_normal

# ----------------------------------------------------------------------------- class statistics

# Six images of three classes, given out of order; two latent dimensions.
MU = torch.tensor([[1.0, 2.0], [9.0, -1.0], [3.0, 4.0], [0.0, 0.0], [5.0, 6.0], [7.0, 1.0]], dtype=torch.float64)
VAR = torch.tensor([[0.1, 0.2], [0.9, 0.9], [0.3, 0.4], [0.5, 0.5], [0.5, 0.6], [0.7, 0.3]], dtype=torch.float64)
LABELS = torch.tensor([7, 3, 7, 0, 7, 3])


def test_class_statistics_are_per_class_means():
    stats = class_statistics(MU, VAR, LABELS)
    assert stats.classes.tolist() == [0, 3, 7]  # sorted, though given as 7, 3, 7, 0, 7, 3
    assert stats.counts.tolist() == [1, 2, 3]
    # by hand: class 0 is image 3; class 3 is images 1 and 5; class 7 is images 0, 2 and 4
    expected_means = torch.tensor([[0.0, 0.0], [8.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    expected_vars = torch.tensor([[0.5, 0.5], [0.8, 0.6], [0.3, 0.4]], dtype=torch.float64)
    torch.testing.assert_close(stats.means, expected_means, rtol=0, atol=1e-12)
    torch.testing.assert_close(stats.variances, expected_vars, rtol=0, atol=1e-12)


def test_class_index_and_unknown_digit():
    stats = class_statistics(MU, VAR, LABELS)
    assert [stats.index(d) for d in (0, 3, 7)] == [0, 1, 2]
    with pytest.raises(VaelabError) as err:
        stats.index(11)
    message = str(err.value)
    assert "11" in message
    assert "0, 3, 7" in message


# ----------------------------------------------------------------------------- sampling


def test_sample_class_follows_the_articles_recipe():
    """z = class mean + eps * sqrt(class mean variance): check both moments on many samples."""
    stats = class_statistics(MU, VAR, LABELS)
    n = 200_000
    z = sample_class(stats, 3, n, torch.Generator().manual_seed(0))
    assert z.shape == (n, 2)
    mean, var = stats.means[1], stats.variances[1]  # class 3: mean (8, 0), variance (0.8, 0.6)
    standard_error = (var / n).sqrt()
    assert ((z.mean(0) - mean).abs() < 5 * standard_error).all()
    # the variance of a sample variance is about 2 var^2 / n for Gaussian data
    assert ((z.var(0) - var).abs() < 5 * var * math.sqrt(2 / n)).all()


def test_sample_class_is_reproducible_and_rejects_unknown_digit():
    stats = class_statistics(MU, VAR, LABELS)
    a = sample_class(stats, 7, 5, torch.Generator().manual_seed(3))
    b = sample_class(stats, 7, 5, torch.Generator().manual_seed(3))
    c = sample_class(stats, 7, 5, torch.Generator().manual_seed(4))
    assert a.shape == (5, 2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    with pytest.raises(VaelabError, match="digit 5"):
        sample_class(stats, 5, 5, torch.Generator().manual_seed(0))


def test_sample_prior_is_standard_normal():
    n = 100_000
    z = sample_prior(n, 3, torch.Generator().manual_seed(1))
    assert z.shape == (n, 3)
    assert (z.mean(0).abs() < 5 / math.sqrt(n)).all()
    assert ((z.var(0) - 1).abs() < 5 * math.sqrt(2 / n)).all()
    again = sample_prior(n, 3, torch.Generator().manual_seed(1))
    assert torch.equal(z, again)


# ----------------------------------------------------------------------------- mixing


def test_mix_matrix_averages_every_pair():
    means = torch.tensor([[0.1, 2.0, -3.0], [0.7, -1.3, 5.5], [1e-3, 4.25, 0.3], [-2.0, 0.0, 9.9]])
    m = mix_matrix(means)
    assert m.shape == (4, 4, 3)
    assert torch.equal(m, m.transpose(0, 1))
    for i in range(4):
        assert torch.equal(m[i, i], means[i])
        for j in range(4):
            assert torch.equal(m[i, j], (means[i] + means[j]) / 2)
    torch.testing.assert_close(m[0, 1], torch.tensor([0.4, 0.35, 1.25]))


# ----------------------------------------------------------------------------- interpolation


def test_lerp_endpoints_count_and_spacing():
    a = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    b = torch.tensor([-4.0, 6.0, 0.5, 2.0], dtype=torch.float64)
    path = lerp(a, b, 6)
    assert path.shape == (6, 4)
    assert torch.equal(path[0], a)
    assert torch.equal(path[-1], b)
    steps = path.diff(dim=0)
    torch.testing.assert_close(steps, ((b - a) / 5).expand(5, 4), rtol=0, atol=1e-12)
    torch.testing.assert_close(path[2], torch.tensor([-1.0, 1.2, 0.5, 2.6], dtype=torch.float64))


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


def test_slerp_stays_on_the_great_circle_between_unit_vectors():
    g = torch.Generator().manual_seed(0)
    a = _unit(torch.randn(5, generator=g, dtype=torch.float64))
    b = _unit(torch.randn(5, generator=g, dtype=torch.float64))
    path = slerp(a, b, 9)
    assert path.shape == (9, 5)
    torch.testing.assert_close(path[0], a, rtol=0, atol=1e-12)
    torch.testing.assert_close(path[-1], b, rtol=0, atol=1e-12)
    torch.testing.assert_close(path.norm(dim=1), torch.ones(9, dtype=torch.float64), rtol=0, atol=1e-12)
    omega = torch.arccos(torch.dot(a, b))
    angles = torch.arccos(torch.clamp((path[:-1] * path[1:]).sum(1), -1, 1))
    torch.testing.assert_close(angles, (omega / 8).expand(8), rtol=0, atol=1e-9)
    # lerp's midpoint is shorter than 1 whenever a != b; slerp's is not
    assert lerp(a, b, 9)[4].norm() < 0.99


def test_slerp_norm_changes_linearly():
    g = torch.Generator().manual_seed(1)
    a = 2 * _unit(torch.randn(6, generator=g, dtype=torch.float64))
    b = 3 * _unit(torch.randn(6, generator=g, dtype=torch.float64))
    path = slerp(a, b, 5)
    torch.testing.assert_close(path[0], a, rtol=0, atol=1e-12)
    torch.testing.assert_close(path[-1], b, rtol=0, atol=1e-12)
    expected = torch.tensor([2.0, 2.25, 2.5, 2.75, 3.0], dtype=torch.float64)
    torch.testing.assert_close(path.norm(dim=1), expected, rtol=0, atol=1e-12)
    # and the directions are those of the unit-vector slerp
    torch.testing.assert_close(path / expected[:, None], slerp(_unit(a), _unit(b), 5), rtol=0, atol=1e-12)


@pytest.mark.parametrize("a, b", [
    ([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]),  # same direction
    ([0.3, 0.7, 1.1], [0.9, 2.1, 3.3]),  # same direction, float32 rounding in the cosine
    ([0.0, 0.0, 0.0], [2.0, -1.0, 0.5]),  # zero start
    ([2.0, -1.0, 0.5], [0.0, 0.0, 0.0]),  # zero end
    ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),  # both zero
])
def test_slerp_falls_back_to_lerp_without_nan(a, b):
    a, b = torch.tensor(a), torch.tensor(b)
    path = slerp(a, b, 7)
    assert torch.isfinite(path).all()
    torch.testing.assert_close(path, lerp(a, b, 7), rtol=1e-5, atol=1e-6)


def test_interpolate_dispatches_and_validates():
    a = torch.tensor([1.0, 0.0])
    b = torch.tensor([0.0, 1.0])
    assert torch.equal(interpolate(a, b, 4), lerp(a, b, 4))  # lerp is the default
    assert torch.equal(interpolate(a, b, 4, "lerp"), lerp(a, b, 4))
    assert torch.equal(interpolate(a, b, 4, "slerp"), slerp(a, b, 4))
    assert interpolate(a, b, 2).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    for steps in (1, 0, -3):
        with pytest.raises(VaelabError, match="--steps") as err:
            interpolate(a, b, steps)
        assert str(steps) in str(err.value)
    with pytest.raises(VaelabError, match="'cubic'"):
        interpolate(a, b, 4, "cubic")


# ----------------------------------------------------------------------------- posterior collapse


def _posterior(n: int = 64, latent: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, latent, generator=g, dtype=torch.float64) * torch.linspace(0.01, 2.0, latent,
                                                                                     dtype=torch.float64)
    var = torch.rand(n, latent, generator=g, dtype=torch.float64) * 1.5 + 0.05
    return mu, var


def test_kl_per_dimension_sums_to_the_elbo_kl():
    mu, var = _posterior()
    kl = kl_per_dimension(mu, var)
    assert kl.shape == (5,)
    assert (kl >= 0).all()
    torch.testing.assert_close(kl.sum(), kl_to_standard_normal(mu, var).mean(), rtol=1e-12, atol=1e-12)


def test_kl_per_dimension_matches_torch_distributions():
    mu, var = _posterior(seed=3)
    expected = kl_divergence(Normal(mu, var.sqrt()), Normal(torch.zeros_like(mu), torch.ones_like(var))).mean(0)
    torch.testing.assert_close(kl_per_dimension(mu, var), expected, rtol=1e-10, atol=1e-12)
    # one value by hand: mu = 1, var = 2 -> (1 + 2 - 1 - log 2) / 2
    one = kl_per_dimension(torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([[2.0]], dtype=torch.float64))
    assert one.item() == pytest.approx((2 - math.log(2)) / 2, rel=1e-12)


def test_kl_per_dimension_is_zero_at_the_prior():
    kl = kl_per_dimension(torch.zeros(10, 4), torch.ones(10, 4))
    assert torch.equal(kl, torch.zeros(4))


def _with_variance(n: int, target: float, g: torch.Generator) -> torch.Tensor:
    """A column whose unbiased sample variance is `target` (to rounding)."""
    c = torch.randn(n, generator=g, dtype=torch.float64)
    return (c - c.mean()) / c.std() * math.sqrt(target) + 0.3


def test_active_units_threshold():
    assert ACTIVE_THRESHOLD == 0.01
    n = 50
    g = torch.Generator().manual_seed(0)
    mu = torch.stack([
        torch.randn(n, generator=g, dtype=torch.float64) * 2.0,  # varies a lot
        torch.full((n,), 1.7, dtype=torch.float64),  # constant: collapsed
        _with_variance(n, 0.0099, g),  # just below the threshold
        _with_variance(n, 0.0101, g),  # just above (its biased variance, 0.0101 * 49/50, is below)
    ], dim=1)
    assert mu[:, 0].var() > 1.0
    assert active_units(mu).tolist() == [True, False, False, True]
    assert active_units(mu, threshold=0.0098).tolist() == [True, False, True, True]
    assert active_units(mu, threshold=10.0).tolist() == [False, False, False, False]


# ----------------------------------------------------------------------------- 2-D embeddings


def test_embed_pca_finds_the_dominant_direction():
    rng = np.random.default_rng(0)
    direction = rng.normal(size=6)
    direction /= np.linalg.norm(direction)
    t = rng.normal(size=200) * 10
    codes = t[:, None] * direction + rng.normal(size=(200, 6)) * 0.1 + 5.0
    points = embed(codes, "pca")
    assert points.shape == (200, 2)
    assert abs(np.corrcoef(points[:, 0], t)[0, 1]) > 0.99
    assert abs(np.corrcoef(points[:, 1], t)[0, 1]) < 0.2
    np.testing.assert_allclose(points.mean(0), 0, atol=1e-3)  # centred
    assert points[:, 0].var() > 50 * points[:, 1].var()


def test_embed_tsne_keeps_clusters_apart(one_openmp_thread):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 10)) * 15
    labels = np.repeat(np.arange(3), 50)
    codes = centres[labels] + rng.normal(size=(150, 10))
    points = embed(codes, "tsne", seed=0)
    assert points.shape == (150, 2)
    assert np.isfinite(points).all()
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    same = labels[:, None] == labels[None]
    off_diagonal = ~np.eye(150, dtype=bool)
    within = distances[same & off_diagonal].mean()
    between = distances[~same].mean()
    assert within < 0.5 * between


def test_embed_tsne_on_few_points_lowers_the_perplexity(one_openmp_thread):
    """t-SNE needs perplexity < N; with 12 codes the default 40 must be lowered."""
    codes = np.random.default_rng(1).normal(size=(12, 4))
    assert embed(codes, "tsne", seed=0).shape == (12, 2)


def test_umap_without_the_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # import umap -> ImportError, installed or not
    codes = np.zeros((10, 3))
    with pytest.raises(VaelabError, match="pip install umap-learn"):
        embed(codes, "umap")
    with pytest.raises(VaelabError, match="pip install umap-learn"):
        require_embedding("umap")


def test_require_embedding_needs_nothing_for_builtin_methods():
    assert require_embedding("tsne") is None
    assert require_embedding("pca") is None


def test_embed_unknown_method():
    with pytest.raises(VaelabError, match="'isomap'") as err:
        embed(np.zeros((10, 3)), "isomap")
    assert "tsne, pca, umap" in str(err.value)


# ----------------------------------------------------------------------------- model round trips


@pytest.fixture
def tiny_vae() -> VAE:
    torch.manual_seed(0)
    model = VAE(latent_size=4)
    with torch.no_grad():  # spread the logits so that 'binary' has both colours
        model.decoder.layer3.bias.copy_(torch.linspace(-3, 3, 784))
    return model.eval()


def test_decode_images_mean(tiny_vae):
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    images = decode_images(tiny_vae, z)
    assert isinstance(images, np.ndarray)
    assert images.shape == (6, 28, 28)
    assert images.min() >= 0 and images.max() <= 1
    with torch.no_grad():
        expected = torch.sigmoid(tiny_vae.decode(z)).reshape(6, 28, 28).numpy()
    np.testing.assert_allclose(images, expected, rtol=0, atol=1e-7)
    assert decode_images(tiny_vae, z, "mean").shape == (6, 28, 28)


def test_decode_images_binary(tiny_vae):
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    images = decode_images(tiny_vae, z, "binary")
    assert images.shape == (6, 28, 28)
    with torch.no_grad():
        expected = (torch.sigmoid(tiny_vae.decode(z)) > 0.5).float().reshape(6, 28, 28).numpy()
    np.testing.assert_array_equal(images, expected)
    assert set(np.unique(images).tolist()) == {0.0, 1.0}


def test_decode_images_binary_is_strictly_above_half():
    """The article's generateImage: a pixel is white only if sigmoid > 0.5; a logit of 0 stays black."""
    model = VAE(latent_size=4).eval()
    with torch.no_grad():
        model.decoder.layer3.weight.zero_()
        model.decoder.layer3.bias.zero_()
    z = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(decode_images(model, z, "mean"), np.full((2, 28, 28), 0.5, dtype=np.float32))
    np.testing.assert_array_equal(decode_images(model, z, "binary"), np.zeros((2, 28, 28), dtype=np.float32))


def test_decode_images_keeps_leading_dimensions(tiny_vae):
    z = torch.randn(3, 3, 4, generator=torch.Generator().manual_seed(2))
    images = decode_images(tiny_vae, z)
    assert images.shape == (3, 3, 28, 28)
    flat = decode_images(tiny_vae, z.reshape(9, 4))
    np.testing.assert_allclose(images.reshape(9, 28, 28), flat, rtol=0, atol=1e-7)


def test_decode_images_unknown_style(tiny_vae):
    with pytest.raises(VaelabError, match="'sepia'"):
        decode_images(tiny_vae, torch.zeros(1, 4), "sepia")


def test_encode_all_batches_without_changing_results(tiny_vae):
    x = (torch.rand(23, 784, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    mu, var = encode_all(tiny_vae, x, batch_size=5)  # 5 + 5 + 5 + 5 + 3
    assert mu.shape == var.shape == (23, 4)
    with torch.no_grad():
        expected_mu, expected_var = tiny_vae.encode(x)
    torch.testing.assert_close(mu, expected_mu)
    torch.testing.assert_close(var, expected_var)
    assert (var > 0).all()

"""The two-stochastic-layer model (vaelab.models.mlp2): its weights, bounds and initialisation, checked exactly."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal

from vaelab import evaluate
from vaelab.config import TrainConfig
from vaelab.evalfile import EvalResult
from vaelab.models import build_model
from vaelab.models.init import authors_weights, initialise, output_bias, set_output_bias
from vaelab.objectives import elbo, iwae

ARGS = {"image_shape": [6, 5], "latent_size": 3, "lower_latent_size": 4, "hidden": [9, 7], "upper_hidden": [8],
        "activation": "tanh", "variance": "exp"}


@pytest.fixture
def model():
    torch.manual_seed(3)
    return build_model("mlp2", ARGS)


@pytest.fixture
def x():
    return (torch.rand(5, 30, generator=torch.Generator().manual_seed(1)) < 0.4).float()


def by_hand(model, x, eps1, eps2):
    """log w from torch.distributions, every network applied by name (Burda et al. 2015, eq. 8's weight)."""
    def gaussian(net, h):
        out = h
        for i in range(1, net.n_layers + 1):
            out = getattr(net, f"layer{i}")(out)
            out = torch.tanh(out) if i < net.n_layers else out
        mu, log_sigma = out.split(out.shape[-1] // 2, dim=-1)
        return Normal(mu, torch.exp(log_sigma))

    q1 = gaussian(model.encoder, x)
    h1 = q1.loc + q1.scale * eps1
    q2 = gaussian(model.upper_encoder, h1)
    z = q2.loc + q2.scale * eps2
    p1 = gaussian(model.upper_decoder, z)
    logits = model.decoder(h1)
    log_px = Bernoulli(logits=logits).log_prob(x.expand_as(logits)).sum(-1)
    log_w = (log_px + p1.log_prob(h1).sum(-1) + Normal(0.0, 1.0).log_prob(z).sum(-1)
             - q1.log_prob(h1).sum(-1) - q2.log_prob(z).sum(-1))
    return log_w, log_px


def test_log_weights_are_the_papers_weights_term_by_term(model, x):
    eps1, eps2 = model.noise(7, len(x), torch.Generator().manual_seed(0))
    assert eps1.shape == (7, 5, 4) and eps2.shape == (7, 5, 3)
    log_w, loglike = model.log_weights(x, 7, None, (eps1, eps2))
    want_w, want_px = by_hand(model, x, eps1, eps2)
    torch.testing.assert_close(log_w, want_w, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(loglike, want_px, rtol=1e-5, atol=1e-4)
    drawn, _ = model.log_weights(x, 7, torch.Generator().manual_seed(0))  # the generator draws the same noise
    assert torch.equal(drawn, log_w)


def test_objectives_average_or_log_mean_exp_the_same_weights(model, x):
    log_w, loglike = model.log_weights(x, 6, torch.Generator().manual_seed(4))
    vae = elbo(model, x, torch.Generator().manual_seed(4), samples=6)
    iw = iwae(model, x, torch.Generator().manual_seed(4), samples=6)
    torch.testing.assert_close(vae.value, log_w.mean(0))  # the authors' VAE: the mean of K sampled bounds
    torch.testing.assert_close(iw.value, torch.logsumexp(log_w, 0) - math.log(6))
    torch.testing.assert_close(vae.loglike, loglike.mean(0))
    torch.testing.assert_close(vae.kl, (loglike - log_w).mean(0))  # sampled KL: the ELBO is loglike - kl
    assert (iw.value >= vae.value - 1e-5).all()  # Jensen, example by example, on the same draws
    one = elbo(model, x, torch.Generator().manual_seed(4))
    torch.testing.assert_close(one.value, iwae(model, x, torch.Generator().manual_seed(4)).value)  # K = 1: equal
    beta = elbo(model, x, torch.Generator().manual_seed(4), samples=6, beta=0.5)
    torch.testing.assert_close(beta.value, vae.loglike - 0.5 * vae.kl)


def test_gradients_reach_every_network(model, x):
    (-iwae(model, x, torch.Generator().manual_seed(0), samples=4).value.mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_the_iw_estimate_does_not_depend_on_the_chunk_size_and_tightens_with_k(model, x, monkeypatch):
    with torch.no_grad():
        whole = evaluate.iw_log_likelihood(model, x, k=40, generator=torch.Generator().manual_seed(2))
        monkeypatch.setattr(evaluate, "MAX_BLOCK", 30 * 5 * 3)  # chunks of 3 draws
        chunked = evaluate.iw_log_likelihood(model, x, k=40, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(chunked, whole)
        means = [evaluate.iw_log_likelihood(model, x.repeat(40, 1), k=k, generator=torch.Generator().manual_seed(k)
                                            ).mean().item() for k in (1, 10, 100)]
    assert means[0] < means[1] < means[2]
    elbo_mean = evaluate.elbo_terms(model, x.repeat(40, 1), generator=torch.Generator().manual_seed(5)).elbo.mean()
    assert abs(elbo_mean.item() - means[0]) < 1.0  # K = 1 is an ELBO estimate


def test_encode_and_decode_follow_the_means(model, x):
    mu1, _ = model.encoder(x)
    mu, var = model.encode(x)
    want_mu, want_var = model.upper_encoder(mu1)
    assert torch.equal(mu, want_mu) and torch.equal(var, want_var) and mu.shape == (5, 3)
    z = torch.randn(2, 5, 3)
    assert torch.equal(model.decode(z), model.decoder(model.upper_decoder(z)[0]))
    assert model.noise_size == 7


def test_the_authors_initialisation_covers_all_four_networks(model):
    initialise(model, "iwae")
    checked = 0
    for net in (model.encoder, model.upper_encoder, model.upper_decoder):  # Gaussians: mean and log-sigma halves
        last = getattr(net, f"layer{net.n_layers}")
        half = last.out_features // 2
        assert torch.equal(last.weight[:half], authors_weights(last.in_features, half))
        assert torch.equal(last.weight[half:], authors_weights(last.in_features, half))
        first = net.layer1
        assert torch.equal(first.weight, authors_weights(first.in_features, first.out_features))
        checked += 1
    for layer in model.decoder.children():
        assert torch.equal(layer.weight, authors_weights(layer.in_features, layer.out_features))
    assert all(torch.count_nonzero(p) == 0 for n, p in model.named_parameters() if n.endswith("bias"))
    pixel_mean = torch.linspace(0.0, 1.0, 30, dtype=torch.float64)
    set_output_bias(model, pixel_mean)
    assert torch.equal(model.decoder.layer3.bias, output_bias(pixel_mean))
    assert checked == 3


def test_config_fields_of_the_upper_layers():
    config = TrainConfig(model="mlp2", latent_size=5)
    assert (config.lower_latent, config.upper_hidden_layers) == (10, (10, 10))
    config = TrainConfig(model="mlp2", lower_latent_size=7, upper_hidden_size=4)
    assert (config.lower_latent, config.upper_hidden_layers) == (7, (4, 4))
    from vaelab.errors import VaelabError

    with pytest.raises(VaelabError, match=r"lower_latent_size \(--lower-latent-size\) sets the upper layers of "
                                          r"--model mlp2 only \(the model is mlp\)"):
        TrainConfig(lower_latent_size=7)
    with pytest.raises(VaelabError, match=r"upper_hidden_size \(--upper-hidden-size\) must be at least 1"):
        TrainConfig(model="mlp2", upper_hidden_size=0)


def test_active_units_are_counted_per_layer_as_their_code_counts(model, x):
    from vaelab.latent import active_units

    generator = torch.Generator().manual_seed(9)
    lower, upper = model.layer_means(x, generator)
    mu1, var1 = model.encoder(x)
    h1 = mu1 + var1.sqrt() * torch.randn(mu1.shape, generator=torch.Generator().manual_seed(9))
    assert torch.equal(lower, mu1)
    torch.testing.assert_close(upper, model.upper_encoder(h1)[0])  # z's means given one sample of h1
    seen = []
    real = model.layer_means
    model.layer_means = lambda x, generator: seen.append(generator.get_state()) or real(x, generator)
    result = evaluate.evaluate_model(model, x, iw_k=3, seed=9)
    assert evaluate.evaluate_model(model, x, iw_k=7, seed=9).active_units_by_layer == result.active_units_by_layer
    assert evaluate.evaluate_model(model, x, iw_k=0, seed=9).active_units_by_layer == result.active_units_by_layer
    # h1's draw comes from a generator of its own, seeded as the scores: the same whatever K (and its estimate)
    assert len(seen) == 3 and all(torch.equal(state, torch.Generator().manual_seed(9).get_state()) for state in seen)
    del model.layer_means
    assert result.active_units_by_layer == [int(active_units(m).sum()) for m in model.layer_means(
        x, torch.Generator().manual_seed(9))]
    assert model.layer_sizes == (4, 3)
    again = EvalResult.from_dict(result.to_dict())
    assert again.active_units_by_layer == result.active_units_by_layer
    for bad in ([1.5, 2], "3", [-1, 2], [True, 1]):
        with pytest.raises(ValueError, match="active_units_by_layer must be null or a list of non-negative"):
            EvalResult.from_dict({**result.to_dict(), "active_units_by_layer": bad})


def test_the_kl_per_dimension_of_two_layers_is_the_top_layers_not_the_elbos(model, x):
    from vaelab.latent import kl_per_dimension

    result = evaluate.evaluate_model(model, x, iw_k=0, seed=2)
    mu, var = model.upper_encoder(model.encoder(x)[0])  # z given h1 at its posterior mean
    assert result.kl_per_dimension == pytest.approx(kl_per_dimension(mu, var).double().tolist(), rel=1e-6)
    assert abs(sum(result.kl_per_dimension) - result.kl) > 0.1  # the ELBO's KL: both layers, sampled


def test_a_one_layer_models_scores_have_no_layers(x):
    mlp = build_model("mlp", {"image_shape": [6, 5], "latent_size": 3, "hidden": [8], "activation": "relu",
                              "variance": "softplus"})
    assert evaluate.evaluate_model(mlp, x, iw_k=2).active_units_by_layer is None
    assert mlp.layer_sizes == (3,) and mlp.noise_size == 3


def test_eval_and_the_report_say_which_active_units_of_two_layers_they_count(small_mnist, tmp_path, capsys):
    import html
    import re

    from vaelab.cli import main
    from vaelab.report import write_report
    from vaelab.training import train

    config = TrainConfig(model="mlp2", data_dir=str(small_mnist), latent_size=3, lower_latent_size=4,
                         hidden_size=16, upper_hidden_size=8, activation="tanh", variance="exp", epochs=1)
    train(config, tmp_path / "run", echo=lambda s: None)
    assert main(["eval", str(tmp_path / "run"), "--iw-k", "2", "--no-judge"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  active units           \d of 3   \(z, h1 at its posterior mean; Var\[mu\] > 0\.01\)$",
                     out, re.M), out
    assert re.search(r"^  active units by layer  \d of 4, \d of 3   \(lowest first, the layers below sampled\)$",
                     out, re.M), out
    page = html.unescape(write_report(tmp_path / "run", embed_method="pca", n_stats=100, iw_k=0,
                                      echo=lambda s: None).read_text())
    assert re.search(r"z at h1's mean; by layer \d, \d \(h1 sampled\)", page)

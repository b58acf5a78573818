"""Test-set scores: the IW estimate is exact where it can be checked exactly."""

import json
import math

import pytest
import torch

import vaelab.evaluate as evaluate
from vaelab.cli import main
from vaelab.errors import VaelabError
from vaelab.evalfile import EvalResult
from vaelab.evaluate import elbo_terms, evaluate_model, iw_log_likelihood, mean_and_stderr
from vaelab.model import VAE
from vaelab.objectives import (
    bernoulli_log_likelihood,
    gaussian_log_density,
    reparameterize,
    standard_normal_log_density,
)


def _model_and_data(latent=6, data=30, n=40, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    model = VAE(data_size=data, latent_size=latent, hidden_size=16).to(dtype).eval()
    x = (torch.rand(n, data, dtype=dtype) > 0.5).to(dtype)
    return model, x


def test_k1_equals_the_elbo_on_the_same_sample():
    model, x = _model_and_data()
    got = iw_log_likelihood(model, x, k=1, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        mu, var = model.encode(x)
        noise = torch.randn((1, *mu.shape), generator=torch.Generator().manual_seed(5), dtype=x.dtype)
        z = reparameterize(mu, var, noise)
        elbo_sample = (bernoulli_log_likelihood(model.decode(z), x) + standard_normal_log_density(z)
                       - gaussian_log_density(z, mu, var))[0]
        # The one-sample ELBO estimator that training uses draws the very same z.
        terms = model(x, torch.Generator().manual_seed(5))
        terms_z = terms.loglike
    torch.testing.assert_close(got, elbo_sample, rtol=0, atol=0)
    torch.testing.assert_close(bernoulli_log_likelihood(model.decode(z[0]), x), terms_z, rtol=0, atol=0)


def test_k1_averages_to_the_analytic_elbo():
    model, x = _model_and_data(n=4)
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([iw_log_likelihood(model, x, k=1, generator=g) for _ in range(4000)])  # (R, B)
    analytic = elbo_terms(model, x.repeat(4000, 1), generator=torch.Generator().manual_seed(1)).elbo
    analytic = analytic.view(4000, 4).mean(0)
    se = draws.std(0) / math.sqrt(4000)
    assert ((draws.mean(0) - analytic).abs() < 5 * se).all()


def test_iw_bound_grows_with_k():
    model, x = _model_and_data()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(3)  # a sharper decoder widens the gap between the bounds
    est = [iw_log_likelihood(model, x, k=k, generator=torch.Generator().manual_seed(0)).mean().item()
           for k in (1, 10, 100, 1000)]
    assert est == sorted(est)
    assert est[-1] - est[0] > 1.0  # a real gap, not rounding


def test_iw_matches_numerical_integration_for_a_1d_latent():
    """log p(x) = log ∫ p(x|z) N(z; 0, 1) dz, by quadrature on a fine grid."""
    model, x = _model_and_data(latent=1, data=12, n=6, seed=3)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(3)  # a sharper decoder, so the posterior is far from the prior
        grid = torch.linspace(-12, 12, 200_001, dtype=torch.float64).unsqueeze(1)  # (G, 1)
        log_px_given_z = bernoulli_log_likelihood(model.decode(grid).unsqueeze(1), x)  # (G, B)
        log_joint = log_px_given_z + standard_normal_log_density(grid).unsqueeze(1)
        exact = torch.logsumexp(log_joint, 0) + math.log(grid[1, 0] - grid[0, 0])
    estimate = iw_log_likelihood(model, x, k=200_000, generator=torch.Generator().manual_seed(0))
    elbo = elbo_terms(model, x.repeat(20_000, 1), generator=torch.Generator().manual_seed(0)).elbo
    elbo = elbo.view(20_000, -1).mean(0)  # the expected ELBO, to within ~0.01 nats
    torch.testing.assert_close(estimate, exact, rtol=0, atol=0.01)
    assert (exact - elbo > 0.1).all()  # the ELBO is visibly looser: the test can tell them apart


def test_chunking_does_not_change_the_result(monkeypatch):
    model, x = _model_and_data(n=30)
    whole = iw_log_likelihood(model, x, k=50, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(evaluate, "MAX_BLOCK", 7 * 30)  # 7 samples per decoder call
    chunked = iw_log_likelihood(model, x, k=50, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-12)


def test_evaluate_model_is_deterministic_given_the_seed():
    model, x = _model_and_data(dtype=torch.float32)
    a = evaluate_model(model, x, iw_k=20, seed=3)
    b = evaluate_model(model, x, iw_k=20, seed=3)
    c = evaluate_model(model, x, iw_k=20, seed=4)
    assert a == b
    assert a.log_likelihood != c.log_likelihood
    assert a.log_likelihood >= a.elbo - 3 * a.elbo_stderr
    assert a.n_images == 40 and a.iw_k == 20
    assert math.isclose(a.elbo, a.loglike - a.kl, rel_tol=1e-6)
    # the KL is analytic (Kingma & Welling 2014, appendix B), per dimension its parts; the active units count
    # the dimensions whose posterior mean varies over the images by more than 0.01 (Burda et al. 2015)
    with torch.no_grad():
        mu, var = model.encode(x)
    mu, var = mu.double(), var.double()
    by_hand = 0.5 * (mu**2 + var - 1 - var.log())  # (N, L)
    assert a.kl == pytest.approx(by_hand.sum(1).mean().item(), rel=1e-5)
    assert a.kl_per_dimension == pytest.approx(by_hand.mean(0).tolist(), rel=1e-5, abs=1e-9)
    assert sum(a.kl_per_dimension) == pytest.approx(a.kl, rel=1e-5)
    assert a.active_units == int((mu.var(0) > 0.01).sum()) == 0  # untrained: its means barely vary
    last = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    kept = last.weight.detach().clone()
    with torch.no_grad():
        last.weight[:2] *= 10  # two of the means now vary 100 times as much over the images: active
    assert evaluate_model(model, x, iw_k=0, seed=3).active_units == 2
    with torch.no_grad():
        last.weight.copy_(kept)
    generator = torch.Generator().manual_seed(3)
    assert a.elbo == pytest.approx(elbo_terms(model, x, generator=generator).elbo.double().mean().item(), rel=1e-6)
    assert evaluate_model(model, x, iw_k=0).log_likelihood is None
    assert evaluate_model(model, x, iw_k=0).log_likelihood_per_image is None
    per_image = torch.tensor(a.log_likelihood_per_image, dtype=torch.float64)  # each image's, in order
    assert len(per_image) == 40 and (a.log_likelihood, a.log_likelihood_stderr) == mean_and_stderr(per_image)
    generator = torch.Generator().manual_seed(3)
    evaluate.elbo_terms(model, x, generator=generator)  # the draws evaluate_model makes before the IW estimate
    assert torch.equal(per_image, evaluate.iw_log_likelihood(model, x, k=20, generator=generator).double())


def test_mean_and_stderr():
    mean, se = mean_and_stderr(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert mean == 2.5
    assert math.isclose(se, math.sqrt(5 / 3) / 2, rel_tol=1e-12)


def test_bad_k():
    model, x = _model_and_data()
    with pytest.raises(VaelabError, match="iw-k"):
        iw_log_likelihood(model, x, k=0, generator=torch.Generator())
    with pytest.raises(VaelabError, match="iw-k"):
        evaluate_model(model, x, iw_k=-1)


# --- scores of a run: tied to its weights and data, never NaN -----------------------
def _copy(run, tmp_path, name="run"):
    import shutil

    shutil.copytree(run, tmp_path / name, ignore=shutil.ignore_patterns("eval.json"))
    return tmp_path / name


def _strict(text):
    def refuse(constant):
        raise AssertionError(f"{constant} in a file vaelab wrote")

    return json.loads(text, parse_constant=refuse)


def test_scores_name_the_weights_and_data_they_score(trained_run, tmp_path):
    from vaelab.checkpoint import load_run

    run_path = _copy(trained_run, tmp_path)
    result = evaluate.evaluate_run(run_path, iw_k=5)
    run = load_run(run_path)
    saved = _strict((run_path / "eval.json").read_text())
    assert saved["weights_sha256"] == run.weights_sha256 == result.weights_sha256 and len(run.weights_sha256) == 64
    assert saved["step"] == run.step == 24  # 3 epochs of 8 batches
    assert saved["data_sha256"] == {k: v for k, v in run.data["sha256"].items() if k.startswith("t10k")}
    assert saved["data_matches_run"] is True
    assert EvalResult.from_dict(saved) == result


def test_a_smaller_k_never_overwrites_a_larger_one(trained_run, tmp_path):
    run_path = _copy(trained_run, tmp_path)
    first = evaluate.evaluate_run(run_path, iw_k=20, seed=1)
    evaluate.evaluate_run(run_path, iw_k=0, seed=2)
    saved = json.loads((run_path / "eval.json").read_text())
    assert (saved["iw_k"], saved["iw_seed"], saved["seed"]) == (20, 1, 2)
    assert saved["log_likelihood"] == first.log_likelihood
    evaluate.evaluate_run(run_path, iw_k=10)
    assert json.loads((run_path / "eval.json").read_text())["iw_k"] == 20
    larger = evaluate.evaluate_run(run_path, iw_k=30)
    saved = json.loads((run_path / "eval.json").read_text())
    assert saved["iw_k"] == 30 and saved["log_likelihood"] == larger.log_likelihood


def test_a_diverged_run_is_refused_and_nothing_is_written(trained_run, tmp_path, capsys):
    from vaelab.checkpoint import load_checkpoint, save_checkpoint
    from vaelab.cli import main

    run_path = _copy(trained_run, tmp_path)
    ckpt = load_checkpoint(run_path)
    ckpt.model_state["decoder.layer3.bias"][0] = float("nan")
    save_checkpoint(run_path, ckpt)
    with pytest.raises(evaluate.Diverged, match="NaN or infinite.*diverged"):
        evaluate.evaluate_run(run_path, iw_k=5)
    assert main(["eval", str(run_path), "--iw-k", "5"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error: ") and "diverged" in err and err.count("\n") == 1
    assert not (run_path / "eval.json").exists()


def test_infinite_scores_are_a_divergence_too():
    model, x = _model_and_data(dtype=torch.float32)
    with torch.no_grad():
        model.decoder.layer3.bias.fill_(3e38)  # finite weights; 30 pixels' log-likelihoods overflow float32
    with pytest.raises(evaluate.Diverged, match="diverged"):
        evaluate_model(model, x, iw_k=3)


def test_other_data_are_scored_with_a_warning_naming_the_files(trained_run, tmp_path):
    from conftest import write_mnist
    from vaelab.data import DataMismatchWarning

    other = write_mnist(tmp_path / "other", 1000, 400)  # the first 400 test images, not 500
    run_path = _copy(trained_run, tmp_path)
    with pytest.warns(DataMismatchWarning, match=r"t10k-images-idx3-ubyte: recorded [0-9a-f]{12}…, found"):
        result = evaluate.evaluate_run(run_path, iw_k=0, data_dir=str(other))
    assert result.n_images == 400 and result.data_matches_run is False
    assert json.loads((run_path / "eval.json").read_text())["data_matches_run"] is False  # nothing better to keep


def test_scores_of_other_data_never_replace_the_runs_own(trained_run, tmp_path, capsys):
    from conftest import write_mnist

    other = write_mnist(tmp_path / "other", 1000, 400)
    run_path = _copy(trained_run, tmp_path)
    assert main(["eval", str(run_path), "--iw-k", "10", "--no-judge", "--quiet"]) == 0  # its own test files
    own = (run_path / "eval.json").read_bytes()
    assert json.loads(own)["iw_k"] == 10 and json.loads(own)["data_matches_run"] is True
    capsys.readouterr()
    assert main(["eval", str(run_path), "--iw-k", "0", "--no-judge", "--quiet", "--data-dir", str(other)]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("vaelab: warning: the test files differ") and err.endswith(
        f"these scores are of other data, and are not saved: {run_path / 'eval.json'} keeps the scores of the "
        "run's own test files\n")
    assert "400 test images" in out  # scored and shown
    assert out.endswith(f"  not saved: {run_path / 'eval.json'} keeps the scores of the run's own test files\n")
    assert (run_path / "eval.json").read_bytes() == own  # untouched, byte for byte


def test_the_iw_estimate_uses_the_cores_others_leave_free_and_the_same_numbers(monkeypatch, threads_asked):
    """Two threads on a machine whose other core is busy spin; the estimate adapts as training does."""
    torch.manual_seed(0)
    model = VAE(data_size=30, latent_size=3, hidden_size=16)
    x = (torch.rand(40, 30, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    seen = threads_asked
    before = torch.get_num_threads()
    estimates = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("VAELAB_THREADS", threads)
        with torch.no_grad():
            estimates[threads] = iw_log_likelihood(model, x, k=50, generator=torch.Generator().manual_seed(3),
                                                   batch_size=8)
        assert seen[-5:] == [int(threads)] * 5  # asked before each of the 5 batches, as VAELAB_THREADS pins
    assert torch.get_num_threads() == before  # given back afterwards
    assert torch.equal(estimates["1"], estimates["2"])  # one thread or two: the same numbers


def test_the_line_said_before_scoring_names_the_work_and_warns_of_minutes_only_where_likely():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert evaluate.scoring_line("runs/x", 5000, cpu, judged=True) == (
        "runs/x: scoring its test images on cpu (the ELBO, log p(x) with IW K=5,000, active units and the judge's "
        "scores of generated images); on a CPU this takes minutes")
    assert evaluate.scoring_line("runs/x", 0, cpu, judged=False) == (
        "runs/x: scoring its test images on cpu (the ELBO and active units)")
    assert evaluate.scoring_line("runs/x", 999, cpu, judged=False).endswith("active units)")
    assert evaluate.scoring_line("runs/x", 5000, gpu, judged=False).endswith("on cuda (the ELBO, log p(x) with "
                                                                             "IW K=5,000 and active units)")

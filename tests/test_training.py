"""Training: reproducible, resumable bit for bit, interruptible, and safe when it diverges."""

import json
import math
import re
import signal

import pytest
import torch

import vaelab.training as train_module
from conftest import stop_after_steps
from vaelab.checkpoint import CHECKPOINT, load_checkpoint, load_run
from vaelab.config import TrainConfig
from vaelab.device import describe
from vaelab.errors import TrainingInterrupted, VaelabError
from vaelab.signals import stop_after_batch
from vaelab.training import resume, train
from vaelab.trainlog import HEADER


def _config(small_mnist, **kw):
    return TrainConfig(data_dir=str(small_mnist), latent_size=8, **{"epochs": 2, **kw})


def _state(path):
    ckpt = load_checkpoint(path)
    return ckpt.model_state, ckpt.optimizer_state["state"], ckpt.rng_state


def _assert_identical(a, b):
    (wa, oa, ra), (wb, ob, rb) = _state(a), _state(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    for i in oa:
        for k in oa[i]:
            assert torch.equal(torch.as_tensor(oa[i][k]), torch.as_tensor(ob[i][k])), (i, k)
    assert torch.equal(ra, rb)


def test_training_improves_the_elbo_and_logs_the_articles_columns(small_mnist, tmp_path):
    lines = []
    run = train(_config(small_mnist, epochs=4), tmp_path / "run", echo=lines.append)
    assert HEADER in lines and "lowerBound" in HEADER and "reg" in HEADER
    m = run.metrics
    assert [r["epoch"] for r in m] == [1, 2, 3, 4]
    for r in m:
        assert r["lower_bound"] == pytest.approx(r["reg"] + r["loglike"])
        assert r["reg"] < 0 and r["loglike"] < 0
        assert r["test_elbo"] == pytest.approx(r["test_loglike"] - r["test_kl"])
    assert m[-1]["lower_bound"] > m[0]["lower_bound"] + 20
    assert m[-1]["test_elbo"] > m[0]["test_elbo"] + 20
    assert m[-1]["step"] == 4 * 8  # 1,000 images in batches of 128
    assert {r["machine"] for r in m} == {describe(torch.device("cpu"))}  # each epoch names the machine it ran on
    on_disk = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert on_disk == m
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == run.config.to_dict()


def test_same_seed_same_weights_other_seed_other_weights(small_mnist, tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train(_config(small_mnist, seed=seed, epochs=1), tmp_path / name, echo=lambda s: None)
    _assert_identical(tmp_path / "a", tmp_path / "b")
    wa, wc = _state(tmp_path / "a")[0], _state(tmp_path / "c")[0]
    assert not torch.equal(wa["decoder.layer3.weight"], wc["decoder.layer3.weight"])


@pytest.mark.parametrize("variant", [{}, {"binarization": "dynamic"}, {"optimizer": "rmsprop"}])
def test_resume_is_bit_identical_to_training_straight_through(small_mnist, tmp_path, variant):
    quiet = lambda s: None  # noqa: E731
    train(_config(small_mnist, epochs=4, **variant), tmp_path / "straight", echo=quiet)
    train(_config(small_mnist, epochs=2, **variant), tmp_path / "resumed", echo=quiet)
    run = resume(tmp_path / "resumed", epochs=4, echo=quiet)
    assert run.epoch == 4
    _assert_identical(tmp_path / "straight", tmp_path / "resumed")
    assert [m["lower_bound"] for m in run.metrics] == [
        m["lower_bound"] for m in load_run(tmp_path / "straight").metrics
    ]


def test_interrupt_mid_epoch_saves_a_checkpoint_that_resumes_exactly(small_mnist, tmp_path, monkeypatch):
    quiet = lambda s: None  # noqa: E731
    train(_config(small_mnist, epochs=3), tmp_path / "straight", echo=quiet)

    stop_after_steps(monkeypatch, 13)  # Ctrl-C pressed once, after the 13th batch (epoch 2, batch 5)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(_config(small_mnist, epochs=3), tmp_path / "cut", echo=quiet)
    ckpt = load_checkpoint(tmp_path / "cut")
    assert (ckpt.position.epoch, ckpt.position.batch, ckpt.position.step) == (1, 5, 13)
    assert ckpt.perm is not None and len(ckpt.metrics) == 1

    monkeypatch.setattr(train_module, "stop_after_batch", stop_after_batch)
    before = (tmp_path / "cut" / CHECKPOINT).read_bytes()
    with pytest.raises(VaelabError, match=r"has trained 1 epoch and 5 batches of epoch 2; --epochs 1 would end it "
                                          r"before where it is \(give --epochs 2 or more\)"):
        resume(tmp_path / "cut", epochs=1, echo=quiet)  # the epochs done, but the checkpoint is past them
    assert (tmp_path / "cut" / CHECKPOINT).read_bytes() == before
    resume(tmp_path / "cut", epochs=3, echo=quiet)
    _assert_identical(tmp_path / "straight", tmp_path / "cut")


def test_stages_that_end_before_a_mid_epoch_checkpoint_are_refused_in_stages(small_mnist, tmp_path, monkeypatch):
    config = _config(small_mnist, lr_schedule="iwae", stages=2, epochs=None, batch_size=100)  # 10 batches a pass
    stop_after_steps(monkeypatch, 13)  # in pass 2 of stage 2
    with pytest.raises(TrainingInterrupted):
        train(config, tmp_path / "cut", echo=lambda s: None)
    monkeypatch.setattr(train_module, "stop_after_batch", stop_after_batch)
    with pytest.raises(VaelabError, match=r"has trained 1 epoch and 3 batches of epoch 2; --stages 1 \(1 epoch\) "
                                          r"would end it before where it is \(give --stages 2 or more\)"):
        resume(tmp_path / "cut", stages=1, echo=lambda s: None)  # asked in stages: answered in stages
    assert resume(tmp_path / "cut", stages=2, echo=lambda s: None).epoch == 4


def test_divergence_stops_with_a_message_and_keeps_the_last_good_checkpoint(small_mnist, tmp_path, monkeypatch):
    real_step = train_module.train_step
    calls = {"n": 0}

    def poisoned_step(model, optimizer, x, generator, objective):
        calls["n"] += 1
        if calls["n"] == 12:  # in epoch 2
            with torch.no_grad():
                model.decoder.layer3.bias.fill_(float("nan"))
        return real_step(model, optimizer, x, generator, objective)

    monkeypatch.setattr(train_module, "train_step", poisoned_step)
    with pytest.raises(VaelabError, match=r"NaN or infinite in epoch 2.*epoch 1\)"):
        train(_config(small_mnist, epochs=3), tmp_path / "run", echo=lambda s: None)
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.position.epoch == 1 and ckpt.position.batch == 0
    assert all(torch.isfinite(t).all() for t in ckpt.model_state.values())


def test_new_training_never_overwrites_a_run(small_mnist, tmp_path):
    train(_config(small_mnist, epochs=1), tmp_path / "run", echo=lambda s: None)
    before = (tmp_path / "run" / "checkpoint.safetensors").read_bytes()
    with pytest.raises(VaelabError, match="already holds a run"):
        train(_config(small_mnist, epochs=1, seed=5), tmp_path / "run", echo=lambda s: None)
    assert (tmp_path / "run" / "checkpoint.safetensors").read_bytes() == before


def test_resume_cannot_shorten_and_is_a_no_op_when_done(small_mnist, tmp_path):
    train(_config(small_mnist, epochs=2), tmp_path / "run", echo=lambda s: None)
    with pytest.raises(VaelabError, match="already trained 2 epochs"):
        resume(tmp_path / "run", epochs=1, echo=lambda s: None)
    said = []
    assert resume(tmp_path / "run", epochs=2, echo=said.append).epoch == 2
    assert said == [f"{tmp_path / 'run'} has already trained 2 epochs; nothing to do (to train it further: --epochs 3 "
                    "or more)"]


def test_a_bad_thread_setting_is_refused_before_a_run_folder_is_made(small_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_THREADS", "two")
    with pytest.raises(VaelabError, match="VAELAB_THREADS='two' must be a positive number of threads, or 'auto'"):
        train(_config(small_mnist, epochs=1), tmp_path / "run", echo=lambda s: None)
    assert not (tmp_path / "run").exists()  # so the same --out works once it is fixed
    monkeypatch.setenv("VAELAB_THREADS", "1")
    assert train(_config(small_mnist, epochs=1), tmp_path / "run", echo=lambda s: None).epoch == 1


def test_a_dataset_that_is_nowhere_names_the_fix_and_leaves_no_run(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "cache"))  # an empty download cache
    with pytest.raises(VaelabError, match=r"add --download"):
        train(TrainConfig(dataset="kmnist", epochs=1), tmp_path / "run", echo=lambda s: None)
    assert not (tmp_path / "run").exists()


def test_resuming_on_other_data_is_refused_naming_the_files(small_mnist, tmp_path):
    from conftest import write_mnist

    train(_config(small_mnist, epochs=1), tmp_path / "run", echo=lambda s: None)
    other = write_mnist(tmp_path / "other", 900, 500)
    before = (tmp_path / "run" / "checkpoint.safetensors").read_bytes()
    with pytest.raises(VaelabError, match=r"trained on other data.*train-images-idx3-ubyte: recorded"):
        resume(tmp_path / "run", epochs=2, data_dir=str(other), echo=lambda s: None)
    assert (tmp_path / "run" / "checkpoint.safetensors").read_bytes() == before


def test_a_relative_data_dir_is_stored_as_the_absolute_path_it_meant(small_mnist, tmp_path, monkeypatch):
    monkeypatch.chdir(small_mnist.parent)
    train(TrainConfig(data_dir=small_mnist.name, latent_size=8, epochs=1), tmp_path / "run", echo=lambda s: None)
    monkeypatch.chdir(tmp_path)  # elsewhere: the run still finds its data
    assert load_checkpoint(tmp_path / "run").config.data_dir == str(small_mnist)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data_dir"] == str(small_mnist)
    assert resume(tmp_path / "run", epochs=2, echo=lambda s: None).epoch == 2


def test_a_relative_class_names_file_is_stored_as_the_absolute_path_it_meant(small_mnist, tmp_path, monkeypatch):
    from vaelab.checkpoint import load_run

    names = tmp_path / "names" / "digits.txt"
    names.parent.mkdir()
    names.write_text("\n".join(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]))
    monkeypatch.chdir(names.parent)
    train(TrainConfig(data_dir=str(small_mnist), class_names=names.name, latent_size=8, epochs=1), tmp_path / "run",
          echo=lambda s: None)
    monkeypatch.chdir(small_mnist)  # elsewhere, where no digits.txt is: the run still finds its names
    assert load_checkpoint(tmp_path / "run").config.class_names == str(names)
    assert resume(tmp_path / "run", epochs=2, echo=lambda s: None).epoch == 2
    assert load_run(tmp_path / "run").data["classes"]["names"][:2] == ["zero", "one"]


def test_a_non_finite_test_elbo_is_a_divergence_and_no_file_holds_nan(small_mnist, tmp_path, monkeypatch):
    real = train_module._test_scores
    calls = {"n": 0}

    def nan_in_epoch_2(*args):
        calls["n"] += 1
        terms = real(*args)
        return terms._replace(kl=terms.kl * float("nan")) if calls["n"] == 2 else terms

    monkeypatch.setattr(train_module, "_test_scores", nan_in_epoch_2)
    with pytest.raises(train_module.Diverged, match=r"the test ELBO became NaN or infinite in epoch 2.*\(epoch 1\)"):
        train(_config(small_mnist, epochs=3), tmp_path / "run", echo=lambda s: None)
    assert load_checkpoint(tmp_path / "run").position.epoch == 1

    def refuse(constant):
        raise AssertionError(f"{constant} written")

    json.loads((tmp_path / "run" / "config.json").read_text(), parse_constant=refuse)
    rows = [json.loads(line, parse_constant=refuse) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [row["epoch"] for row in rows] == [1]


def test_the_number_of_threads_never_changes_the_numbers(small_mnist, tmp_path, monkeypatch):
    """What makes it safe to adapt the threads to the machine's load (vaelab.resources)."""
    for threads in ("1", "2"):
        monkeypatch.setenv("VAELAB_THREADS", threads)
        train(_config(small_mnist, epochs=2), tmp_path / threads, echo=lambda s: None)
    _assert_identical(tmp_path / "1", tmp_path / "2")
    assert load_run(tmp_path / "1").metrics == load_run(tmp_path / "2").metrics or all(
        {k: v for k, v in a.items() if k not in ("seconds", "elapsed")}
        == {k: v for k, v in b.items() if k not in ("seconds", "elapsed")}
        for a, b in zip(load_run(tmp_path / "1").metrics, load_run(tmp_path / "2").metrics, strict=True))


TWO_LAYERS = {"model": "mlp2", "lower_latent_size": 12, "hidden_size": (32, 24), "upper_hidden_size": (16,)}


@pytest.mark.parametrize("objective, samples, beta, label, model", [
    ("iwae", 5, 1.0, "IWAE K=5", {}), ("beta", 1, 4.0, "beta=4", {}), ("elbo", 3, 1.0, "ELBO K=3", {}),
    ("iwae", 5, 1.0, "IWAE K=5", TWO_LAYERS), ("elbo", 3, 1.0, "ELBO K=3", TWO_LAYERS)])
def test_each_objective_trains_logs_its_own_value_and_resumes_exactly(objective, samples, beta, label, model,
                                                                       small_mnist, tmp_path, monkeypatch):
    config = _config(small_mnist, epochs=2, objective=objective, samples=samples, beta=beta, **model)
    said = []
    train(config, tmp_path / "straight", echo=said.append)
    header = next(line for line in said if "lowerBound" in line)
    assert header.endswith(label)
    rows = load_run(tmp_path / "straight").metrics
    assert all(math.isfinite(r["objective"]) and math.isfinite(r["test_elbo"]) for r in rows)
    if objective == "iwae":
        assert all(r["objective"] > r["lower_bound"] for r in rows)  # the IW bound is tighter than the ELBO
    if objective == "beta":
        assert all(abs(r["objective"] - (r["loglike"] + 4.0 * r["reg"])) < 1e-3 for r in rows)  # float32 sums

    stop_after_steps(monkeypatch, 11, signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="stopped by SIGTERM"):
        train(config, tmp_path / "cut", echo=lambda s: None)
    assert load_checkpoint(tmp_path / "cut").sums.shape == (3,)
    monkeypatch.setattr(train_module, "stop_after_batch", stop_after_batch)
    resume(tmp_path / "cut", epochs=2, echo=lambda s: None)
    _assert_identical(tmp_path / "straight", tmp_path / "cut")


@pytest.mark.parametrize("fields, message", [
    ({"samples": 0}, "samples (--samples) must be at least 1"),
    ({"objective": "beta", "beta": -1.0}, "beta (--beta) must be a finite number, 0 or more"),
    ({"beta": 2.0}, "beta (--beta) weights the KL only with --objective beta (the objective is elbo)"),
    ({"objective": "vae"}, "objective (--objective) must be one of elbo, beta, iwae"),
    ({"samples": 6000}, "samples (--samples) must be at most 5,000"),
])
def test_bad_objectives_are_refused_naming_the_fix(fields, message):
    with pytest.raises(VaelabError, match=re.escape(message)):
        TrainConfig(**fields)


def test_the_articles_step_is_the_articles_maths_to_the_last_bit():
    """vaelab's default step against the article's loop written out, on the same machine and noise."""
    from vaelab.model import VAE

    torch.manual_seed(0)
    ours, theirs = VAE(), VAE()
    theirs.load_state_dict(ours.state_dict())
    opt_ours = torch.optim.Adam(ours.parameters(), lr=1e-3, fused=True)
    opt_theirs = torch.optim.Adam(theirs.parameters(), lr=1e-3, fused=True)
    x = (torch.rand(128, 784, generator=torch.Generator().manual_seed(1)) > 0.8).float()
    g_ours, g_theirs = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    for _ in range(3):
        train_module.train_step(ours, opt_ours, x, g_ours)
        mu, var = theirs.encoder(x)  # the article: Encode, sample, Decode, BCE-with-logits and the analytic KL
        z = mu + torch.sqrt(var) * torch.randn(mu.shape, generator=g_theirs)
        loglike = -torch.nn.functional.binary_cross_entropy_with_logits(theirs.decoder(z), x, reduction="none").sum(-1)
        reg = -(-0.5 * (1.0 + torch.log(var) - mu.pow(2) - var).sum(-1))
        loss = -(loglike - (-reg)).mean()
        opt_theirs.zero_grad(set_to_none=True)
        loss.backward()
        opt_theirs.step()
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_conv_model_on_images_it_cannot_halve_is_refused_before_any_run_folder(tmp_path):
    import numpy as np

    from conftest import write_idx

    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    for prefix, n in (("train", 60), ("t10k", 20)):
        write_idx(tmp_path / "data" / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 12, 10)).astype(np.uint8))
        write_idx(tmp_path / "data" / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 3, (n,)).astype(np.uint8))
    config = TrainConfig(model="conv", data_dir=str(tmp_path / "data"), epochs=1)
    with pytest.raises(VaelabError, match=r"--model conv cannot model these 12x10 images: .* not square.*--model mlp"):
        train(config, tmp_path / "run", echo=lambda s: None)
    assert not (tmp_path / "run").exists()
    run = train(TrainConfig(data_dir=str(tmp_path / "data"), epochs=1, latent_size=2), tmp_path / "run",
                echo=lambda s: None)
    assert run.model.image_shape == (12, 10) and run.data["classes"] == {"names": ["0", "1", "2"], "word": "class"}


def test_the_schedule_sets_each_epochs_lr_and_resumes_bit_for_bit_across_a_stage_boundary(small_mnist, tmp_path):
    quiet = lambda s: None  # noqa: E731
    fields = {"lr_schedule": "iwae", "adam_beta1": 0.99, "adam_eps": 5e-6, "test_every_epoch": False}
    straight = train(_config(small_mnist, epochs=None, stages=2, **fields), tmp_path / "straight", echo=quiet)
    assert [m["lr"] for m in straight.metrics] == [1e-3] + [1e-3 * 7.2 / 10] * 3
    group = load_checkpoint(tmp_path / "straight").optimizer_state["param_groups"][0]
    assert (group["lr"], list(group["betas"]), group["eps"]) == (1e-3 * 7.2 / 10, [0.99, 0.999], 5e-6)
    train(_config(small_mnist, epochs=1, **fields), tmp_path / "resumed", echo=quiet)
    run = resume(tmp_path / "resumed", epochs=4, echo=quiet)  # epochs that end stage 2 give stages 2
    assert run.config.stages == 2
    _assert_identical(tmp_path / "straight", tmp_path / "resumed")


def test_further_is_the_least_flag_that_trains_a_run_past_where_it_is():
    from vaelab.config import TrainConfig
    from vaelab.training import further

    assert further(TrainConfig(epochs=10), 10) == "--epochs 11"
    staged = TrainConfig.from_dict({"lr_schedule": "iwae", "stages": 4})  # 40 passes: stages 1-4
    assert [further(staged, done) for done in (1, 4, 13, 40, 41, 1092, 1093, 3279, 3280)] == [  # stages end at
        "--stages 2", "--stages 3", "--stages 4", "--stages 5", "--stages 5", "--stages 7", "--stages 8",  # 1, 4, 13,
        "--stages 8", None]  # 40, 121, 364, 1,093 and 3,280 passes: past the last, nothing further

"""Training steps: the eager step's sums, and CUDA graph replays that compute exactly what eager steps do.

The CUDA tests run where PyTorch sees a GPU (the developers' lent GPU machine: see
docs/benchmarks.md); elsewhere they are skipped, and the eager path they compare
against is the one every other training test runs.
"""

import signal
from types import SimpleNamespace

import pytest
import torch

import vaelab.training as train_module
from conftest import SignalAfter
from vaelab.checkpoint import load_checkpoint
from vaelab.config import TrainConfig
from vaelab.device import make_generator
from vaelab.errors import TrainingInterrupted
from vaelab.objectives import Terms
from vaelab.presets import load_preset
from vaelab.signals import stop_after_batch
from vaelab.steps import (
    GRAPHS_ENV,
    Stepper,
    batch_sums,
    graphs_wanted,
)
from vaelab.training import build_model, build_objective, build_optimizer, resume, train, train_step

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_batch_sums_are_minus_kl_loglike_and_the_objectives_value_when_asked():
    terms = Terms(value=torch.tensor([1.0, 2.0]), loglike=torch.tensor([-3.0, -4.0]), kl=torch.tensor([0.5, 0.25]))
    assert batch_sums(terms, 2).tolist() == [-0.75, -7.0]
    assert batch_sums(terms, 3).tolist() == [-0.75, -7.0, 3.0]


def test_graphs_serve_the_perceptrons_with_adam_on_cuda_only_and_can_be_switched_off(monkeypatch):
    cuda_device, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.delenv(GRAPHS_ENV, raising=False)
    assert all(graphs_wanted(cuda_device, model, "adam") for model in ("mlp", "mlp2", "conv"))
    assert not graphs_wanted(cpu, "mlp", "adam")
    assert not graphs_wanted(cuda_device, "mlp", "rmsprop")
    for off in ("0", "false", "Off", " no "):
        monkeypatch.setenv(GRAPHS_ENV, off)
        assert not graphs_wanted(cuda_device, "mlp", "adam"), off
    monkeypatch.setenv(GRAPHS_ENV, "1")
    assert graphs_wanted(cuda_device, "mlp", "adam")


def _session(preset: str, device: torch.device, graphs: bool):
    """A preset's model, optimizer, generator and stepper on `device`, over 200 random grey images."""
    config = TrainConfig.from_dict({**load_preset(preset), "epochs": None, "device": device.type})
    images = torch.rand((200, 784), generator=torch.Generator().manual_seed(1)).to(device)
    model = build_model(config, (28, 28), images.mean(0).double().cpu()).to(device)
    optimizer = build_optimizer(config, model, device)
    generator = make_generator(device, 0)

    def batch(index, gen):
        return torch.bernoulli(images.index_select(0, index), generator=gen)

    stepper = Stepper(train_step, batch, model, optimizer, build_objective(config), generator,
                      3 if config.logs_objective else 2, graphs=graphs, batch_size=20)
    return SimpleNamespace(stepper=stepper, model=model, optimizer=optimizer, generator=generator, images=images)


# batches of 20 and short ones (a resumed epoch's last, then an epoch's); the lr drops before the sixth
SIZES = (7, 20, 20, 20, 7, 20, 20, 20)


def _run(s, device):
    """The session's steps over a fixed permutation, in batches of SIZES; their sums."""
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(2)).to(device)
    sums, start = [], 0
    for i, size in enumerate(SIZES):
        if i == 5:
            s.optimizer.param_groups[0]["lr"] /= 10
        sums.append(s.stepper(perm[start:start + size]).clone())
        start += size
    return torch.stack(sums)


def test_the_eager_stepper_is_the_training_step_with_its_sums():
    device = torch.device("cpu")
    ours, twin = (_session("iwae/1-layer/iwae-k5", device, graphs=False) for _ in range(2))
    sums = _run(ours, device)
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(2))
    expected, start = [], 0
    for i, size in enumerate(SIZES):
        if i == 5:
            twin.optimizer.param_groups[0]["lr"] /= 10
        x = torch.bernoulli(twin.images.index_select(0, perm[start:start + size]), generator=twin.generator)
        terms = train_step(twin.model, twin.optimizer, x, twin.generator, twin.stepper.objective)
        expected.append(torch.stack([-terms.kl.sum(), terms.loglike.sum(), terms.value.sum()]))
        start += size
    assert torch.equal(sums, torch.stack(expected))
    for p, q in zip(ours.model.parameters(), twin.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert ours.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)


@cuda
@pytest.mark.parametrize("preset", ["iwae/1-layer/vae-k1", "iwae/1-layer/iwae-k50", "iwae/2-layer/iwae-k5"])
def test_graph_replays_compute_what_eager_steps_do_to_the_last_bit(preset):
    device = torch.device("cuda")
    graphed, eager = _session(preset, device, graphs=True), _session(preset, device, graphs=False)
    g_sums, e_sums = _run(graphed, device), _run(eager, device)
    # each learning rate's first full step is eager (the warm-up before its capture), and so are short batches
    assert (graphed.stepper.captures, graphed.stepper.replays) == (2, 4)
    assert torch.equal(g_sums, e_sums)
    for p, q in zip(graphed.model.parameters(), eager.model.parameters(), strict=True):
        assert torch.equal(p, q)
    for a, b in zip(graphed.optimizer.state.values(), eager.optimizer.state.values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(graphed.generator.get_state(), eager.generator.get_state())  # replays advance the stream


def _config(small_mnist, **kw):
    return TrainConfig(data_dir=str(small_mnist), latent_size=8, device="cuda", **{"epochs": 2, **kw})


@cuda
@pytest.mark.parametrize("variant", [{}, {"binarization": "dynamic", "batch_size": 20, "objective": "iwae",
                                          "samples": 5}, {"model": "mlp2", "hidden_size": 64}, {"model": "conv"},
                                     {"batch_size": 20, "objective": "iwae", "samples": 5, "compile": True,
                                      "lr_schedule": "iwae", "stages": 2, "epochs": None}],  # two rates
                         ids=["mlp", "mlp-iwae-k5", "mlp2", "conv", "compiled-mlp-iwae-k5"])
def test_training_on_cuda_with_graphs_is_training_without_them(small_mnist, tmp_path, monkeypatch, variant):
    monkeypatch.setenv(GRAPHS_ENV, "0")
    train(_config(small_mnist, **variant), tmp_path / "eager", echo=lambda s: None)
    monkeypatch.delenv(GRAPHS_ENV)
    train(_config(small_mnist, **variant), tmp_path / "graphed", echo=lambda s: None)
    a, b = load_checkpoint(tmp_path / "eager"), load_checkpoint(tmp_path / "graphed")
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
    assert torch.equal(a.rng_state, b.rng_state)
    assert a.metrics[-1]["test_elbo"] == b.metrics[-1]["test_elbo"]


@cuda
def test_conv_training_on_cuda_repeats_bit_for_bit(small_mnist, tmp_path):
    """The conv model trains eagerly on CUDA through cuDNN, made deterministic by resolve_device."""
    for name in ("first", "second"):
        train(_config(small_mnist, model="conv"), tmp_path / name, echo=lambda s: None)
    a, b = load_checkpoint(tmp_path / "first"), load_checkpoint(tmp_path / "second")
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
    assert a.metrics[-1]["test_elbo"] == b.metrics[-1]["test_elbo"]
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark


@cuda
@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])  # the objective and Adam's update
def test_a_graphed_cuda_run_stopped_mid_epoch_resumes_bit_for_bit(small_mnist, tmp_path, monkeypatch, compile):
    config = _config(small_mnist, batch_size=20, binarization="dynamic", epochs=2, compile=compile)  # 50 steps
    train(config, tmp_path / "straight", echo=lambda s: None)
    calls = {"n": 0}
    real_call = Stepper.__call__

    def counting_call(self, index):
        calls["n"] += 1
        return real_call(self, index)

    monkeypatch.setattr(Stepper, "__call__", counting_call)
    # SIGTERM after the 23rd step: 22 of them were replays
    monkeypatch.setattr(train_module, "stop_after_batch", SignalAfter(signal.SIGTERM, lambda: calls["n"] >= 23))
    with pytest.raises(TrainingInterrupted):
        train(config, tmp_path / "cut", echo=lambda s: None)
    assert load_checkpoint(tmp_path / "cut").position.batch == 23
    monkeypatch.setattr(train_module, "stop_after_batch", stop_after_batch)
    resume(tmp_path / "cut", epochs=2, echo=lambda s: None)
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "cut")
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
    assert torch.equal(a.rng_state, b.rng_state)
    assert [(m["lower_bound"], m["test_elbo"]) for m in a.metrics] == [(m["lower_bound"], m["test_elbo"])
                                                                       for m in b.metrics]

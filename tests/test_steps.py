"""Training steps: the eager step's sums, and CUDA graph replays that compute exactly what eager steps do.

The CUDA tests run where PyTorch sees a GPU (the developers' lent GPU machine: see
docs/benchmarks.md); elsewhere they are skipped, and the eager path they compare
against is the one every other training test runs.
"""

import dataclasses
import os
import re
import shutil
import signal
from types import SimpleNamespace

import pytest
import torch

import vaelab.steps as steps_module
import vaelab.training as train_module
from conftest import SignalAfter
from vaelab.checkpoint import load_checkpoint
from vaelab.config import TrainConfig
from vaelab.device import make_generator
from vaelab.errors import TrainingInterrupted, VaelabError
from vaelab.objectives import Terms
from vaelab.presets import load_preset
from vaelab.signals import stop_after_batch
from vaelab.steps import (
    GRAPHS_ENV,
    Stepper,
    batch_sums,
    check_compile,
    compile_caveat,
    compile_failure,
    compiled_update,
    compiles_adam,
    graphs_wanted,
)
from vaelab.training import build_model, build_objective, build_optimizer, resume, train, train_step

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
cxx = pytest.mark.skipif(shutil.which(os.environ.get("CXX") or "g++") is None,
                         reason="torch.compile on a CPU needs a C++ compiler")


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
                                     {"batch_size": 20, "objective": "iwae", "samples": 5, "compile": True}])
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
def test_a_graphed_cuda_run_stopped_mid_epoch_resumes_bit_for_bit(small_mnist, tmp_path, monkeypatch):
    config = _config(small_mnist, batch_size=20, binarization="dynamic", epochs=2)  # 50 steps an epoch
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


def _quiet(line):
    pass


@cxx
def test_a_compiled_run_stays_within_rounding_of_the_eager_run_and_resumes_bit_for_bit(small_mnist, tmp_path,
                                                                                       monkeypatch):
    config = TrainConfig(data_dir=str(small_mnist), latent_size=8, epochs=2, objective="iwae", samples=3)
    compiled = dataclasses.replace(config, compile=True)
    eager = train(config, tmp_path / "eager", echo=_quiet)
    lines = []
    straight = train(compiled, tmp_path / "compiled", echo=lines.append)
    assert any("compiling the objective with torch.compile" in line for line in lines)
    assert straight.config.compile and not eager.config.compile
    train(dataclasses.replace(compiled, epochs=1), tmp_path / "resumed", echo=_quiet)
    resume(tmp_path / "resumed", epochs=2, echo=_quiet)  # compiled afresh (torch._dynamo.reset), as a new process
    a, b = load_checkpoint(tmp_path / "compiled"), load_checkpoint(tmp_path / "resumed")
    assert b.config.compile
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
    assert torch.equal(a.rng_state, b.rng_state)
    assert [m["lower_bound"] for m in a.metrics] == [m["lower_bound"] for m in b.metrics]
    assert [m["machine"].endswith(", torch.compile") for m in a.metrics + eager.metrics] == [True] * 2 + [False] * 2
    # the same maths rounded otherwise: 16 steps on, the bounds agree to well under a hundredth of a nat
    for ours, theirs in zip(straight.metrics, eager.metrics, strict=True):
        assert ours["lower_bound"] == pytest.approx(theirs["lower_bound"], abs=0.01)
        assert ours["test_elbo"] == pytest.approx(theirs["test_elbo"], abs=0.01)
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))  # a machine that cannot compile ...
    with pytest.raises(VaelabError, match=r"needs a C\+\+ compiler.*, or go on without it: `vaelab train --resume "
                                          + re.escape(f"{tmp_path / 'resumed'} --no-compile`")):
        resume(tmp_path / "resumed", epochs=3, echo=_quiet)
    assert load_checkpoint(tmp_path / "resumed").position.epoch == 2
    lines = []  # ... may go on without compiling, and says so
    run = resume(tmp_path / "resumed", epochs=3, compile=False, echo=lines.append)
    assert any(line.startswith("continuing without torch.compile: its kernels round otherwise") for line in lines)
    assert not run.config.compile and [m["machine"].endswith(", torch.compile") for m in run.metrics] == [
        True, True, False]


def test_compile_compiles_adam_on_a_gpu_only_where_pytorchs_fused_kernel_is_slower():
    cuda_device, cpu = torch.device("cuda"), torch.device("cpu")
    assert compiles_adam(cuda_device, "adam", True)
    assert not compiles_adam(cuda_device, "adam", False) and not compiles_adam(cuda_device, "rmsprop", True)
    assert not compiles_adam(cpu, "adam", True)  # a CPU keeps the fused kernel, 3x a compiled one there
    config = TrainConfig(latent_size=8, compile=True)
    assert build_optimizer(config, torch.nn.Linear(3, 2), cpu).param_groups[0]["fused"]


@cxx
def test_a_compiled_adam_update_is_adams_step_and_follows_each_new_learning_rate():
    torch.manual_seed(0)
    ours, theirs = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    theirs.load_state_dict(ours.state_dict())
    options = {"lr": 1e-3, "betas": (0.99, 0.999), "eps": 5e-6, "foreach": True}
    a, b = torch.optim.Adam(ours.parameters(), **options), torch.optim.Adam(theirs.parameters(), **options)
    update = compiled_update(a)
    for lr in [1e-3, 1e-3, 1e-3, 1e-2, 1e-2, 3e-4]:
        for group in a.param_groups + b.param_groups:
            group["lr"] = lr
        grads = [torch.randn_like(p) for p in ours.parameters()]
        for p, q, g in zip(ours.parameters(), theirs.parameters(), grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        update()
        b.step()
        for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):  # the same arithmetic, to rounding
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)  # a stale rate: 1e-3
    assert a.state_dict()["param_groups"][0]["lr"] == 3e-4


@cxx
def test_a_run_with_compiled_adam_resumes_bit_for_bit_across_a_new_rate_and_goes_on_fused(small_mnist, tmp_path,
                                                                                         monkeypatch):
    monkeypatch.setattr(steps_module, "COMPILED_ADAM_DEVICES", ("cpu",))  # as --compile runs on a GPU
    config = TrainConfig(data_dir=str(small_mnist), latent_size=8, lr_schedule="iwae", stages=2, compile=True,
                         objective="iwae", samples=3)  # 1 + 3 passes, two learning rates
    lines = []
    train(config, tmp_path / "straight", echo=lines.append)
    assert any(line.startswith("compiling the objective and Adam with torch.compile") for line in lines)
    train(dataclasses.replace(config, stages=1, epochs=None), tmp_path / "resumed", echo=_quiet)
    resume(tmp_path / "resumed", stages=2, echo=_quiet)  # a new process would compile afresh, as this does
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "resumed")
    group = a.optimizer_state["param_groups"][0]
    assert group["foreach"] and not group["fused"]
    assert len({m["lr"] for m in a.metrics}) == 2
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
    ours, theirs = a.optimizer_state["state"], b.optimizer_state["state"]
    assert sorted(ours) == sorted(theirs) == list(range(12))
    assert all(torch.equal(ours[i][k], theirs[i][k]) for i in ours for k in ("step", "exp_avg", "exp_avg_sq"))
    assert [m["lower_bound"] for m in a.metrics] == [m["lower_bound"] for m in b.metrics]
    monkeypatch.setattr(steps_module, "COMPILED_ADAM_DEVICES", ())  # goes on without compiling: fused again
    run = resume(tmp_path / "resumed", stages=3, compile=False, echo=_quiet)
    group = load_checkpoint(run.path).optimizer_state["param_groups"][0]
    assert group["fused"] and not group["foreach"] and run.epoch == 13
    monkeypatch.setattr(steps_module, "COMPILED_ADAM_DEVICES", ("cpu",))  # and an eager run goes on compiled
    train(dataclasses.replace(config, stages=1, epochs=None, compile=False), tmp_path / "eager", echo=_quiet)
    run = resume(tmp_path / "eager", stages=2, compile=True, echo=_quiet)
    group = load_checkpoint(run.path).optimizer_state["param_groups"][0]
    assert group["foreach"] and not group["fused"] and run.epoch == 4


def test_compile_is_refused_naming_the_fix_without_a_compiler_or_on_mps(small_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    config = TrainConfig(data_dir=str(small_mnist), latent_size=8, epochs=1, compile=True)
    with pytest.raises(VaelabError, match=r"needs a C\+\+ compiler, and .*no-such-compiler was not found.*"
                                          r"apt-get install g\+\+.*without --compile"):
        train(config, tmp_path / "run", echo=_quiet)
    assert not (tmp_path / "run").exists()  # refused before any folder is made
    train(dataclasses.replace(config, compile=False), tmp_path / "run", echo=_quiet)  # eager needs none
    with pytest.raises(VaelabError, match="runs on cpu or cuda, not mps"):
        check_compile(torch.device("mps"))


@cxx
def test_a_machine_where_torch_compile_cannot_build_is_refused_with_its_cause_and_the_fix(monkeypatch):
    def unbuildable(fn, **options):  # what torch.compile does where a compiler or a header is missing
        def run(*args):
            raise RuntimeError("Failed to find C compiler. Please specify via CC environment variable.\nTraceback")
        return run

    monkeypatch.setattr(torch, "compile", unbuildable)
    monkeypatch.setattr(steps_module, "_BUILT", set())  # no probe has succeeded in this process
    refusal = (r"^--compile cannot build kernels on cpu here \(Failed to find C compiler\. Please specify via CC "
               r"environment variable\.\); .*python3-dev.*a C compiler for Triton on a GPU.*"
               r"`vaelab train --resume RUN --no-compile`\)$")
    with pytest.raises(VaelabError, match=refusal):
        check_compile(torch.device("cpu"))


def test_the_cause_named_is_the_line_of_torchs_error_that_says_what_is_missing():
    cpp = RuntimeError("CppCompileError: C++ compile error\n\nCommand:\ng++ /tmp/k.cpp -shared -o /tmp/k.so\n\n"
                       "Output:\n/tmp/k.cpp:2:10: fatal error: Python.h: No such file or directory\n"
                       "compilation terminated.\n")
    assert compile_failure(cpp) == "/tmp/k.cpp:2:10: fatal error: Python.h: No such file or directory"
    wrapped = RuntimeError("backend='inductor' raised:\nsomething")
    wrapped.inner_exception = RuntimeError("Failed to find C compiler. Please specify via CC environment variable.")
    assert compile_failure(wrapped) == "Failed to find C compiler. Please specify via CC environment variable."
    assert compile_failure(RuntimeError("a\nb: error: c")) == "b: error: c"
    assert compile_failure(RuntimeError("only this\nand that")) == "only this"
    assert compile_failure(RuntimeError("")) == "RuntimeError"


def test_a_gpu_run_is_told_when_this_torch_cannot_compile_deterministically(monkeypatch):
    assert compile_caveat(torch.device("cpu")) is None
    assert compile_caveat(torch.device("cuda")) is None  # torch 2.13's Inductor has the mode
    monkeypatch.setattr(steps_module, "_deterministic", lambda: {})
    assert compile_caveat(torch.device("cpu")) is None  # a CPU's compiled kernels time nothing
    assert compile_caveat(torch.device("cuda")).startswith(f"torch {torch.__version__} has no deterministic mode")

"""torch.compile for training (vaelab/compiling.py): compiled runs stay within rounding of eager ones and
resume bit for bit, Adam's compiled update is Adam's step, and a machine that cannot compile is refused
with the fix. The CPU tests need a C++ compiler (skipped without one); on a GPU, tests/test_steps.py runs
a compiled run with and without CUDA graphs.
"""

import dataclasses
import os
import re
import shutil

import pytest
import torch
from torch._dynamo.utils import counters

import vaelab.compiling as compiling_module
from vaelab.checkpoint import load_checkpoint
from vaelab.compiling import check_compile, compile_caveat, compile_failure, compiled_update, compiles_adam
from vaelab.config import TrainConfig
from vaelab.errors import VaelabError
from vaelab.training import build_optimizer, resume, train

cxx = pytest.mark.skipif(shutil.which(os.environ.get("CXX") or "g++") is None,
                         reason="torch.compile on a CPU needs a C++ compiler")


def _quiet(line):
    pass


@cxx
def test_a_compiled_run_stays_within_rounding_of_the_eager_run_and_resumes_bit_for_bit(small_mnist, tmp_path,
                                                                                       monkeypatch):
    config = TrainConfig(data_dir=str(small_mnist), latent_size=8, epochs=2, objective="iwae", samples=3,
                         device="cpu")  # the C++ compiler's refusal below is a CPU's
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
    torch._dynamo.reset()  # as each run does (compiling.compiled)
    update = compiled_update(a)
    counters.clear()
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
    assert counters["stats"]["unique_graphs"] == 3  # compiled once for each rate, not run as Python


@cxx
def test_a_compiled_adam_update_refuses_more_rates_than_it_keeps_naming_the_fix(monkeypatch):
    monkeypatch.setattr(compiling_module, "RATES", 2)  # torch.compile would quietly run the third uncompiled
    torch._dynamo.reset()  # as each run does (compiling.compiled): versions count across Adams in a process
    model = torch.nn.Linear(3, 2)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
    update = compiled_update(optimizer)
    for lr in (1e-3, 2e-3):
        optimizer.param_groups[0]["lr"] = lr
        update()
    optimizer.param_groups[0]["lr"] = 3e-3
    with pytest.raises(VaelabError, match=r"^Adam's compiled update has met more learning rates than the 2 "
                                          r"vaelab compiles it for; resume the run with --no-compile$"):
        update()


@cxx
def test_a_run_with_compiled_adam_resumes_bit_for_bit_across_a_new_rate_and_goes_on_fused(small_mnist, tmp_path,
                                                                                         monkeypatch):
    monkeypatch.setattr(compiling_module, "COMPILED_ADAM_DEVICES", ("cpu",))  # as --compile runs on a GPU
    config = TrainConfig(data_dir=str(small_mnist), latent_size=8, lr_schedule="iwae", stages=2, compile=True,
                         objective="iwae", samples=3, device="cpu")  # 1 + 3 passes, two learning rates
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
    monkeypatch.setattr(compiling_module, "COMPILED_ADAM_DEVICES", ())  # goes on without compiling: fused again
    run = resume(tmp_path / "resumed", stages=3, compile=False, echo=_quiet)
    group = load_checkpoint(run.path).optimizer_state["param_groups"][0]
    assert group["fused"] and not group["foreach"] and run.epoch == 13
    monkeypatch.setattr(compiling_module, "COMPILED_ADAM_DEVICES", ("cpu",))  # and an eager run goes on compiled
    train(dataclasses.replace(config, stages=1, epochs=None, compile=False), tmp_path / "eager", echo=_quiet)
    run = resume(tmp_path / "eager", stages=2, compile=True, echo=_quiet)
    group = load_checkpoint(run.path).optimizer_state["param_groups"][0]
    assert group["foreach"] and not group["fused"] and run.epoch == 4
    monkeypatch.setattr(compiling_module, "COMPILED_ADAM_DEVICES", ())  # a compiled run with the fused Adam ...
    train(dataclasses.replace(config, stages=1, epochs=None), tmp_path / "before", echo=_quiet)
    monkeypatch.setattr(compiling_module, "COMPILED_ADAM_DEVICES", ("cpu",))  # ... where Adam compiles now
    lines = []
    resume(tmp_path / "before", stages=2, echo=lines.append)
    assert ("continuing with a foreach Adam where the run so far used PyTorch's fused Adam: they round otherwise, "
            "so from here on the run is not bit for bit what it would have been") in lines


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
    monkeypatch.setattr(compiling_module, "_BUILT", set())  # no probe has succeeded in this process
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
    monkeypatch.setattr(compiling_module, "_deterministic", lambda: {})
    assert compile_caveat(torch.device("cpu")) is None  # a CPU's compiled kernels time nothing
    assert compile_caveat(torch.device("cuda")).startswith(f"torch {torch.__version__} has no deterministic mode")

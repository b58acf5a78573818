"""torch.compile for training steps (TrainConfig.compile, `vaelab train --compile`).

The objective is compiled on any device (`compiled`), and on a GPU Adam's update
too (`compiles_adam`, `compiled_update`): its elementwise work fused into a few
kernels, which a GPU then replays as CUDA graphs (vaelab/steps.py). Fused kernels
round otherwise, so a compiled run is not bit for bit the eager one; it repeats
and resumes bit for bit itself. `check_compile` refuses, naming the fix, where
nothing can be compiled. Timings: docs/benchmarks.md, "Fewer kernels".
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from vaelab.errors import VaelabError
from vaelab.files import display
from vaelab.objectives import Objective

# Where --compile compiles Adam's update too. On an H200 a compiled foreach Adam made a one-layer IWAE step
# 1.2-1.3 times as fast as the compiled objective with PyTorch's fused Adam, the largest kernel of a step; on
# a CPU the fused kernel is about three times as fast as a compiled one (docs/benchmarks.md).
COMPILED_ADAM_DEVICES = ("cuda",)
RATES = 16  # learning rates a compiled Adam update is compiled for, at most (the IWAE schedule has 8)


def compiled(objective: Objective, device: torch.device) -> Objective:
    """`objective` through torch.compile, for a run with TrainConfig.compile (`check_compile` first): its
    elementwise work fused into a few kernels (C++ on a CPU, Triton on a GPU, where graphs then replay the
    compiled step), so a step runs faster once the first has compiled it (half a minute or so). Fused
    kernels round otherwise, so a compiled run is not bit for bit the eager one. It repeats and resumes bit
    for bit itself: each run compiles afresh (as a new process would, whatever this one compiled before),
    one static kernel per batch size, with Inductor's deterministic mode (no timing of candidate kernels
    that round otherwise) where this torch has it (`compile_caveat` says when not)."""
    torch._dynamo.reset()
    return torch.compile(objective, dynamic=False, options=_deterministic())


def compiles_adam(device: torch.device, optimizer: str, compile: bool) -> bool:
    """Whether a run with TrainConfig.compile on `device` compiles Adam's update as well (a foreach Adam,
    built by training.build_optimizer, through `compiled_update`), not PyTorch's fused kernel."""
    return compile and optimizer == "adam" and device.type in COMPILED_ADAM_DEVICES


def compiled_update(optimizer: torch.optim.Optimizer) -> Callable[[], object]:
    """`optimizer.step` through torch.compile, as `compiled` compiles the objective: the update's
    elementwise work over all the parameters in a few fused kernels. The learning rate is a constant of
    the compiled code, so each new one compiles it again (eight times over the IWAE schedule). Up to
    RATES versions are kept, and one more is refused with the fix, where torch.compile would quietly run
    the update uncompiled from its ninth on, rounded otherwise, so a resumed run would not be bit for bit.
    The versions of all Adams in a process count together, so call it after `compiled`, which clears them."""
    logging.getLogger("torch._dynamo.variables.ctx_manager").addFilter(_drop_profiler_note)
    step = torch.compile(optimizer.step, dynamic=False, options=_deterministic())

    def update() -> object:
        try:
            with torch._dynamo.config.patch(recompile_limit=RATES, fail_on_recompile_limit_hit=True):
                return step()
        except torch._dynamo.exc.FailOnRecompileLimitHit:
            raise VaelabError(
                f"Adam's compiled update has met more learning rates than the {RATES} vaelab compiles it for; "
                "resume the run with --no-compile"
            ) from None

    return update


def _drop_profiler_note(record: logging.LogRecord) -> bool:
    """False for torch.compile's note that it leaves out the profiler label `Optimizer.step` wears, which
    says nothing a vaelab user can act on (any other record passes)."""
    return not str(record.msg).startswith("Profiler record function")


def _deterministic() -> dict[str, bool]:
    from torch._inductor import config  # imported on first use: `import vaelab.compiling` stays light

    return {"deterministic": True} if hasattr(config, "deterministic") else {}


def compile_caveat(device: torch.device) -> str | None:
    """What a compiled run on `device` should be told: on a GPU, with a torch whose Inductor has no
    deterministic mode, a resumed run may time and pick other kernels, so resume other bits."""
    if device.type == "cuda" and not _deterministic():
        return (f"torch {torch.__version__} has no deterministic mode for compiled kernels: a GPU run resumed "
                "later may pick other kernels and round otherwise (torch 2.13 has it)")
    return None


_BUILT: set[str] = set()  # the device types a probe has compiled for in this process


def check_compile(device: torch.device, run: str | Path | None = None) -> None:
    """Refuse --compile, naming the fix, on a device or machine that cannot compile: a tiny function is
    compiled and run here first (once a process and device type), as the run would compile, so a missing
    compiler or header is named before any run folder is made. `run`: the run to be resumed, whose
    command to go on without compiling the refusal then gives."""
    without = (f"go on without it: `vaelab train --resume {display(run)} --no-compile`" if run is not None else
               "train without --compile (a run trained with it goes on with `vaelab train --resume RUN --no-compile`)")
    if device.type not in ("cpu", "cuda"):
        raise VaelabError(f"--compile runs on cpu or cuda, not {device.type}; {without}")
    if device.type == "cpu":
        compiler = os.environ.get("CXX") or ("clang++" if sys.platform == "darwin" else "g++")
        if shutil.which(compiler) is None:
            raise VaelabError(
                f"--compile on a CPU needs a C++ compiler, and {compiler} was not found (torch.compile builds "
                f"the step's kernels with it); install one (Debian: apt-get install g++), name it in $CXX, or "
                f"{without}"
            )
    if device.type in _BUILT:
        return
    try:
        torch.compile(_probe, dynamic=False, options=_deterministic())(torch.linspace(0.0, 1.0, 8, device=device))
    except Exception as exc:
        raise VaelabError(
            f"--compile cannot build kernels on {device.type} here ({compile_failure(exc)}); torch.compile needs "
            "a C++ compiler and Python's headers for a CPU (Debian: apt-get install g++ python3-dev), and a C "
            f"compiler for Triton on a GPU; install them, or {without}"
        ) from None
    _BUILT.add(device.type)


def compile_failure(exc: BaseException) -> str:
    """The line of torch.compile's long error that names what is missing (a compiler's "fatal error:
    Python.h: No such file or directory", Triton's "Failed to find C compiler"), else its first line."""
    exc = getattr(exc, "inner_exception", None) or exc
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    for marks in (("fatal error", "no such file", "not found", "failed to find"), ("error:",)):
        named = next((line for line in lines if any(mark in line.lower() for mark in marks)), None)
        if named is not None:
            return named[:300]
    return lines[0][:300]


def _probe(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x) * 2 + 1

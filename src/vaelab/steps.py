"""Running training steps: eagerly, or on a CUDA GPU as a captured graph replayed once per step.

A step of the IWAE paper's batch-20 models is some sixty to a hundred tiny
kernels. On a GPU each is launched from Python, and the launches, not the
arithmetic, set the time. A CUDA graph records the kernels of one step once and
replays them all with a single launch (PyTorch's "whole-network capture",
https://pytorch.org/docs/stable/notes/cuda.html#cuda-graphs).

A replay computes exactly what the eager step computes: the same kernels on the
same memory, and the same random numbers, because the run's generator is
registered with the graph, which advances its Philox offset by what the
captured draws use, as the eager draws would. So a run may mix the two (the
step before each capture, a last short batch, a resumed run's first step are
eager) and stays bit for bit reproducible; tests/test_steps.py checks this on a
GPU, for the perceptron models with Adam. The conv model joined them once its
replays gave its eager steps' bits for 60 steps (bench/graph_check.py on an H200,
docs/benchmarks.md) with the deterministic cuDNN kernels vaelab asks for
(device.resolve_device); its whole-run test has not run on a GPU yet.
With TrainConfig.compile the step replayed is the compiled objective's (`compiled`), and on a GPU
Adam's update compiled too (`compiled_update`).
RMSprop, whose foreach step is not capturable as vaelab builds it, trains
eagerly too. Set VAELAB_CUDA_GRAPHS=0 to run every step eagerly.
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
from vaelab.objectives import Objective, Terms

GRAPHS_ENV = "VAELAB_CUDA_GRAPHS"  # "0" (or false, off, no) runs every CUDA step eagerly
GRAPHED_MODELS = ("mlp", "mlp2", "conv")  # checked bit for bit against eager steps on a GPU
# Where --compile compiles Adam's update too. On an H200 a compiled foreach Adam made a one-layer IWAE step
# 1.2-1.3 times as fast as the compiled objective with PyTorch's fused Adam, the largest kernel of a step; on
# a CPU the fused kernel is about three times as fast as a compiled one (docs/benchmarks.md).
COMPILED_ADAM_DEVICES = ("cuda",)

Step = Callable[[torch.nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Generator, Objective], Terms]
Batch = Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # (index, generator) -> images


def graphs_wanted(device: torch.device, model: str, optimizer: str) -> bool:
    """Whether training `model` with `optimizer` on `device` replays CUDA graphs: on CUDA, for the
    models checked (GRAPHED_MODELS) with Adam, unless VAELAB_CUDA_GRAPHS=0."""
    return (device.type == "cuda" and model in GRAPHED_MODELS and optimizer == "adam"
            and os.environ.get(GRAPHS_ENV, "1").strip().lower() not in ("0", "false", "off", "no"))


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
    the compiled code, so each new one compiles it again (eight times in the IWAE schedule, at most, the
    limit torch.compile keeps by default); a step with no new rate runs the compiled kernels."""
    logging.getLogger("torch._dynamo.variables.ctx_manager").addFilter(_drop_profiler_note)
    return torch.compile(optimizer.step, dynamic=False, options=_deterministic())


def _drop_profiler_note(record: logging.LogRecord) -> bool:
    """False for torch.compile's note that it leaves out the profiler label `Optimizer.step` wears, which
    says nothing a vaelab user can act on (any other record passes)."""
    return not str(record.msg).startswith("Profiler record function")


def _deterministic() -> dict[str, bool]:
    from torch._inductor import config  # imported on first use: `import vaelab.steps` stays light

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


def batch_sums(terms: Terms, size: int) -> torch.Tensor:
    """A batch's share of its epoch's running sums: -KL and the log-likelihood, then the objective's
    value when `size` is 3 (an objective other than the ELBO)."""
    parts = [-terms.kl.sum(), terms.loglike.sum()] + ([terms.value.sum()] if size == 3 else [])
    return torch.stack(parts)


class Stepper:
    """Runs one training session's steps: `stepper(index)` trains on the images at `index` (a slice of the
    epoch's permutation) and returns the batch's sums (see `batch_sums`).

    With `graphs`, a batch of `batch_size` images runs as a replay of a graph captured from `step` itself.
    A graph holds the learning rate it was captured with, so it is captured again, after one eager step
    that warms up what capture cannot (cuBLAS, the optimizer's state), whenever the learning rate has
    changed; a batch of another size (an epoch's short last one) runs eagerly.
    """

    def __init__(self, step: Step, batch: Batch, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 objective: Objective, generator: torch.Generator, sums_size: int, *, graphs: bool = False,
                 batch_size: int | None = None):
        self.step, self.batch, self.model, self.optimizer = step, batch, model, optimizer
        self.objective, self.generator, self.sums_size, self.graphs = objective, generator, sums_size, graphs
        self.batch_size = batch_size  # None: the first batch's size
        self.graph: torch.cuda.CUDAGraph | None = None
        self.captured_lr: float | None = None
        self.index: torch.Tensor | None = None  # the graph's input: the batch's indices
        self.sums: torch.Tensor | None = None  # the graph's output
        self.captures = self.replays = 0

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        if self.graphs and self.batch_size is None:
            self.batch_size = len(index)
        if not self.graphs or len(index) != self.batch_size:
            return self.eager(index)
        lr = self.optimizer.param_groups[0]["lr"]
        if self.graph is None or lr != self.captured_lr:
            return self._capture(index, lr)
        self.index.copy_(index)
        self.graph.replay()
        self.replays += 1
        return self.sums

    def eager(self, index: torch.Tensor) -> torch.Tensor:
        x = self.batch(index, self.generator)
        return batch_sums(self.step(self.model, self.optimizer, x, self.generator, self.objective), self.sums_size)

    def _capture(self, index: torch.Tensor, lr: float) -> torch.Tensor:
        """Run this batch's step eagerly on a side stream (the warm-up PyTorch asks for before a capture),
        then capture the step, without running it, for the batches that follow."""
        self.graph = self.index = self.sums = None  # free the old graph's memory first
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = self.eager(index)
        torch.cuda.current_stream().wait_stream(side)
        self.index = index.clone()
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.generator)
        with torch.cuda.graph(graph):
            self.sums = self.eager(self.index)
        self.graph, self.captured_lr = graph, lr
        self.captures += 1
        return out

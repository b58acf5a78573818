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
With TrainConfig.compile the step replayed is the compiled objective's, and on a GPU Adam's update
compiled too (vaelab/compiling.py).
RMSprop, whose foreach step is not capturable as vaelab builds it, trains
eagerly too. Set VAELAB_CUDA_GRAPHS=0 to run every step eagerly.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from vaelab.objectives import Objective, Terms

GRAPHS_ENV = "VAELAB_CUDA_GRAPHS"  # "0" (or false, off, no) runs every CUDA step eagerly
GRAPHED_MODELS = ("mlp", "mlp2", "conv")  # checked bit for bit against eager steps on a GPU

Step = Callable[[torch.nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Generator, Objective], Terms]
Batch = Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # (index, generator) -> images


def graphs_wanted(device: torch.device, model: str, optimizer: str) -> bool:
    """Whether training `model` with `optimizer` on `device` replays CUDA graphs: on CUDA, for the
    models checked (GRAPHED_MODELS) with Adam, unless VAELAB_CUDA_GRAPHS=0."""
    return (device.type == "cuda" and model in GRAPHED_MODELS and optimizer == "adam"
            and os.environ.get(GRAPHS_ENV, "1").strip().lower() not in ("0", "false", "off", "no"))


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

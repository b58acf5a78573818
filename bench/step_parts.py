"""Where the time of vaelab's CPU training step goes, part by part, for the one-layer IWAE presets.

    .venv/bin/python bench/step_parts.py [--cells vae-k1 vae-k5 iwae-k5] [--steps 1000] [--repeats 2]

Times, with a clock read between them, the parts of the step `vaelab train` runs on a CPU (as
`training.train_step` and `Stepper.eager` do them): the batch (its slice of the training images and
their Bernoulli draw), the objective's forward pass, `zero_grad`, the backward pass, Adam's step (the
fused kernel and the Python around it) and the epoch's running sums, in ms per step after 50 untimed
steps. Then, to size the part autograd's bookkeeping takes, the objective alone with autograd recording
and under `torch.no_grad`. Results go in docs/benchmarks.md ("Where a step's time goes").
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_steps import preset_config

from vaelab.data import grey_levels, load_split
from vaelab.training import build_model, build_objective, build_optimizer

PARTS = ("batch", "forward", "zero_grad", "backward", "Adam", "sums")


def step_parts(x_grey: torch.Tensor, cell: str, steps: int) -> dict[str, float]:
    """Milliseconds per step of each part of `steps` steps of `cell`'s training step, after 50 untimed."""
    config = preset_config(cell)
    model = build_model(config, (28, 28), x_grey.mean(0).double())
    optimizer = build_optimizer(config, model, torch.device("cpu"))
    objective = build_objective(config)
    generator = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x_grey), generator=generator)
    sums = torch.zeros(2, dtype=torch.float64)
    totals = dict.fromkeys(PARTS, 0.0)
    for i in range(50 + steps):
        b = i % (len(x_grey) // 20)
        t = [time.perf_counter()]
        x = torch.bernoulli(x_grey.index_select(0, perm[b * 20:(b + 1) * 20]), generator=generator)
        t.append(time.perf_counter())
        terms = objective(model, x, generator)
        loss = -terms.value.mean()
        t.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        t.append(time.perf_counter())
        loss.backward()
        t.append(time.perf_counter())
        optimizer.step()
        t.append(time.perf_counter())
        sums += torch.stack([-terms.kl.detach().sum(), terms.loglike.detach().sum()]).to(sums.dtype)
        t.append(time.perf_counter())
        if i >= 50:
            for part, start, end in zip(PARTS, t[:-1], t[1:], strict=True):
                totals[part] += end - start
    return {part: seconds / steps * 1e3 for part, seconds in totals.items()}


def forward_ms(x_grey: torch.Tensor, cell: str, calls: int, grad: bool) -> float:
    """Milliseconds per call of `cell`'s objective on one batch, with autograd recording or without."""
    config = preset_config(cell)
    model = build_model(config, (28, 28), x_grey.mean(0).double())
    objective = build_objective(config)
    generator = torch.Generator().manual_seed(0)
    x = torch.bernoulli(x_grey[:20], generator=generator)
    with torch.set_grad_enabled(grad):
        for _ in range(100):
            objective(model, x, generator)
        start = time.perf_counter()
        for _ in range(calls):
            objective(model, x, generator)
        return (time.perf_counter() - start) / calls * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["vae-k1", "vae-k5", "iwae-k5"], help="one-layer presets")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2, help="rounds, each cell once a round")
    args = parser.parse_args()
    x_grey = grey_levels(load_split("train").images)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}; "
          f"{args.steps} steps after 50; ms per step")
    print(f"{'cell':>10} " + " ".join(f"{part:>9}" for part in PARTS) + f" {'total':>7}"
          + f" {'objective, autograd':>20} {'no_grad':>8}")
    for _ in range(args.repeats):
        for cell in args.cells:
            parts = step_parts(x_grey, cell, args.steps)
            recorded, bare = forward_ms(x_grey, cell, 2000, True), forward_ms(x_grey, cell, 2000, False)
            print(f"{cell:>10} " + " ".join(f"{parts[part]:>9.2f}" for part in PARTS)
                  + f" {sum(parts.values()):>7.2f} {recorded:>20.2f} {bare:>8.2f}", flush=True)


if __name__ == "__main__":
    main()

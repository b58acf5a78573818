"""How many GPU kernels one training step of an IWAE preset's model launches, and their summed GPU time:
eagerly (what a CUDA graph replays) and compiled as `vaelab train --compile` compiles it on a GPU (the
objective, and Adam's update).

    python3 bench/kernels_per_step.py [--cells vae-k1 iwae-k50] [--steps 20]

On a GPU a replayed step of batch 20 is bound by its kernels run back to back, each a few microseconds
over tiny tensors, not by launches (docs/benchmarks.md), so fewer kernels, not fewer launches, is what
would make a step faster. This counts them with torch.profiler over `--steps` steps after warm-up steps
(which compile, when compiled), for the one-layer presets named. Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import torch
from bench_steps import preset_config
from torch.profiler import ProfilerActivity, profile

from vaelab.compiling import compiled as compile_objective
from vaelab.compiling import compiled_update, compiles_adam
from vaelab.data import grey_levels, load_split
from vaelab.training import build_model, build_objective, build_optimizer, train_step


def kernels(x_grey: torch.Tensor, cell: str, steps: int, compiled: bool, mode: str | None = None,
            table: bool = False) -> tuple[float, float]:
    """(kernels per step, microseconds of GPU kernel time per step) for `steps` steps of `cell`; `mode`:
    torch.compile's; `table`: also print the kernels that took the most time."""
    config = dataclasses.replace(preset_config(cell), compile=compiled)
    device = x_grey.device
    model = build_model(config, (28, 28), x_grey.mean(0).double().cpu()).to(device)
    optimizer = build_optimizer(config, model, device)  # for --compile on a GPU, a foreach Adam
    objective, update = build_objective(config), None
    if compiled:  # as `vaelab train --compile` compiles them (vaelab.compiling), in another mode if asked
        objective = torch.compile(objective, dynamic=False, mode=mode) if mode else compile_objective(objective, device)
        if compiles_adam(device, config.optimizer, True):
            update = compiled_update(optimizer)
    g = torch.Generator(device=device).manual_seed(0)

    def step(i: int) -> None:
        index = torch.arange(i * 20, (i + 1) * 20, device=device)
        x = torch.bernoulli(x_grey.index_select(0, index), generator=g)
        train_step(model, optimizer, x, g, objective, update=update)

    for i in range(5):  # warm-up: cuBLAS handles, Adam's state, compilation
        step(i)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for i in range(steps):
            step(5 + i)
        torch.cuda.synchronize()
    if table:
        print(prof.key_averages().table(sort_by="device_time_total", row_limit=30, max_name_column_width=70))
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return len(events) / steps, sum(e.device_time for e in events) / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["vae-k1", "iwae-k50"], help="one-layer presets")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--mode", help="torch.compile's mode, e.g. max-autotune-no-cudagraphs")
    parser.add_argument("--table", action="store_true", help="print the kernels that took the most GPU time")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("kernels_per_step.py needs a CUDA GPU", file=sys.stderr)
        return 1
    x_grey = grey_levels(load_split("train").images).to("cuda")
    print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}; {args.steps} steps after 5 of warm-up")
    print(f"{'cell':>10} {'eager kernels':>14} {'GPU µs':>8} {'compiled kernels':>17} {'GPU µs':>8}")
    for cell in args.cells:
        eager = kernels(x_grey, cell, args.steps, compiled=False, table=args.table)
        fused = kernels(x_grey, cell, args.steps, compiled=True, mode=args.mode, table=args.table)
        print(f"{cell:>10} {eager[0]:>14.1f} {eager[1]:>8.1f} {fused[0]:>17.1f} {fused[1]:>8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

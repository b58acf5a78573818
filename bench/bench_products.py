"""The floor under any training step of an IWAE preset: its matrix products alone, beside both loops' steps.

    .venv/bin/python bench/bench_products.py [--steps 300] [--samples 1 5 50] [--layers 1-layer]
                                             [--repeats 3] [--profile CELL]

Whatever loop runs a step of the paper's model, it runs the same matrix
products: each layer's forward product, its weight gradient, and the input
gradient of every layer but the first (the images need none); 17 for the
one-layer model. This records the products of one real vaelab step (their
shapes, from the torch profiler), times them alone on random matrices of those
shapes, and prints them beside the plain loop's and vaelab's whole steps
(bench/bench_steps.py's loops) in milliseconds per step. `plain / products` is
the most any loop running these products could gain on the plain one: the gain
if everything but the products took no time at all.

--profile CELL prints instead the torch profiler's table of CELL's vaelab step
(100 steps after 50 untimed): where the rest of the time goes.

CPU only; results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_steps import plain_loop, preset_config, vaelab_loop  # noqa: E402

from vaelab.config import TrainConfig  # noqa: E402
from vaelab.data import grey_levels, load_split  # noqa: E402
from vaelab.training import build_model, build_objective, build_optimizer, train_step  # noqa: E402

PRODUCTS = ("aten::mm", "aten::addmm")

Product = tuple[int, int, int]  # (m, k, n): an (m, k) matrix times a (k, n) one


def step_products(config: TrainConfig) -> Counter[Product]:
    """The matrix products of one training step of `config`'s model, as the torch profiler records them."""
    model = build_model(config, (28, 28), torch.full((784,), 0.5, dtype=torch.float64))
    optimizer = build_optimizer(config, model, torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((config.batch_size, 784), 0.3), generator=generator)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        train_step(model, optimizer, x, generator, build_objective(config))
    found: Counter[Product] = Counter()
    for event in prof.events():
        if event.name in PRODUCTS:
            shapes = event.input_shapes
            a, b = (shapes[1], shapes[2]) if event.name == "aten::addmm" else (shapes[0], shapes[1])
            found[(a[0], a[1], b[1])] += 1
    return found


def flops(products: Counter[Product]) -> int:
    """Floating-point operations of the products: 2 m k n each (a multiply and an add)."""
    return sum(2 * m * k * n * count for (m, k, n), count in products.items())


def products_seconds(products: Counter[Product], steps: int) -> float:
    """Seconds per step for the products alone, on random matrices (best of five rounds of `steps`)."""
    pairs = [(torch.randn(m, k), torch.randn(k, n)) for (m, k, n), count in products.items() for _ in range(count)]

    def one_step() -> None:
        for a, b in pairs:
            a @ b

    for _ in range(20):
        one_step()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(steps):
            one_step()
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def print_profile(cell: str, layers: str) -> None:
    x_grey = grey_levels(load_split("train").images)
    config = preset_config(cell, layers)
    generator = torch.Generator().manual_seed(0)
    vaelab_loop(x_grey, config, 50, generator)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        seconds = vaelab_loop(x_grey, config, 100, generator)
    print(f"{layers}/{cell}: {seconds * 10:.2f} ms per step under the profiler")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 5, 50])
    parser.add_argument("--layers", default="1-layer", choices=["1-layer", "2-layer"],
                        help="the presets' model (the plain loop is always the one-layer model)")
    parser.add_argument("--repeats", type=int, default=3, help="times each loop, the two taking turns (medians)")
    parser.add_argument("--profile", metavar="CELL", help="profile CELL's vaelab step instead, e.g. iwae-k50")
    args = parser.parse_args()
    if args.profile:
        print_profile(args.profile, args.layers)
        return
    x_grey = grey_levels(load_split("train").images)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, "
          f"{torch.backends.cpu.get_cpu_capability()}; torch {torch.__version__}; {args.steps} steps; "
          f"loops: medians of {args.repeats} rounds; products: best of 5 rounds after 20 warm-up steps (a floor); "
          "ms per step"
          + ("; vaelab: the two-layer presets, plain: the one-layer loop" if args.layers == "2-layer" else ""))
    print(f"{'cell':>10} {'products':>9} {'GFLOP/s':>8} {'plain':>7} {'vaelab':>7} "
          f"{'plain/vaelab':>13} {'plain/products':>15}")
    for k in args.samples:
        for name in (f"vae-k{k}", f"iwae-k{k}") if k > 1 else ("vae-k1",):
            config = preset_config(name, args.layers)
            products = step_products(config)
            floor = products_seconds(products, args.steps)
            g = torch.Generator()
            plains, ourses = [], []
            for _ in range(args.repeats):
                plains.append(plain_loop(x_grey, k, name.startswith("iwae"), args.steps, g.manual_seed(0)))
                ourses.append(vaelab_loop(x_grey, config, args.steps, g.manual_seed(0)))
            plain, ours = statistics.median(plains) / args.steps, statistics.median(ourses) / args.steps
            print(f"{name:>10} {floor * 1e3:>9.2f} {flops(products) / floor / 1e9:>8.1f} {plain * 1e3:>7.2f} "
                  f"{ours * 1e3:>7.2f} {plain / ours:>13.2f} {plain / floor:>15.2f}", flush=True)


if __name__ == "__main__":
    main()

"""Compare the architectures at the article's settings: parameters, seconds per epoch, test ELBO.

    .venv/bin/python bench/bench_models.py [--models mlp conv] [--epochs 10] [--device cpu]

Trains each model with the article's config (latent 48, hidden layers 96 and 96,
batch 128, Adam 1e-3, threshold binarization, seed 0) on the bundled MNIST, and
prints its parameter count, the seconds per epoch that training logs (median after
the first epoch; the test-set ELBO included) and the test ELBO after the last
epoch. Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from vaelab import TrainConfig, train
from vaelab.device import flush_denormals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "conv"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    flush_denormals()  # as the `vaelab` command and bench_train.py do, before any torch work
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{torch.backends.cpu.get_cpu_capability()}, device {args.device}")
    print(f"{'model':>6} {'parameters':>11} {'s/epoch':>8} {'test ELBO':>10}  (after {args.epochs} epochs)")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            config = TrainConfig(model=name, epochs=args.epochs, device=args.device)
            run = train(config, Path(tmp) / name, echo=lambda s: None)
            params = sum(p.numel() for p in run.model.parameters())
            seconds = [m["seconds"] for m in run.metrics]
            per_epoch = statistics.median(seconds[1:] or seconds)
            print(f"{name:>6} {params:>11,} {per_epoch:>8.2f} {run.metrics[-1]['test_elbo']:>10.2f}")


if __name__ == "__main__":
    main()

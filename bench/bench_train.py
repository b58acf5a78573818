"""Time `vaelab train` at the article's configuration against this machine's matmul peak.

    .venv/bin/python bench/bench_train.py [--epochs 10] [--device auto] [--eval-k 1000]

Prints seconds per epoch (as logged by training, which includes the test-set
ELBO, and as wall-clock of the whole `train()` call divided by the epochs, which
adds start-up, data loading and checkpoint writes), images per second, the
GFLOP/s achieved by the model's matrix products, and the fraction of the
measured float32 matmul peak. Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vaelab import TrainConfig, evaluate_run, train
from vaelab.device import flush_denormals


def matmul_peak(device: torch.device, seconds: float = 1.0) -> float:
    """Best float32 GFLOP/s of square matmuls on `device` (the roofline we compare to)."""
    best = 0.0
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        a @ b  # warm up
        _sync(device)
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            a @ b
            reps += 1
        _sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start) / 1e9)
    return best


def _layers(latent: int = 48, data: int = 784) -> list[tuple[int, int]]:
    hidden = 2 * latent
    return [(data, hidden), (hidden, hidden), (hidden, 2 * latent),  # encoder
            (latent, hidden), (hidden, hidden), (hidden, data)]  # decoder


def matmul_floor(device: torch.device, batch: int = 128, n_train: int = 60000, reps: int = 300) -> float:
    """Seconds per epoch spent in the model's own matmuls alone, at their real shapes.

    Times every product of one training step (forward, weight gradients, input
    gradients but the image's) at batch 128, times the steps of an epoch: what an
    epoch would cost if everything else (activations, loss, optimizer) were free.
    """
    shapes = []
    for index, (i, o) in enumerate(_layers()):
        shapes.append(((batch, i), (i, o)))  # forward
        shapes.append(((o, batch), (batch, i)))  # weight gradient
        if index != 0:
            shapes.append(((batch, o), (o, i)))  # input gradient
    total = 0.0
    for a_shape, b_shape in shapes:
        a, b = torch.randn(a_shape, device=device), torch.randn(b_shape, device=device)
        for _ in range(20):
            a @ b
        _sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        total += (time.perf_counter() - start) / reps
    return total * math.ceil(n_train / batch)


def model_flops_per_epoch(n_train: int, n_test: int, latent: int = 48, data: int = 784) -> float:
    """Matmul FLOPs of one epoch: forward + backward on the training set, forward on the test set.

    Forward costs 2 * in * out per layer and image; backward costs the same again for
    the weight gradient and again for the input gradient, except for the first
    encoder layer, whose input (the image) needs no gradient.
    """
    forward = sum(2 * i * o for i, o in _layers(latent, data))
    backward = 2 * forward - 2 * data * 2 * latent
    return n_train * (forward + backward) + n_test * forward


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--eval-k", type=int, default=1000, help="also time `vaelab eval` (0: skip)")
    parser.add_argument("--keep-denormals", action="store_true",
                        help="skip the flush-to-zero the CLI sets, to measure what it saves")
    args = parser.parse_args()
    if not args.keep_denormals:
        flush_denormals()  # as the `vaelab` command does, before any torch work

    config = TrainConfig(epochs=args.epochs, device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = train(config, Path(tmp) / "run", echo=lambda s: None)
        wall = time.perf_counter() - start
        device = next(run.model.parameters()).device
        device = torch.device("cuda") if torch.cuda.is_available() and args.device in ("auto", "cuda") else device
        if args.eval_k:
            start = time.perf_counter()
            scores = evaluate_run(run.path, iw_k=args.eval_k, device=args.device, save=False)
            eval_seconds = time.perf_counter() - start

    epochs = [m["seconds"] for m in run.metrics]
    steady = epochs[1:] if len(epochs) > 1 else epochs  # the first epoch includes warm-up
    per_epoch = statistics.median(steady)
    flops = model_flops_per_epoch(60000, 10000)
    peak = matmul_peak(device)
    floor = matmul_floor(device)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""))
    print(f"epochs: {' '.join(f'{s:.3f}' for s in epochs)} s")
    print(f"seconds per epoch (median after the first): {per_epoch:.3f}")
    print(f"wall clock of train() / epochs:             {wall / len(epochs):.3f}")
    print(f"images per second:                          {60000 / per_epoch:,.0f}")
    print(f"model GFLOP per epoch:                      {flops / 1e9:.1f}")
    print(f"achieved GFLOP/s:                           {flops / per_epoch / 1e9:.1f}")
    print(f"measured float32 matmul peak, GFLOP/s:      {peak:.1f}")
    print(f"fraction of peak:                           {flops / per_epoch / 1e9 / peak:.0%}")
    print(f"the model's matmuls alone, s per epoch:     {floor:.3f}"
          f"  ({flops / floor / 1e9:.0f} GFLOP/s at batch 128; {floor / per_epoch:.0%} of the epoch)")
    print(f"final test ELBO:                            {run.metrics[-1]['test_elbo']:.2f}")
    if args.eval_k:
        print(f"vaelab eval (ELBO + IW K={args.eval_k}) seconds:    {eval_seconds:.1f}"
              f"  (log p(x) {scores.log_likelihood:.2f})")


if __name__ == "__main__":
    main()

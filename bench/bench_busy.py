"""Training speed on an idle machine and on one where another process keeps a core busy.

    .venv/bin/python bench/bench_busy.py [--epochs 4] [--repeats 2]

Trains the article's configuration (without the per-epoch test ELBO) in a fresh
process for each case, with PyTorch's threads pinned (VAELAB_THREADS=N, what
vaelab did before it adapted its threads) or adapted to the load (the default),
on an idle machine and while `python -c "while True: pass"` keeps one core busy.
Each round runs every case idle, then every case busy, so that a machine whose
speed drifts (a shared host) treats them alike. Prints, for each case, the median
over the rounds of the median seconds per epoch after the first, and each case's
busy time against its own idle time. Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

CHILD = """
import json, sys, tempfile
from vaelab.device import flush_denormals
flush_denormals()
from vaelab import TrainConfig, train
out = tempfile.mkdtemp() + "/run"
train(TrainConfig(epochs=int(sys.argv[1]), test_every_epoch=False), out, echo=lambda s: None)
print(json.dumps([json.loads(line)["seconds"] for line in open(out + "/metrics.jsonl")]))
"""
SPIN = "while True: pass"


def epoch_seconds(threads: str, epochs: int) -> float:
    """Median seconds per epoch after the first, in a fresh process."""
    env = {**os.environ, "VAELAB_THREADS": threads}
    out = subprocess.run([sys.executable, "-c", CHILD, str(epochs)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return statistics.median(json.loads(out)[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each case, taking turns")
    args = parser.parse_args()
    import torch

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.epochs} epochs, median of {args.repeats} runs")
    cases = [("auto", "adapted to the load (default)"), ("2", "2 threads pinned (before)"),
             ("1", "1 thread pinned")]
    runs: dict[tuple[str, bool], list[float]] = {}
    for _ in range(args.repeats):  # idle and busy take turns within each round: the machine's drift hits both
        for busy in (False, True):
            spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if busy else None
            try:
                time.sleep(0.5)
                for threads, _ in cases:
                    runs.setdefault((threads, busy), []).append(epoch_seconds(threads, args.epochs))
            finally:
                if spinner:
                    spinner.kill()
                    spinner.wait()
    results = {case: statistics.median(seconds) for case, seconds in runs.items()}
    print(f"{'threads':<32} {'idle s/epoch':>13} {'busy s/epoch':>13} {'busy / its idle':>16}")
    for threads, label in cases:
        idle, busy = results[threads, False], results[threads, True]
        print(f"{label:<32} {idle:13.3f} {busy:13.3f} {busy / idle:15.2f}x")


if __name__ == "__main__":
    main()

"""Time of the importance-weighted estimate (`vaelab eval --iw-k K`) for a trained run, on a slice of the test set.

    .venv/bin/python bench/bench_eval.py RUN [--k 5000] [--images 32] [--threads 1] [--profile]

Scores the first `--images` test images (binarized as the run's test images are
not: at the fixed threshold, which costs the same) with K samples, prints the
seconds and what the whole 10,000-image test set would take at that rate, and
with `--profile` the operators that take the time (torch profiler).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from vaelab.checkpoint import load_run
from vaelab.data import binarize_threshold, load_split
from vaelab.evaluate import iw_log_likelihood


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = load_run(args.run)
    x = binarize_threshold(load_split("test").images[: args.images])
    print(f"machine: {platform.machine()}, {args.threads} thread(s), torch {torch.__version__}, "
          f"{torch.backends.cpu.get_cpu_capability()}; model {run.model.name}, K = {args.k:,}")
    start = time.perf_counter()
    with torch.inference_mode():
        iw_log_likelihood(run.model, x, k=args.k, generator=torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - start
    print(f"{seconds:.1f} s for {args.images} test images; {seconds / args.images * 10_000 / 60:.1f} min "
          "for 10,000 at this rate")
    if args.profile:
        from torch.profiler import profile

        with profile() as prof, torch.inference_mode():
            iw_log_likelihood(run.model, x, k=args.k, generator=torch.Generator().manual_seed(0))
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()

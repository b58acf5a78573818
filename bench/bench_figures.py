"""Time every figure of a run, as the commands and the report draw them.

    .venv/bin/python bench/bench_figures.py RUN

RUN is a run directory (e.g. the one `make demo` writes). Prints the seconds of
each step: encoding the 10,000-image subset that gives the class statistics,
then each figure (computing and drawing it); figures go to a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from vaelab import explore, load_run
from vaelab.device import flush_denormals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    args = parser.parse_args()
    flush_denormals()  # as the `vaelab` command does
    run = load_run(args.run)
    timings = []

    def timed(name, fn):
        start = time.perf_counter()
        result = fn()
        timings.append((name, time.perf_counter() - start))
        return result

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        codes = timed("encode 10,000 training images", lambda: explore.encode_subset(run, n=10000, seed=0))
        test = timed("encode 16 test images", lambda: explore.encode_subset(run, n=16, seed=0, split="test"))
        timed("reconstruct", lambda: explore.figure_reconstructions(run, test, out / "r.png", n=16))
        timed("generate --digit 6", lambda: explore.figure_generate(run, codes, out / "g.png", label=6))
        timed("generate, every digit", lambda: explore.figure_generate_all(run, codes, out / "ga.png"))
        timed("mix", lambda: explore.figure_mix(run, codes, out / "m.png"))
        timed("interpolate", lambda: explore.figure_interpolate(run, codes, out / "i.png", start=1, end=4))
        timed("kl", lambda: explore.figure_kl(run, codes, out / "k.png"))
        timed("curves", lambda: explore.figure_curves(run, out / "c.png"))
        timed("embed --method pca", lambda: explore.figure_embed(run, codes, out / "p.png", method="pca"))
        timed("embed --method tsne", lambda: explore.figure_embed(run, codes, out / "t.png", method="tsne"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, seconds in timings:
        print(f"{name:<32} {seconds:6.2f} s")


if __name__ == "__main__":
    main()

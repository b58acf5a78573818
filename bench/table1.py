"""IWAE Table 1 beside vaelab's runs: one Markdown row per run folder, for docs/reproduction.md.

    .venv/bin/python bench/table1.py runs/iwae-short/* [--machine "2-core AMD EPYC, CPU"]

Each run must have been trained from an `iwae/...` preset and scored with
`vaelab eval RUN --iw-k 5000`. A row gives the preset, the paper's test
log-likelihood, vaelab's (± its standard error over test images) and the gap,
the schedule trained (stages and passes), the training's wall time (the sum of
the epochs' seconds, across resumes), the active units, and the machine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vaelab.config import IWAE_STAGES, TrainConfig, stage_epochs
from vaelab.presets import paper_cell


def row(run: Path, machine: str) -> str | None:
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    scores_path = run / "eval.json"
    if config.preset is None or not scores_path.is_file():
        return None
    scores = json.loads(scores_path.read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    paper = paper_cell(config.preset).test_log_likelihood
    done = rows[-1]["epoch"] if rows else 0
    schedule = (f"all {IWAE_STAGES} stages" if config.stages == IWAE_STAGES else
                f"stages 1\u2013{config.stages}" if config.stages > 1 else "stage 1")
    if done < config.epochs:
        schedule += f", {done:,} of {config.epochs:,} passes so far"
    else:
        schedule += f" ({config.epochs:,} of {stage_epochs(IWAE_STAGES):,} passes)"
    seconds = rows[-1]["elapsed"] if rows else 0.0
    took = f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"
    ll, se, k = scores["log_likelihood"], scores["log_likelihood_stderr"], scores["iw_k"]
    return (f"| `{config.preset}` | {paper:.2f} | {ll:.2f} ± {se:.2f} (K={k:,}) | {ll - paper:+.2f} | {schedule} | "
            f"{took} | {scores['active_units']} | {machine} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--machine", default="2-core AMD EPYC (AVX2), CPU, 1 thread")
    args = parser.parse_args()
    print("| preset | paper | vaelab | gap | schedule | training | active units | machine |")
    print("|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        if (run / "config.json").is_file():
            line = row(run, args.machine)
            if line:
                print(line)


if __name__ == "__main__":
    main()

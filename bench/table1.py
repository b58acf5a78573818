"""IWAE Table 1 beside vaelab's runs: one Markdown row per run folder, for docs/reproduction.md.

    .venv/bin/python bench/table1.py runs/iwae-short/* [--machine "2-core AMD EPYC, CPU"] [--compare]

Each run must have been trained from an `iwae/...` preset and scored with
`vaelab eval RUN --iw-k 5000`. A row gives the preset, the paper's test
log-likelihood, vaelab's (± its standard error over test images) and the gap,
the schedule trained (stages and passes), the training's wall time (the sum of
the epochs' seconds, across resumes), the active units, and the machine.

--compare then prints the paper's two comparisons for the runs given, which
should be on one schedule: each IWAE k > 1 against the VAE k = 1 with as many
layers, and each two-layer cell against its one-layer twin, as differences in
nats with their standard error (the two estimates' errors combined as if
independent; they share the test images, so this overstates it) and a verdict:
"holds" when the difference is positive, "within noise" when it is not but
lies within two standard errors, else "fails".
"""

from __future__ import annotations

import argparse
import json
import math
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


def score(run: Path) -> tuple[str, int, float, float] | None:
    """(preset, passes trained, log-likelihood, its standard error) of a scored preset run, else None."""
    if not (run / "config.json").is_file() or not (run / "eval.json").is_file():
        return None
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    scores = json.loads((run / "eval.json").read_text())
    if config.preset is None or scores.get("log_likelihood") is None:
        return None
    return config.preset, scores["epoch"], scores["log_likelihood"], scores["log_likelihood_stderr"]


def comparisons(scored: dict[str, tuple[float, float]]) -> list[str]:
    """The paper's comparisons among the scored presets {preset: (log-likelihood, stderr)}, one line each."""
    pairs = []
    for layers in ("1-layer", "2-layer"):
        for k in (5, 50):
            pairs.append((f"iwae/{layers}/iwae-k{k}", f"iwae/{layers}/vae-k1"))
    for cell in ("vae-k1", "vae-k5", "vae-k50", "iwae-k5", "iwae-k50"):
        pairs.append((f"iwae/2-layer/{cell}", f"iwae/1-layer/{cell}"))
    lines = []
    for better, worse in pairs:
        if better in scored and worse in scored:
            (a, a_se), (b, b_se) = scored[better], scored[worse]
            diff, se = a - b, math.hypot(a_se, b_se)
            verdict = "holds" if diff > 0 else "within noise" if diff > -2 * se else "fails"
            lines.append(f"- `{better}` {a:.2f} vs `{worse}` {b:.2f}: {diff:+.2f} ± {se:.2f} nats, {verdict}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--machine", default="2-core AMD EPYC (AVX2), CPU, 1 thread")
    parser.add_argument("--compare", action="store_true", help="also print the paper's comparisons among the runs")
    args = parser.parse_args()
    print("| preset | paper | vaelab | gap | schedule | training | active units | machine |")
    print("|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        if (run / "config.json").is_file():
            line = row(run, args.machine)
            if line:
                print(line)
    if args.compare:
        found = [s for s in map(score, args.runs) if s is not None]
        passes = sorted({p for _, p, _, _ in found})
        print(f"\nThe paper's comparisons (runs of {' and '.join(map(str, passes))} passes):" if found else "")
        print("\n".join(comparisons({preset: (ll, se) for preset, _, ll, se in found})))


if __name__ == "__main__":
    main()

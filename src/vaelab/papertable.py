"""A paper's table from the runs in a `vaelab reproduce` folder: its cells, their rows and the paper's comparisons.

OUT holds one run folder per cell (`folder_of`); a cell's row is its scored run, or its twin's where one
model stands for two cells (`presets.twin`, `run_for`). The table shows each beside the paper's number with
the schedule it trained, said so that a shortened one cannot pass for the paper's; `comparisons` makes the
paper's claims among the cells into differences with their standard errors and a verdict. `cell_progress`
says how far a cell not yet in the table has got. vaelab.reproduce trains and scores the cells.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vaelab.checkpoint import CHECKPOINT, Run, load_checkpoint, load_run
from vaelab.config import IWAE_STAGES, TrainConfig, stage_epochs
from vaelab.errors import VaelabError
from vaelab.evalfile import paired_stderr, read_eval
from vaelab.files import display, lock_holder
from vaelab.presets import PAPER_K, changes, list_presets, other_data, paper_cell, twin
from vaelab.trainlog import machines

TABLE = "table.md"  # written in OUT beside the cells' run folders
CLAIMS = ".claims"  # OUT/.claims/<cell>: locked by the process training and scoring the cell
PACE_PASSES = 20  # the passes whose median pace says how long a cell has to go


@dataclass(frozen=True)
class Cell:
    """One scored run of a preset: what the table shows of it."""

    preset: str
    paper: float  # the published test log-likelihood, nats
    log_likelihood: float
    stderr: float
    iw_k: int
    passes: int  # epochs trained
    stages: int  # of the schedule the run was asked for
    seconds: float  # training's wall time, across resumes
    active_units: int
    machine: str  # the machines that trained it, as its epochs recorded them
    per_image: tuple[float, ...] | None = None  # each test image's estimate, when eval.json keeps them
    test_files: tuple[tuple[str, str], ...] | None = None  # the test files scored: (name, SHA-256), sorted
    other_data: str | None = None  # the dataset, when not the paper's (--data-dir): no gap to the paper's number
    run_of: str | None = None  # the preset whose run the row shows, when it is its twin's (`presets.twin`)


def papers() -> list[str]:
    """The papers with presets: the first part of the presets' names."""
    return sorted({name.split("/")[0] for name in list_presets()})


def cells_of(paper: str, chosen: list[str] | None = None) -> list[str]:
    """The presets of `paper`, or those `chosen` (with or without the paper's prefix), in the table's order."""
    if paper not in papers():
        raise VaelabError(f"no presets for {paper!r}; papers with presets: {', '.join(papers())}")
    known = sorted((name for name in list_presets() if name.startswith(paper + "/")), key=table_order)
    if not chosen:
        return known
    wanted = [name if name.startswith(paper + "/") else f"{paper}/{name}" for name in chosen]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise VaelabError(f"{', '.join(unknown)}: no such cell; {paper}'s cells are "
                          f"{', '.join(n.removeprefix(paper + '/') for n in known)}")
    return list(dict.fromkeys(wanted))


def table_order(preset: str) -> tuple:
    """The paper's order: by stochastic layers, then the VAE's cells before the IWAE's, by k."""
    *group, cell = preset.split("/")
    objective, _, k = cell.rpartition("-k")
    return (*group, objective != "vae", int(k) if k.isdigit() else 0, cell)


def folder_of(preset: str) -> str:
    """A cell's run folder name in OUT: `iwae/1-layer/vae-k1` -> `1-layer-vae-k1`."""
    return preset.split("/", 1)[1].replace("/", "-")


def run_for(preset: str, presets: list[str], out: Path) -> str:
    """The preset whose run in OUT stands for `preset`'s cell: its own, unless it has none and its twin
    (`presets.twin`, one model under two names) has one, is being trained by another process (it holds the
    twin's claim), or is among `presets` ahead of it in the table."""
    other = twin(preset)
    if other is None or _holds_own_run(out / folder_of(preset), preset):
        return preset
    if _holds_own_run(out / folder_of(other), other) or lock_holder(out / CLAIMS / folder_of(other)) is not None:
        return other
    if other in presets and table_order(other) < table_order(preset):
        return other
    return preset


def _holds_own_run(path: Path, preset: str) -> bool:
    """Whether `path` holds a run of `preset` as it is (a checkpoint, not a changed run's)."""
    if not (path / CHECKPOINT).is_file():
        return False
    config = load_checkpoint(path).config
    return config.preset == preset and not changes(config)


def read_cell(path: Path) -> Cell | None:
    """What the table shows of a preset's scored run at `path`; None if it is not one (yet)."""
    if not (path / CHECKPOINT).is_file():
        return None
    run: Run = load_run(path)
    scores = read_eval(run)
    if scores is None or not scores.data_matches_run:  # scored on other files than its own: not its score
        return None
    return cell_from_records(run.config, run.metrics, scores.to_dict())


def _row(out: Path, preset: str) -> Cell | None:
    """The table's row for `preset`: its own scored run in OUT, else its twin's (`run_for`), or None."""
    runner = run_for(preset, [], out)
    cell = read_cell(out / folder_of(runner))
    if cell is None or cell.preset != runner:
        return None
    return cell if runner == preset else replace(cell, preset=preset, run_of=runner,
                                                 paper=paper_cell(preset).test_log_likelihood)


def _short(preset: str) -> str:
    return preset.split("/", 1)[1]


def holding(path: Path, config: TrainConfig) -> str:
    """What `path` holds instead of a cell's own run, in words: a run of another preset, or one changed."""
    changed = changes(config)
    return (f"{display(path)} holds a run of {'preset ' + config.preset if config.preset else 'no preset'}"
            + (f" that trains otherwise ({'; '.join(changed)})" if changed else ""))


def cell_progress(path: Path, preset: str) -> str:
    """How far the run at `path` of a cell not yet in the table has got, in a few words; for a cell whose
    twin's run stands for it (`run_for`), how far that run has got."""
    runner = run_for(preset, [], path.parent)
    if runner != preset:
        return f"the run of {runner} (one model with it): {cell_progress(path.parent / folder_of(runner), runner)}"
    if not (path / CHECKPOINT).is_file():
        if path.is_dir():
            return "started, no checkpoint yet"
        other = twin(preset)
        return "not started" + (f" (the run of {other} will stand for it: one model)"
                                if other is not None and table_order(other) < table_order(preset) else "")
    run = load_run(path)
    if run.config.preset != preset or changes(run.config):
        return holding(path, run.config)
    target = stage_epochs(run.config.stages or IWAE_STAGES)
    if run.epoch < target:
        done = f"{run.epoch:,} of {target:,} passes trained"
        last = run.metrics[-1].get("test_elbo") if run.metrics else None
        if isinstance(last, int | float):
            done += f" (test ELBO {last:.2f} after the last)"
        recent = pace(run.metrics)
        if recent is None:
            return done
        seconds, n = recent
        return (f"{done}, about {duration(seconds * (target - run.epoch))} to go at the median pace of the last "
                f"{'pass' if n == 1 else f'{n} passes'}")
    return f"trained ({run.epoch:,} pass{'es' if run.epoch != 1 else ''}), not scored yet"


def pace(metrics: list[dict[str, Any]]) -> tuple[float, int] | None:
    """The median seconds per pass of the last PACE_PASSES rows of metrics.jsonl that recorded their seconds
    (a pass slowed by a paused process or a busy hour does not move it), and how many did; None if none did."""
    recent = [m["seconds"] for m in metrics[-PACE_PASSES:] if isinstance(m.get("seconds"), int | float)]
    return (statistics.median(recent), len(recent)) if recent else None


def duration(seconds: float) -> str:
    """Seconds under a minute, minutes under an hour, else hours: "40 s", "15.6 min", "3.29 h"."""
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def cell_from_records(config: TrainConfig, metrics: list[dict[str, Any]], scores: dict[str, Any]) -> Cell | None:
    """A cell from a run's config, its metrics' rows and its eval.json's values; None if it is not a scored
    preset run. `read_cell` checks the records against the weights first; bench/table1.py, for runs kept
    without weights, cannot."""
    if config.preset is None or scores.get("log_likelihood") is None or changes(config):
        return None  # changed: not the preset's cell (`cell_progress` says so)
    return Cell(preset=config.preset, paper=paper_cell(config.preset).test_log_likelihood,
                log_likelihood=scores["log_likelihood"], stderr=scores["log_likelihood_stderr"],
                iw_k=scores["iw_k"], passes=len(metrics), stages=config.stages or IWAE_STAGES,
                seconds=metrics[-1]["elapsed"] if metrics else 0.0, active_units=scores["active_units"],
                machine=machines(metrics), per_image=_tuple(scores.get("log_likelihood_per_image")),
                test_files=_tuple(sorted((scores.get("data_sha256") or {}).items())) or None,
                other_data=other_data(config))


def _tuple(values: list | None) -> tuple | None:
    return None if values is None else tuple(values)


def schedule(cell: Cell) -> str:
    """The schedule a cell trained, said so that a shortened one cannot pass for the paper's."""
    target = stage_epochs(cell.stages)
    if cell.passes < target:
        return f"{schedule_words(cell.stages)}, {cell.passes:,} passes so far"
    words = schedule_words(cell.stages)
    return words if cell.stages == IWAE_STAGES else "shortened: " + words


def markdown_table(cells: list[Cell], machine: str | None = None) -> str:
    """The cells beside the paper's numbers, one Markdown row each; `machine` replaces every cell's own."""
    lines = ["| preset | paper | vaelab | gap | schedule | training | active units | machine |",
             "|---|---|---|---|---|---|---|---|"]
    for c in cells:
        took = duration(c.seconds)
        gap = f"{c.log_likelihood - c.paper:+.2f}" if c.other_data is None else f"none: {c.other_data} data"
        shown = f"`{c.preset}`" + (f" ({_short(c.run_of)}'s run)" if c.run_of else "")
        lines.append(f"| {shown} | {c.paper:.2f} | {c.log_likelihood:.2f} ± {c.stderr:.2f} (K={c.iw_k:,}) | "
                     f"{gap} | {schedule(c)} | {took} | {c.active_units} | "
                     f"{(machine or c.machine).replace('|', '/')} |")
    return "\n".join(lines)


def comparisons(cells: list[Cell]) -> list[str]:
    """The paper's comparisons among the cells: each IWAE k > 1 against the VAE k = 1 with as many layers
    (issue 9's test) and against the VAE with as many samples (the paper's claim), the IWAE k = 50 against
    the k = 5, and each two-layer cell against its one-layer twin, as differences in nats with their standard error
    and a verdict: "holds" when ahead by more than two standard errors, "ahead within noise" or "behind
    within noise" when within two, "fails" when behind by more. The standard error is paired (the spread of
    the per-image differences, `evalfile.paired_stderr`) when both cells kept each test image's estimate for
    the same test files; otherwise the two standard errors are combined as if independent ("unpaired"),
    which overstates it, since both share the test images' difficulty. Last, each IWAE k = 1 against the
    VAE k = 1, the same model in the paper (one sample: the IWAE bound is the ELBO, its KL estimated from
    the sample where the VAE presets take it exactly): "the same within noise" when within two standard
    errors, else "differ"; two rows that show one run (`run_of`) are said to be one. Only cells trained for
    as many passes are compared; cells scored on different test files are named, not compared, and a
    difference K between two cells' estimates is said beside theirs."""
    by_name = {_short(c.preset): c for c in cells}
    layers = ("1-layer", "2-layer")
    pairs = [(f"{n}/iwae-k{k}", f"{n}/vae-k1") for n in layers for k in (5, 50)]
    pairs += [(f"{n}/iwae-k{k}", f"{n}/vae-k{k}") for n in layers for k in (5, 50)]
    pairs += [(f"{n}/iwae-k50", f"{n}/iwae-k5") for n in layers]
    pairs += [(f"2-layer/{cell}", f"1-layer/{cell}") for cell in ("vae-k1", "vae-k5", "vae-k50", "iwae-k1",
                                                                  "iwae-k5", "iwae-k50")]
    same = [(f"{n}/iwae-k1", f"{n}/vae-k1") for n in layers]
    lines = []
    for better, worse in pairs + same:
        a, b = by_name.get(better), by_name.get(worse)
        if a is None or b is None or a.passes != b.passes:
            continue
        if a.run_of == b.preset or b.run_of == a.preset:
            lines.append(f"- {better} and {worse}: one run (one model, trained once), as in the paper")
            continue
        if a.test_files is not None and b.test_files is not None and a.test_files != b.test_files:
            lines.append(f"- {better} vs {worse}: scored on different test files, not compared")
            continue
        diff = a.log_likelihood - b.log_likelihood
        paired = (a.per_image is not None and b.per_image is not None and a.test_files is not None
                  and a.test_files == b.test_files and len(a.per_image) == len(b.per_image) > 1)
        se = paired_stderr(a.per_image, b.per_image) if paired else math.hypot(a.stderr, b.stderr)
        if (better, worse) in same:
            verdict = "the same within noise" if abs(diff) <= 2 * se else "differ"
        else:
            verdict = ("holds" if diff > 2 * se else "ahead within noise" if diff > 0
                       else "behind within noise" if diff >= -2 * se else "fails")
        lines.append(f"- {better} {a.log_likelihood:.2f} vs {worse} {b.log_likelihood:.2f} "
                     f"({a.passes:,} pass{'es' if a.passes != 1 else ''}): {diff:+.2f} ± {se:.2f} nats "
                     f"({'paired' if paired else 'unpaired'}), {verdict}"
                     + (f" (scored with K = {a.iw_k:,} and {b.iw_k:,}: part of the difference is the estimates')"
                        if a.iw_k != b.iw_k else ""))
    return lines


def table(out: Path, presets: list[str], machine: str | None = None) -> str:
    """The table and the comparisons of the scored cells in OUT, as Markdown."""
    cells = [c for c in (_row(out, p) for p in presets) if c is not None]
    missing = [p for p in presets if p not in {c.preset for c in cells}]
    waiting = "Not trained and scored yet:\n" + "\n".join(f"- {p}: {cell_progress(out / folder_of(p), p)}"
                                                          for p in missing)
    if not cells:
        return f"No scored cells in {display(out)} yet.\n\n{waiting}"
    text = markdown_table(cells, machine)
    shared = [c for c in cells if c.run_of is not None]
    if shared:
        text += "\n\n" + "\n".join(
            f"{_short(c.preset)} shows {_short(c.run_of)}'s run: one model under two names (with one sample the "
            f"IWAE bound is the ELBO, and both estimate its KL from the sample), so vaelab trains it once; the "
            f"paper, too, reports one number for both ({c.paper:.2f})." for c in shared)
    lines = comparisons(cells)
    if lines:
        text += "\n\nThe paper's comparisons:\n" + "\n".join(lines)
    if any("(unpaired)" in line for line in lines):
        text += ("\n\nUnpaired errors overstate the uncertainty: a cell scored before eval.json kept each test "
                 f"image's estimate pairs its comparisons once scored again (`vaelab eval {display(out)}/CELL "
                 f"--iw-k {PAPER_K}`, the same estimate with its images).")
    if missing:
        text += "\n\n" + waiting
    return text


def schedule_words(stages: int) -> str:
    """The schedule of the first `stages` stages, in words."""
    if stages == IWAE_STAGES:
        return f"the full schedule ({stage_epochs(stages):,} passes)"
    first = f"stages 1\u2013{stages}" if stages > 1 else "stage 1"
    return f"{first} ({stage_epochs(stages):,} of {stage_epochs(IWAE_STAGES):,} passes)"

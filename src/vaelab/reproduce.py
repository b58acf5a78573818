"""A paper's table from its presets, in one command: train and score every cell, then print the table.

`vaelab reproduce iwae --stages 3` trains each preset of Burda et al.'s Table 1
(`presets/iwae/`) on the first 3 stages of its schedule, scores it with the
paper's 5,000 importance samples, and prints the table beside the paper's
numbers, with the paper's comparisons among the cells (IWAE against the VAE,
two stochastic layers against one). Each cell is a run folder in OUT, so
anything cut off (Ctrl-C, SIGTERM, a closed terminal) goes on where it stopped,
bit for bit, when the same command runs again, and a larger --stages extends
the runs already there. Cells already trained and scored are not touched again.
`--jobs N` trains N cells at once, in N processes (vaelab.workers); several
such commands may also share one OUT. Each process claims a cell before it
trains and scores it (a lock in OUT/.claims/), and skips the cells others have
claimed; the command prints the whole table once its helpers are done.
Two cells that are one model (`presets.twin`: the two-layer VAE and IWAE with
k = 1, which the paper too reports as one number) are trained once, and the
one run fills both rows.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vaelab import workers
from vaelab.checkpoint import CHECKPOINT, Run, load_checkpoint, load_run
from vaelab.compiling import check_compile
from vaelab.config import IWAE_STAGES, TrainConfig, stage_epochs
from vaelab.data import find_dataset
from vaelab.device import resolve_device
from vaelab.errors import RunBusy, TrainingInterrupted, VaelabError
from vaelab.evalfile import paired_stderr, read_eval
from vaelab.evaluate import evaluate_run
from vaelab.files import atomic_write, display, exclusive_lock, lock_holder, planted
from vaelab.presets import PAPER_K, changes, list_presets, load_preset, other_data, paper_cell, twin
from vaelab.rundir import RunDir
from vaelab.training import resume, train
from vaelab.trainlog import machines

TABLE = "table.md"  # written in OUT beside the cells' run folders
CLAIMS = ".claims"  # OUT/.claims/<cell>: locked by the process training and scoring the cell
MAX_JOBS = 64
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


def train_cell(preset: str, out: Path, stages: int, *, device: str | None = None, data_dir: str | None = None,
               compile: bool = False, progress: bool = False, echo: Callable[[str], Any] = print) -> Path:
    """Train `preset` on its first `stages` stages into OUT/<cell>, resuming the run there if there is one
    (`compile`: a new run's objective through torch.compile; a run resumed keeps its own way)."""
    path = out / folder_of(preset)
    if (path / CHECKPOINT).exists():
        held = load_checkpoint(path).config
        if held.preset != preset or changes(held):
            raise VaelabError(f"{_holds(path, held)}, not {preset}; move it away (`mv {display(path)} "
                              f"{display(path)}.old`) and run this again")
        if compile and not held.compile:
            echo(f"{display(path)} was started without --compile and goes on so: its steps stay bit for bit "
                 "those of an eager run")
        resume(path, stages=stages, device=device, data_dir=data_dir, progress=progress, echo=echo)
    else:
        values = {**load_preset(preset), "stages": stages, "epochs": None}
        if data_dir is not None:  # any folder of IDX files, as `vaelab train --preset P --data-dir DIR`
            values.pop("dataset", None)
            values["data_dir"] = data_dir
        if device is not None:
            values["device"] = device
        values["compile"] = compile
        train(TrainConfig.from_dict(values, source=f"preset {preset}"), path, progress=progress, echo=echo)
    return path


def score_cell(path: Path, *, iw_k: int = PAPER_K, device: str = "auto", data_dir: str | None = None,
               progress: bool = False, echo: Callable[[str], Any] = print) -> None:
    """Score the run with `iw_k` importance samples unless eval.json already holds as many for its weights."""
    run = load_run(path)
    scores = read_eval(run)
    if scores is None or scores.log_likelihood is None or scores.iw_k < iw_k or not scores.data_matches_run:
        echo(f"{display(path)}: scoring log p(x) with IW K={iw_k:,} (on a 2-core CPU some 5 to 30 minutes, "
             "on a GPU under one)")
        scores = evaluate_run(run, iw_k=iw_k, device=device, data_dir=data_dir, progress=progress, judge=False)
        what = "scored"
    else:
        what = "already scored"
    echo(f"{display(path)}: {what}, log p(x) with IW K={scores.iw_k:,}: {scores.log_likelihood:.2f} "
         f"± {scores.log_likelihood_stderr:.2f} nats")


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


def _holds(path: Path, config: TrainConfig) -> str:
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
        return _holds(path, run.config)
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


def reproduce(paper: str, out: str | Path, *, cells: list[str] | None = None, stages: int = IWAE_STAGES,
              iw_k: int = PAPER_K, device: str = "auto", data_dir: str | None = None, machine: str | None = None,
              train_cells: bool = True, jobs: int = 1, compile: bool = False, progress: bool = False,
              echo: Callable[[str], Any] = print) -> str:
    """Train and score each cell of `paper` (or `cells`) into OUT, then write OUT/table.md and return it.
    `jobs` > 1 starts that many processes in all, each taking the cells nobody has claimed. `train_cells`
    False trains and writes nothing: the table of what OUT holds. `compile`: new runs' objectives through
    torch.compile (TrainConfig.compile)."""
    presets = cells_of(paper, cells)
    if not 1 <= stages <= IWAE_STAGES:
        raise VaelabError(f"--stages must be between 1 and {IWAE_STAGES}, got {stages}")
    if iw_k < 1:
        raise VaelabError(f"--iw-k must be at least 1, got {iw_k}")
    if not 1 <= jobs <= MAX_JOBS:
        raise VaelabError(f"--jobs must be between 1 and {MAX_JOBS}, got {jobs}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VaelabError(f"{display(out)} is not a folder; give --out a folder for the cells' runs")
    if (out / CHECKPOINT).exists():
        raise VaelabError(f"{display(out)} is a vaelab run, not a folder of runs; give --out a new folder, or one "
                          "that `vaelab reproduce` made, for the cells' runs")
    failed: list[str] = []
    if train_cells:
        where = resolve_device(device)  # what every cell needs, checked once: a cell failing after is its own
        find_dataset("folder" if data_dir else "mnist", data_dir)
        if compile:
            check_compile(where)
        new = not out.exists()
        try:
            runs = len(dict.fromkeys(run_for(p, presets, out) for p in presets))  # a pair of twins: one run
            failed = _train_and_score(paper, presets, out, stages, iw_k=iw_k, device=device, data_dir=data_dir,
                                      jobs=min(jobs, runs), compile=compile, progress=progress, echo=echo)
        except BaseException:
            if new:
                _remove_if_unused(out)
            raise
    text = table(out, presets, machine)
    if train_cells:
        echo("")
        atomic_write(out / TABLE, (text + "\n").encode(), root=out)
    if failed:
        raise VaelabError("; ".join(failed) + f"; the table of the cells done is in {display(out / TABLE)}")
    return text


def _train_and_score(paper: str, presets: list[str], out: Path, stages: int, *, iw_k: int, device: str,
                     data_dir: str | None, jobs: int, compile: bool, progress: bool,
                     echo: Callable[[str], Any]) -> list[str]:
    """Each cell not claimed by another process, trained and scored; with helpers if `jobs` > 1. A cell
    that fails (its folder holds another run, its training diverged) is reported and the next goes on; a
    signal stops them all. Returns a line for each cell and each helper that failed."""
    _claims_folder(out)
    argv = ["reproduce", paper, *presets, "--out", str(out), "--stages", str(stages), "--iw-k", str(iw_k),
            "--device", device, "--quiet", *(["--data-dir", data_dir] if data_dir else []),
            *(["--compile"] if compile else [])]
    helpers = workers.start([argv] * (jobs - 1), [out / f"helper-{n}.log" for n in range(2, jobs + 1)])
    for helper in helpers:
        echo(f"helper {helper.number}: pid {helper.process.pid}, its output in {display(helper.log)}")
    failed = []
    try:
        for i, preset in enumerate(presets, 1):
            runner = run_for(preset, presets, out)
            if runner != preset and runner in presets:
                echo(f"[{i}/{len(presets)}] {preset}: one model with {runner}, whose run stands for both")
                continue
            echo(f"[{i}/{len(presets)}] {preset}: {schedule_words(stages)} -> {display(out / folder_of(runner))}"
                 + (f" (the run of {runner}, one model with it)" if runner != preset else ""))
            try:
                _claim_cell(runner, out, stages, iw_k=iw_k, device=device, data_dir=data_dir, compile=compile,
                            progress=progress, echo=echo)
            except TrainingInterrupted:
                raise
            except VaelabError as exc:
                echo(f"[{i}/{len(presets)}] {runner} failed: {exc}; the other cells go on")
                failed.append(f"{runner}: {exc}")
        if any(helper.process.poll() is None for helper in helpers):
            echo(f"waiting for the helpers to finish their cells ({', '.join(display(h.log) for h in helpers)})")
        return failed + workers.wait(helpers)
    except BaseException as exc:  # stopped, or failed: the helpers stop too, as they would alone
        workers.stop(helpers, workers.signal_of(exc))
        workers.wait(helpers)
        raise


def _claims_folder(out: Path) -> None:
    """OUT/.claims made, or checked to be a real folder: never lock files through a link planted there."""
    claims = out / CLAIMS
    with suppress(FileExistsError):
        claims.mkdir(parents=True, exist_ok=True)
    if claims.is_symlink() or not claims.is_dir():
        raise planted(claims, "a folder")


def _remove_if_unused(out: Path) -> None:
    """After a start that failed (no data, no GPU, a signal) in an OUT this command made: OUT gone again, if
    it holds nothing but claims nobody holds."""
    claims = out / CLAIMS
    try:
        if set(os.listdir(out)) != {CLAIMS}:
            return
        names = os.listdir(claims)
    except OSError:
        return
    with ExitStack() as held:
        try:
            if not all(held.enter_context(exclusive_lock(claims / name)) for name in names):
                return  # another process has started on OUT meanwhile
        except (OSError, VaelabError):  # something planted meanwhile: left as it is, and the first error stands
            return
        for name in names:
            (claims / name).unlink(missing_ok=True)
    with suppress(OSError):
        claims.rmdir()
        out.rmdir()


def _claim_cell(preset: str, out: Path, stages: int, *, iw_k: int, device: str, data_dir: str | None,
                compile: bool, progress: bool, echo: Callable[[str], Any]) -> None:
    """Train and score one cell, unless another process has claimed it (OUT/.claims/<cell>, held while it
    trains and scores; released when it ends or dies) or is writing its run folder."""
    with exclusive_lock(out / CLAIMS / folder_of(preset)) as ours:
        if not ours:
            echo("skipped: another `vaelab reproduce` is training or scoring it")
            return
        try:
            path = train_cell(preset, out, stages, device=None if device == "auto" else device,
                              data_dir=data_dir, compile=compile, progress=progress, echo=echo)
            with RunDir.existing(path):  # scored by one process: a `vaelab eval` or `train` meanwhile waits
                score_cell(path, iw_k=iw_k, device=device, data_dir=data_dir, progress=progress, echo=echo)
        except RunBusy as exc:  # a `vaelab train --resume` of the user's has it
            echo(f"skipped: {exc}")


def schedule_words(stages: int) -> str:
    """The schedule of the first `stages` stages, in words."""
    if stages == IWAE_STAGES:
        return f"the full schedule ({stage_epochs(stages):,} passes)"
    first = f"stages 1\u2013{stages}" if stages > 1 else "stage 1"
    return f"{first} ({stage_epochs(stages):,} of {stage_epochs(IWAE_STAGES):,} passes)"


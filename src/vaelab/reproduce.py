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

import os
from collections.abc import Callable
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

from vaelab import workers
from vaelab.checkpoint import CHECKPOINT, load_checkpoint, load_run
from vaelab.compiling import check_compile
from vaelab.config import IWAE_STAGES, TrainConfig
from vaelab.data import find_dataset
from vaelab.device import resolve_device
from vaelab.errors import RunBusy, TrainingInterrupted, VaelabError
from vaelab.evalfile import read_eval
from vaelab.evaluate import evaluate_run
from vaelab.files import atomic_write, display, exclusive_lock, planted
from vaelab.papertable import CLAIMS, TABLE, cells_of, folder_of, holding, run_for, schedule_words, table
from vaelab.presets import PAPER_K, changes, load_preset
from vaelab.rundir import RunDir
from vaelab.training import resume, train

MAX_JOBS = 64
def train_cell(preset: str, out: Path, stages: int, *, device: str | None = None, data_dir: str | None = None,
               compile: bool = False, progress: bool = False, echo: Callable[[str], Any] = print) -> Path:
    """Train `preset` on its first `stages` stages into OUT/<cell>, resuming the run there if there is one
    (`compile`: a new run's objective through torch.compile; a run resumed keeps its own way)."""
    path = out / folder_of(preset)
    if (path / CHECKPOINT).exists():
        held = load_checkpoint(path).config
        if held.preset != preset or changes(held):
            raise VaelabError(f"{holding(path, held)}, not {preset}; move it away (`mv {display(path)} "
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
        echo(f"{display(path)}: scoring log p(x) with IW K={iw_k:,}"
             + (" (on a 2-core CPU some 5 to 30 minutes, on a GPU under one)" if iw_k >= PAPER_K else ""))
        scores = evaluate_run(run, iw_k=iw_k, device=device, data_dir=data_dir, progress=progress, judge=False)
        what = "scored"
    else:
        what = "already scored"
    echo(f"{display(path)}: {what}, log p(x) with IW K={scores.iw_k:,}: {scores.log_likelihood:.2f} "
         f"± {scores.log_likelihood_stderr:.2f} nats")


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

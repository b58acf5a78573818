"""Run folders: created under a name nobody else has, written by one process at a time.

`vaelab train` holds an exclusive lock on RUN/.vaelab.lock for as long as it
writes the run, so a second `vaelab train --out RUN` or `--resume RUN` is
refused at once, however close together the two start. A default name never
collides: the folder is created with `mkdir`, which only one process can win,
and a suffix is added until it does. A start that fails before the first
checkpoint is written (no GPU, no network, a signal) leaves nothing behind, and
temporary files of a process killed mid-write are cleaned up, so such a folder
can always be used again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from vaelab.checkpoint import CHECKPOINT, Checkpoint, checkpoint_bytes, read_checkpoint, write_checkpoint
from vaelab.errors import RunBusy, VaelabError
from vaelab.files import display, exclusive_lock, is_leftover, lock_holder, remove_leftovers

LOCK = ".vaelab.lock"
RUNS = Path("runs")  # where runs go when no --out is given


class RunDir:
    """A run folder this process writes: locked while in use; removed again if its start fails."""

    def __init__(self, path: Path, created: list[Path]):
        self.path = path
        self._created = created  # folders this process made, outermost first
        self._lock = exclusive_lock(path / LOCK)

    @classmethod
    def new(cls, out: str | Path | None = None) -> RunDir:
        """A fresh run folder at `out` (new, or empty), or under runs/ with a unique name."""
        if out is None:
            path, created = _unique_folder(RUNS, time.strftime("%Y%m%d-%H%M%S"))
        else:
            if not str(out).strip():  # Path("") is the working folder: never taken for a run's by accident
                raise VaelabError("--out is empty; give the folder for the run, e.g. --out runs/mnist")
            path = Path(out)
            _check_reusable(path, locked=False)
            created = _make_folders(path)
        run = cls(path, created)
        run._acquire(", or choose another --out")
        try:
            _check_reusable(path)  # again, now that nobody else can change it
            remove_leftovers(path)
        except BaseException:
            run.close(failed=True)
            raise
        return run

    @classmethod
    def existing(cls, path: str | Path) -> RunDir:
        """An existing run, to continue training it."""
        run = cls(Path(path), [])
        run._acquire("")
        remove_leftovers(run.path)
        return run

    def _acquire(self, alternative: str) -> None:
        try:
            acquired = self._lock.__enter__()
        except OSError as exc:
            raise VaelabError(f"cannot lock {display(self.path / LOCK)}: {exc.strerror}; check the folder's "
                              "permissions") from None
        if not acquired:
            raise RunBusy(
                f"{display(self.path)} is being written by another vaelab process{_holder(self.path)}; "
                f"wait for it to finish or stop it{alternative}"
            )
        _write_pid(self.path / LOCK)

    def close(self, *, failed: bool = False) -> None:
        """Release the lock; after a failed start (no checkpoint yet), remove what this process made."""
        if failed and not (self.path / CHECKPOINT).exists():
            remove_leftovers(self.path)
            (self.path / LOCK).unlink(missing_ok=True)
            for folder in reversed(self._created):
                try:
                    folder.rmdir()  # only if empty: never removes anything else
                except OSError:
                    break
        self._lock.__exit__(None, None, None)

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(failed=kind is not None)


def trainer(path: str | Path) -> int | None:
    """The pid of the vaelab process training (writing) the run at `path` now, or None if none is.

    Asked without taking the run's lock, so it never makes a `vaelab train` starting at the same moment
    fail. 0: one is, with a pid this process cannot see. None where the system cannot say (no /proc/locks).
    """
    return lock_holder(Path(path) / LOCK)


def still_training(path: str | Path) -> str | None:
    """"RUN is still training (pid N)" while a vaelab process trains the run at `path`, else None."""
    pid = trainer(path)
    return None if pid is None else f"{display(path)} is still training{f' (pid {pid})' if pid else ''}"


def copy_run(source: str | Path, out: str | Path) -> Checkpoint:
    """Copy the run at `source` into `out` (a new or empty folder): a run of its own, to score, draw or
    train on apart from the source, which may be training meanwhile.

    The source's checkpoint is read once, whole, and written unchanged, so the copy is exactly one
    saved state (weights, optimizer, generator, position), and resuming it continues as the source
    did from that state, bit for bit. Its config.json and metrics.jsonl are written from that
    checkpoint, not copied (the source's may already be a pass ahead); eval.json and figures are not
    copied (they may score other weights). Returns the checkpoint copied.
    """
    raw = checkpoint_bytes(source)
    ckpt = read_checkpoint(raw, Path(source) / CHECKPOINT)
    if Path(source).resolve() in Path(out).resolve().parents:
        raise VaelabError(f"--out {display(out)} is inside the run {display(source)}; give a folder outside it, "
                          f"e.g. {display(Path(source).parent / (Path(source).resolve().name + '-copy'))}")
    with RunDir.new(out) as run:
        write_checkpoint(run.path, raw, ckpt)
    return ckpt


def prepare_run_dir(path: str | Path) -> Path:
    """Make a fresh run folder (without locking it), refusing to overwrite anything."""
    path = Path(path)
    _check_reusable(path)
    _make_folders(path)
    return path


def _check_reusable(path: Path, *, locked: bool = True) -> None:
    """Refuse a folder that holds a run or anything vaelab did not write there.

    The folder is listed once, so a run another process saves meanwhile is seen
    as a run, never as foreign files. Before the lock is held (`locked=False`), a
    folder with a lock file may be one another vaelab process is starting: the
    lock decides, and the check is made again once it is held.
    """
    try:
        names = os.listdir(path) if path.is_dir() and not path.is_symlink() else []
    except OSError as exc:
        raise VaelabError(f"cannot read --out {display(path)}: {exc.strerror}") from None
    if CHECKPOINT in names:
        if not locked and trainer(path) is not None:  # a run still training: --resume would be refused too
            raise RunBusy(f"{display(path)} is being written by another vaelab process{_holder(path)}; wait for "
                          "it to finish or stop it, or choose another --out")
        raise VaelabError(
            f"{display(path)} already holds a run; continue it with `vaelab train --resume {display(path)}` "
            "(with --epochs N or --stages N to train it further), or choose another --out"
        )
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise VaelabError(f"--out {display(path)} is a file or a link; give a folder path for the run")
    if any(not _ours(name) for name in names) and (locked or LOCK not in names):
        raise VaelabError(
            f"--out {display(path)} is a folder that is not empty and not a vaelab run; "
            "choose a new or empty folder so nothing in it is overwritten"
        )


def _ours(name: str) -> bool:
    """Files a failed or killed start may leave, which a new run may take over."""
    return name == LOCK or is_leftover(name)


def _make_folders(path: Path) -> list[Path]:
    """mkdir -p, returning the folders it made, outermost first."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists() or folder.is_symlink():
            break
        missing.append(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VaelabError(f"cannot create run directory {display(path)}: {exc.strerror}") from None
    return missing[::-1]


def _unique_folder(parent: Path, stem: str) -> tuple[Path, list[Path]]:
    """parent/stem, or parent/stem-2, -3, …: whichever this process creates first."""
    created = _make_folders(parent)
    for n in range(1, 10_000):
        path = parent / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise VaelabError(f"cannot create run directory {display(path)}: {exc.strerror}") from None
        return path, [*created, path]
    raise VaelabError(f"{display(parent)} already holds 10,000 runs named {stem}; give --out")


def _write_pid(lock: Path) -> None:
    try:  # the lock file is never replaced, only rewritten, and never through a link
        fd = os.open(lock, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0))
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        finally:
            os.close(fd)
    except OSError:
        pass  # the pid only makes the message of a refused second writer friendlier


def _holder(path: Path) -> str:
    try:
        pid = int((path / LOCK).read_text().strip())
    except (OSError, ValueError):
        return ""
    return f" (pid {pid})"

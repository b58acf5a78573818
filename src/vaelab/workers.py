"""Helper processes: copies of a vaelab command that share its work, each writing a log.

`vaelab reproduce --jobs N` starts N - 1 of them beside itself; each takes the
cells nobody else has claimed. They run in sessions of their own, so a Ctrl-C
at the terminal reaches only the command the user started, which passes the
one signal it got on to each helper: every process then stops as it would
alone (training after its batch, with a checkpoint), and the command returns
only once they all have.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from vaelab.errors import Stopped, TrainingInterrupted, VaelabError
from vaelab.files import display


@dataclass
class Helper:
    """One helper process and the log its output goes to."""

    number: int
    process: subprocess.Popen
    log: Path


def start(args: list[list[str]], logs: list[Path]) -> list[Helper]:
    """Run `python -m vaelab ARGS` for each ARGS, its output appended to the log beside it. Every log is
    opened before any helper starts, so a log that cannot be written leaves nothing running."""
    helpers = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with ExitStack() as opened:
        files = [opened.enter_context(_append(log)) for log in logs]
        for number, (argv, log, f) in enumerate(zip(args, logs, files, strict=True), 2):
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} vaelab {' '.join(argv)}\n")
            f.flush()
            process = subprocess.Popen([sys.executable, "-m", "vaelab", *argv], stdin=subprocess.DEVNULL,
                                       stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            helpers.append(Helper(number, process, log))
    return helpers


def _append(log: Path):
    """The log, opened to append to: a plain file, never through a link someone planted in its place."""
    if log.is_symlink() or (log.exists() and not log.is_file()):
        raise VaelabError(f"{display(log)} is not a plain file (a link, a folder, a device); vaelab appends a "
                          "helper's output only to a file of its own: move it away, or give another --out")
    try:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        raise VaelabError(f"cannot write {display(log)}: {exc.strerror}; check the folder's permissions") from None
    return open(fd, "a", encoding="utf-8")


def signal_of(exc: BaseException) -> int:
    """The signal to pass on to the helpers when the command ends with `exc`: the one that stopped it, or
    SIGTERM when something else did."""
    if isinstance(exc, TrainingInterrupted) and exc.exit_code > 128:
        return exc.exit_code - 128
    if isinstance(exc, Stopped):
        return exc.signum
    return signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.SIGTERM


def stop(helpers: list[Helper], signum: int) -> None:
    """Pass `signum` on, once, to each helper still running."""
    for helper in helpers:
        if helper.process.poll() is None:
            try:
                helper.process.send_signal(signum)
            except ProcessLookupError:  # it ended meanwhile
                pass


def wait(helpers: list[Helper]) -> list[str]:
    """Wait for every helper to end; one line for each that failed, naming its status and log."""
    failed = []
    for helper in helpers:
        status = helper.process.wait()
        if status != 0:
            failed.append(f"helper {helper.number} (pid {helper.process.pid}) ended with status {status}: "
                          f"{last_line(helper.log)} (its log: {helper.log})")
    return failed


def last_line(log: Path) -> str:
    """The last non-empty line of a log, which says why a vaelab command ended."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            lines = [line.strip() for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return "its log cannot be read"
    return lines[-1] if lines else "it wrote nothing"

"""Signals that stop vaelab: Ctrl-C (SIGINT), SIGTERM (docker stop, SLURM) and SIGHUP (a closed terminal).

All three stop a command the same way: cleanly, with one line and the exit
status 128 + the signal's number. Training first finishes its batch and saves a
checkpoint (vaelab.training); everything else stops where it is.

A signal the command was started ignoring stays ignored, as in every Unix tool:
`nohup vaelab train ...` goes on after its terminal closes, and a background job
of a shell script (which ignores SIGINT) is not stopped by a Ctrl-C meant for
the script.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from vaelab.errors import Stopped

STOP = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
REPEAT_S = 1.0  # the same signal again this soon after the first is one Ctrl-C pressed twice, not a new demand
_clock = time.monotonic  # read through this name, so tests can move it without moving everyone's clock


def _ours() -> list[int]:
    """The stop signals this process may handle: those it was not started ignoring (nohup, `&` in a script)."""
    return [sig for sig in STOP if signal.getsignal(sig) != signal.SIG_IGN]


def name(signum: int) -> str:
    return signal.Signals(signum).name


def report(exc: KeyboardInterrupt) -> tuple[str, int]:
    """The line and the exit status of a command a stop signal ended (not in training, which says more)."""
    if isinstance(exc, Stopped):
        return f"vaelab: stopped by {name(exc.signum)}", 128 + exc.signum
    return "vaelab: interrupted", 128 + signal.SIGINT


@contextmanager
def _handled(handler: Callable[[int, object], None], but: tuple[int, ...] = ()) -> Iterator[bool]:
    """Route the stop signals not ignored (and not in `but`) to `handler` while the block runs, then restore
    the old handlers. Yields False, and changes nothing, off the main thread, where signals are not ours to
    handle."""
    try:
        previous = {sig: signal.signal(sig, handler) for sig in _ours() if sig not in but}
    except ValueError:  # not the main thread
        yield False
        return
    try:
        yield True
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold stop signals while the block runs, then act on the first one that came.

    Importing a large C extension (torch, numpy) can swallow a Ctrl-C that arrives
    meanwhile, and the command would then go on as if nothing happened; holding
    the signal until the import is over turns it into a clean stop instead.
    """
    received: list[int] = []
    with _handled(lambda signum, frame: received.append(signum)):
        yield
    if received:
        raise KeyboardInterrupt if received[0] == signal.SIGINT else Stopped(received[0])


@contextmanager
def raising() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise Stopped, as Ctrl-C raises KeyboardInterrupt (whose
    handler Python's own stays); then the old handlers are back."""

    def stop(signum, frame):
        raise Stopped(signum)

    with _handled(stop, but=(signal.SIGINT,)):
        yield


def stopped_by(signum: int) -> str:
    """How training says a signal stopped it."""
    said = {"SIGINT": "interrupted (Ctrl-C)", "SIGHUP": "stopped by SIGHUP (the terminal closed)"}
    return said.get(name(signum), f"stopped by {name(signum)}")


@contextmanager
def stop_after_batch() -> Iterator[Callable[[], int]]:
    """Turn the first Ctrl-C, SIGTERM or SIGHUP into a request to stop after the current batch (training).

    Yields a function that returns the signal's number once one has arrived, else 0.
    A second signal interrupts at once (the last checkpoint on disk stays intact), unless it is the first
    one again within REPEAT_S: the same key pressed twice, which waits with the first for the batch.
    """
    received, first = 0, 0.0

    def handler(signum, frame):
        nonlocal received, first
        if not received:
            received, first = signum, _clock()
        elif signum != received or _clock() - first >= REPEAT_S:
            raise KeyboardInterrupt

    with _handled(handler) as ours:
        yield (lambda: received) if ours else (lambda: 0)


def exit_at_signal(status: int) -> None:
    """From now on (a command that has done its work, while Python shuts down), a stop signal ends the
    process at once with the command's `status` (its work is done or saved): never a traceback from a
    cleanup the signal cut short. What it printed is flushed first."""

    def leave(signum, frame):
        os._exit(status)

    for sig in _ours():
        try:
            signal.signal(sig, leave)
        except ValueError:  # not the main thread
            break
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing left to keep
            pass

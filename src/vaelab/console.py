"""The command's output streams: quiet, not fatal, once nobody reads them."""

from __future__ import annotations

import os
from typing import Any


class ForgivingStream:
    """A text stream that goes quiet, instead of failing, once nobody reads it.

    `vaelab train | head -1` closes the pipe and a closed terminal (SIGHUP) turns
    writes into errors; neither is a reason to abandon a run, so output stops and
    the work goes on (everything is in the run's files anyway). Characters the
    stream cannot encode (a path that is not UTF-8) are escaped, not fatal.
    """

    def __init__(self, stream):
        self._stream = stream
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError:
            self._silence()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            self._silence()

    def _silence(self) -> None:
        """Point the stream's file descriptor at /dev/null, so later writes (and exit's flush) succeed."""
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

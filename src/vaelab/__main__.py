"""`python -m vaelab` and the `vaelab` command.

Stop signals are handled from the first instant: a Ctrl-C or SIGTERM that
arrives while the command is still loading ends it with one line, not a
traceback, and is never lost. `vaelab.cli.main` takes over once it is loaded.
"""

from __future__ import annotations

import sys

from vaelab.signals import deferred, report


def main() -> int:
    try:
        with deferred():
            from vaelab.cli import main as run
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP as Stopped
        line, status = report(exc)
        print(line, file=sys.stderr)
        return status
    return run()


if __name__ == "__main__":
    raise SystemExit(main())

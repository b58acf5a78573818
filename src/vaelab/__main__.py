"""`python -m vaelab` and the `vaelab` command.

Stop signals are handled from the first instant: a Ctrl-C or SIGTERM that
arrives while the command is still loading ends it with one line, not a
traceback, and is never lost. `vaelab.cli.main` takes over once it is loaded.
"""

from __future__ import annotations

import sys

from vaelab.errors import Stopped
from vaelab.signals import deferred, name


def main() -> int:
    try:
        with deferred():
            from vaelab.cli import main as run
    except Stopped as exc:
        print(f"vaelab: stopped by {name(exc.signum)}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("vaelab: interrupted", file=sys.stderr)
        return 130
    return run()


if __name__ == "__main__":
    raise SystemExit(main())

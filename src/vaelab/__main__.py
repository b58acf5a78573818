"""`python -m vaelab` and the `vaelab` command.

Stop signals are handled from the moment this module runs: a Ctrl-C or
SIGTERM that arrives while the command is still loading ends it with one line,
not a traceback, and is never lost. `vaelab.cli.main` takes over once it is
loaded. (Before this module runs, Python itself is starting: some 20 ms on an
idle machine, in which a Ctrl-C gives Python's own traceback.)
"""

from __future__ import annotations

import sys

try:
    from vaelab.signals import deferred, exit_at_signal, report
except KeyboardInterrupt:  # a Ctrl-C while the signal handling itself loads
    print("vaelab: interrupted", file=sys.stderr)
    raise SystemExit(130) from None


def main() -> int:
    try:
        with deferred():
            from vaelab.cli import main as run
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP as Stopped
        line, status = report(exc)
        print(line, file=sys.stderr)
        return status
    status = run()
    exit_at_signal(status)  # a Ctrl-C while Python shuts down: no traceback from its cleanup
    return status


if __name__ == "__main__":
    raise SystemExit(main())

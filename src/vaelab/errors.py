"""The exception types the command line turns into a one-line message."""


class VaelabError(Exception):
    """A problem the user can fix: the message names the culprit and the fix."""

    exit_code = 2


class RunBusy(VaelabError):
    """Another vaelab process is writing the run folder (it holds the folder's lock)."""


class TrainingInterrupted(VaelabError):
    """Ctrl-C, SIGTERM or SIGHUP during training: a consistent checkpoint was saved first.

    The exit status is 128 + the signal's number, as a shell reports a process a signal ended.
    """

    def __init__(self, message: str, *, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


class Diverged(VaelabError):
    """The loss or the weights became NaN or infinite: the numbers mean nothing."""

    exit_code = 3


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP (docker stop, SLURM, a closed terminal), handled like Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


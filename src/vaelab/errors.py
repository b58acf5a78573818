"""The exception types the command line turns into a one-line message."""


class VaelabError(Exception):
    """A problem the user can fix: the message names the culprit and the fix."""

    exit_code = 2


class TrainingInterrupted(VaelabError):
    """Ctrl-C during training: a consistent checkpoint was saved first."""

    exit_code = 130

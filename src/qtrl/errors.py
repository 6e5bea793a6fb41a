"""Errors the CLI reports as one line: bad input (``UserError``, exit 2), a
run that stopped itself (``RunStopped``: diverged, or a run file that could not
be written; exit 1), and a termination request (SIGTERM, exit 143)."""

from __future__ import annotations

__all__ = ["RunStopped", "RunWriteError", "Terminated", "TrainingDiverged", "UserError"]


class UserError(ValueError):
    """Bad input: the message names the bad value and what would be accepted."""


class RunStopped(RuntimeError):
    """The run stopped itself for the reason its one-line message gives (not an
    agent's crash: every agent stops alike, and one line says why)."""


class TrainingDiverged(RunStopped):
    """Training produced a non-finite loss, gradient or parameter; the message
    names the update, the quantity and the last good checkpoint."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the signal lands so that it unwinds like Ctrl-C
    (every ``finally`` runs: files closed, agents ended, temp folders removed)."""


class RunWriteError(RunStopped):
    """A run file could not be written (disk full, I/O error): the run stopped; the
    message names the file, the reason and the last good checkpoint."""

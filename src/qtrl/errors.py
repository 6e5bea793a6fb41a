"""Errors a user can cause or must act on: the CLI prints their message as one
line (``UserError``: exit 2; ``RunWriteError``: exit 1)."""

from __future__ import annotations

__all__ = ["RunWriteError", "UserError"]


class UserError(ValueError):
    """Bad input: the message names the bad value and what would be accepted."""


class RunWriteError(RuntimeError):
    """A run file could not be written (disk full, I/O error): the run stopped; the
    message names the file, the reason and the last good checkpoint."""

"""Errors a user can cause: the CLI prints their message as one line and exits 2."""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """Bad input: the message names the bad value and what would be accepted."""

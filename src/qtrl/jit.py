"""Optional ahead-of-use compilation by Numba, for the few loops that torch and
NumPy dispatch make slow: the small-circuit kernels and the roll-out actor.

Numba is a dependency; without it (an unusual install) every caller keeps a
NumPy/torch path, and :func:`available` says which one runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["available", "literally", "njit"]

try:  # compiled on first use, cached next to the source (or in Numba's user cache)
    import numba
except ImportError:  # pragma: no cover - numba is a dependency
    numba = None

F = TypeVar("F", bound=Callable[..., Any])


def available() -> bool:
    """Whether Numba is importable (compiled paths can run)."""
    return numba is not None


def njit(fastmath: bool = False) -> Callable[[F], F]:
    """``numba.njit`` with an on-disk cache, or the function unchanged without Numba."""
    def wrap(fn: F) -> F:
        if numba is None:
            return fn
        return numba.njit(cache=True, fastmath=fastmath, nogil=True)(fn)
    return wrap


def _identity(value: Any) -> Any:
    return value


literally = numba.literally if numba is not None else _identity
"""``numba.literally``: compile the calling function once per constant value of
this argument (the identity without Numba)."""

"""Optional ahead-of-use compilation by Numba, for the few loops that torch and
NumPy dispatch make slow: the circuit kernels, the mapping pass, the roll-out
actor and the returns-to-go.

Numba is a dependency; without it (an unusual install) every caller keeps a
NumPy/torch path, and :func:`available` says which one runs.

The one switch: ``QTRL_COMPILED=0`` in the environment turns every compiled
kernel off for the process, Numba installed or not: circuits, the mapping pass,
the roll-out actor and the returns then run their plain torch/NumPy paths
(slower, the same numbers to rounding) — for debugging, profiling, or a
platform Numba does not support.

This module knows none of the modules that use it: each registers a warm-up
(:func:`warmup`) that compiles its own kernels, and :func:`warm` runs whatever
has been registered by the modules imported so far.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["FASTMATH", "available", "literally", "njit", "parts_for", "pool_started", "prange",
           "set_threads", "warm", "warmup"]

try:  # compiled on first use, cached next to the source (or in Numba's user cache)
    import numba
except ImportError:  # pragma: no cover - numba is a dependency
    numba = None
if os.environ.get("QTRL_COMPILED", "1") == "0":
    numba = None   # the switch: every caller takes its plain path
if numba is not None and "NUMBA_THREADING_LAYER" not in os.environ:
    # Numba's own thread pool, not OpenMP: an OpenMP pool shares libgomp's thread
    # count with torch, so the first parallel kernel would raise torch's count
    # (set_num_threads(1) undone), and every small torch op then pays a
    # multi-threaded barrier. The kernels are launched from one thread at a time.
    numba.config.THREADING_LAYER = "workqueue"

F = TypeVar("F", bound=Callable[..., Any])
_threads_set = 0
"""The count :func:`set_threads` last gave Numba (0: not yet)."""
_warmups: dict[str, Callable[[], Any]] = {}
"""Registered warm-ups by qualified name (a reloaded module replaces its own)."""

FASTMATH = frozenset({"reassoc", "contract"})
"""The fastmath flags a kernel may ask for: sums may be reordered (so that
reductions vectorise) and a multiply and an add may be fused. Not the rest of
``fastmath=True`` (``nsz``, ``nnan``, ``ninf``, ``arcp``, ``afn``): with
``nsz`` LLVM also reassociates scalar arithmetic according to where a function
was inlined, and the copies of a shared function that a process compiled and
loaded from the cache then round differently, so a run that compiled its
kernels would not match its resumption, which loads them. With these two flags
compiled and cached kernels agree bit for bit (``tests/test_jit.py``).
Numba's cache does not key on the flags: after changing them, clear it (or
touch the kernel modules), or the old code keeps loading."""


def available() -> bool:
    """Whether Numba is importable (compiled paths can run)."""
    return numba is not None


def njit(fastmath: bool = False, parallel: bool = False) -> Callable[[F], F]:
    """``numba.njit`` with an on-disk cache, or the function unchanged without Numba
    (``prange`` is then ``range``). ``fastmath``: the flags of :data:`FASTMATH` only."""
    def wrap(fn: F) -> F:
        if numba is None:
            return fn
        flags = set(FASTMATH) if fastmath else False
        return numba.njit(cache=True, fastmath=flags, nogil=True, parallel=parallel)(fn)
    return wrap


prange = numba.prange if numba is not None else range
"""``numba.prange`` (the loop's iterations run on Numba's threads in a function
compiled with ``parallel=True``), or ``range`` without Numba."""


def set_threads(wanted: int) -> int:
    """Numba's thread count for parallel kernels: ``wanted``, at most its pool
    (``NUMBA_NUM_THREADS``); returns the count set (1 without Numba)."""
    global _threads_set
    if numba is None:
        return 1
    count = max(1, min(int(wanted), numba.config.NUMBA_NUM_THREADS))
    if count == 1 and _threads_set == 0:
        # Nothing runs in parallel at one share (the kernels call their serial
        # versions), so Numba's pool is not started: a launcher without it can
        # fork its agents (qtrl.distributed.launch).
        return 1
    if count != _threads_set:
        numba.set_num_threads(count)
        _threads_set = count
    return count


def parts_for(size: int, minimum: int) -> int:
    """Shares to split a kernel's work of ``size`` into: torch's thread count
    (at most Numba's pool) from ``minimum`` on, else 1; Numba's count is set to
    match. Below ``minimum`` the count is set to 1 as well: a parallel region
    of one share still wakes (and spins) the whole pool otherwise, which slows
    several agents sharing a few cores."""
    import torch
    return set_threads(torch.get_num_threads() if size >= minimum else 1)


def pool_started() -> bool:
    """Whether Numba's thread pool was started in this process (by
    :func:`set_threads` above one share, or by loading a parallel kernel); a
    forked child would get a broken copy of it."""
    if numba is None:
        return False
    try:
        numba.threading_layer()   # raises until the pool has been started
    except ValueError:
        return False
    return True


def _identity(value: Any) -> Any:
    return value


literally = numba.literally if numba is not None else _identity
"""``numba.literally``: compile the calling function once per constant value of
this argument (the identity without Numba)."""


def warmup(fn: F) -> F:
    """Register ``fn`` (no arguments): it compiles its module's kernels by
    calling them once on tiny inputs. :func:`warm` runs it. Returns ``fn``."""
    _warmups[f"{fn.__module__}.{fn.__qualname__}"] = fn
    return fn


def warm() -> list[str]:
    """Compile the kernels of every module imported so far that registered a
    warm-up, into Numba's on-disk cache; returns the warm-ups' names (none
    without Numba).

    Import the modules first (``qtrl.train`` imports every one a run uses).
    The first use of a kernel otherwise compiles it on the spot, up to a minute
    for the wide-circuit kernels; ``scripts/setup.sh`` calls this at install so
    that the first ``qtrl train`` does not stall. Only start-up time depends on
    it: a kernel compiled in a run rounds as the cached one does (:data:`FASTMATH`).
    """
    if numba is None:
        return []
    for fn in list(_warmups.values()):
        fn()
    return list(_warmups)

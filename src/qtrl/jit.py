"""Optional ahead-of-use compilation by Numba, for the few loops that torch and
NumPy dispatch make slow: the small-circuit kernels and the roll-out actor.

Numba is a dependency; without it (an unusual install) every caller keeps a
NumPy/torch path, and :func:`available` says which one runs.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["available", "ensure_cached", "literally", "njit", "parts_for", "prange",
           "set_threads", "warm"]

try:  # compiled on first use, cached next to the source (or in Numba's user cache)
    import numba
except ImportError:  # pragma: no cover - numba is a dependency
    numba = None

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(__name__)
_KERNEL_SOURCES = ("quantum/compiled.py", "quantum/wide.py", "mapping.py", "rl/policy.py",
                   "rl/reinforce.py", "rl/policy_gradient.py")
_ensured = False
_threads_set = 0
"""The count :func:`set_threads` last gave Numba (0: not yet)."""


def available() -> bool:
    """Whether Numba is importable (compiled paths can run)."""
    return numba is not None


def njit(fastmath: bool = False, parallel: bool = False) -> Callable[[F], F]:
    """``numba.njit`` with an on-disk cache, or the function unchanged without Numba
    (``prange`` is then ``range``)."""
    def wrap(fn: F) -> F:
        if numba is None:
            return fn
        return numba.njit(cache=True, fastmath=fastmath, nogil=True, parallel=parallel)(fn)
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
    if count != _threads_set:
        numba.set_num_threads(count)
        _threads_set = count
    return count


def parts_for(size: int, minimum: int) -> int:
    """Shares to split a kernel's work of ``size`` into: torch's thread count
    (at most Numba's pool) from ``minimum`` on, else 1; Numba's count is set to
    match. A parallel region of one share still wakes (and spins) the whole
    pool unless the count is 1: measured 1.7x slower for 4 CartPole agents on
    2 cores."""
    import torch
    return set_threads(torch.get_num_threads() if size >= minimum else 1)


def _identity(value: Any) -> Any:
    return value


literally = numba.literally if numba is not None else _identity
"""``numba.literally``: compile the calling function once per constant value of
this argument (the identity without Numba)."""


def warm() -> None:
    """Compile the kernels a training run uses, once, into Numba's on-disk cache.

    The first use of each otherwise compiles it on the spot: 30-50 s for the
    wide-circuit kernels (:mod:`qtrl.quantum.wide`: ten unrolled specialisations
    for the low bits and the threaded driver), a few seconds for the rest (the
    mapping model's pass, the small-circuit kernels, the roll-out actor). ``scripts/setup.sh`` calls
    this so that the first ``qtrl train`` does not stall. A no-op without Numba.
    """
    if numba is None:
        return
    import numpy as np
    import torch

    from .mapping import generate_weights, mlp
    from .quantum import compiled, wide
    from .rl.policy import ActionSampler, make_actor
    from .rl.policy_gradient import dense_reinforce_loss
    from .rl.reinforce import discounted_returns
    for kernels, n, dtype in ((compiled, 3, torch.float64), (wide, 13, torch.float32)):
        u3 = torch.zeros(1, 1, n, 3, dtype=dtype, requires_grad=True)
        cu3 = torch.zeros(1, 1, n, 3, dtype=dtype, requires_grad=True)
        kernels.ring_u3_probabilities(u3, cu3).sum().backward()
    probs = torch.full((1, 4), 0.25, requires_grad=True)  # four layers, as the presets
    (generate_weights(probs, torch.ones(4, 2), mlp([3, 2, 2, 2, 1], "relu"), 1.0, 1.0, 1.0)
     * torch.arange(4.0)).sum().backward()
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2))
    actor = make_actor(net, dict(net.named_parameters()))
    ActionSampler(np.random.default_rng(0)).act(actor, np.zeros((1, 2), dtype=np.float32))
    discounted_returns(np.ones(2), np.array([2]), 0.5)
    terms = dense_reinforce_loss(net, dict(net.named_parameters()),
                                 np.zeros((2, 2), dtype=np.float32), np.zeros(2, dtype=np.int64),
                                 np.arange(2.0), 1)
    terms.loss.backward()
    marker = _marker()
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("kernels compiled into Numba's cache\n")
    except OSError as err:  # no cache folder: runs then check the cache each time
        log.warning("could not write %s: %s", marker, err)


def _marker() -> Path:
    """A file standing for "the cache holds the kernels of these sources": named
    by Numba's version and the sources' size and time stamps (what Numba's own
    cache checks), under the user's cache folder."""
    here = Path(__file__).resolve().parent
    stamp = hashlib.sha1(numba.__version__.encode())
    for name in _KERNEL_SOURCES:
        st = (here / name).stat()
        stamp.update(f"{here / name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return Path.home() / ".cache" / "qtrl" / f"kernels-{stamp.hexdigest()[:16]}.ok"


def ensure_cached() -> None:
    """Make this process run the kernels as Numba's cache holds them.

    Measured here: under ``fastmath``, the machine code Numba compiles in a
    process and the code it writes to (and later loads from) its cache can round
    differently (the wide-circuit probabilities differed in the last bits), so
    a run that compiled its kernels would not match a resumed run that loaded
    them. When the cache is cold, the kernels are compiled by :func:`warm` in a
    child process first; this process then only loads them. Call before the
    first kernel runs; a no-op after the first call and without Numba.
    """
    global _ensured
    if _ensured or numba is None:
        return
    _ensured = True
    try:
        if _marker().exists():
            return
    except OSError:
        return
    log.warning("compiling the Numba kernels into the cache once (about a minute)")
    done = subprocess.run([sys.executable, "-c", "from qtrl import jit; jit.warm()"],
                          capture_output=True, text=True, check=False, timeout=1800)
    if done.returncode != 0:
        log.warning("compiling the kernels in a child process failed; this process compiles "
                    "its own: %s", done.stderr.strip().splitlines()[-1:] or "")

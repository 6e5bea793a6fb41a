"""Optional ahead-of-use compilation by Numba, for the few loops that torch and
NumPy dispatch make slow: the small-circuit kernels and the roll-out actor.

Numba is a dependency; without it (an unusual install) every caller keeps a
NumPy/torch path, and :func:`available` says which one runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["available", "literally", "njit", "prange", "set_threads", "warm"]

try:  # compiled on first use, cached next to the source (or in Numba's user cache)
    import numba
except ImportError:  # pragma: no cover - numba is a dependency
    numba = None

F = TypeVar("F", bound=Callable[..., Any])


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
    if numba is None:
        return 1
    count = max(1, min(int(wanted), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(count)
    return count


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
    for kernels, n, dtype in ((compiled, 3, torch.float64), (wide, 13, torch.float32)):
        u3 = torch.zeros(1, 1, n, 3, dtype=dtype, requires_grad=True)
        cu3 = torch.zeros(1, 1, n, 3, dtype=dtype, requires_grad=True)
        kernels.ring_u3_probabilities(u3, cu3).sum().backward()
    probs = torch.full((1, 4), 0.25, requires_grad=True)
    (generate_weights(probs, torch.ones(4, 2), mlp([3, 2, 1], "relu"), 1.0, 1.0, 1.0)
     * torch.arange(4.0)).sum().backward()
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2))
    actor = make_actor(net, dict(net.named_parameters()))
    ActionSampler(np.random.default_rng(0)).act(actor, np.zeros((1, 2), dtype=np.float32))

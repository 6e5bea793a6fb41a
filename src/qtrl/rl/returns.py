"""Discounted returns-to-go of consecutive episodes (a compiled recurrence)."""

from __future__ import annotations

import numpy as np

from .. import jit

__all__ = ["discounted_returns"]


def discounted_returns(rewards: np.ndarray, lengths: np.ndarray, discount: float) -> np.ndarray:
    """Returns-to-go of consecutive episodes.

    Args:
        rewards: ``(B,)`` rewards, episode after episode, each in time order.
        lengths: ``(E,)`` steps of each episode (summing to ``B``).
        discount: ``γ`` in ``[0, 1]``.
    Returns:
        ``(B,)`` float64 ``G_t = r_t + γ G_{t+1}``, restarting at every episode end.
    """
    out = np.empty(len(rewards), dtype=np.float64)
    _discounted(np.asarray(rewards, dtype=np.float64), np.asarray(lengths, dtype=np.int64),
                float(discount), out)
    return out


@jit.njit()
def _discounted(rewards, lengths, discount, out) -> None:  # pragma: no cover - compiled
    """The recurrence, episode by episode from the end (no fastmath: each
    product and sum rounded as Python's floats would be)."""
    end = rewards.size
    for e in range(lengths.size - 1, -1, -1):
        g = 0.0
        for t in range(end - 1, end - lengths[e] - 1, -1):
            g = rewards[t] + discount * g
            out[t] = g
        end -= lengths[e]


@jit.warmup
def _warm() -> None:
    """Compile the recurrence."""
    discounted_returns(np.ones(2), np.array([2]), 0.5)

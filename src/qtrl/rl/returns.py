"""Discounted returns-to-go of consecutive episodes (a compiled recurrence), and
generalised advantage estimates of fixed-length roll-outs."""

from __future__ import annotations

import numpy as np

from .. import jit

__all__ = ["RewardScaler", "discounted_returns", "gae"]


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


def gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray,
        terminated: np.ndarray, dones: np.ndarray, gamma: float, lam: float) -> np.ndarray:
    """Generalised advantage estimates (Schulman et al. 2016) of ``T`` steps of ``N`` copies.

    ``δ_t = r_t + γ (1 − term_t) V(s'_t) − V(s_t)`` and
    ``A_t = δ_t + γ λ (1 − done_t) A_{t+1}``, where ``s'_t`` is the observation
    that step ``t`` led to: for an episode cut by a time limit its last
    observation (whose value bootstraps the cut-off rest), for a terminated
    one nothing (its next value is 0).

    Args:
        rewards, values, next_values: ``(T, N)``: ``r_t``, ``V(s_t)``, ``V(s'_t)``.
        terminated: ``(T, N)`` bool: step ``t`` reached a terminal state.
        dones: ``(T, N)`` bool: step ``t`` ended its episode (terminated or truncated).
        gamma, lam: ``γ`` and ``λ`` in ``[0, 1]``.
    Returns:
        ``(T, N)`` float64 advantages ``A_t`` (``A_t + V(s_t)`` are the value targets).
    """
    rewards, values, next_values = (np.asarray(a, dtype=np.float64)
                                    for a in (rewards, values, next_values))
    keep_next = 1.0 - np.asarray(terminated, dtype=np.float64)
    carry = gamma * lam * (1.0 - np.asarray(dones, dtype=np.float64))
    deltas = rewards + gamma * keep_next * next_values - values
    advantages = np.empty_like(deltas)
    last = np.zeros(deltas.shape[1])
    for t in range(len(deltas) - 1, -1, -1):
        last = deltas[t] + carry[t] * last
        advantages[t] = last
    return advantages


class RewardScaler:
    """Rewards divided by the running standard deviation of the discounted return
    (Stable-Baselines3's ``VecNormalize(norm_reward=True)``): value targets of
    order one whatever the task's reward scale, so that the value loss does not
    swamp the policy's gradient under norm clipping.

    Args:
        copies: ``N``, the vector env's copies (each keeps its running return).
        gamma: ``γ`` of the running return.
        clip: scaled rewards are clipped to ``±clip``.
    """

    def __init__(self, copies: int, gamma: float, clip: float = 10.0) -> None:
        self.gamma, self.clip = gamma, clip
        self.running = np.zeros(copies)
        self.count, self.mean, self.var = 1e-4, 0.0, 1.0

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """Scaled ``(T, N)`` rewards of a roll-out (``dones``: the step ended its
        episode); the statistics are updated with its returns first."""
        returns = np.empty_like(rewards, dtype=np.float64)
        for t in range(len(rewards)):
            self.running = self.running * self.gamma + rewards[t]
            returns[t] = self.running
            self.running[dones[t]] = 0.0
        self._update(returns.reshape(-1))
        return np.clip(rewards / np.sqrt(self.var + 1e-8), -self.clip, self.clip)

    def _update(self, x: np.ndarray) -> None:
        """Merge the batch's mean and variance into the running ones (Chan et al.)."""
        n, mean, var = len(x), float(x.mean()), float(x.var())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.var = (self.var * self.count + var * n + delta ** 2 * self.count * n / total) / total
        self.count = total

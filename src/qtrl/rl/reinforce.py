"""REINFORCE (Williams 1992), as the Quantum-Train RL reference uses it.

For a batch of ``E`` complete episodes played with one set of weights:

    G_t  = Σ_{j≥t} discount^(j-t) r_j            (return-to-go, within the episode)
    Ĝ_t  = (G_t − mean(G)) / (std(G) + eps)      (normalised over the whole batch)
    loss = −(1/E) Σ_t [ log π(a_t|s_t) · Ĝ_t  +  c_ent · H(π(·|s_t)) ]

i.e. the reference's per-episode *sum* over steps, averaged over the episodes
of the batch (with ``E = 1`` exactly the reference's loss).

Truncated episodes. REINFORCE has no value function to bootstrap from, so an
episode cut by a time limit (CartPole's 500 steps, MiniGrid's ``max_steps``)
is treated exactly like a terminated one: its return is the sum of the rewards
that were observed, nothing is added for the steps that would have followed.
This is what the reference does; it biases the returns of the last steps of a
truncated episode downward, a bias every Monte-Carlo REINFORCE shares.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from .. import jit

__all__ = ["LossTerms", "discounted_returns", "normalise_returns", "reinforce_loss"]

EPS = 1e-8


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
    product and sum rounded as Python's floats would be, ~40 µs less a batch)."""
    end = rewards.size
    for e in range(lengths.size - 1, -1, -1):
        g = 0.0
        for t in range(end - 1, end - lengths[e] - 1, -1):
            g = rewards[t] + discount * g
            out[t] = g
        end -= lengths[e]


def normalise_returns(returns: Tensor, eps: float = EPS) -> Tensor:
    """``(G − mean) / (std + eps)`` over the batch (unbiased std, as the
    reference's ``torch.std``); a batch of one step is only centred."""
    centred = returns - returns.mean()
    if returns.numel() < 2:
        return centred
    return centred / (returns.std() + eps)


class LossTerms(NamedTuple):
    """The loss and its parts (the parts detached, for logging)."""

    loss: Tensor
    policy_loss: Tensor
    entropy: Tensor        # mean entropy per step


def reinforce_loss(logits: Tensor, actions: Tensor, returns: Tensor, episodes: int,
                   entropy_coef: float = 0.0) -> LossTerms:
    """REINFORCE loss of a batch (see the module docstring).

    Args:
        logits: ``(B, actions)`` policy logits of the collected observations.
        actions: ``(B,)`` actions taken.
        returns: ``(B,)`` *normalised* returns-to-go (constants).
        episodes: ``E``, complete episodes in the batch.
        entropy_coef: weight of the entropy bonus.
    """
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(1, actions.unsqueeze(1)).squeeze(1)
    policy_loss = -(logp * returns).sum() / episodes
    if not entropy_coef:  # logged only: no graph for it
        with torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(-1)
        return LossTerms(policy_loss, policy_loss.detach(), entropy.mean())
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    loss = policy_loss - entropy_coef * entropy.sum() / episodes
    return LossTerms(loss, policy_loss.detach(), entropy.detach().mean())

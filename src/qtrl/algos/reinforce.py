"""REINFORCE (Williams 1992), as the Quantum-Train RL reference trains its policies.

For a batch of ``E`` complete episodes played with one set of weights:

    G_t  = Σ_{j≥t} γ^(j−t) r_j                   (return-to-go, within the episode)
    Ĝ_t  = (G_t − mean(G)) / (std(G) + eps)      (normalised over the whole batch)
    loss = −(1/E) Σ_t [ log π(a_t|s_t) · Ĝ_t  +  c_ent · H(π(·|s_t)) ]

i.e. the reference's per-episode *sum* over steps, averaged over the episodes
of the batch (with ``E = 1`` exactly the reference's loss).

Truncated episodes. REINFORCE has no value function to bootstrap from, so an
episode cut by a time limit (CartPole's 500 steps, MiniGrid's ``max_steps``)
is treated exactly like a terminated one: its return is the sum of the rewards
observed. This is what the reference does; it biases the returns of the last
steps of a truncated episode downward, as in every Monte-Carlo REINFORCE.

Quantum-Train. The policy weights are generated once per update, with their
autograd graph: the roll-out plays them detached (a NumPy actor), and the loss
of the whole batch is one forward through the policy with those same weights,
whose backward reaches the circuit angles and the mapping model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..rl.policy import Actor, make_actor
from ..rl.returns import discounted_returns
from ..rl.rollout import Rollout
from .base import make_optimizer

__all__ = ["EPS", "Reinforce", "normalise_returns"]

EPS = 1e-8


def normalise_returns(returns: Tensor, eps: float = EPS) -> Tensor:
    """``(G − mean) / (std + eps)`` over the batch (unbiased std, as the
    reference's ``torch.std``); a batch of one step is only centred."""
    centred = returns - returns.mean()
    if returns.numel() < 2:
        return centred
    return centred / (returns.std() + eps)


class Reinforce:
    """REINFORCE on a Quantum-Train or classical policy (see the module docstring).

    Args:
        model: ``generate() -> {name: weight}``, ``model(obs, weights=w) -> logits``
            and ``target`` (the policy network the weights belong to).
        config: ``gamma`` (γ), ``lr``, ``mapping_lr``, ``entropy`` (c_ent),
            ``max_grad_norm``.
    """

    stat_names = ("loss", "policy_loss", "entropy")
    collects = "episodes"

    def __init__(self, model: nn.Module, config: Any) -> None:
        self.model = model
        self.optimizer = make_optimizer(model, config)
        self.gamma = float(config.gamma)
        self.entropy_coef = float(config.entropy)
        self.max_grad_norm = config.max_grad_norm
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.weights: dict[str, Tensor] | None = None

    def actor(self) -> Actor:
        """Generate the policy weights for this update (kept, graph and all, for
        :meth:`gradient`); the roll-out plays them detached."""
        self.weights = self.model.generate()
        return make_actor(self.model.target, self.weights)

    def gradient(self, batch: Rollout) -> dict[str, float]:
        """The loss of the batch played with :meth:`actor`'s weights, backward into
        every ``p.grad``. Returns the loss, its policy part and the mean entropy."""
        weights, self.weights = self.weights, None
        if weights is None:
            raise RuntimeError("gradient() needs the weights of a preceding actor() call")
        episodes = len(batch.episode_lengths)
        dtype = next(iter(weights.values())).dtype
        obs = torch.from_numpy(batch.obs).to(dtype)                             # (B, obs_dim)
        logits = self.model(obs, weights=weights)                               # (B, actions)
        log_probs = torch.log_softmax(logits, dim=-1)
        taken = log_probs.gather(1, torch.from_numpy(batch.actions)[:, None]).squeeze(1)
        returns = discounted_returns(batch.rewards, batch.episode_lengths, self.gamma)  # G_t
        returns = normalise_returns(torch.from_numpy(returns).to(logits.dtype))         # Ĝ_t
        policy_loss = -(taken * returns).sum() / episodes
        entropy = -(log_probs.exp() * log_probs).sum(-1)                       # (B,)
        loss = policy_loss - self.entropy_coef * entropy.sum() / episodes

        self.optimizer.zero_grad()
        loss.backward()
        return {"loss": loss.item(), "policy_loss": policy_loss.item(),
                "entropy": entropy.mean().item()}

    def step(self) -> float:
        """Clip the gradient's global norm to ``max_grad_norm`` and take the
        optimizer step; returns the norm before clipping."""
        limit = self.max_grad_norm if self.max_grad_norm is not None else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.params, limit, foreach=True)
        self.optimizer.step()
        return float(norm)

    def update(self, batch: Rollout, average: Callable[[], None] | None = None,
               rng: Any = None) -> dict[str, float]:
        """One REINFORCE update on ``batch``: loss, backward, (``average``), step.
        (``rng``: unused, REINFORCE draws nothing in its update.)"""
        stats = self.gradient(batch)
        if average is not None:
            average()
        stats["grad_norm"] = self.step()
        return stats

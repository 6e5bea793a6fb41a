"""The reference notebooks' recipes (presets) and the policy network they train."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

__all__ = ["PRESETS", "Preset", "build_policy"]


@dataclass(frozen=True)
class Preset:
    """Settings that reproduce one experiment of the Quantum-Train RL reference."""

    env_id: str                          # Gymnasium id
    hidden: tuple[int, ...]              # policy hidden sizes
    layers: int                          # ansatz layers L
    mapping_hidden: tuple[int, ...]      # mapping-model hidden sizes
    lr: float                            # Adam learning rate
    discount: float = 0.99               # return discount
    entropy: float = 0.0                 # entropy bonus coefficient
    episodes: int = 1000                 # training episodes
    max_steps: int | None = None         # per-episode step cap (None: the env's own)
    qt_gamma: float = 0.1                # γ of the probability post-processing
    qt_beta: float = 1.0                 # β of the probability post-processing
    qt_alpha: float = 1.0                # α of the probability post-processing
    n_actions: int | None = None         # use only the first n actions (None: all)
    solve_threshold: float | None = None  # moving-average return that counts as solved


PRESETS: dict[str, Preset] = {
    "cartpole": Preset("CartPole-v1", hidden=(128,), layers=5, mapping_hidden=(10, 10, 10),
                       lr=1e-3, episodes=1000, solve_threshold=475.0),
    "minigrid": Preset("MiniGrid-Empty-5x5-v0", hidden=(32,), layers=13,
                       mapping_hidden=(10, 64, 10), lr=1e-4, entropy=0.05, episodes=4000,
                       max_steps=100, n_actions=3, solve_threshold=0.8),
}


def build_policy(obs_dim: int, hidden: Sequence[int], n_actions: int) -> nn.Sequential:
    """MLP policy ``obs_dim → hidden… → n_actions`` with ReLU; outputs logits
    (the softmax of the reference is applied by the action distribution)."""
    sizes = [obs_dim, *hidden, n_actions]
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        mods.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)

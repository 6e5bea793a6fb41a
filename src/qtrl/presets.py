"""Named recipes (presets) and the policy network they train.

``cartpole``, ``minigrid``, ``lunarlander``, ``pendulum``: what solves each task
out of the box (PPO, Quantum-Train actor and critic); ``spread``: MAPPO on the
multi-agent simple_spread. ``cartpole-paper`` and
``minigrid-paper``: the Quantum-Train RL reference's REINFORCE recipes, exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

__all__ = ["ACTIVATION_LAYERS", "ALGO_DEFAULTS", "PRESETS", "Preset", "build_policy"]


@dataclass(frozen=True)
class Preset:
    """A named recipe: the task, the networks and generators, and how to train them."""

    env_id: str                          # Gymnasium id, or a PettingZoo module:env
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
    settings: Mapping[str, Any] = field(default_factory=dict)  # further TrainConfig fields


_PAPER_CARTPOLE = Preset("CartPole-v1", hidden=(128,), layers=5, mapping_hidden=(10, 10, 10),
                         lr=1e-3, episodes=1000, solve_threshold=475.0)
_PAPER_MINIGRID = Preset("MiniGrid-Empty-5x5-v0", hidden=(32,), layers=13,
                         mapping_hidden=(10, 64, 10), lr=1e-4, entropy=0.05, episodes=4000,
                         max_steps=100, n_actions=3, solve_threshold=0.8)

# What ``qtrl train --env ID [--algo A]`` starts from without a preset: the
# settings CleanRL and Stable-Baselines3 use for the same algorithm on ordinary
# Gymnasium tasks (tanh actor and critic, clipped gradients, annealed learning
# rate), with one hidden layer of 64: Quantum-Train generates each network from
# a 9- to 13-qubit circuit. REINFORCE's are the dataclass defaults.
ALGO_DEFAULTS: dict[str, dict[str, Any]] = {
    "ppo": {"algo": "ppo", "hidden": (64,), "activation": "tanh", "lr": 3e-4,
            "anneal_lr": True, "num_envs": 8, "num_steps": 128, "update_epochs": 4,
            "num_minibatches": 4, "max_grad_norm": 0.5, "qt_init_std": 0.1},
    "a2c": {"algo": "a2c", "hidden": (64,), "activation": "tanh", "lr": 7e-4,
            "anneal_lr": True, "num_envs": 8, "num_steps": 5, "max_grad_norm": 0.5,
            "qt_init_std": 0.1},
    "reinforce": {},
}

PRESETS: dict[str, Preset] = {
    "cartpole": Preset("CartPole-v1", hidden=(128,), layers=5, mapping_hidden=(10, 10, 10),
                       lr=3e-3, discount=0.98, entropy=0.0, episodes=1_000_000,
                       solve_threshold=475.0,
                       settings={"algo": "ppo", "activation": "tanh", "total_steps": 100_000,
                                 "anneal_lr": True, "qt_init_std": 0.1, "num_envs": 8,
                                 "num_steps": 128, "update_epochs": 4, "num_minibatches": 1,
                                 "gae_lambda": 0.95, "norm_obs": True}),
    "minigrid": Preset("MiniGrid-Empty-5x5-v0", hidden=(16,), layers=5,
                       mapping_hidden=(10, 10, 10), lr=1e-3, episodes=1_000_000,
                       max_steps=100, n_actions=3, solve_threshold=0.9,
                       settings={"algo": "ppo", "activation": "relu", "total_steps": 100_000,
                                 "anneal_lr": True, "qt_init_std": 0.02, "num_envs": 8,
                                 "num_steps": 128, "update_epochs": 4, "num_minibatches": 4}),
    # 3-100-1 networks: 501 weights each, near the most a 9-qubit generator's 512
    # amplitudes hold, so each network has more weights than its generator trains.
    "pendulum": Preset("Pendulum-v1", hidden=(100,), layers=3, mapping_hidden=(10, 10),
                       lr=1.5e-3, discount=0.9, episodes=1_000_000, solve_threshold=-250.0,
                       settings={"algo": "ppo", "activation": "tanh", "total_steps": 200_000,
                                 "anneal_lr": True, "qt_init_std": 0.1, "num_envs": 4,
                                 "num_steps": 1024, "update_epochs": 10,
                                 "num_minibatches": 32, "norm_reward": True,
                                 "norm_obs": True}),
    "lunarlander": Preset("LunarLander-v3", hidden=(64,), layers=5, mapping_hidden=(10, 10, 10),
                          lr=1.5e-3, discount=0.999, entropy=0.01, episodes=1_000_000,
                          solve_threshold=200.0,
                          settings={"algo": "ppo", "activation": "tanh",
                                    "total_steps": 1_000_000, "anneal_lr": True,
                                    "qt_init_std": 0.1, "num_envs": 16, "num_steps": 256,
                                    "update_epochs": 10, "num_minibatches": 16,
                                    "gae_lambda": 0.95, "norm_reward": True,
                                    "norm_obs": True}),
    # Multi-agent (PettingZoo/mpe2): MAPPO, each of the three players' policies
    # generated by its own QT generator (per-agent: one shared policy learns less
    # here, classical or QT), and a QT centralised critic. 64 worlds per update: the
    # generators learn from a less noisy policy gradient than with 16. Entropy 0.03:
    # with 0.01 the generated policies settle early on a worse way to cover the
    # landmarks. Its runs are docs/RESULTS_multiagent.md's.
    "spread": Preset("mpe2:simple_spread_v3", hidden=(64,), layers=5,
                     mapping_hidden=(10, 10, 10), lr=3e-3, discount=0.99, entropy=0.03,
                     episodes=1_000_000_000,
                     settings={"algo": "ppo", "activation": "relu", "policy": "per-agent",
                               "env_kwarg": ("N=3", "max_cycles=25"),
                               "total_steps": 1_500_000, "anneal_lr": True,
                               "qt_init_std": 0.1, "num_envs": 64, "num_steps": 25,
                               "update_epochs": 10, "num_minibatches": 4,
                               "max_grad_norm": 10.0, "norm_value": True}),
    "cartpole-paper": _PAPER_CARTPOLE,
    "minigrid-paper": _PAPER_MINIGRID,
}


ACTIVATION_LAYERS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


def build_policy(obs_dim: int, hidden: Sequence[int], n_actions: int,
                 activation: str = "relu") -> nn.Sequential:
    """MLP ``obs_dim → hidden… → n_actions`` with ``activation`` (relu, tanh)
    between layers. As a policy it outputs logits (the action distribution
    applies the softmax) or a continuous action's mean; as a critic
    (``n_actions=1``) the state value."""
    sizes = [obs_dim, *hidden, n_actions]
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        mods.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            mods.append(ACTIVATION_LAYERS[activation]())
    return nn.Sequential(*mods)

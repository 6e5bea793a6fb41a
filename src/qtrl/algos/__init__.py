"""Training algorithms on one seam (:class:`~qtrl.algos.base.Algorithm`): each
is a readable torch update over a batch the loop collected.

Adding one: a class with ``actor``, ``update``, ``collects`` and
``stat_names`` in its own module, and its name in :data:`ALGORITHMS` and in
:data:`qtrl.config.ALGOS` (the ``--algo`` choices; a test keeps them equal).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import Algorithm, anneal, make_optimizer
from .ppo import A2C, PPO
from .reinforce import Reinforce

__all__ = ["A2C", "ALGORITHMS", "PPO", "Algorithm", "Reinforce", "anneal", "make_algorithm",
           "make_optimizer"]

ALGORITHMS: dict[str, type] = {"reinforce": Reinforce, "a2c": A2C, "ppo": PPO}


def make_algorithm(config: Any, model: nn.Module) -> Algorithm:
    """The algorithm ``config.algo`` training ``model``."""
    return ALGORITHMS[config.algo](model, config)

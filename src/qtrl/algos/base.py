"""The seam every training algorithm fits, and the optimizer they share.

An algorithm owns the trained model (:class:`~qtrl.generator.QuantumTrain` or
:class:`~qtrl.rl.policy.ClassicalPolicy`) and its optimizer (:class:`~qtrl.adam.Adam`).
A loop drives it the same way whatever it is; per update:

1. ``actor = algo.actor()`` — the policy weights for the roll-out (generated
   once per update, never per step), as a NumPy actor;
2. the loop collects a batch with that actor: complete episodes
   (:func:`qtrl.rl.rollout.collect_episodes`) or a fixed number of steps
   (:class:`qtrl.rl.steps.StepCollector`), as ``algo.collects`` says;
3. ``algo.update(batch, average, rng)`` — plain torch from the batch to the
   optimizer step(s); ``average`` (sync Dist-QTRL) all-reduces the gradients
   between each backward and its step.

REINFORCE also splits its update for the async loop: a worker calls
``gradient(batch)`` (leaves ``p.grad``) and sends it; the learner loads it
into ``p.grad`` and calls ``step()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from torch import nn

from ..adam import Adam
from ..generator import QuantumTrain
from ..rl.policy import Actor

__all__ = ["Algorithm", "anneal", "make_optimizer"]


class Algorithm(Protocol):
    """What the loops call (see the module docstring)."""

    model: nn.Module
    optimizer: Adam
    stat_names: tuple[str, ...]
    """The keys of the dict :meth:`update` returns (logged as ``train/<key>``)."""
    collects: str
    """What the loop collects for an update: ``"episodes"`` (complete episodes,
    :func:`~qtrl.rl.rollout.collect_episodes`) or ``"steps"`` (a fixed-length
    roll-out carrying on across updates, :class:`~qtrl.rl.steps.StepCollector`)."""

    def actor(self) -> Actor: ...

    def update(self, batch: Any, average: Callable[[], None] | None = None,
               rng: np.random.Generator | None = None) -> dict[str, float]: ...


def make_optimizer(model: nn.Module, config: Any, eps: float = 1e-8) -> Adam:
    """Adam (:class:`~qtrl.adam.Adam`) over all trainable parameters at
    ``config.lr``; with ``config.mapping_lr`` the Quantum-Train mapping model
    gets its own rate.

    ``eps``: Adam's denominator term. Each group keeps its starting rate as
    ``base_lr`` (:func:`anneal` scales it).
    """
    mapping_lr = getattr(config, "mapping_lr", None)
    params = [p for p in model.parameters() if p.requires_grad]
    generators = [m for m in model.modules() if isinstance(m, QuantumTrain)]
    if generators and mapping_lr is not None:
        ids = {id(p) for qt in generators for p in qt.mapping.parameters()}
        groups = [{"params": [p for p in params if id(p) not in ids],
                   "lr": config.lr, "base_lr": config.lr},
                  {"params": [p for p in params if id(p) in ids],
                   "lr": mapping_lr, "base_lr": mapping_lr}]
    else:
        groups = [{"params": params, "lr": config.lr, "base_lr": config.lr}]
    return Adam(groups, eps=eps)


def anneal(optimizer: Adam, used: float) -> None:
    """Learning rates decayed linearly to 0 over the run: ``base_lr · max(0, 1 − used)``,
    ``used`` the fraction of its budget spent (:meth:`qtrl.config.TrainConfig.budget_used`)."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * max(0.0, 1.0 - used)

"""The seam every training algorithm fits, and the optimizer they share.

An algorithm owns the trained model (:class:`~qtrl.generator.QuantumTrain` or
:class:`~qtrl.rl.policy.ClassicalPolicy`) and its ``torch.optim`` optimizer.
A loop drives it the same way whatever it is; per update:

1. ``actor = algo.actor()`` — the policy weights for the roll-out (generated
   once per update, never per step), as a NumPy actor;
2. the loop collects a batch with that actor (:func:`qtrl.rl.rollout.collect_episodes`);
3. ``algo.update(batch, average)`` — plain torch from the batch to the
   optimizer step; ``average`` (sync Dist-QTRL) all-reduces the gradients
   between backward and step.

An async worker calls ``gradient(batch)`` (leaves ``p.grad``) and sends it; the
learner loads it into ``p.grad`` and calls ``step()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from ..generator import QuantumTrain
from ..rl.policy import Actor
from ..rl.rollout import Rollout

__all__ = ["Algorithm", "anneal", "make_optimizer"]


class Algorithm(Protocol):
    """What the loops call (see the module docstring)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    stat_names: tuple[str, ...]
    """The keys of the dict :meth:`gradient` returns (logged as ``train/<key>``)."""

    def actor(self) -> Actor: ...

    def gradient(self, batch: Rollout) -> dict[str, float]: ...

    def step(self) -> float: ...

    def update(self, batch: Rollout,
               average: Callable[[], None] | None = None) -> dict[str, float]: ...


def make_optimizer(model: nn.Module, config: Any) -> torch.optim.Adam:
    """``torch.optim.Adam`` over all trainable parameters at ``config.lr``; with
    ``config.mapping_lr`` the Quantum-Train mapping model gets its own rate.

    Each group keeps its starting rate as ``base_lr`` (:func:`anneal` scales it).
    Fused (one kernel over all tensors) where every parameter is a real float:
    a step over a few hundred parameters is otherwise mostly per-tensor overhead.
    """
    mapping_lr = getattr(config, "mapping_lr", None)
    params = [p for p in model.parameters() if p.requires_grad]
    if isinstance(model, QuantumTrain) and mapping_lr is not None:
        ids = {id(p) for p in model.mapping.parameters()}
        groups = [{"params": [p for p in params if id(p) not in ids],
                   "lr": config.lr, "base_lr": config.lr},
                  {"params": [p for p in params if id(p) in ids],
                   "lr": mapping_lr, "base_lr": mapping_lr}]
    else:
        groups = [{"params": params, "lr": config.lr, "base_lr": config.lr}]
    fused = all(p.dtype.is_floating_point and not p.is_complex() for p in params)
    return torch.optim.Adam(groups, fused=fused or None)


def anneal(optimizer: torch.optim.Optimizer, done: int, total: int) -> None:
    """Learning rates decayed linearly to 0: ``base_lr · max(0, 1 − done/total)``."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * max(0.0, 1.0 - done / total)

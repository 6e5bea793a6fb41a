"""Stop a run the moment training produces a number that is not finite.

A learning rate too large (``--lr 1e30``) or a post-processing constant out of
range (``--qt-gamma inf``) turns the loss, the gradient or the parameters into
``nan`` or ``inf``; training on from there only writes a useless checkpoint
over the last good one. The loops call :func:`check_finite` after every
update, before anything of it is recorded or saved, with what they already
hold: the loss (a float), the gradient's global norm (computed by the clipping
anyway) and the parameters (one fused pass). Nothing the update computes is
changed. Before a checkpoint is written, its tensors (the generated policy
weights and Adam's moments included) are checked too: parameters can be
finite while the weights they generate overflow.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import TrainingDiverged

__all__ = ["check_checkpoint_finite", "check_finite", "first_non_finite", "non_finite_entries"]


def first_non_finite(losses: Iterable[float], grad_norm: float | None,
                     params: Sequence[Tensor]) -> str | None:
    """What is not finite, in the order the update computes it (loss, gradient
    norm, parameters), as a phrase (``"loss is nan"``); None when all are finite.

    ``losses``: the update's loss on every agent; ``grad_norm``: the norm before
    clipping (None: not known here); ``params``: the parameters after the step.
    """
    for loss in losses:
        if not math.isfinite(loss):
            return f"loss is {loss} (non-finite)"
    if grad_norm is not None and not math.isfinite(grad_norm):
        return f"gradient norm is {grad_norm} (non-finite)"
    if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
        bad = sum(int((~torch.isfinite(p)).sum()) for p in params)
        return f"{bad} parameter value(s) are not finite after the optimizer step"
    return None


def check_finite(update: int, losses: Iterable[float], grad_norm: float | None,
                 params: Sequence[Tensor], checkpoint: Path, saved_at: int | None) -> None:
    """Raise :class:`~qtrl.errors.TrainingDiverged` when :func:`first_non_finite`
    finds something, naming ``update`` (1-based), the quantity and the last good
    checkpoint (``checkpoint`` written after update ``saved_at``; None: none yet)."""
    what = first_non_finite(losses, grad_norm, params)
    if what is not None:
        raise TrainingDiverged(_message(update, what, checkpoint, saved_at))


def non_finite_entries(state: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of the floating-point tensors in ``state`` (nested dicts, lists)
    holding a non-finite value, in order."""
    found: list[str] = []
    for key, value in state.items():
        name = f"{prefix}{key}"
        if isinstance(value, Tensor):
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                found.append(name)
        elif isinstance(value, Mapping):
            found += non_finite_entries(value, name + ".")
        elif isinstance(value, list | tuple):
            found += non_finite_entries(dict(enumerate(value)), name + ".")
    return found


def check_checkpoint_finite(update: int, state: Mapping[str, Any], checkpoint: Path,
                            saved_at: int | None) -> None:
    """Raise :class:`~qtrl.errors.TrainingDiverged` instead of writing checkpoint
    ``state`` (of update ``update``) when a tensor of it is not finite."""
    bad = non_finite_entries(state)
    if bad:
        more = f" (nor are {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise TrainingDiverged(_message(update, f"checkpoint tensor {bad[0]} is not "
                                                f"finite{more}", checkpoint, saved_at))


def _message(update: int, what: str, checkpoint: Path, saved_at: int | None) -> str:
    last = (f"last good checkpoint: {checkpoint} (update {saved_at})" if saved_at is not None
            else "no checkpoint was written before it")
    return f"update {update}: {what}; training stopped, {last}"

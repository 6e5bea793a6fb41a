"""Checks of a loaded checkpoint before any of it is used: its keys, types and
counters, and that its tensors fit the model and optimizer they are loaded
into (key for key, shape and dtype). A file that does not fit is refused with
one line (:class:`~qtrl.errors.UserError`), never half-loaded."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..adam import Adam
from ..errors import UserError

__all__ = ["check_checkpoint", "check_optimizer_fits", "check_state_fits"]

_TENSOR_DICTS = ("model", "policy")


def check_checkpoint(state: Any, path: Path) -> None:
    """Raise ``UserError`` unless ``state`` holds every entry of a checkpoint with
    the right types and consistent counters (``update``, ``env_steps``, episodes)."""
    if not isinstance(state, dict):
        raise UserError(f"{path} does not hold a checkpoint (a {type(state).__name__})")
    missing = [k for k in ("config", "update", "env_steps", "wall_time", "model", "optimizer",
                           "policy", "episode_returns", "episode_lengths", "rng")
               if k not in state]
    if missing:
        raise UserError(f"{path} is incomplete: no {', '.join(missing)}; it cannot be used")
    if not isinstance(state["config"], str):
        raise UserError(f"{path}: its config is not JSON text")
    try:
        json.loads(state["config"])
    except ValueError:
        raise UserError(f"{path}: its config is not valid JSON") from None
    for key in _TENSOR_DICTS:
        _tensor_dict(state[key], key, path)
    optimizer = state["optimizer"]
    if (not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict)
            or not isinstance(optimizer.get("param_groups"), list)):
        raise UserError(f"{path}: its optimizer state is not an optimizer's state_dict")
    update = _count(state["update"], "update", path)
    env_steps = _count(state["env_steps"], "env_steps", path)
    if "steps_collected" in state:
        _count(state["steps_collected"], "steps_collected", path)
    wall = state["wall_time"]
    if (not isinstance(wall, (int, float)) or isinstance(wall, bool) or not math.isfinite(wall)
            or wall < 0):
        raise UserError(f"{path}: wall_time {wall!r} is not a number of seconds >= 0")
    returns, lengths = state["episode_returns"], state["episode_lengths"]
    _vector(returns, torch.float64, "episode_returns", path)
    _vector(lengths, torch.int64, "episode_lengths", path)
    if len(returns) != len(lengths):
        raise UserError(f"{path}: {len(returns)} episode returns but {len(lengths)} lengths")
    if len(lengths) and int(lengths.min()) < 0:
        raise UserError(f"{path}: a negative episode length")
    if int(lengths.sum()) != env_steps:
        raise UserError(f"{path}: env_steps {env_steps} is not the sum of its episode "
                        f"lengths ({int(lengths.sum())}); the counters are inconsistent")
    if update == 0 and len(lengths):
        raise UserError(f"{path}: {len(lengths)} episodes recorded at update 0; the "
                        f"counters are inconsistent")
    if not isinstance(state["rng"], dict) or not {"torch", "numpy", "python"} <= set(state["rng"]):
        raise UserError(f"{path}: its random-generator state is incomplete")


def check_state_fits(module: torch.nn.Module, saved: Mapping[str, Any], what: str,
                     path: Path | str) -> None:
    """Raise ``UserError`` unless ``saved`` has exactly ``module``'s state_dict keys,
    each tensor of the same shape and dtype (``load_state_dict`` would cast a
    dtype silently)."""
    expected = module.state_dict()
    _tensor_dict(saved, what, path)
    missing, extra = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    if missing or extra:
        raise UserError(f"{path}: the checkpoint's {what} does not fit the configured network "
                        f"(missing {missing[:3]}, unexpected {extra[:3]})")
    for key, want in expected.items():
        got = saved[key]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise UserError(f"{path}: the checkpoint's {what} {key} is {got.dtype} "
                            f"{tuple(got.shape)}, the configured network needs {want.dtype} "
                            f"{tuple(want.shape)}")


def check_optimizer_fits(optimizer: Adam, saved: Mapping[str, Any],
                         path: Path | str) -> None:
    """Raise ``UserError`` unless ``saved`` (an optimizer state_dict) has
    ``optimizer``'s parameter groups, and every per-parameter tensor the shape and
    dtype of its parameter."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    groups = saved["param_groups"]
    sizes = [len(g.get("params", ())) if isinstance(g, dict) else -1 for g in groups]
    if sizes != [len(g["params"]) for g in optimizer.param_groups]:
        raise UserError(f"{path}: the checkpoint's optimizer has parameter groups of sizes "
                        f"{sizes}, the configured model "
                        f"{[len(g['params']) for g in optimizer.param_groups]}")
    for index, entry in saved["state"].items():
        if not isinstance(index, int) or not 0 <= index < len(params) \
                or not isinstance(entry, dict):
            raise UserError(f"{path}: the checkpoint's optimizer state has an entry "
                            f"{index!r} that belongs to no parameter")
        param = params[index]
        for name, value in entry.items():
            if not isinstance(value, torch.Tensor):
                continue
            if value.dim() and (value.shape != param.shape or value.dtype != param.dtype):
                raise UserError(f"{path}: the checkpoint's optimizer {name} of parameter "
                                f"{index} is {value.dtype} {tuple(value.shape)}, the "
                                f"parameter is {param.dtype} {tuple(param.shape)}")


def _tensor_dict(value: Any, what: str, path: Path | str) -> None:
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()):
        raise UserError(f"{path}: the checkpoint's {what} is not a state_dict of tensors")


def _count(value: Any, name: str, path: Path) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UserError(f"{path}: {name} {value!r} is not a count >= 0; the checkpoint's "
                        f"counters are corrupt")
    return value


def _vector(value: Any, dtype: torch.dtype, name: str, path: Path) -> None:
    if not isinstance(value, torch.Tensor) or value.dim() != 1 or value.dtype != dtype:
        shown = (f"{value.dtype} {tuple(value.shape)}" if isinstance(value, torch.Tensor)
                 else type(value).__name__)
        raise UserError(f"{path}: {name} is {shown}, expected a 1-D {dtype} tensor")

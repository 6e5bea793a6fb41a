"""The run directory and its checkpoints.

A run directory holds ``config.json``, ``metrics.csv`` (one row per episode),
``progress.csv`` (one row per update), TensorBoard events, ``checkpoint.pt``
(written atomically, loadable with ``weights_only=True``),
``learning_curve.png`` and ``summary.json``. Agent 0 writes it; the others
write nothing.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import random
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ..config import TrainConfig
from ..errors import UserError
from .logger import truncate_csv

__all__ = ["CHECKPOINT", "CHECKPOINT_FORMAT", "Resumed", "atomic_write_bytes",
           "atomic_write_text", "checkpoint_state", "create_run_dir", "load_checkpoint",
           "restore_run", "save_checkpoint", "write_config"]

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 2   # 2: named seed streams (a format-1 run would resume on others)
_BUDGETS = {"episodes": 0, "total_steps": 0}   # a continued run may change its budget


def create_run_dir(out: Path | str | None, config: TrainConfig) -> Path:
    """Create the run directory; never reuse one that holds anything.

    ``out=None`` gives ``runs/<name>-<date>-<time>``.
    """
    if out is None:
        out = Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise UserError(f"--out {out}: exists and is not a directory")
        if (out / "config.json").exists() or (out / CHECKPOINT).exists():
            raise UserError(f"--out {out}: already holds a run; continue it with "
                            f"--resume {out}, or choose a new --out")
        if any(out.iterdir()):
            raise UserError(f"--out {out}: directory is not empty; choose a new --out")
    else:
        parent = out.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"--out {out}: cannot create it, {parent} is not a writable "
                            f"directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"--out {out}: not writable ({err.strerror or err})") from None
    return out


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file, then ``os.replace``: a crash leaves the old file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_config(run_dir: Path, config: TrainConfig) -> None:
    """``config.json`` of the run."""
    atomic_write_text(run_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` written atomically: never a truncated checkpoint."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(run_dir: Path) -> tuple[TrainConfig, dict[str, Any]]:
    """The saved configuration and checkpoint of ``run_dir`` (``weights_only`` load).

    Raises ``UserError`` when the directory, its config or its checkpoint is
    missing, unreadable, truncated or inconsistent.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist")
    if not (run_dir / "config.json").exists():
        raise UserError(f"{run_dir} holds no run (no config.json)")
    config = TrainConfig.load(run_dir / "config.json")
    path = run_dir / CHECKPOINT
    if not path.exists():
        raise UserError(f"{run_dir} has no {CHECKPOINT} (the run saved no checkpoint yet)")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except (RuntimeError, EOFError, pickle.UnpicklingError, OSError, ValueError) as err:
        raise UserError(f"{path} is truncated or corrupt ({type(err).__name__}); "
                        f"it cannot be resumed") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a qtrl checkpoint of format {CHECKPOINT_FORMAT}")
    saved = TrainConfig.from_dict(json.loads(state["config"]))
    if saved.to_dict() | _BUDGETS != config.to_dict() | _BUDGETS:
        raise UserError(f"{path} was written by a different configuration than "
                        f"{run_dir / 'config.json'}")
    return config, state


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": json.dumps([np_state[0], np_state[1].tolist(), *np_state[2:]]),
            "python": json.dumps(random.getstate(), default=list)}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = json.loads(state["numpy"])
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))


class Resumed(NamedTuple):
    """Where a checkpoint left a run: next update, counters, episode history."""

    update: int
    env_steps: int
    wall_time: float
    returns: list[float]
    lengths: list[int]
    state: dict[str, Any]


def restore_run(run_dir: Path, config: TrainConfig, model: torch.nn.Module,
                optimizer: torch.optim.Optimizer, main: bool) -> Resumed:
    """Load the checkpoint of ``run_dir`` into ``model``, ``optimizer`` and the global
    RNGs; agent 0 (``main``) drops the CSV rows written after it."""
    saved_config, state = load_checkpoint(run_dir)
    if saved_config.to_dict() | _BUDGETS != config.to_dict() | _BUDGETS:
        raise UserError(f"--resume {run_dir}: the run was trained with a different "
                        f"configuration")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    _set_rng_state(state["rng"])
    resumed = Resumed(int(state["update"]), int(state["env_steps"]), float(state["wall_time"]),
                      state["episode_returns"].tolist(), state["episode_lengths"].tolist(), state)
    if main:
        truncate_csv(run_dir / "metrics.csv", len(resumed.returns))
        truncate_csv(run_dir / "progress.csv", resumed.update)
    log.info("resuming %s at update %d (episode %d)", run_dir, resumed.update,
             len(resumed.returns))
    return resumed


def checkpoint_state(config: TrainConfig, model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer, next_update: int, env_steps: int,
                     wall_time: float, returns: list[float], lengths: list[int],
                     **extra: Any) -> dict[str, Any]:
    """What :func:`save_checkpoint` writes (``extra``: mode-specific counters).
    ``model`` is a Quantum-Train or classical model (``materialize()`` gives the
    plain policy saved beside it)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "config": json.dumps(config.to_dict()),
        "update": next_update,
        "env_steps": env_steps,
        "wall_time": wall_time,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "policy": model.materialize().state_dict(),
        "episode_returns": torch.tensor(returns, dtype=torch.float64),
        "episode_lengths": torch.tensor(lengths, dtype=torch.int64),
        "rng": _rng_state(),
        **extra,
    }

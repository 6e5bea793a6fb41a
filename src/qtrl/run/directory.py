"""The run directory and its checkpoints.

A run directory holds ``config.json``, ``metrics.csv`` (one row per episode),
``progress.csv`` (one row per update), TensorBoard events, ``checkpoint.pt``
(written atomically, loadable with ``weights_only=True``),
``learning_curve.png`` and ``summary.json``. Agent 0 writes it; the others
write nothing. One process at a time writes a run directory (:mod:`.lock`);
every file but the appended CSV logs is replaced atomically (:mod:`.atomic`),
and a resumed run cuts the CSVs back to its checkpoint.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ..adam import Adam
from ..config import RESUMABLE_FIELDS, TrainConfig
from ..errors import UserError
from .atomic import atomic_write_bytes, atomic_write_text
from .checks import check_checkpoint, check_optimizer_fits, check_state_fits
from .lock import LOCK_FILE, RunDirBusy, RunDirLock, lock_holder
from .logger import truncate_csv

__all__ = ["CHECKPOINT", "CHECKPOINT_FORMAT", "Resumed", "atomic_write_bytes",
           "atomic_write_text", "checkpoint_state", "create_run_dir", "load_checkpoint",
           "new_run", "restore_run", "save_checkpoint", "write_config", "write_failure"]

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
PLAYERS_CSV = "players.csv"   # a multi-agent run's per-player returns, a row per episode
CHECKPOINT_FORMAT = 2   # 2: named seed streams (a format-1 run would resume on others)
# a continued run may change its budget and its run-time-only settings
_MAY_CHANGE = dict.fromkeys(RESUMABLE_FIELDS, 0)
_PROBE = ".write-test-"   # + pid: the file that shows a new run directory is writable


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
        holder = lock_holder(out)
        if holder:
            raise RunDirBusy(f"--out {out}: in use by another qtrl process ({holder})")
        _check_holds_no_run(out)
        # a dead writer's lock is no run, nor is a racing writer's write probe
        if any(p.name != LOCK_FILE and not p.name.startswith(_PROBE) for p in out.iterdir()):
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
        probe = out / f"{_PROBE}{os.getpid()}"   # a second writer racing us has its own
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"--out {out}: not writable ({err.strerror or err})") from None
    return out


def _check_holds_no_run(out: Path) -> None:
    if (out / "config.json").exists() or (out / CHECKPOINT).exists():
        raise UserError(f"--out {out}: already holds a run; continue it with "
                        f"--resume {out}, or choose a new --out")


@contextlib.contextmanager
def new_run(out: Path | str | None, config: TrainConfig) -> Iterator[Path]:
    """``with new_run(out, config) as run_dir:`` — :func:`create_run_dir`, then be its
    only writer (:class:`~qtrl.run.lock.RunDirLock`) for the block. A block that
    fails before the run wrote its ``config.json`` leaves no directory it made."""
    made = out is None or not Path(out).exists()
    run_dir = create_run_dir(out, config)
    lock = RunDirLock(run_dir)
    try:
        lock.acquire()
    except UserError:
        _remove_if_empty(run_dir, made)   # a second writer lost the race
        raise
    try:
        _check_holds_no_run(run_dir)      # the first writer got here before us
        yield run_dir
    except BaseException:
        lock.release()
        if not (run_dir / "config.json").exists():
            _remove_if_empty(run_dir, made)
        raise
    else:
        lock.release()


def _remove_if_empty(run_dir: Path, made: bool) -> None:
    if made:
        with contextlib.suppress(OSError):   # not empty: someone else's now
            run_dir.rmdir()


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
    except Exception as err:  # noqa: BLE001 - whatever the unpickler meets, the file is bad
        raise UserError(f"{path} is truncated or corrupt ({type(err).__name__}); "
                        f"it cannot be used") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a qtrl checkpoint of format {CHECKPOINT_FORMAT}")
    check_checkpoint(state, path)
    try:
        saved = TrainConfig.from_dict(json.loads(state["config"]))
    except (UserError, TypeError, AttributeError) as err:
        raise UserError(f"{path}: its configuration is not valid ({err})") from None
    if saved.to_dict() | _MAY_CHANGE != config.to_dict() | _MAY_CHANGE:
        raise UserError(f"{path} was written by a different configuration than "
                        f"{run_dir / 'config.json'}")
    return config, state


def write_failure(run_dir: Path, err: OSError) -> str:
    """One line on a run file that could not be written (``err``): which file, why,
    and the last good checkpoint (atomic writes leave it whole) to resume from."""
    path = run_dir / CHECKPOINT
    what = f"cannot write {err.filename or run_dir}: {err.strerror or err}; the run stopped"
    if not path.exists():
        return f"{what} before its first checkpoint (nothing to resume)"
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
        at = f" (update {int(state['update'])}, {len(state['episode_returns'])} episodes)"
    except Exception:  # noqa: BLE001 - the line names the file even if it cannot be read now
        at = ""
    return (f"{what}; the last good checkpoint is {path}{at}: make room, then continue "
            f"with --resume {run_dir}")


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": json.dumps([np_state[0], np_state[1].tolist(), *np_state[2:]]),
            "python": json.dumps(random.getstate(), default=list)}


def _rng_setter(state: dict[str, Any], path: Path) -> Callable[[], None]:
    """What restores the saved generator states, decoded and checked first, so
    that a corrupt one is refused before any generator changes."""
    try:
        saved = state["torch"]
        if (not isinstance(saved, torch.Tensor) or saved.dtype != torch.uint8
                or saved.shape != torch.get_rng_state().shape):
            raise ValueError("torch state")
        kind, keys, pos, has_gauss, cached = json.loads(state["numpy"])
        numpy_state = (kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached)
        version, internal, gauss = json.loads(state["python"])
        python_state = (version, tuple(internal), gauss)
        np.random.RandomState().set_state(numpy_state)   # checks it on a throwaway generator
        random.Random().setstate(python_state)
    except (TypeError, ValueError, OverflowError) as err:
        raise UserError(f"{path}: its random-generator state is corrupt ({err})") from None

    def apply() -> None:
        torch.set_rng_state(saved)
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return apply


class Resumed(NamedTuple):
    """Where a checkpoint left a run: next update, counters, episode history."""

    update: int
    env_steps: int
    wall_time: float
    returns: list[float]
    lengths: list[int]
    state: dict[str, Any]


def restore_run(run_dir: Path, config: TrainConfig, model: torch.nn.Module,
                optimizer: Adam, main: bool) -> Resumed:
    """Load the checkpoint of ``run_dir`` into ``model``, ``optimizer`` and the global
    RNGs; agent 0 (``main``) drops the CSV rows written after it."""
    saved_config, state = load_checkpoint(run_dir)
    if saved_config.to_dict() | _MAY_CHANGE != config.to_dict() | _MAY_CHANGE:
        raise UserError(f"--resume {run_dir}: the run was trained with a different "
                        f"configuration")
    path = run_dir / CHECKPOINT
    check_state_fits(model, state["model"], "model", path)
    check_optimizer_fits(optimizer, state["optimizer"], path)
    set_rng = _rng_setter(state["rng"], path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng()
    resumed = Resumed(int(state["update"]), int(state["env_steps"]), float(state["wall_time"]),
                      state["episode_returns"].tolist(), state["episode_lengths"].tolist(), state)
    if main:
        truncate_csv(run_dir / "metrics.csv", len(resumed.returns))
        truncate_csv(run_dir / PLAYERS_CSV, len(resumed.returns))
        truncate_csv(run_dir / "progress.csv", resumed.update)
    log.info("resuming %s at update %d (episode %d)", run_dir, resumed.update,
             len(resumed.returns))
    return resumed


def checkpoint_state(config: TrainConfig, model: torch.nn.Module,
                     optimizer: Adam, next_update: int, env_steps: int,
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

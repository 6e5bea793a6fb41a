"""What a run records: every episode, one row of scalars per update, and at the
end ``summary.json`` and the learning curve. Both loops (sync, async) record
through one :class:`Recorder`, so their bookkeeping cannot drift apart.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..config import TrainConfig
from .atomic import atomic_write_bytes, atomic_write_text
from .callbacks import Callback
from .directory import PLAYERS_CSV, Resumed
from .logger import Logger
from .timing import UpdateSplit

__all__ = ["PLAYERS_CSV", "WINDOW", "Recorder", "Timings", "first_solved", "moving_average",
           "plot_learning_curve"]

log = logging.getLogger(__name__)

WINDOW = 100  # episodes in the moving average


def moving_average(values: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Trailing mean over the last ``min(window, i+1)`` values at each ``i``."""
    values = np.asarray(values, dtype=np.float64)
    csum = np.concatenate(([0.0], np.cumsum(values)))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def first_solved(returns: np.ndarray, threshold: float | None, window: int = WINDOW) -> int | None:
    """First episode (1-based) whose full ``window``-episode average reaches
    ``threshold``, or ``None``."""
    if threshold is None or len(returns) < window:
        return None
    hits = np.flatnonzero(moving_average(returns, window)[window - 1:] >= threshold)
    return int(hits[0]) + window if len(hits) else None


class Timings(NamedTuple):
    """Seconds one update spent generating weights, rolling out and learning
    (in a sync group, learning excludes the all-reduce: :mod:`qtrl.run.timing`)."""

    generate: float
    rollout: float
    learn: float

    @property
    def total(self) -> float:
        return self.generate + self.rollout + self.learn


class Recorder:
    """Agent 0's record of a run: episode history, counters, the logger.

    Args:
        run_dir: the run directory.
        config: the run's configuration.
        callback: told of the start and of every update.
        tensorboard: write TensorBoard events too.
        resumed: where a checkpoint left the run, or None for a new run.
        players: a multi-agent task's players (task agents): each episode's
            return per player goes to ``players.csv`` beside its team return (the
            episode's ``return``), and the learning curve plots both.
    """

    def __init__(self, run_dir: Path, config: TrainConfig, callback: Callback,
                 tensorboard: bool, resumed: Resumed | None,
                 players: Sequence[str] | None = None) -> None:
        self.run_dir, self.config = run_dir, config
        self.players = tuple(players) if players else None
        self.player_returns: list[list[float]] = []
        self._players_csv = None
        if self.players:
            path = run_dir / PLAYERS_CSV
            fresh = not path.exists() or resumed is None
            if not fresh:   # the rows up to the checkpoint (restore_run cut the rest)
                self.player_returns = _player_rows(path, len(self.players))
            if resumed is not None and len(self.player_returns) != len(resumed.returns):
                log.warning("%s has %d rows for the checkpoint's %d episodes: its per-player "
                            "averages and curve do not line up with the team's", path,
                            len(self.player_returns), len(resumed.returns))
            self._players_csv = open(path, "w" if fresh else "a", newline="")  # noqa: SIM115
            if fresh:
                self._players_csv.write(",".join(("update", "episode", "team_return",
                                                  *(f"return_{p}" for p in self.players)))
                                        + "\n")
        self.returns: list[float] = list(resumed.returns) if resumed else []
        self.lengths: list[int] = list(resumed.lengths) if resumed else []
        self.env_steps = resumed.env_steps if resumed else 0
        self._wall_offset = resumed.wall_time if resumed else 0.0
        # Steps 1..update were logged before the checkpoint: keep them, drop the rest.
        self.logger = Logger(run_dir, callback,
                             purge_step=resumed.update + 1 if resumed else None,
                             tensorboard=tensorboard)
        callback.on_start(config.episodes, len(self.returns))
        self._t_start = time.perf_counter()
        self.started_unix = time.time() - self._wall_offset
        self._episodes_at_start = len(self.returns)
        # Sum of the updates' critical paths (qtrl.run.timing), this process's
        # updates only: a resumed run starts it afresh.
        self.critical_path = 0.0

    def wall(self) -> float:
        """Seconds of training, the resumed run's included."""
        return self._wall_offset + time.perf_counter() - self._t_start

    def episodes(self, update: int, returns: Sequence[float], lengths: Sequence[int],
                 agent: int, per_player: Sequence[Sequence[float]] | None = None) -> None:
        """One ``metrics.csv`` row per episode that ``agent`` played in ``update``;
        with ``per_player`` ``(episodes, P)`` (a multi-agent task), one
        ``players.csv`` row each too."""
        now = self.wall()
        for i, (ret, length) in enumerate(zip(returns, lengths, strict=True)):
            self.env_steps += int(length)
            self.returns.append(float(ret))
            self.lengths.append(int(length))
            self.logger.episode(update, len(self.returns), ret, length, now, agent)
            if per_player is not None and self._players_csv is not None:
                row = [float(r) for r in per_player[i]]
                self.player_returns.append(row)
                self._players_csv.write(",".join((str(update), str(len(self.returns)),
                                                  repr(float(ret)), *map(repr, row))) + "\n")

    def update(self, step: int, returns: Sequence[float], lengths: Sequence[int],
               truncated: Sequence[bool], stats: Mapping[str, float], timings: Timings,
               lr: float, extra: Mapping[str, float] = {},
               env_steps: int | None = None, split: UpdateSplit | None = None) -> None:
        """Record update ``step``'s scalars and dump them.

        ``returns``: the update's episode returns (every agent's); ``lengths``,
        ``truncated``: those of the episodes this process played; ``stats``: the
        algorithm's (``train/`` keys); ``extra``: fully named keys (``quantum/``,
        ``async/``); ``env_steps``: the steps this process simulated (default:
        the sum of ``lengths``); ``split``: a sync update's times, every agent's
        (:mod:`qtrl.run.timing`). An update may finish no episode (an
        actor-critic's short roll-out): its episode scalars are then NaN."""
        log = self.logger
        log.record("rollout/return_mean", _mean(returns))
        log.record("rollout/return_avg100", _mean(self.returns[-WINDOW:]))
        log.record("rollout/length_mean", _mean(lengths))
        log.record("rollout/truncated_frac", _mean(truncated))
        log.record("rollout/episodes", len(self.returns))
        log.record("rollout/env_steps", self.env_steps)
        for key, value in stats.items():
            log.record(f"train/{key}", value)
        log.record("train/lr", lr)
        for key, value in extra.items():
            log.record(key, value)
        log.record("time/generate_s", timings.generate)
        log.record("time/rollout_s", timings.rollout)
        log.record("time/learn_s", timings.learn)
        total = timings.total
        if split is not None:
            for key, value in split.columns().items():
                log.record(key, value)
            total += split.communicate + split.waits[0]
            self.critical_path += split.critical_path
            log.record("time/critical_path_total_s", self.critical_path)
        log.record("time/update_s", total)
        steps = float(np.sum(lengths)) if env_steps is None else float(env_steps)
        log.record("time/env_steps_per_s", steps / max(total, 1e-9))
        done = len(self.returns) - self._episodes_at_start
        log.record("time/episodes_per_s", done / max(time.perf_counter() - self._t_start, 1e-9))
        log.record("time/wall_s", self.wall())
        log.dump(step, len(self.returns))

    def flush(self) -> None:
        self.logger.flush()
        if self._players_csv is not None:
            self._players_csv.flush()

    def close(self) -> None:
        self.logger.close()
        if self._players_csv is not None:
            self._players_csv.close()

    def finish(self, counts: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        """Write ``summary.json`` (``extra``: mode-specific entries; ``counts``: the
        trained parameters) and the learning curve; return the summary."""
        config, returns = self.config, np.asarray(self.returns)
        solved = first_solved(returns, config.solve_threshold)
        summary = {
            "mode": config.mode,
            "algo": config.algo,
            "env": config.env,
            "preset": config.preset,
            "seed": config.seed,
            "episodes": len(returns),
            "agents": config.agents,
            "dist_mode": config.dist_mode,
            **extra,
            "env_steps": self.env_steps,
            "wall_time_s": round(self.wall(), 3),
            "final_return_avg100": float(np.mean(returns[-WINDOW:])) if len(returns) else None,
            "best_return_avg100": float(moving_average(returns).max()) if len(returns) else None,
            "solve_threshold": config.solve_threshold,
            "solved_at_episode": solved,
            "solved_at_env_step": (int(np.sum(self.lengths[:solved])) if solved is not None
                                   else None),
            "train_started_unix": round(self.started_unix, 3),
            "parameter_counts": dict(counts),
        }
        if self.players and self.player_returns:
            last = np.asarray(self.player_returns)[-WINDOW:]
            summary["players"] = list(self.players)
            summary["final_player_return_avg100"] = dict(zip(self.players,
                                                             map(float, last.mean(0)),
                                                             strict=True))
            summary["final_mean_player_return_avg100"] = float(last.mean())
        atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        plot_learning_curve(self.run_dir / "learning_curve.png", returns, config,
                            np.asarray(self.player_returns), self.players)
        return summary


def _player_rows(path: Path, players: int) -> list[list[float]]:
    """Each ``players.csv`` row's per-player returns (its last ``players`` columns)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    return [[float(v) for v in row[-players:]] for row in rows]


def _mean(values: Sequence[float]) -> float:
    """The mean, NaN (without NumPy's warning) for no values."""
    return float(np.mean(values)) if len(values) else float("nan")


def plot_learning_curve(path: Path, returns: np.ndarray, config: TrainConfig,
                        player_returns: np.ndarray | None = None,
                        players: Sequence[str] | None = None) -> None:
    """Raw episode returns and their 100-episode moving average (matplotlib, Agg);
    a multi-agent task's returns are the team's, and each player's ``(E, P)``
    moving average is drawn too."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    episodes = np.arange(1, len(returns) + 1)
    team = "team " if players else ""
    ax.plot(episodes, returns, color="tab:blue", alpha=0.3, lw=0.8, label=f"{team}episode return")
    ax.plot(episodes, moving_average(returns), color="tab:blue", lw=2,
            label=f"{team}{WINDOW}-episode average")
    if players and player_returns is not None and len(player_returns):
        for p, name in enumerate(players):
            ax.plot(episodes[:len(player_returns)], moving_average(player_returns[:, p]),
                    lw=1.2, color=f"C{p + 1}", label=f"{name} ({WINDOW}-ep. avg)")
    if config.solve_threshold is not None:
        ax.axhline(config.solve_threshold, color="gray", ls="--", lw=1, label="solve threshold")
    ax.set_xlabel("episode")
    ax.set_ylabel("return")
    ax.set_title(f"{config.env} — {config.mode}, seed {config.seed}")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    image = io.BytesIO()
    try:
        fig.savefig(image, format="png")
    finally:
        plt.close(fig)
    atomic_write_bytes(path, image.getvalue())

"""Training logger: ``record(key, value)`` then ``dump(step)``, fanned out to
a CSV file, TensorBoard and a progress display.

Keys are namespaced ``rollout/…``, ``train/…``, ``quantum/…``, ``time/…``.
Per-episode rows go to ``metrics.csv`` through :meth:`Logger.episode`
(``update, episode, return, length, wall_time, agent``). Each dump is also
passed to the run's callbacks (:mod:`qtrl.run.callbacks`: the CLI's progress
bar, for one); library code itself only logs through :mod:`logging`.
"""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path
from typing import Self

from .atomic import atomic_write_text
from .callbacks import Callback, LogProgress

__all__ = ["EPISODE_FIELDS", "Logger", "truncate_csv"]


EPISODE_FIELDS = ("update", "episode", "return", "length", "wall_time", "agent")


class Logger:
    """Scalars per update (``progress.csv`` + TensorBoard + display) and one
    ``metrics.csv`` row per episode, all under ``run_dir``.

    Args:
        run_dir: the run directory (exists).
        callback: told of every dump (default: :class:`~qtrl.run.callbacks.LogProgress`).
        purge_step: when resuming, TensorBoard drops its events from this step on.
        tensorboard: write TensorBoard events.
    """

    def __init__(self, run_dir: Path, callback: Callback | None = None,
                 purge_step: int | None = None, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.callback = callback or LogProgress()
        self._values: dict[str, float] = {}
        self._progress_keys: list[str] | None = None
        metrics = self.run_dir / "metrics.csv"
        new = not metrics.exists()
        self._metrics_file = open(metrics, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._metrics = csv.writer(self._metrics_file)
        if new:
            self._metrics.writerow(EPISODE_FIELDS)
        progress = self.run_dir / "progress.csv"
        if progress.exists() and progress.stat().st_size:
            with open(progress, newline="", encoding="utf-8") as fh:
                self._progress_keys = next(csv.reader(fh), None)
        self._progress_file = open(progress, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._progress = csv.writer(self._progress_file)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(log_dir=str(self.run_dir), purge_step=purge_step)

    def record(self, key: str, value: float) -> None:
        """Remember ``value`` under ``key`` until the next :meth:`dump`."""
        self._values[key] = float(value)

    def episode(self, update: int, episode: int, ret: float, length: int, wall_time: float,
                agent: int = 0) -> None:
        """One ``metrics.csv`` row."""
        self._metrics.writerow((update, episode, repr(float(ret)), int(length),
                                f"{wall_time:.4f}", agent))

    def dump(self, step: int, episode: int) -> None:
        """Write the recorded scalars at ``step`` (the update) and show progress."""
        values = self._values
        if self._progress_keys is None:
            self._progress_keys = ["update", *values]
            self._progress.writerow(self._progress_keys)
        self._progress.writerow([step, *(values.get(k, "") for k in self._progress_keys[1:])])
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(key, value, step)
        self.callback.on_update(episode, values)
        self._values = {}

    def flush(self) -> None:
        self._metrics_file.flush()
        self._progress_file.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        """Flush and close every file; each is closed even when another fails (a
        full disk), and the first failure is raised after."""
        with contextlib.ExitStack() as stack:
            stack.callback(self._metrics_file.close)
            stack.callback(self._progress_file.close)
            if self._tb is not None:
                stack.callback(self._tb.close)
            self.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def truncate_csv(path: Path, keep: int) -> None:
    """Keep the header and the first ``keep`` rows of ``path`` (resume drops the
    rows written after the checkpoint). Rewritten atomically."""
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if len(rows) <= keep + 1:
        return
    text = io.StringIO(newline="")
    csv.writer(text).writerows(rows[: keep + 1])
    atomic_write_text(path, text.getvalue())

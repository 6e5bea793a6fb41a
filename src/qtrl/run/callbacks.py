"""What a run calls back: progress displays, and the hooks benchmarks need.

A small protocol in the manner of Stable-Baselines3's ``BaseCallback``: every
method has a default that does nothing, so a callback overrides only what it
uses. Training passes a list of them; the loops never know which ones they are.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

from ..rl.policy import Actor

__all__ = ["Callback", "CallbackList", "LogProgress"]

log = logging.getLogger(__name__)

class Callback:
    """Hooks of a training run (agent 0's process calls them; with several local
    agents that process holds a pickled copy, so state a callback collects
    stays there)."""

    def on_start(self, total_episodes: int, done_episodes: int) -> None:
        """Training starts (or resumes with ``done_episodes`` already played)."""

    def wrap_actor(self, actor: Actor) -> Actor:
        """The actor that plays a roll-out, given the update's own (benchmarks wrap
        it to play controlled episodes while still paying its cost). Called in
        agent 0's process for its own roll-outs only (sync); async workers
        play their own actors."""
        return actor

    def on_update(self, episode: int, values: Mapping[str, float]) -> None:
        """An update was recorded: episodes done so far and its scalars."""

    def on_end(self) -> None:
        """Training ended (normally or not)."""


class CallbackList(Callback):
    """Several callbacks called in order."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def on_start(self, total_episodes: int, done_episodes: int) -> None:
        for c in self.callbacks:
            c.on_start(total_episodes, done_episodes)

    def wrap_actor(self, actor: Actor) -> Actor:
        for c in self.callbacks:
            actor = c.wrap_actor(actor)
        return actor

    def on_update(self, episode: int, values: Mapping[str, float]) -> None:
        for c in self.callbacks:
            c.on_update(episode, values)

    def on_end(self) -> None:
        for c in self.callbacks:
            c.on_end()


class LogProgress(Callback):
    """Progress as ``logging`` INFO lines every ``every`` updates (the library default)."""

    def __init__(self, every: int = 50) -> None:
        self.every = every
        self.total = 0
        self._calls = 0

    def on_start(self, total_episodes: int, done_episodes: int) -> None:
        self.total = total_episodes

    def on_update(self, episode: int, values: Mapping[str, float]) -> None:
        self._calls += 1
        if self._calls % self.every == 0 or episode >= self.total:
            log.info("episode %d/%d  avg100 %.2f  %.1f episodes/s", episode, self.total,
                     values.get("rollout/return_avg100", math.nan),
                     values.get("time/episodes_per_s", math.nan))

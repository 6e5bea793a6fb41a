"""Fixed-length roll-outs for the actor-critics (PPO, A2C): ``T`` steps of every
copy of a vector env, episodes carrying on from one roll-out to the next.

Copies autoreset in the same step (Gymnasium's ``SAME_STEP`` mode): the
observation returned with a done is already the next episode's first, and the
ended episode's last observation comes in ``infos["final_obs"]``. The batch
keeps those of the episodes cut by a time limit, so that the critic can
bootstrap their value (a terminated episode's next value is 0; a truncated
one's is not).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import gymnasium as gym
import numpy as np

from .policy import ActionSampler, Actor

__all__ = ["StepBatch", "StepCollector"]


class StepBatch(NamedTuple):
    """``T`` steps of ``N`` copies, time-major.

    obs: ``(T, N, obs_dim)`` float32 observations the actions were taken in.
    actions: ``(T, N)`` int64, or ``(T, N, action_dim)`` float32 (unclipped).
    rewards: ``(T, N)`` float64.
    terminated: ``(T, N)`` bool: the step ended its episode in a terminal state.
    truncated_steps: ``(T, N)`` bool: the step ended its episode by a time limit.
    final_obs: ``(K, obs_dim)`` float32 last observations of the ``K`` truncated episodes.
    final_at: ``(K, 2)`` int64 ``(t, copy)`` of the step that truncated each.
    next_obs: ``(N, obs_dim)`` float32 observations after the last step.
    episode_returns: ``(E,)`` float64 returns of the episodes that ended in the batch.
    episode_lengths: ``(E,)`` int64 their lengths (steps before this batch included).
    truncated: ``(E,)`` bool: that episode was truncated.
    env_steps: ``T · N`` (a multi-agent task: ``T`` times the worlds).
    alive: ``(T, N)`` bool: the row was a player in play at that step (multi-agent
        tasks, :mod:`~qtrl.rl.multiagent`; idle rows are left out of the loss);
        None: every step counts.
    player_returns: ``(E, P)`` float64: with a multi-agent task each ended world
        episode's return per player (``episode_returns`` is then their sum, the
        team's); None otherwise.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated_steps: np.ndarray
    final_obs: np.ndarray
    final_at: np.ndarray
    next_obs: np.ndarray
    episode_returns: np.ndarray
    episode_lengths: np.ndarray
    truncated: np.ndarray
    env_steps: int
    alive: np.ndarray | None = None
    player_returns: np.ndarray | None = None


class StepCollector:
    """Steps ``envs`` (same-step autoreset) and keeps their state between roll-outs:
    the current observations and each copy's running episode return and length.

    Args:
        envs: the vector env.
        obs: the copies' first observations ``(N, obs_dim)`` (after a reset).
        bounds: continuous actions: ``(low, high)`` the environment's actions are
            clipped to (the batch keeps the sampled ones).
        observe: with ``--norm-obs``, :meth:`~qtrl.rl.normalize.ObsNormalizer.observe`
            (scales each step's observations, keeps them for its statistics) and
            ``normalize`` (scales the bootstrap observations); the batch holds
            scaled observations.
        normalize: see ``observe``.
    """

    def __init__(self, envs: gym.vector.VectorEnv, obs: np.ndarray,
                 bounds: tuple[np.ndarray, np.ndarray] | None = None,
                 observe: Callable[[np.ndarray], np.ndarray] | None = None,
                 normalize: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        if envs.metadata.get("autoreset_mode") != gym.vector.AutoresetMode.SAME_STEP:
            raise ValueError("fixed-step roll-outs need a SAME_STEP autoreset vector env")
        self.envs, self.bounds = envs, bounds
        self.observe = observe or (lambda o: o)
        self.normalize = normalize or (lambda o: o)
        self.obs = np.array(obs, dtype=np.float32)
        n = envs.num_envs
        self.ep_return = np.zeros(n)
        self.ep_length = np.zeros(n, dtype=np.int64)
        self.alive = np.ones(n, dtype=bool)

    def collect(self, actor: Actor, steps: int, rng: np.random.Generator) -> StepBatch:
        """``steps`` steps of every copy with ``actor`` (weights fixed for the call),
        actions drawn with ``rng``."""
        n = self.envs.num_envs
        sample = ActionSampler(rng, continuous=self.bounds is not None)
        obs_log = np.empty((steps, *self.obs.shape), dtype=np.float32)
        act_log: list[np.ndarray] = []
        rewards = np.empty((steps, n))
        terms = np.empty((steps, n), dtype=bool)
        truncs = np.empty((steps, n), dtype=bool)
        final_obs: list[np.ndarray] = []
        final_at: list[tuple[int, int]] = []
        ep_returns: list[float] = []
        ep_lengths: list[int] = []
        ep_truncated: list[bool] = []
        alive_log = np.empty((steps, n), dtype=bool)
        obs = self.obs
        for t in range(steps):
            alive_log[t] = self.alive
            seen = obs_log[t] = self.observe(obs)
            actions = sample.act(actor, seen)
            act_log.append(actions)
            moves = actions if self.bounds is None else np.clip(actions, *self.bounds)
            obs, rewards[t], terms[t], truncs[t], infos = self.envs.step(moves)
            if "alive" in infos:
                self.alive = np.asarray(infos["alive"], dtype=bool)
            self.ep_return += rewards[t]
            self.ep_length += 1
            for i in np.flatnonzero(terms[t] | truncs[t]):
                cut = bool(truncs[t, i] and not terms[t, i])
                if cut:
                    final_obs.append(np.asarray(infos["final_obs"][i], dtype=np.float32))
                    final_at.append((t, int(i)))
                ep_returns.append(float(self.ep_return[i]))
                ep_lengths.append(int(self.ep_length[i]))
                ep_truncated.append(cut)
                self.ep_return[i], self.ep_length[i] = 0.0, 0
        self.obs = np.array(obs, dtype=np.float32)    # the env rewrites its buffer
        dim = self.obs.shape[1]
        final = np.array(final_obs, dtype=np.float32).reshape(-1, dim)
        players = None
        drain = getattr(self.envs, "drain_episodes", None)
        if drain is not None:   # a multi-agent task: episodes are the worlds', not the rows'
            worlds = drain()
            players = np.zeros((len(worlds), n // len(self.envs.envs)))
            for i, world in enumerate(worlds):
                players[i] = world.returns
            ep_returns = players.sum(1).tolist()
            ep_lengths = [w.length for w in worlds]
            ep_truncated = [w.truncated for w in worlds]
        return StepBatch(
            obs=obs_log, actions=np.stack(act_log), rewards=rewards, terminated=terms,
            truncated_steps=truncs & ~terms,
            final_obs=self.normalize(final) if len(final) else final,
            final_at=np.array(final_at, dtype=np.int64).reshape(-1, 2),
            next_obs=np.array(self.normalize(self.obs), dtype=np.float32),
            episode_returns=np.array(ep_returns),
            episode_lengths=np.array(ep_lengths, dtype=np.int64),
            truncated=np.array(ep_truncated, dtype=bool),
            env_steps=steps * (n if drain is None else len(self.envs.envs)),
            alive=None if drain is None else alive_log, player_returns=players)


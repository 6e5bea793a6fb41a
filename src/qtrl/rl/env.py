"""Gymnasium environments as flat-observation, discrete-action tasks.

Supported: any environment whose action space is ``Discrete`` and whose
observation is a ``Box`` (flattened), or a ``Dict`` holding an ``image`` Box
(MiniGrid: the 7×7×3 image, flattened to 147 values).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from copy import deepcopy
from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import UserError

__all__ = ["EnvStreams", "FlatImageObservation", "MaskedSyncVectorEnv", "env_dims", "make_env",
           "make_vector_env"]


def _register_minigrid() -> None:
    try:
        import minigrid  # noqa: F401  (registers the MiniGrid-* ids)
    except ImportError:  # pragma: no cover - minigrid is a dependency
        pass


class FlatImageObservation(gym.ObservationWrapper):
    """Keep only ``obs["image"]`` of a dict observation, flattened to float32."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        image = env.observation_space["image"]
        size = int(np.prod(image.shape))
        self.observation_space = gym.spaces.Box(
            low=float(np.min(image.low)), high=float(np.max(image.high)),
            shape=(size,), dtype=np.float32)

    def observation(self, observation: dict) -> np.ndarray:
        return np.asarray(observation["image"], dtype=np.float32).reshape(-1)


class FlatObservation(gym.ObservationWrapper):
    """Flatten a Box observation to float32."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        size = int(np.prod(env.observation_space.shape))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(observation, dtype=np.float32).reshape(-1)


def make_env(env_id: str, max_steps: int | None = None, **kwargs) -> gym.Env:
    """Create ``env_id`` with a flat float32 Box observation.

    Raises :class:`UserError` for an unknown id or an unsupported space.
    """
    if env_id.startswith("MiniGrid"):
        _register_minigrid()
    if env_id not in gym.registry:
        close = [k for k in gym.registry if k.lower().startswith(env_id.split("-")[0].lower())]
        hint = f" (did you mean {', '.join(sorted(close)[:3])}?)" if close else ""
        raise UserError(f"unknown environment id {env_id!r}{hint}; any registered "
                        f"Gymnasium id with a Discrete action space is accepted")
    if max_steps is not None:
        kwargs["max_episode_steps"] = max_steps
    env = gym.make(env_id, **kwargs)
    if not isinstance(env.action_space, gym.spaces.Discrete):
        env.close()
        raise UserError(f"{env_id} has action space {env.action_space}; only Discrete action "
                        f"spaces are supported")
    space = env.observation_space
    if isinstance(space, gym.spaces.Dict) and "image" in space.spaces:
        return FlatImageObservation(env)
    if isinstance(space, gym.spaces.Box):
        if len(space.shape) == 1 and space.dtype == np.float32:
            return env  # already flat float32 (CartPole): no wrapper cost per step
        return FlatObservation(env)
    env.close()
    raise UserError(f"{env_id} has observation space {space}; supported are Box and "
                    f"Dict with an 'image' Box")


class MaskedSyncVectorEnv(gym.vector.SyncVectorEnv):
    """A :class:`~gymnasium.vector.SyncVectorEnv` whose ``step`` can leave copies idle.

    ``step(actions, mask=m)`` steps only the copies where ``m`` is true; an idle
    copy keeps its observation and returns reward 0, ``terminated`` and
    ``truncated`` false. Roll-outs use it so that copies that have finished their
    share of an update's episodes cost nothing while the others finish. Without
    ``mask`` it is the ordinary ``SyncVectorEnv`` step. Both explicit autoreset
    modes (``SAME_STEP``, ``NEXT_STEP``) are honoured; a masked step returns
    no infos (roll-outs do not read them).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unreset: list[int] = []   # copies ended by step_active(autoreset=False)
        modes = gym.vector.AutoresetMode
        self._next_step = self.autoreset_mode == modes.NEXT_STEP
        self._maskable = self.autoreset_mode in (modes.SAME_STEP, modes.NEXT_STEP)
        self._rows = isinstance(self._observations, np.ndarray)  # Box: rows are copied

    def reset(self, *, seed=None, options=None):  # type: ignore[override]
        self._unreset = []
        return super().reset(seed=seed, options=options)

    def step(self, actions, mask: np.ndarray | None = None):  # type: ignore[override]
        if self._unreset:
            raise RuntimeError(f"copies {self._unreset} ended without a reset; call reset()")
        if mask is None:
            return super().step(actions)
        obs, rewards, terms, truncs, _ = self.step_active(np.asarray(actions),
                                                          np.flatnonzero(mask).tolist())
        return (deepcopy(obs) if self.copy else obs, rewards, terms, truncs, {})

    def step_active(self, moves: np.ndarray, active: list[int], autoreset: bool = True
                    ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, list[int]]:
        """Step the copies ``active`` (ascending indices) with ``moves[i]``, NumPy
        scalars as Gymnasium's own step passes them (measured: ``Discrete.contains``,
        which CartPole's step asserts, checks them ~1 µs faster than Python ints).

        ``autoreset=False`` (same-step mode): a copy whose episode ends is not
        reset and keeps its last observation. A roll-out passes it when every
        copy that ends goes idle until the next :meth:`reset` (a reset that the
        next update's reset would discard); stepping such a copy before
        :meth:`reset` raises.

        The roll-outs' lean form of ``step(actions, mask)``: returns the
        observation buffer itself (never copied), fresh ``rewards``,
        ``terminated``, ``truncated`` arrays and the list of copies whose
        episode ended in this step.
        """
        if not self._maskable:
            raise ValueError(f"masked steps need SAME_STEP or NEXT_STEP autoreset, "
                             f"got {self.autoreset_mode}")
        n = self.num_envs
        rewards = np.zeros(n, dtype=np.float64)
        terms = np.zeros(n, dtype=np.bool_)
        truncs = np.zeros(n, dtype=np.bool_)
        ended: list[int] = []
        rows, unreset = self._rows, self._unreset
        if unreset and not set(unreset).isdisjoint(active):
            raise RuntimeError(f"copies {unreset} ended without a reset; call reset()")
        if self._next_step:
            self._step_next(moves, active, rewards, terms, truncs, ended)
        else:
            # The hot loop of a roll-out (one pass per env step): only what the
            # same-step mode needs. Gymnasium reads _autoreset_envs only in
            # next-step mode and _env_obs only to concatenate non-Box observations.
            envs, observations, env_obs = self.envs, self._observations, self._env_obs
            for i in active:
                env = envs[i]
                obs, reward, term, trunc, _ = env.step(moves[i])
                rewards[i] = reward
                if term or trunc:
                    terms[i], truncs[i] = term, trunc
                    ended.append(i)
                    if autoreset:
                        obs, _ = env.reset()
                    else:
                        self._unreset = [*self._unreset, i]
                if rows:
                    observations[i] = obs
                else:
                    env_obs[i] = obs
        if not rows:
            self._observations = gym.vector.utils.concatenate(
                self.single_observation_space, self._env_obs, self._observations)
        self._rewards, self._terminations, self._truncations = rewards, terms, truncs
        return self._observations, rewards, terms, truncs, ended

    def _step_next(self, moves: np.ndarray, active: list[int], rewards: np.ndarray,
                   terms: np.ndarray, truncs: np.ndarray, ended: list[int]) -> None:
        """:meth:`step_active`'s loop in next-step mode: a copy whose last step
        ended only resets in this one."""
        pending = self._autoreset_envs
        for i in active:
            env = self.envs[i]
            if pending[i]:
                obs, _ = env.reset()
                pending[i] = False
            else:
                obs, reward, term, trunc, _ = env.step(moves[i])
                rewards[i] = reward
                if term or trunc:
                    terms[i], truncs[i] = term, trunc
                    ended.append(i)
                    pending[i] = True
            self._env_obs[i] = obs
            if self._rows:
                self._observations[i] = obs


class EnvStreams:
    """Where each copy's reset randomness comes from, update by update.

    Copy ``i`` owns one PCG64 stream, seeded once from ``(seed, agent, i)``; the
    resets of update ``u`` draw from it advanced by ``u · 2^64`` (``PCG64.advance``,
    disjoint blocks of 2^64 draws). A pure function of the update, so a resumed
    run resets exactly as the uninterrupted one, with no environment state in
    the checkpoint; and ~4 µs a copy, where seeding a reset builds a new
    generator (~23 µs, of ~44 µs for a seeded CartPole reset).
    """

    def __init__(self, seed: int, n_envs: int, agent: int = 0) -> None:
        self.bases = [np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(agent, i, 2))).state
                      for i in range(n_envs)]
        self._gens: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def at(self, update: int) -> Callable[[gym.vector.VectorEnv], Any]:
        """The reset of update ``update``: ``envs -> first observations``."""
        def reset(envs: gym.vector.VectorEnv) -> Any:
            return self.reset(envs, update)
        return reset

    def reset(self, envs: gym.vector.VectorEnv, update: int) -> Any:
        """Reset every copy of ``envs`` from its stream at ``update``; the
        first observations."""
        if len(envs.envs) != len(self.bases):
            raise ValueError(f"{len(self.bases)} streams for {len(envs.envs)} copies")
        gens = self._gens.get(envs)
        if gens is None:
            gens = self._gens[envs] = [np.random.Generator(np.random.PCG64())
                                       for _ in self.bases]
        for env, gen, base in zip(envs.envs, gens, self.bases, strict=True):
            bits = gen.bit_generator
            bits.state = base
            bits.advance(update << 64)
            env.unwrapped.np_random = gen   # what an unseeded reset draws from
        return envs.reset()[0]


def make_vector_env(env_id: str, num_envs: int, max_steps: int | None = None,
                    autoreset: str = "same-step") -> gym.vector.SyncVectorEnv:
    """``num_envs`` copies of :func:`make_env` stepped together in this process.

    ``autoreset`` is Gymnasium's vector autoreset mode, always explicit:
    ``"same-step"`` (a finished copy returns the next episode's first
    observation in the step that ended the episode) or ``"next-step"`` (the step
    after a done only resets that copy: its action is ignored and the roll-out
    must mask it). Observations are not copied (``copy=False``): the caller
    copies what it keeps before the next step. The copies can be stepped
    selectively (:class:`MaskedSyncVectorEnv`).
    """
    modes = {"same-step": gym.vector.AutoresetMode.SAME_STEP,
             "next-step": gym.vector.AutoresetMode.NEXT_STEP}
    if autoreset not in modes:
        raise UserError(f"autoreset mode {autoreset!r}: choose from {', '.join(modes)}")
    make_env(env_id, max_steps).close()  # validate once, with a clear error
    return MaskedSyncVectorEnv([lambda: make_env(env_id, max_steps)] * num_envs,
                               copy=False, autoreset_mode=modes[autoreset])


def env_dims(env_id: str, n_actions: int | None = None) -> tuple[int, int]:
    """``(observation size, number of actions)`` of ``env_id`` after flattening.

    ``n_actions`` keeps only the first actions (MiniGrid: left/right/forward).
    """
    env = make_env(env_id)
    try:
        obs_dim = int(math.prod(env.observation_space.shape))
        actions = int(env.action_space.n)
    finally:
        env.close()
    if n_actions is not None:
        if not 1 <= n_actions <= actions:
            raise UserError(f"n_actions={n_actions} must be in 1..{actions} for {env_id}")
        actions = n_actions
    return obs_dim, actions

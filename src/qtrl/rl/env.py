"""Gymnasium environments as flat-observation tasks.

Supported: any environment whose action space is ``Discrete`` or a 1-D ``Box``
with finite bounds (continuous actions: PPO and A2C only), and whose
observation is a ``Box`` (flattened), or a ``Dict`` holding an ``image`` Box
(MiniGrid: the 7×7×3 image, flattened to 147 values).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from ..errors import UserError
from ..run.seeds import Stream, seed_sequence

__all__ = ["EnvSpec", "EnvStreams", "FlatImageObservation", "MaskedSyncVectorEnv",
           "action_bounds", "env_dims", "env_spec", "make_env", "make_vector_env"]


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
                        f"Gymnasium id with a Discrete or bounded 1-D Box action space "
                        f"is accepted")
    if max_steps is not None:
        kwargs["max_episode_steps"] = max_steps
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as err:
        raise UserError(f"{env_id} needs a package that is not installed: {err}") from None
    actions = env.action_space
    if not (isinstance(actions, gym.spaces.Discrete) or (
            isinstance(actions, gym.spaces.Box) and len(actions.shape) == 1
            and np.all(np.isfinite(actions.low)) and np.all(np.isfinite(actions.high)))):
        env.close()
        raise UserError(f"{env_id} has action space {actions}; supported are Discrete and "
                        f"1-D Box spaces with finite bounds")
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


def _add_info(infos: dict[str, Any], info: dict[str, Any], i: int, n: int) -> dict[str, Any]:
    """Copy ``i``'s ``info`` into the batched ``infos``, in Gymnasium's vector layout:
    per key an array over the ``n`` copies and a bool array ``_key`` marking the
    copies that set it; nested dicts batch recursively, ``final_obs`` is an object
    array (so that users index it as Gymnasium's own vector envs return it)."""
    for key, value in info.items():
        if key != "final_obs" and isinstance(value, dict):
            array: Any = _add_info(infos.get(key, {}), value, i, n)
        else:
            array = infos.get(key)
            if array is None:
                if key != "final_obs" and (type(value) in (int, float, bool)
                                           or isinstance(value, np.number)):
                    array = np.zeros(n, dtype=type(value))
                elif key != "final_obs" and isinstance(value, np.ndarray):
                    array = np.zeros((n, *value.shape), dtype=value.dtype)
                else:
                    array = np.full(n, None, dtype=object)
            array[i] = value
        mask = infos.get(f"_{key}")
        if mask is None:
            mask = np.zeros(n, dtype=np.bool_)
        mask[i] = True
        infos[key], infos[f"_{key}"] = array, mask
    return infos


class MaskedSyncVectorEnv(gym.vector.VectorEnv):
    """Copies of one environment stepped in turn in this process; a step may leave some idle.

    A :class:`gymnasium.vector.VectorEnv` built on that class's public contract
    only: it owns its copies (:attr:`envs`) and its observation buffer. ``reset``
    and ``step`` behave as :class:`~gymnasium.vector.SyncVectorEnv`'s with
    ``copy=False`` in the explicit autoreset mode ``SAME_STEP`` or ``NEXT_STEP``
    (``metadata["autoreset_mode"]``); both return the observation buffer itself,
    rewritten by the next step, so the caller copies what it keeps.

    Roll-outs step it with :meth:`step_active` (or ``step(actions, mask=m)``):
    only the copies listed (masked) are stepped; an idle copy keeps its
    observation and returns reward 0, ``terminated`` and ``truncated`` false, so
    that copies that have finished their share of an update's episodes cost
    nothing while the others finish.

    Observations must be a ``Box`` (:func:`make_env` flattens every supported
    space to one): each copy owns a row of the buffer.
    """

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]],
                 autoreset_mode: gym.vector.AutoresetMode = gym.vector.AutoresetMode.SAME_STEP
                 ) -> None:
        modes = gym.vector.AutoresetMode
        if autoreset_mode not in (modes.SAME_STEP, modes.NEXT_STEP):
            raise ValueError(f"autoreset_mode {autoreset_mode}: SAME_STEP or NEXT_STEP "
                             f"(masked steps need one of them)")
        self.envs: list[gym.Env] = [make() for make in env_fns]
        if not self.envs:
            raise ValueError("no environment functions: at least one copy is needed")
        first = self.envs[0]
        self.num_envs = len(self.envs)
        self.autoreset_mode = autoreset_mode
        # A copy of the metadata: the sub-environment's is a class attribute.
        self.metadata = {**first.metadata, "autoreset_mode": autoreset_mode}
        self.render_mode = first.render_mode
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        if not isinstance(self.single_observation_space, gym.spaces.Box):
            raise TypeError(f"observation space {self.single_observation_space}: a Box is "
                            f"needed (make_env flattens the supported spaces to one)")
        for i, env in enumerate(self.envs):
            if (env.observation_space != self.single_observation_space
                    or env.action_space != self.single_action_space):
                raise ValueError(f"copy {i} has spaces {env.observation_space}, "
                                 f"{env.action_space}; copy 0 has "
                                 f"{self.single_observation_space}, {self.single_action_space}")
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space,
                                                              self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space,
                                                         self.num_envs)
        space = self.single_observation_space
        self._buffer = np.zeros((self.num_envs, *space.shape), dtype=space.dtype)
        self._next_step = autoreset_mode == modes.NEXT_STEP
        self._resetting = [False] * self.num_envs   # next-step: the next step only resets
        self._unreset: list[int] = []   # copies ended by step_active(autoreset=False)

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every copy: ``seed`` None (their own RNG), an int (copy ``i``
        gets ``seed + i``) or one seed per copy; ``options`` go to each copy.
        Returns the observation buffer and the batched infos."""
        n = self.num_envs
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(f"{len(seeds)} seeds for {n} copies: pass one per copy, "
                                 f"one int or None")
        if options and "reset_mask" in options:
            raise ValueError("options['reset_mask'] is not supported: reset() resets "
                             "every copy")
        self._unreset = []
        self._resetting = [False] * n
        infos: dict[str, Any] = {}
        for i, (env, one) in enumerate(zip(self.envs, seeds, strict=True)):
            self._buffer[i], info = env.reset(seed=one, options=options)
            if info:
                infos = _add_info(infos, info, i, n)
        return self._buffer, infos

    def step(self, actions: Any, mask: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every copy with ``actions[i]`` and autoreset as the mode says
        (same-step: ``infos["final_obs"]`` holds an ended episode's last
        observation). With ``mask``, only the copies where it is true are
        stepped (:meth:`step_active`) and no infos are returned."""
        if self._unreset:
            raise RuntimeError(f"copies {self._unreset} ended without a reset; call reset()")
        actions = np.asarray(actions)
        if mask is not None:
            obs, rewards, terms, truncs, _ = self.step_active(actions,
                                                              np.flatnonzero(mask).tolist())
            return obs, rewards, terms, truncs, {}
        n = self.num_envs
        if len(actions) != n:
            raise ValueError(f"{len(actions)} actions for {n} copies")
        rewards = np.zeros(n, dtype=np.float64)
        terms = np.zeros(n, dtype=np.bool_)
        truncs = np.zeros(n, dtype=np.bool_)
        infos: dict[str, Any] = {}
        buffer, resetting = self._buffer, self._resetting
        for i, env in enumerate(self.envs):
            if resetting[i]:                        # next-step: this step only resets
                obs, info = env.reset()
                resetting[i] = False
            else:
                obs, reward, term, trunc, info = env.step(actions[i])
                rewards[i], terms[i], truncs[i] = reward, term, trunc
                if term or trunc:
                    if self._next_step:
                        resetting[i] = True
                    else:
                        infos = _add_info(infos, {"final_obs": obs, "final_info": info}, i, n)
                        obs, info = env.reset()
            buffer[i] = obs
            if info:
                infos = _add_info(infos, info, i, n)
        return buffer, rewards, terms, truncs, infos

    def step_active(self, moves: np.ndarray, active: list[int], autoreset: bool = True
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
        """Step the copies ``active`` (ascending indices) with ``moves[i]``, NumPy
        scalars as Gymnasium's own step passes them (``Discrete.contains``, which
        CartPole's step asserts, checks them faster than Python ints).

        The roll-outs' lean form of ``step(actions, mask)``: returns the
        observation buffer itself (never copied), fresh ``rewards``,
        ``terminated``, ``truncated`` arrays (idle copies: 0 and false) and the
        list of copies whose episode ended in this step.

        Next-step mode: a copy whose episode ended in its last step only resets
        in this one (reward 0, not ended). ``autoreset`` is then moot: an ended
        copy resets only if it is stepped again.

        ``autoreset=False`` (same-step mode): a copy whose episode ends is not
        reset and keeps its last observation. A roll-out passes it when every
        copy that ends goes idle until the next :meth:`reset` (a reset that the
        next update's reset would discard); stepping such a copy before
        :meth:`reset` raises.
        """
        n = self.num_envs
        rewards = np.zeros(n, dtype=np.float64)
        terms = np.zeros(n, dtype=np.bool_)
        truncs = np.zeros(n, dtype=np.bool_)
        ended: list[int] = []
        unreset = self._unreset
        if unreset and not set(unreset).isdisjoint(active):
            raise RuntimeError(f"copies {unreset} ended without a reset; call reset()")
        envs, buffer = self.envs, self._buffer
        if self._next_step:
            resetting = self._resetting
            for i in active:
                env = envs[i]
                if resetting[i]:
                    obs, _ = env.reset()
                    resetting[i] = False
                else:
                    obs, reward, term, trunc, _ = env.step(moves[i])
                    rewards[i] = reward
                    if term or trunc:
                        terms[i], truncs[i] = term, trunc
                        ended.append(i)
                        resetting[i] = True
                buffer[i] = obs
        else:
            # The hot loop of a roll-out (one pass per env step): only what the
            # same-step mode needs.
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
                        unreset.append(i)
                buffer[i] = obs
        return buffer, rewards, terms, truncs, ended

    def render(self) -> tuple[Any, ...]:
        """Each copy's rendered frame."""
        return tuple(env.render() for env in self.envs)

    def close_extras(self, **kwargs: Any) -> None:
        """Close the copies (:meth:`close` calls this once)."""
        for env in self.envs:
            env.close()


class EnvStreams:
    """Where each copy's reset randomness comes from, update by update.

    Copy ``i`` owns one PCG64 stream, seeded once from ``(seed, agent, i)``
    (:attr:`~qtrl.run.seeds.Stream.ENV_RESETS`, or ``stream``); the
    resets of update ``u`` draw from it advanced by ``u · 2^64`` (``PCG64.advance``,
    disjoint blocks of 2^64 draws). A pure function of the update, so a resumed
    run resets exactly as the uninterrupted one, with no environment state in
    the checkpoint; and ~4 µs a copy, where seeding a reset builds a new
    generator (~23 µs, of ~44 µs for a seeded CartPole reset).
    """

    def __init__(self, seed: int, n_envs: int, agent: int = 0,
                 stream: Stream = Stream.ENV_RESETS) -> None:
        self.bases = [np.random.PCG64(seed_sequence(seed, stream, agent, i)).state
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
                    autoreset: str = "same-step") -> MaskedSyncVectorEnv:
    """``num_envs`` copies of :func:`make_env` stepped together in this process.

    ``autoreset`` is Gymnasium's vector autoreset mode, always explicit:
    ``"same-step"`` (a finished copy returns the next episode's first
    observation in the step that ended the episode) or ``"next-step"`` (the step
    after a done only resets that copy: its action is ignored and the roll-out
    must mask it). Observations are not copied: the caller copies what it
    keeps before the next step. The copies can be stepped selectively
    (:class:`MaskedSyncVectorEnv`).
    """
    modes = {"same-step": gym.vector.AutoresetMode.SAME_STEP,
             "next-step": gym.vector.AutoresetMode.NEXT_STEP}
    if autoreset not in modes:
        raise UserError(f"autoreset mode {autoreset!r}: choose from {', '.join(modes)}")
    make_env(env_id, max_steps).close()  # validate once, with a clear error
    return MaskedSyncVectorEnv([lambda: make_env(env_id, max_steps)] * num_envs,
                               autoreset_mode=modes[autoreset])


class EnvSpec(NamedTuple):
    """What a policy for an environment must take and give.

    obs_dim: size of the flat observation.
    n_actions: discrete actions (logits), or the dimension of a continuous action.
    continuous: the action is a Box (the policy outputs its mean).
    low, high: ``(n_actions,)`` float32 bounds of a continuous action (None if discrete).
    """

    obs_dim: int
    n_actions: int
    continuous: bool
    low: np.ndarray | None = None
    high: np.ndarray | None = None


def action_bounds(space: gym.Space) -> tuple[np.ndarray, np.ndarray] | None:
    """``(low, high)`` of a continuous (Box) action space, None for a discrete one."""
    return (space.low, space.high) if isinstance(space, gym.spaces.Box) else None


def env_spec(env_id: str, n_actions: int | None = None) -> EnvSpec:
    """The :class:`EnvSpec` of ``env_id`` after flattening.

    ``n_actions`` keeps only the first discrete actions (MiniGrid: left/right/forward).
    """
    env = make_env(env_id)
    try:
        obs_dim = int(math.prod(env.observation_space.shape))
        space = env.action_space
    finally:
        env.close()
    if isinstance(space, gym.spaces.Box):
        if n_actions is not None:
            raise UserError(f"--n-actions {n_actions}: {env_id} has continuous actions "
                            f"({space}); the option keeps the first of Discrete actions only")
        return EnvSpec(obs_dim, int(space.shape[0]), True, space.low.astype(np.float32),
                       space.high.astype(np.float32))
    actions = int(space.n)
    if n_actions is not None:
        if not 1 <= n_actions <= actions:
            raise UserError(f"n_actions={n_actions} must be in 1..{actions} for {env_id}")
        actions = n_actions
    return EnvSpec(obs_dim, actions, False)


def env_dims(env_id: str, n_actions: int | None = None) -> tuple[int, int]:
    """``(observation size, number of actions or action dimension)`` of ``env_id``
    (:func:`env_spec`'s first two fields)."""
    spec = env_spec(env_id, n_actions)
    return spec.obs_dim, spec.n_actions

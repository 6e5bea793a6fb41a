"""Gymnasium environments as flat-observation, discrete-action tasks.

Supported: any environment whose action space is ``Discrete`` and whose
observation is a ``Box`` (flattened), or a ``Dict`` holding an ``image`` Box
(MiniGrid: the 7×7×3 image, flattened to 147 values).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

from ..errors import UserError

__all__ = ["make_env", "env_dims", "FlatImageObservation"]


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
        return FlatObservation(env)
    env.close()
    raise UserError(f"{env_id} has observation space {space}; supported are Box and "
                    f"Dict with an 'image' Box")


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

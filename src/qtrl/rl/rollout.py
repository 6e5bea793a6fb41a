"""Roll-outs: exactly ``E`` complete episodes from a vector environment, batched.

One call of :func:`collect_episodes` is the roll-out of an update: the
policy's weights were generated once for the update and reach this module
only as a NumPy *actor* (:func:`qtrl.rl.policy.make_actor`) — no autograd, no
weight generation, and per step only a handful of NumPy calls over all copies.

Episode accounting. Copy ``i`` of the vector env always plays one episode at a
time. Episodes are numbered in the order they start: the first ``min(N, E)``
copies start episodes ``0..``; whenever a counted episode ends and fewer than
``E`` have started, that copy's next episode is counted too, otherwise the copy
goes idle: a :class:`~qtrl.rl.env.MaskedSyncVectorEnv` stops stepping it, any
other vector env steps it and the steps are ignored. The call returns when ``E`` episodes
have ended, so every episode of the batch was played entirely with this
update's weights, as on-policy REINFORCE needs.

Autoreset. With ``same-step`` the observation returned with a done is already
the next episode's first one. With ``next-step`` the step after a done only
resets that copy: its action is ignored and its reward is 0, so that step is
masked out. With a deterministic actor both modes yield identical batches;
with sampling they differ only in which draws the actions use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from ..run.seeds import Stream, generator
from .env import EnvStreams, MaskedSyncVectorEnv, action_bounds, make_vector_env
from .policy import ActionSampler, Actor

__all__ = ["Resets", "Rollout", "collect_episodes", "evaluation_returns"]

Resets = list[int] | Callable[[gym.vector.VectorEnv], Any] | None
"""How a roll-out resets its copies: one seed each, a function that resets
them and returns their first observations, or None (their own RNG)."""


class Rollout(NamedTuple):
    """A batch of ``E`` complete episodes, ``B`` steps in all, ordered by episode then time.

    obs: ``(B, obs_dim)`` float32 observations the actions were taken in.
    actions: ``(B,)`` int64 actions (continuous: ``(B, action_dim)`` float32, unclipped).
    rewards: ``(B,)`` float64 rewards.
    episode: ``(B,)`` int64 episode index ``0..E-1`` of each step.
    episode_returns: ``(E,)`` float64 undiscounted return of each episode.
    episode_lengths: ``(E,)`` int64 steps of each episode.
    truncated: ``(E,)`` bool: the episode hit a time limit rather than terminating.
    env_steps: environment steps simulated (idle copies included unless masked).
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    episode: np.ndarray
    episode_returns: np.ndarray
    episode_lengths: np.ndarray
    truncated: np.ndarray
    env_steps: int


def collect_episodes(envs: gym.vector.VectorEnv, actor: Actor, episodes: int,
                     rng: np.random.Generator, seeds: Resets,
                     greedy: bool = False,
                     bounds: tuple[np.ndarray, np.ndarray] | None = None) -> Rollout:
    """Play exactly ``episodes`` complete episodes with ``actor``.

    Args:
        envs: a vector env (its autoreset mode must be ``SAME_STEP`` or ``NEXT_STEP``).
        actor: ``obs (N, d) -> logits (N, actions)``, weights fixed for the call.
        episodes: ``E``, episodes to collect.
        rng: draws the actions.
        seeds: one reset seed per copy, or a function resetting the copies and
            returning their observations (:meth:`qtrl.rl.env.EnvStreams.at`), or
            ``None``: continue the copies' own RNG.
        greedy: take the arg-max action (continuous: the mean) instead of sampling.
        bounds: continuous actions: ``(low, high)``; the actor is a
            :class:`~qtrl.rl.policy.GaussianActor` (or gives the mean only), the
            batch keeps the sampled actions and the environment gets them clipped.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    mode = envs.metadata.get("autoreset_mode")
    if mode not in (gym.vector.AutoresetMode.SAME_STEP, gym.vector.AutoresetMode.NEXT_STEP):
        raise ValueError(f"the vector env needs an explicit SAME_STEP or NEXT_STEP autoreset "
                         f"mode, got {mode}")
    next_step = mode == gym.vector.AutoresetMode.NEXT_STEP
    maskable = isinstance(envs, MaskedSyncVectorEnv)
    n = envs.num_envs
    obs = seeds(envs) if callable(seeds) else envs.reset(seed=seeds)[0]

    started = min(n, episodes)
    episode_of = np.full(n, -1, dtype=np.int64)        # counted episode each copy plays
    episode_of[:started] = np.arange(started)
    resetting = np.zeros(n, dtype=bool)                # next-step mode: this step only resets
    truncated = np.zeros(episodes, dtype=bool)
    obs_log: list[np.ndarray] = []
    act_log: list[np.ndarray] = []
    rew_log: list[np.ndarray] = []
    ep_log: list[np.ndarray] = []
    finished = 0
    env_steps = 0

    # Masks change only when an episode ends (and, in next-step mode, on the step
    # after): recomputed then, not at every step. Every step logs all copies'
    # rows whole (cheaper than selecting them each step); the rows of copies that
    # are idle or only resetting carry episode -1 and are dropped at the end.
    live = ep_now = np.empty(0)
    active: list[int] = []                              # copies playing a counted episode

    def masks() -> None:
        nonlocal live, ep_now, active
        playing = episode_of >= 0
        live = playing & ~resetting                     # ... whose step this is (no reset)
        active = np.flatnonzero(playing).tolist()
        ep_now = np.where(live, episode_of, -1)         # logged as is until the next change

    masks()
    was_resetting = False
    sample = ActionSampler(rng, continuous=bounds is not None)
    while finished < episodes:
        actions = sample.act(actor, obs, greedy)
        moves = actions if bounds is None else np.clip(actions, *bounds)
        # Keep what the update needs before stepping: with copy=False the env
        # reuses its observation buffer.
        obs_log.append(obs.copy())
        act_log.append(actions)
        ep_log.append(ep_now)
        if maskable:
            # Once every episode has started, a copy that ends goes idle: no reset.
            obs, rewards, terminated, truncs, ended = envs.step_active(
                moves, active, autoreset=started < episodes)
            env_steps += len(active)
        else:
            obs, rewards, terminated, truncs, _ = envs.step(moves)
            ended = np.flatnonzero(terminated | truncs).tolist()
            env_steps += n
        rew_log.append(rewards)
        for i in ended:
            if live[i]:
                truncated[episode_of[i]] = bool(truncs[i] and not terminated[i])
                finished += 1
                if started < episodes:
                    episode_of[i] = started
                    started += 1
                else:
                    episode_of[i] = -1
        if next_step and (ended or was_resetting):
            resetting = terminated | truncs             # those copies only reset next step
            was_resetting = bool(ended)
            masks()
        elif ended:
            masks()

    ep = np.concatenate(ep_log)
    keep = np.flatnonzero(ep >= 0)
    keep = keep[np.argsort(ep[keep], kind="stable")]    # by episode, time order kept
    ep = ep[keep]
    rewards_all = np.concatenate(rew_log).astype(np.float64)[keep]
    lengths = np.bincount(ep, minlength=episodes)
    taken = np.concatenate(act_log)
    return Rollout(
        obs=np.concatenate(obs_log).astype(np.float32, copy=False)[keep],
        actions=(taken.astype(np.int64) if bounds is None else taken)[keep],
        rewards=rewards_all,
        episode=ep,
        episode_returns=np.bincount(ep, weights=rewards_all, minlength=episodes),
        episode_lengths=lengths,
        truncated=truncated,
        env_steps=env_steps,
    )


def evaluation_returns(env_id: str, max_steps: int | None, actor: Actor, episodes: int,
                       seed: int, greedy: bool) -> np.ndarray:
    """Undiscounted returns ``(episodes,)`` of ``actor`` on ``env_id``, resets and
    actions drawn from the evaluation streams of ``seed`` (never a training one),
    so a policy evaluates alike as a run, a state_dict or an export."""
    n_envs = min(episodes, 8)
    envs = make_vector_env(env_id, n_envs, max_steps, "same-step")
    bounds = action_bounds(envs.single_action_space)
    try:
        resets = EnvStreams(seed, n_envs, stream=Stream.EVAL_RESETS)
        batch = collect_episodes(envs, actor, episodes, generator(seed, Stream.EVAL_ACTIONS),
                                 resets.at(0), greedy=greedy, bounds=bounds)
    finally:
        envs.close()
    return batch.episode_returns

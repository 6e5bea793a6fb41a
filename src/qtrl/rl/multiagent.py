"""PettingZoo parallel environments as rows of a vector env: one row per
(copy of the world, task agent).

Two meanings of "agent" meet here. A *task agent* (a *player*) is one of the
PettingZoo task's actors (``agent_0`` … of ``simple_spread``); a Dist-QTRL
*agent* (``--agents N``) is a training process (a QPU) holding its own copies of
the whole world. This module is about players only.

A task is named ``module:env`` (``mpe2:simple_spread_v3``): ``module.env`` must
offer ``parallel_env(**kwargs)``. Its players must share one ``Discrete`` action
count (a policy serves all of them); their ``Box`` observations may differ in
size and are zero-padded to the largest.

Row ``w · P + p`` is player ``p`` of world copy ``w`` (``P`` players). Its
observation is ``[local (L) | one-hot of p (P) | every player's local, concatenated (P·L)]``:
the policy reads the first ``L + P`` values (:func:`views`), a centralised
(MAPPO) critic the last ``P + P·L``, a local (IPPO) critic what the policy reads.

Players that leave a world before the others (``terminated`` or ``truncated``
while the world goes on) end their row's episode there; until the world resets,
their row is *idle*: zero local observation, reward 0, never done, and
``infos["alive"]`` false, so the roll-out masks it out of the loss. A world resets
(same step, Gymnasium's ``SAME_STEP`` autoreset) when every player has left; the
last observations of players cut by a time limit come in ``infos["final_obs"]``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from ..config import CRITIC_INPUTS, is_multiagent
from ..errors import UserError
from ..run.seeds import Stream, generator
from .env import EnvSpec, env_spec, make_vector_env
from .policy import ActionSampler, Actor, ColumnsActor

__all__ = [
    "PlayerSpec",
    "PlayerVectorEnv",
    "WorldEpisode",
    "evaluate_players",
    "is_multiagent",
    "make_parallel_env",
    "make_task_envs",
    "parse_env_kwargs",
    "player_spec",
    "task_spec",
    "task_views",
    "views",
]


def _value(text: str) -> Any:
    """``--env-kwarg`` value: int, float, bool (true/false), none, else the string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_env_kwargs(pairs: Sequence[str]) -> dict[str, Any]:
    """``("N=3", "max_cycles=25")`` → ``{"N": 3, "max_cycles": 25}``; a pair
    without ``=`` or a key given twice with two values is a ``UserError``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UserError(f"--env-kwarg {pair!r}: write KEY=VALUE with KEY a Python name "
                            f"(e.g. N=3, max_cycles=25)")
        value = _value(text)
        if key in out and out[key] != value:
            raise UserError(f"--env-kwarg {key}={out[key]!r} and {key}={value!r}: one value "
                            f"per key")
        out[key] = value
    return out


def make_parallel_env(env_id: str, env_kwargs: Sequence[str] = ()) -> Any:
    """The PettingZoo parallel env ``env_id`` (``module:env``) made with
    ``env_kwargs`` (``KEY=VALUE`` strings), checked: Discrete actions of one count
    for every player, Box observations. Anything else is a ``UserError``."""
    module_name, _, name = env_id.partition(":")
    try:
        module = importlib.import_module(f"{module_name}.{name}")
    except ImportError as err:
        raise UserError(f"--env {env_id}: no module {module_name}.{name} ({err}); a "
                        f"multi-agent task is a PettingZoo parallel env named module:env, "
                        f"e.g. mpe2:simple_spread_v3") from None
    if not callable(getattr(module, "parallel_env", None)):
        kind = "an AEC-only env" if callable(getattr(module, "env", None)) else "not an env"
        raise UserError(f"--env {env_id}: {module_name}.{name} has no parallel_env() ({kind}); "
                        f"qtrl trains PettingZoo parallel envs")
    kwargs = parse_env_kwargs(env_kwargs)
    try:
        env = module.parallel_env(**kwargs)
    except (TypeError, ValueError, AssertionError) as err:
        given = " ".join(env_kwargs) or "(none)"
        raise UserError(f"--env {env_id} --env-kwarg {given}: the env refused them "
                        f"({type(err).__name__}: {err})") from None
    players = list(env.possible_agents)
    spaces = {p: env.action_space(p) for p in players}
    bad = {p: s for p, s in spaces.items() if not isinstance(s, gym.spaces.Discrete)}
    if bad:
        env.close()
        player, space = next(iter(bad.items()))
        raise UserError(f"--env {env_id}: player {player} has action space {space}; qtrl "
                        f"takes Discrete actions for multi-agent tasks (MPE: leave "
                        f"continuous_actions false)")
    counts = {int(s.n) for s in spaces.values()}
    if len(counts) > 1:
        env.close()
        raise UserError(f"--env {env_id}: players have {sorted(counts)} actions; one policy "
                        f"serves every player, so they must share one Discrete action count")
    for p in players:
        space = env.observation_space(p)
        if not isinstance(space, gym.spaces.Box):
            env.close()
            raise UserError(f"--env {env_id}: player {p} observes {space}; Box observations "
                            f"only")
    return env


class PlayerSpec(NamedTuple):
    """What a policy for a multi-agent task takes and gives (an
    :class:`~qtrl.rl.env.EnvSpec` with the players).

    obs_dim: a row's width ``L + P + P·L``. n_actions: the shared action count.
    players: the players' names. local_dim: ``L``, the largest observation.
    """

    obs_dim: int
    n_actions: int
    continuous: bool
    low: None
    high: None
    players: tuple[str, ...]
    local_dim: int


def player_spec(env_id: str, env_kwargs: Sequence[str] = ()) -> PlayerSpec:
    """The :class:`PlayerSpec` of ``env_id`` made with ``env_kwargs``."""
    env = make_parallel_env(env_id, env_kwargs)
    try:
        players = tuple(env.possible_agents)
        local = max(int(np.prod(env.observation_space(p).shape)) for p in players)
        n_actions = int(env.action_space(players[0]).n)
    finally:
        env.close()
    count = len(players)
    return PlayerSpec(local + count + count * local, n_actions, False, None, None,
                      players, local)


def views(spec: PlayerSpec, critic_input: str) -> tuple[slice, slice]:
    """``(policy's columns, critic's columns)`` of a row: the policy reads its local
    observation and one-hot; the critic the same (``local``: IPPO) or the one-hot
    and every player's observation (``global``: MAPPO's centralised critic)."""
    if critic_input not in CRITIC_INPUTS:
        raise UserError(f"--critic-input {critic_input!r}: choose from "
                        f"{', '.join(CRITIC_INPUTS)}")
    own = slice(0, spec.local_dim + len(spec.players))
    return own, (own if critic_input == "local" else slice(spec.local_dim, spec.obs_dim))


class WorldEpisode(NamedTuple):
    """One finished episode of a world: every player's return ``(P,)``, the
    world's length in steps and whether a time limit cut it."""

    returns: np.ndarray
    length: int
    truncated: bool


class World:
    """One copy of the task: reset draws its seed from ``np_random`` (set by
    :class:`~qtrl.rl.env.EnvStreams`, which treats it as a Gymnasium env)."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.np_random = np.random.default_rng()
        self.obs: dict[str, np.ndarray] = {}

    @property
    def unwrapped(self) -> World:
        return self

    def reset(self) -> dict[str, np.ndarray]:
        self.obs, _ = self.env.reset(seed=int(self.np_random.integers(2**31 - 1)))
        return self.obs


class PlayerVectorEnv(gym.vector.VectorEnv):
    """``copies`` worlds of a PettingZoo parallel env as ``copies · P`` rows
    (see the module docstring); same-step autoreset.

    ``step(actions (rows,) int)`` → ``obs (rows, L+P+P·L) float32, rewards (rows,)
    float64, terminated (rows,), truncated (rows,), infos`` with ``infos["alive"]``
    ``(rows,)`` (the rows whose next observation is a player in play) and
    ``final_obs``/``_final_obs`` of truncated rows. Finished world episodes wait in
    :meth:`drain_episodes`. ``max_steps`` cuts a world's episode after that many steps.
    """

    def __init__(self, env_id: str, copies: int, env_kwargs: Sequence[str] = (),
                 max_steps: int | None = None) -> None:
        self.spec_ = player_spec(env_id, env_kwargs)
        self.envs = [World(make_parallel_env(env_id, env_kwargs)) for _ in range(copies)]
        self.players = self.spec_.players
        self.max_steps = max_steps
        self.num_envs = copies * len(self.players)
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (self.spec_.obs_dim,),
                                                       np.float32)
        self.single_action_space = gym.spaces.Discrete(self.spec_.n_actions)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space,
                                                              self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space,
                                                         self.num_envs)
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        count = len(self.players)
        self._returns = np.zeros((copies, count))
        self._lengths = np.zeros(copies, dtype=np.int64)
        self._finished: list[WorldEpisode] = []
        self._onehot = np.eye(count, dtype=np.float32)

    # ---- rows ---------------------------------------------------------------------------

    def _local(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """``(P, L)`` zero-padded local observations; a player not in ``obs``: zeros."""
        local = np.zeros((len(self.players), self.spec_.local_dim), dtype=np.float32)
        for p, name in enumerate(self.players):
            if name in obs:
                flat = np.asarray(obs[name], dtype=np.float32).reshape(-1)
                local[p, :len(flat)] = flat
        return local

    def _rows(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """``(P, L+P+P·L)``: each player's row of one world."""
        local = self._local(obs)
        count = len(self.players)
        everyone = np.broadcast_to(local.reshape(1, -1), (count, local.size))
        return np.concatenate([local, self._onehot, everyone], axis=1)

    # ---- the vector env -----------------------------------------------------------------

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every world (``seed``: an int seeds world ``i`` with ``seed + i``)."""
        if seed is not None:
            seeds = seed if isinstance(seed, Sequence) else [seed + i
                                                             for i in range(len(self.envs))]
            for world, s in zip(self.envs, seeds, strict=True):
                world.np_random = np.random.default_rng(s)
        self._returns[:] = 0
        self._lengths[:] = 0
        return np.concatenate([self._rows(w.reset()) for w in self.envs]), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        actions = np.asarray(actions).reshape(len(self.envs), len(self.players))
        count, rows = len(self.players), self.num_envs
        obs = np.empty((rows, self.spec_.obs_dim), dtype=np.float32)
        rewards, terms, truncs = np.zeros(rows), np.zeros(rows, bool), np.zeros(rows, bool)
        alive = np.zeros(rows, bool)
        final: dict[int, np.ndarray] = {}
        for w, world in enumerate(self.envs):
            env = world.env
            moves = {name: int(actions[w, p]) for p, name in enumerate(self.players)
                     if name in env.agents}
            after, reward, term, trunc, _ = env.step(moves)
            self._lengths[w] += 1
            cut = self.max_steps is not None and self._lengths[w] >= self.max_steps
            base = w * count
            for p, name in enumerate(self.players):
                if name not in moves:
                    continue
                rewards[base + p] = reward.get(name, 0.0)
                terms[base + p] = term.get(name, False)
                truncs[base + p] = trunc.get(name, False) or (cut and not terms[base + p])
            self._returns[w] += rewards[base:base + count]
            rows_after = self._rows(after)
            done = [p for p in range(count) if terms[base + p] or truncs[base + p]]
            for p in done:
                if truncs[base + p] and not terms[base + p]:
                    final[base + p] = rows_after[p].copy()
            left = set(moves) - {self.players[p] for p in done}
            if not left or cut:   # the world's episode is over: record it, reset (same step)
                for p, name in enumerate(self.players):
                    if name in left:   # still in play at the cut
                        truncs[base + p] = True
                        final[base + p] = rows_after[p].copy()
                self._finished.append(WorldEpisode(self._returns[w].copy(),
                                                   int(self._lengths[w]), bool(truncs[base:base + count].any())))
                self._returns[w], self._lengths[w] = 0, 0
                obs[base:base + count] = self._rows(world.reset())
                alive[base:base + count] = [n in world.env.agents for n in self.players]
            else:
                obs[base:base + count] = rows_after
                for p, name in enumerate(self.players):
                    alive[base + p] = name in left
                    if name not in left:
                        obs[base + p, :self.spec_.local_dim] = 0
        infos: dict[str, Any] = {"alive": alive}
        if final:
            infos["final_obs"] = np.full(rows, None, dtype=object)
            infos["_final_obs"] = np.zeros(rows, bool)
            for row, value in final.items():
                infos["final_obs"][row], infos["_final_obs"][row] = value, True
        return obs, rewards, terms, truncs, infos

    def drain_episodes(self) -> list[WorldEpisode]:
        """The world episodes finished since the last call, in order."""
        out, self._finished = self._finished, []
        return out

    def close_extras(self, **kwargs: Any) -> None:
        for world in self.envs:
            world.env.close()


def task_spec(config: Any) -> EnvSpec | PlayerSpec:
    """The spec of ``config.env``: a Gymnasium task's :class:`~qtrl.rl.env.EnvSpec`
    or a multi-agent task's :class:`PlayerSpec` (made with ``config.env_kwarg``)."""
    if is_multiagent(config.env):
        return player_spec(config.env, config.env_kwarg)
    return env_spec(config.env, config.n_actions)


def task_views(config: Any, spec: EnvSpec | PlayerSpec) -> tuple[slice, slice] | None:
    """:func:`views` of a multi-agent task under ``config.critic_input``; None for
    a Gymnasium task."""
    if not isinstance(spec, PlayerSpec):
        return None
    return views(spec, config.critic_input or "global")


def make_task_envs(config: Any) -> Any:
    """``config.vector_envs`` copies of ``config.env``'s world: a
    :class:`PlayerVectorEnv`, or :func:`~qtrl.rl.env.make_vector_env`'s."""
    if is_multiagent(config.env):
        return PlayerVectorEnv(config.env, config.vector_envs, config.env_kwarg,
                               config.max_steps)
    return make_vector_env(config.env, config.vector_envs, config.max_steps, config.autoreset)


def evaluate_players(actor: Actor, env_id: str, env_kwargs: Sequence[str],
                     max_steps: int | None, episodes: int, seed: int = 0,
                     greedy: bool = False) -> np.ndarray:
    """Each player's undiscounted return in ``episodes`` episodes of one world of
    ``env_id`` (made with ``env_kwargs``, cut at ``max_steps``) played by
    ``actor`` (the policy on its columns: local observation and one-hot),
    ``(episodes, P)`` float64; resets and action draws from the evaluation
    streams of ``seed``."""
    envs = PlayerVectorEnv(env_id, 1, env_kwargs, max_steps)
    try:
        spec = envs.spec_
        play = ColumnsActor(actor, slice(0, spec.local_dim + len(spec.players)))
        envs.envs[0].np_random = generator(seed, Stream.EVAL_RESETS)
        sample = ActionSampler(generator(seed, Stream.EVAL_ACTIONS))
        obs, _ = envs.reset()
        done: list[WorldEpisode] = []
        while len(done) < episodes:
            obs, *_ = envs.step(sample.act(play, obs, greedy))
            done += envs.drain_episodes()
    finally:
        envs.close()
    return np.array([w.returns for w in done[:episodes]])

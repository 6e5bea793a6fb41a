"""What both loops do alike: check and build a run, seed it, play an update's
episodes, and the per-update bookkeeping of the circuits' random streams and
evaluation counts."""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np
import torch

from ..algos import Algorithm, make_algorithm
from ..config import TrainConfig
from ..errors import UserError
from ..rl.env import env_dims
from ..rl.policy import build_model
from ..rl.rollout import Rollout, collect_episodes
from ..run.callbacks import Callback
from ..run.seeds import Stream, integer_seed

__all__ = ["build", "check_config", "circuit_evals", "play", "reseed_circuits"]


def check_config(config: TrainConfig) -> tuple[int, int]:
    """Fail early (``UserError``) on what the dataclass cannot check alone: the
    environment and the model's size. Returns ``(obs_dim, n_actions)``."""
    obs_dim, n_actions = env_dims(config.env, config.n_actions)
    _model(config, obs_dim, n_actions, rank=0)
    return obs_dim, n_actions


def build(config: TrainConfig, rank: int) -> Algorithm:
    """The algorithm and its model for agent ``rank``, seeded by ``config.seed``
    (every agent builds the same initial parameters)."""
    obs_dim, n_actions = env_dims(config.env, config.n_actions)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    random.seed(config.seed)
    return make_algorithm(config, _model(config, obs_dim, n_actions, rank))


def _model(config: TrainConfig, obs_dim: int, n_actions: int, rank: int) -> Any:
    """:func:`~qtrl.rl.policy.build_model`, a size it refuses as a ``UserError``."""
    try:
        return build_model(config, obs_dim, n_actions, rank=rank)
    except ValueError as err:
        raise UserError(f"cannot build the policy for {config.env}: {err}") from None


def reseed_circuits(model: Any, seed: int, update: int, agent: int, shared: bool) -> None:
    """Restart the circuits' streams for ``update`` and zero its evaluation counts.

    ``shared``: SPSA directions alike on every agent (sync: they split one backward
    pass); else each agent's own (async workers)."""
    estimator = getattr(model, "estimator", None)
    if estimator is None:
        return
    estimator.counts.reset()
    spsa = (integer_seed(seed, Stream.SPSA_SHARED, update) if shared
            else integer_seed(seed, Stream.SPSA_OWN, agent, update))
    model.reseed(integer_seed(seed, Stream.SHOTS, agent, update), spsa)


def circuit_evals(model: Any) -> dict[str, float]:
    """This update's circuit evaluations (``quantum/`` keys): one forward and the
    whole backward, in all and by this agent; empty without an estimator."""
    estimator = getattr(model, "estimator", None)
    if estimator is None:
        return {}
    counts = estimator.counts
    total = counts.forward + counts.last_backward_total
    if model.chunk_shards is not None:  # the counts are this agent's chunks only
        total = model.chunks + estimator.backward_evaluations(model.chunks)
    return {"quantum/circuit_evals_per_update": total,
            "quantum/circuit_evals_this_agent": counts.forward + counts.last_backward}


def play(algo: Algorithm, envs: Any, episodes: int, rng: np.random.Generator, resets: Any,
         callback: Callback | None = None) -> tuple[Rollout, float, float]:
    """The first half of an update: ``algo.actor()`` (the weights, generated once),
    then ``episodes`` complete episodes played with it (``callback`` may wrap the
    actor). Returns the batch and the seconds each half took."""
    t0 = time.perf_counter()
    actor = algo.actor()
    t1 = time.perf_counter()
    if callback is not None:
        actor = callback.wrap_actor(actor)
    batch = collect_episodes(envs, actor, episodes, rng, resets)
    return batch, t1 - t0, time.perf_counter() - t1

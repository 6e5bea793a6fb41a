"""What both loops do alike: check and build a run, seed it, collect an update's
batch (complete episodes, or a fixed-length roll-out for the actor-critics), and
the per-update bookkeeping of the circuits' random streams and evaluation counts."""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np
import torch

from ..algos import Algorithm, make_algorithm
from ..config import TrainConfig
from ..errors import UserError
from ..rl.env import EnvSpec, EnvStreams, action_bounds
from ..rl.multiagent import PlayerSpec, task_spec, task_views
from ..rl.policy import build_model
from ..rl.rollout import Rollout, collect_episodes
from ..rl.steps import StepBatch, StepCollector
from ..run.callbacks import Callback
from ..run.memory_estimate import check_memory_fits
from ..run.seeds import Stream, generator, integer_seed

__all__ = ["EpisodeRollouts", "StepRollouts", "build", "check_config", "circuit_evals",
           "make_rollouts", "play", "reseed_circuits"]


def check_config(config: TrainConfig, processes: int | None = None) -> EnvSpec:
    """Fail early (``UserError``) on what the dataclass cannot check alone: the
    environment, its action space against the algorithm, the memory the run
    needs (``processes`` agents on this host; default ``config.agents``,
    estimated from the sizes before anything is built) and the model's size."""
    spec = task_spec(config)
    if spec.continuous and not config.actor_critic:
        raise UserError(f"--env {config.env} has continuous actions; --algo {config.algo} "
                        f"takes Discrete ones only: use --algo ppo or a2c")
    check_memory_fits(config, spec.obs_dim, spec.n_actions, spec.continuous,
                      processes=config.agents if processes is None else processes)
    model = _model(config, spec, rank=0)
    if config.noise is not None and config.backend == "torch" and not config.classical:
        # Exact noisy circuits check their density matrices' memory when they run,
        # not when built: run one generation here, before the run writes anything.
        model.generate()
    return spec


def build(config: TrainConfig, rank: int) -> Algorithm:
    """The algorithm and its model for agent ``rank``, seeded by ``config.seed``
    (every agent builds the same initial parameters)."""
    spec = task_spec(config)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    random.seed(config.seed)
    return make_algorithm(config, _model(config, spec, rank))


def _model(config: TrainConfig, spec: EnvSpec | PlayerSpec, rank: int) -> Any:
    """:func:`~qtrl.rl.policy.build_model`, a size it refuses as a ``UserError``."""
    try:
        return build_model(config, spec.obs_dim, spec.n_actions, rank=rank,
                           continuous=spec.continuous, views=task_views(config, spec),
                           players=len(getattr(spec, "players", ())) or 1)
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
    actor, t_generate = _actor(algo, callback)
    t0 = time.perf_counter()
    batch = collect_episodes(envs, actor, episodes, rng, resets)
    return batch, t_generate, time.perf_counter() - t0


def _actor(algo: Algorithm, callback: Callback | None) -> tuple[Any, float]:
    """``algo.actor()`` (the weights generated once), wrapped by ``callback``,
    and the seconds the generation took."""
    t0 = time.perf_counter()
    actor = algo.actor()
    seconds = time.perf_counter() - t0
    return (callback.wrap_actor(actor) if callback is not None else actor), seconds


class EpisodeRollouts:
    """REINFORCE's batches: each update plays its complete episodes
    (:func:`play`), the copies reset from their streams at the update, so an
    update is a pure function of ``(seed, agent, update)``."""

    def __init__(self, config: TrainConfig, envs: Any, rank: int) -> None:
        self.config, self.envs, self.rank = config, envs, rank
        self.resets = EnvStreams(config.seed, config.vector_envs, agent=rank)

    def __call__(self, algo: Algorithm, update: int,
                 callback: Callback | None) -> tuple[Rollout, float, float]:
        config = self.config
        return play(algo, self.envs, config.episodes_in_update(update),
                    generator(config.seed, Stream.ACTIONS, self.rank, update),
                    self.resets.at(update), callback)


class StepRollouts:
    """The actor-critics' batches: ``config.rollout_steps`` steps of every copy
    per update, episodes carrying on across updates. The copies reset from their
    streams once, at the first update this process plays (a resumed run starts
    fresh episodes there)."""

    def __init__(self, config: TrainConfig, algo: Algorithm, envs: Any, rank: int,
                 first_update: int) -> None:
        self.config, self.rank = config, rank
        obs = EnvStreams(config.seed, config.vector_envs, agent=rank).reset(envs, first_update)
        norm = getattr(algo.model, "obs_norm", None)
        self.collector = StepCollector(envs, obs, action_bounds(envs.single_action_space),
                                       *((norm.observe, norm.normalize) if norm else ()))

    def __call__(self, algo: Algorithm, update: int,
                 callback: Callback | None) -> tuple[StepBatch, float, float]:
        actor, t_generate = _actor(algo, callback)
        t0 = time.perf_counter()
        batch = self.collector.collect(actor, self.config.rollout_steps, generator(
            self.config.seed, Stream.ACTIONS, self.rank, update))
        return batch, t_generate, time.perf_counter() - t0


def make_rollouts(config: TrainConfig, algo: Algorithm, envs: Any, rank: int,
                  first_update: int) -> EpisodeRollouts | StepRollouts:
    """What ``algo`` collects per update (``algo.collects``)."""
    if algo.collects == "steps":
        return StepRollouts(config, algo, envs, rank, first_update)
    return EpisodeRollouts(config, envs, rank)

"""Synchronous training: every agent runs this loop on its own environments, one
all-reduce per update averages the gradients, and every agent takes the same
optimizer step (Dist-QTRL; one agent is ordinary single-process training).

Per update:

1. ``actor = algo.actor()``: the policy weights, generated once for the update;
2. the roll-out: that actor plays the update's episodes (REINFORCE) or its
   fixed number of steps (PPO, A2C) over a vector env;
3. ``algo.update(batch, average, rng)``: loss, backward, all-reduce, optimizer
   step (PPO: one of each per minibatch);
4. agent 0 records every agent's episodes and checkpoints.

The run stops when its budget is spent (:meth:`~qtrl.config.TrainConfig.budget_used`:
REINFORCE's updates, the actor-critics' finished episodes, or ``total_steps``);
every agent counts every agent's episodes and steps, so all stop together.

Randomness: everything random in update ``u`` of agent ``a`` is a pure function
of ``(seed, a, u)`` (:mod:`qtrl.run.seeds`), so a resumed REINFORCE run
continues exactly like an uninterrupted one (the actor-critics' episodes carry
on across updates: a resumed one starts fresh episodes).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..algos import anneal
from ..config import TrainConfig
from ..distributed import (
    AgentContext,
    allreduce_gradients,
    broadcast_parameters,
    check_agreement,
    gather_objects,
    gather_over_agents,
    sum_over_agents,
)
from ..generator import QuantumTrain
from ..quantum.sharding import RowShards
from ..rl.multiagent import make_task_envs
from ..rl.policy import counts_dict
from ..run.callbacks import Callback
from ..run.directory import (
    CHECKPOINT,
    checkpoint_state,
    restore_run,
    save_checkpoint,
    write_config,
)
from ..run.recorder import Recorder, Timings
from ..run.seeds import Stream, generator
from ..run.timing import AgentTimes, split_update
from .common import build, circuit_evals, make_rollouts, reseed_circuits
from .finite import check_checkpoint_finite, check_finite

__all__ = ["spread_over_agents", "train_sync"]


def train_sync(config: TrainConfig, run_dir: Path, *, resume: bool, callback: Callback,
               tensorboard: bool, ctx: AgentContext) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` as agent ``ctx.rank``; agent 0 returns the
    summary also written to ``summary.json``, the others ``{}``."""
    algo = build(config, ctx.rank)
    if ctx.distributed and hasattr(algo, "sum_over_agents"):   # value statistics
        algo.sum_over_agents = sum_over_agents(ctx)
    model = algo.model
    spread_over_agents(model, ctx)
    params = list(model.parameters())
    broadcast_parameters(params, ctx)  # the same seed gives the same start; make sure
    traffic = {"bytes": 0}
    spent = {"wall": 0.0, "cpu": 0.0}   # this update's all-reduces

    def average() -> None:  # between backward and the optimizer step
        t0, c0 = time.perf_counter(), time.process_time()
        traffic["bytes"] = allreduce_gradients(params, ctx)
        spent["wall"] += time.perf_counter() - t0
        spent["cpu"] += time.process_time() - c0

    resumed = (restore_run(run_dir, config, model, algo.optimizer, ctx.is_main)
               if resume else None)
    update = resumed.update if resumed else 0
    saved_at = resumed.update if resumed else None                  # the last good checkpoint
    episodes = len(resumed.returns) if resumed else 0               # every agent's
    steps = int(resumed.state.get("steps_collected", 0)) if resumed else 0
    envs = make_task_envs(config)
    recorder = None
    try:
        rollouts = make_rollouts(config, algo, envs, ctx.rank, update)
        cpu0 = time.process_time()   # this agent's CPU seconds (all its threads): see qtrl.run.timing
        if ctx.is_main:
            write_config(run_dir, config)
            recorder = Recorder(run_dir, config, callback, tensorboard, resumed,
                                getattr(envs, "players", None))
        while config.budget_used(update, episodes, steps) < 1:
            if config.anneal_lr:
                anneal(algo.optimizer, config.budget_used(update, episodes, steps))
            reseed_circuits(model, config.seed, update, ctx.rank, shared=True)

            # ---- generate once → roll out → update (with the all-reduces) --------------
            spent["wall"] = spent["cpu"] = 0.0
            batch, t_generate, t_rollout = rollouts(algo, update, callback)
            t0 = time.perf_counter()
            stats = algo.update(batch, average if ctx.distributed else None,
                                generator(config.seed, Stream.MINIBATCHES, ctx.rank, update))
            if getattr(model, "obs_norm", None) is not None:
                model.obs_norm.commit(sum_over_agents(ctx) if ctx.distributed else None)
            learn = time.perf_counter() - t0 - spent["wall"]
            timings = Timings(t_generate, t_rollout, learn)
            mine = AgentTimes(t_generate, t_rollout, learn, spent["wall"],
                              time.process_time() - cpu0 - spent["cpu"],   # + bookkeeping
                              spent["cpu"])
            update += 1

            # ---- all finite, agents agree? then agent 0 records everyone's episodes -----
            players = getattr(batch, "player_returns", None)
            every_agent = gather_objects((batch.episode_returns.tolist(),
                                          batch.episode_lengths.tolist(), batch.env_steps,
                                          stats["loss"],
                                          None if players is None else players.tolist(),
                                          tuple(mine)), ctx)
            # The next update's compute starts here: agent 0's recording and
            # checkpoint below delay its next all-reduce like any computation.
            cpu0 = time.process_time()
            # Every agent sees every loss and holds the same gradient norm and
            # parameters, so all stop here together.
            check_finite(update, [loss for _, _, _, loss, *_ in every_agent],
                         stats.get("grad_norm"), params, run_dir / CHECKPOINT, saved_at)
            if ctx.distributed and update % config.sync_check_every == 0:
                check_agreement(params, ctx, update)
            episodes += sum(len(rets) for rets, *_ in every_agent)
            steps += sum(n for _, _, n, *_ in every_agent)
            if recorder is None:
                continue
            for agent, (rets, lens, _, _, per_player, _) in enumerate(every_agent):
                recorder.episodes(update, rets, lens, agent, per_player)
            recorder.update(update, [r for rets, *_ in every_agent for r in rets],
                            batch.episode_lengths, batch.truncated, stats, timings,
                            algo.optimizer.param_groups[0]["lr"], circuit_evals(model),
                            env_steps=batch.env_steps,
                            split=split_update([times for *_, times in every_agent]))
            if (update % config.checkpoint_every == 0
                    or config.budget_used(update, episodes, steps) >= 1):
                recorder.flush()
                state = checkpoint_state(config, model, algo.optimizer, update,
                                         recorder.env_steps, recorder.wall(), recorder.returns,
                                         recorder.lengths, steps_collected=steps)
                check_checkpoint_finite(update, state, run_dir / CHECKPOINT, saved_at)
                save_checkpoint(run_dir / CHECKPOINT, state)
                saved_at = update
    finally:
        envs.close()
        if recorder is not None:
            recorder.close()
    if recorder is None:
        return {}
    counts = counts_dict(model)
    weight_bytes = params[0].element_size()   # classical DP would send weights of this dtype
    return recorder.finish(counts, updates=update, steps_collected=steps,
                           bytes_allreduced_per_update=traffic["bytes"],
                           critical_path_s=round(recorder.critical_path, 3),
                           bytes_allreduced_per_update_classical_dp=weight_bytes * counts[
                               "target_weights"])


def spread_over_agents(model: Any, ctx: AgentContext) -> None:
    """Give each agent (QPU) its share of the quantum work of an update.

    Several chunk circuits: each agent evaluates its share of the chunks (and
    their shifted circuits), all-gathered. One circuit with a gradient
    estimator: each agent evaluates its share of the shifted circuits.
    """
    if not ctx.distributed or not isinstance(model, QuantumTrain):
        return
    if model.chunks > 1:
        model.spread_chunks(RowShards(model.chunks, ctx.rank, ctx.world_size,
                                      gather=gather_over_agents(ctx),
                                      combine=sum_over_agents(ctx)))
    elif model.estimator is not None:
        model.estimator.set_partition(ctx.rank, ctx.world_size, combine=sum_over_agents(ctx))

"""Asynchronous Dist-QTRL (``qtrl train --agents N --mode async``), A3C-like.

Agent 0 is the *learner*: it owns the parameters, the optimizer and the run
directory, and collects no episodes. Agents ``1..N-1`` are *workers*; each loops
without waiting for the others:

1. pull: receive the current parameters, their version (the number of updates
   applied so far) and how many episodes to collect;
2. ``algo.actor()``, roll out, ``algo.gradient(batch)`` — the sync loop's
   update short of the optimizer step;
3. push the gradient, the parameter version it was computed at, and the
   episodes' returns and statistics to agent 0.

The learner takes the pushes in the order they arrive. A gradient computed at
version ``v`` when the learner is at version ``V`` has *staleness* ``V - v``: it
is applied (``algo.step()``: clipped, one optimizer step, learning rate
annealed by the number of updates applied) if ``V - v <= max_staleness``,
dropped otherwise. Either way its episodes were played and are logged
(``metrics.csv``, ``agent`` column) and count towards ``--episodes``; the learner hands out exactly the episodes still
to play, then answers each worker's next push with *stop*.

Seeds: worker ``r``'s ``k``-th push plays with the streams of agent ``r`` at
update ``k`` (:mod:`qtrl.run.seeds`); ``k`` is counted by the learner, so a
resumed run continues each worker's stream. With one worker and exact gradients the
run is plain sequential training on that worker's seeds (with shots or SPSA
a worker draws from its own streams). With several, the arrival order —
hence the result — depends on timing: async runs, resumed or not, are not
reproducible bit for bit (sync runs are).

A2C (A3C): a worker plays its ``--num-steps`` roll-out instead of episodes
(its environments carry on from one push to the next) and pushes the
gradient with however many episodes finished; the learner answers *go* until
the budget (:meth:`~qtrl.config.TrainConfig.budget_used`: finished episodes,
``--total-steps``) is spent, so a run may overshoot it by a roll-out per worker.
PPO, which takes many steps per roll-out, is sync only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ..algos import Algorithm, anneal
from ..config import TrainConfig
from ..distributed import AgentContext
from ..distributed.parameter_server import Push, recv_push, recv_reply, send_push, send_reply
from ..distributed.sync import (
    flat_gradients,
    flat_parameters,
    load_flat_parameters,
    set_flat_gradients,
)
from ..errors import UserError
from ..rl.env import EnvStreams, make_vector_env
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
from .common import StepRollouts, build, circuit_evals, play, reseed_circuits
from .finite import check_checkpoint_finite, check_finite

__all__ = ["AgentSilent", "WorkerReport", "pack_report", "train_async", "unpack_report"]

log = logging.getLogger(__name__)

_EVALS = ("quantum/circuit_evals_per_update", "quantum/circuit_evals_this_agent")


class AgentSilent(RuntimeError):
    """A worker pushed nothing for longer than ``--agent-timeout``."""


class WorkerReport(NamedTuple):
    """What a worker sends besides the gradient, about the update it played."""

    stats: dict[str, float]          # the algorithm's gradient() stats
    timings: Timings
    evals: dict[str, float]          # circuit evaluations (quantum/ keys), maybe empty
    returns: np.ndarray              # (E,) float64
    lengths: np.ndarray              # (E,) int64
    truncated: np.ndarray            # (E,) bool


def pack_report(report: WorkerReport, stat_names: Sequence[str]) -> torch.Tensor:
    """``float64`` of ``len(stat_names) + 5 + 3E`` values: stats, 3 timings, 2
    circuit counts (NaN without circuits), then returns, lengths, truncation flags."""
    evals = [report.evals.get(k, math.nan) for k in _EVALS]
    head = [report.stats[k] for k in stat_names] + list(report.timings) + evals
    return torch.from_numpy(np.concatenate([
        np.asarray(head, dtype=np.float64), report.returns.astype(np.float64),
        report.lengths.astype(np.float64), report.truncated.astype(np.float64)]))


def unpack_report(info: torch.Tensor, episodes: int, stat_names: Sequence[str]) -> WorkerReport:
    """Inverse of :func:`pack_report`."""
    values = info.numpy()
    n = len(stat_names)
    head, rest = values[:n + 5], values[n + 5:].reshape(3, episodes)
    evals = {} if math.isnan(head[n + 3]) else {k: int(v) for k, v in zip(_EVALS, head[n + 3:])}
    return WorkerReport(dict(zip(stat_names, map(float, head[:n]), strict=True)),
                        Timings(*map(float, head[n:n + 3])), evals, rest[0].copy(),
                        rest[1].astype(np.int64), rest[2].astype(bool))


# ------------------------------------------------------------------------------------
# Both roles
# ------------------------------------------------------------------------------------

def train_async(config: TrainConfig, run_dir: Path, *, resume: bool, callback: Callback,
                tensorboard: bool, ctx: AgentContext) -> dict[str, Any]:
    """One agent of an asynchronous run: the learner (agent 0) returns the summary
    also written to ``summary.json``; a worker returns ``{}``."""
    if not ctx.distributed or ctx.world_size < 2:
        raise UserError(f"--mode async needs a learner and at least one worker: start it "
                        f"with --agents 2 or more (got {ctx.world_size} agent process)")
    algo = build(config, ctx.rank)
    if ctx.is_main:
        return _learn(config, Path(run_dir), algo, ctx, resume, callback, tensorboard)
    _work(config, algo, ctx)
    return {}


# ------------------------------------------------------------------------------------
# A worker: pull → roll out → gradient → push, until told to stop
# ------------------------------------------------------------------------------------

def _work(config: TrainConfig, algo: Algorithm, ctx: AgentContext) -> None:
    model = algo.model
    params = list(model.parameters())
    like = flat_parameters(params)
    envs = make_vector_env(config.env, config.vector_envs, config.max_steps, config.autoreset)
    resets = EnvStreams(config.seed, config.vector_envs, agent=ctx.rank)
    steps: StepRollouts | None = None          # A2C: roll-outs that carry on across pushes
    try:
        while True:
            reply = recv_reply(like)
            if reply.episodes == 0:
                log.debug("agent %d: stop after %d updates", ctx.rank, reply.update)
                return
            load_flat_parameters(params, reply.params)
            # No backward pass is split between workers: own SPSA directions too.
            reseed_circuits(model, config.seed, reply.update, ctx.rank, shared=False)
            if algo.collects == "steps":
                steps = steps or StepRollouts(config, algo, envs, ctx.rank, reply.update)
                batch, t_generate, t_rollout = steps(algo, reply.update, None)
            else:
                batch, t_generate, t_rollout = play(
                    algo, envs, reply.episodes,
                    generator(config.seed, Stream.ACTIONS, ctx.rank, reply.update),
                    resets.at(reply.update))
            t0 = time.perf_counter()
            stats = algo.gradient(batch)
            report = WorkerReport(stats, Timings(t_generate, t_rollout, time.perf_counter() - t0),
                                  circuit_evals(model), batch.episode_returns,
                                  batch.episode_lengths, batch.truncated)
            send_push(reply.version, len(batch.episode_returns), reply.update,
                      flat_gradients(params), pack_report(report, algo.stat_names))
    finally:
        envs.close()


# ------------------------------------------------------------------------------------
# The learner: take pushes as they come, apply the fresh ones, record, checkpoint
# ------------------------------------------------------------------------------------

def _learn(config: TrainConfig, run_dir: Path, algo: Algorithm, ctx: AgentContext,
           resume: bool, callback: Callback, tensorboard: bool) -> dict[str, Any]:
    model, optimizer = algo.model, algo.optimizer
    params = list(model.parameters())
    workers = range(1, ctx.world_size)
    version = 0
    dropped, staleness_sum = 0, 0
    worker_updates = [0] * ctx.world_size  # pushes received per worker: its next seeds
    resumed = restore_run(run_dir, config, model, optimizer, main=True) if resume else None
    if resumed:
        version = resumed.update
        counters = resumed.state.get("async", {})
        dropped = int(counters.get("dropped", 0))
        staleness_sum = int(counters.get("staleness_sum", 0))
        saved = list(counters.get("worker_updates", []))
        worker_updates[:len(saved)] = saved[:ctx.world_size]
    write_config(run_dir, config)
    recorder = Recorder(run_dir, config, callback, tensorboard, resumed)
    assigned = len(recorder.returns)  # episodes handed out (played or being played)
    collected = int(resumed.state.get("steps_collected", 0)) if resumed else 0
    traffic = {"push": 0, "reply": 0}
    last_heard = dict.fromkeys(workers, time.monotonic())
    like = flat_parameters(params)  # the flat gradient's shape and dtype

    saved = {"at": version if resumed else None}   # the last good checkpoint's update

    def checkpoint() -> None:
        state = checkpoint_state(
            config, model, optimizer, version, recorder.env_steps, recorder.wall(),
            recorder.returns, recorder.lengths, steps_collected=collected,
            **{"async": {"dropped": dropped, "staleness_sum": staleness_sum,
                         "worker_updates": list(worker_updates)}})
        check_checkpoint_finite(version, state, run_dir / CHECKPOINT, saved["at"])
        save_checkpoint(run_dir / CHECKPOINT, state)
        saved["at"] = version

    def answer(worker: int) -> bool:
        """Send ``worker`` the parameters and its next share of episodes (or stop);
        A2C: a roll-out (any positive count) until the budget is spent."""
        nonlocal assigned
        if algo.collects == "steps":
            n = int(config.budget_used(version, len(recorder.returns), collected) < 1)
        else:
            n = min(config.episodes_per_update, config.episodes - assigned)
        assigned += max(n, 0)
        traffic["reply"] = send_reply(worker, version, max(n, 0), worker_updates[worker],
                                      flat_parameters(params))
        last_heard[worker] = time.monotonic()
        return n > 0

    def apply(push: Push, report: WorkerReport) -> None:
        nonlocal version, staleness_sum
        staleness = version - push.version
        set_flat_gradients(params, push.grad)
        if config.anneal_lr:
            anneal(optimizer, version / config.updates if algo.collects == "episodes"
                   else config.budget_used(version, len(recorder.returns), collected))
        stats = {**report.stats, "grad_norm": algo.step()}
        version += 1
        check_finite(version, [stats["loss"]], stats["grad_norm"], params,
                     run_dir / CHECKPOINT, saved["at"])
        staleness_sum += staleness
        recorder.update(version, report.returns.tolist(), report.lengths, report.truncated,
                        stats, report.timings, optimizer.param_groups[0]["lr"],
                        {**report.evals, "async/agent": push.source,
                         "async/staleness": staleness, "async/dropped": dropped})
        if version % config.checkpoint_every == 0:
            recorder.logger.flush()
            checkpoint()

    try:
        active = {w for w in workers if answer(w)}
        for w in set(workers) - active:
            last_heard.pop(w)
        while active:
            push = recv_push(like)
            worker = push.source
            traffic["push"] = push.nbytes
            worker_updates[worker] += 1
            if algo.collects == "steps":
                collected += config.rollout_steps * config.vector_envs
            report = unpack_report(push.info, push.episodes, algo.stat_names)
            fresh = version - push.version <= config.max_staleness
            recorder.episodes(version + fresh, report.returns.tolist(),
                              report.lengths.tolist(), worker)
            if fresh:
                apply(push, report)
            else:
                dropped += 1
                log.debug("dropped agent %d's gradient: version %d, now %d (bound %d)",
                          worker, push.version, version, config.max_staleness)
            if not answer(worker):
                active.discard(worker)
                last_heard.pop(worker)
            _check_silent(last_heard, config.agent_timeout)
        recorder.logger.flush()
        checkpoint()
    finally:
        recorder.close()

    return recorder.finish(counts_dict(model), steps_collected=collected,
                           updates=version, updates_applied=version, updates_dropped=dropped,
                           max_staleness=config.max_staleness,
                           mean_staleness=staleness_sum / version if version else None,
                           bytes_pushed_per_update=traffic["push"],
                           bytes_pulled_per_update=traffic["reply"])


def _check_silent(last_heard: dict[int, float], timeout_s: float) -> None:
    """Raise :class:`AgentSilent` naming a worker that has had work for longer than
    ``timeout_s`` without pushing (the others keep the learner busy, so no receive
    of its own times out)."""
    now = time.monotonic()
    silent = sorted(w for w, t in last_heard.items() if now - t > timeout_s)
    if silent:
        raise AgentSilent(f"agent(s) {silent} pushed no gradient for more than {timeout_s:g} s "
                          f"(--agent-timeout): timed out")

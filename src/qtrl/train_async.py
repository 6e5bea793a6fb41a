"""Asynchronous Dist-QTRL (``qtrl train --agents N --mode async``), A3C-like.

Agent 0 is the *learner*: it owns the parameters, the Adam optimizer and the run
directory, and collects no episodes. Agents ``1..N-1`` are *workers*; each loops
without waiting for the others:

1. pull: receive the current parameters, their version (the number of updates
   applied so far) and how many episodes to collect;
2. generate the weights once, roll out, compute the REINFORCE gradient — the
   hot path of :func:`qtrl.train.reinforce_update` short of the optimizer step;
3. push the gradient, the parameter version it was computed at, and the
   episodes' returns and statistics to agent 0.

The learner takes the pushes in the order they arrive. A gradient computed at
version ``v`` when the learner is at version ``V`` has *staleness* ``V - v``: it
is applied (clipped, one Adam step, learning rate annealed by the number of
updates applied) if ``V - v <= max_staleness``, dropped otherwise. Either way its
episodes were played and are logged (``metrics.csv``, ``agent`` column) and
count towards ``--episodes``; the learner hands out exactly the episodes still
to play, then answers each worker's next push with *stop*.

Seeds: worker ``r``'s ``k``-th push plays with
``update_seeds(seed, k, n_envs, agent=r)``; ``k`` is counted by the learner, so
a resumed run continues each worker's stream. With one worker the run is plain
sequential training on that worker's seeds. With several, the arrival order —
hence the result — depends on timing: async runs, resumed or not, are not
reproducible bit for bit (sync runs are).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import TrainConfig
from .distributed import AgentContext
from .distributed.parameter_server import Push, recv_push, recv_reply, send_push, send_reply
from .distributed.sync import (
    flat_gradients,
    flat_parameters,
    load_flat_parameters,
    set_flat_gradients,
)
from .errors import UserError
from .logger import Display, Logger
from .rl.env import make_vector_env
from .rl.policy import build_model, make_optimizer
from .rl.rollout import Rollout
from .train import (
    CHECKPOINT,
    SINGLE_AGENT,
    Update,
    apply_gradient,
    atomic_write_text,
    check_config,
    checkpoint_state,
    finish_run,
    quantum_seeds,
    record_update,
    reinforce_gradient,
    restore_run,
    save_checkpoint,
    update_seeds,
)

__all__ = ["AgentSilent", "pack_update", "train_async", "unpack_update"]

log = logging.getLogger(__name__)

# loss, policy loss, entropy, grad norm, 3 timings, 2 circuit counts, then E returns,
# E lengths, E truncation flags
_STATS = 9


class AgentSilent(RuntimeError):
    """A worker pushed nothing for longer than ``--agent-timeout``."""


def pack_update(step: Update, circuit_evals: tuple[int, int] | None) -> torch.Tensor:
    """What a worker sends besides the gradient: ``float64`` of ``9 + 3E`` values."""
    b = step.batch
    evals = circuit_evals or (math.nan, math.nan)
    head = [step.loss, step.policy_loss, step.entropy, step.grad_norm, step.t_generate,
            step.t_rollout, step.t_learn, *evals]
    return torch.from_numpy(np.concatenate([
        np.asarray(head, dtype=np.float64), b.episode_returns.astype(np.float64),
        b.episode_lengths.astype(np.float64), b.truncated.astype(np.float64)]))


def unpack_update(info: torch.Tensor, episodes: int) -> tuple[Update, tuple[int, int] | None]:
    """Inverse of :func:`pack_update`: an :class:`~qtrl.train.Update` whose batch holds
    the per-episode fields only (no steps), and the circuit counts."""
    values = info.numpy()
    head, rest = values[:_STATS], values[_STATS:].reshape(3, episodes)
    lengths = rest[1].astype(np.int64)
    empty = np.zeros(0)
    batch = Rollout(empty.astype(np.float32), empty.astype(np.int64), empty, empty,
                    empty.astype(np.int64), rest[0].copy(), lengths, rest[2].astype(bool),
                    int(lengths.sum()))
    evals = None if math.isnan(head[7]) else (int(head[7]), int(head[8]))
    return Update(batch, *(float(v) for v in head[:7])), evals


# ------------------------------------------------------------------------------------
# Both roles
# ------------------------------------------------------------------------------------

def train_async(config: TrainConfig, run_dir: Path | str, *, resume: bool = False,
                display: Display | None = None, tensorboard: bool = True,
                ctx: AgentContext = SINGLE_AGENT) -> dict[str, Any]:
    """One agent of an asynchronous run: the learner (agent 0) returns the summary
    also written to ``summary.json``; a worker returns ``{}``."""
    if not ctx.distributed or ctx.world_size < 2:
        raise UserError(f"--mode async needs a learner and at least one worker: start it "
                        f"with --agents 2 or more (got {ctx.world_size} agent process)")
    obs_dim, n_actions = check_config(config)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    random.seed(config.seed)
    model = build_model(config, obs_dim, n_actions, rank=ctx.rank)
    if ctx.is_main:
        return _learn(config, Path(run_dir), model, ctx, resume, display, tensorboard)
    _work(config, model, ctx)
    return {}


# ------------------------------------------------------------------------------------
# A worker: pull → roll out → gradient → push, until told to stop
# ------------------------------------------------------------------------------------

def _work(config: TrainConfig, model: torch.nn.Module, ctx: AgentContext) -> None:
    params = list(model.parameters())
    estimator = getattr(model, "estimator", None)
    like = flat_parameters(params)
    envs = make_vector_env(config.env, config.vector_envs, config.max_steps, config.autoreset)
    try:
        while True:
            reply = recv_reply(like)
            if reply.episodes == 0:
                log.debug("agent %d: stop after %d updates", ctx.rank, reply.update)
                return
            load_flat_parameters(params, reply.params)
            env_seeds, action_rng = update_seeds(config.seed, reply.update, config.vector_envs,
                                                 agent=ctx.rank)
            if estimator is not None:
                estimator.counts.reset()
                # No backward pass is split between workers: own SPSA directions too.
                model.reseed(*quantum_seeds(config.seed, reply.update, ctx.rank, shared=False))
            step = reinforce_gradient(model, envs, reply.episodes, env_seeds, action_rng,
                                      config.gamma, config.entropy)
            evals = None
            if estimator is not None:
                counts = estimator.counts
                evals = (counts.forward + counts.last_backward_total,
                         counts.forward + counts.last_backward)
            send_push(reply.version, reply.episodes, reply.update, flat_gradients(params),
                      pack_update(step, evals))
    finally:
        envs.close()


# ------------------------------------------------------------------------------------
# The learner: take pushes as they come, apply the fresh ones, log, checkpoint
# ------------------------------------------------------------------------------------

def _learn(config: TrainConfig, run_dir: Path, model: torch.nn.Module, ctx: AgentContext,
           resume: bool, display: Display | None, tensorboard: bool) -> dict[str, Any]:
    params = list(model.parameters())
    optimizer = make_optimizer(model, config)
    workers = range(1, ctx.world_size)
    version, env_steps, wall_offset = 0, 0, 0.0
    returns_hist: list[float] = []
    lengths_hist: list[int] = []
    dropped, staleness_sum = 0, 0
    worker_updates = [0] * ctx.world_size  # pushes received per worker: its next seeds
    if resume:
        version, env_steps, wall_offset, returns_hist, lengths_hist, state = restore_run(
            run_dir, config, model, optimizer, main=True)
        counters = state.get("async", {})
        dropped = int(counters.get("dropped", 0))
        staleness_sum = int(counters.get("staleness_sum", 0))
        saved = list(counters.get("worker_updates", []))
        worker_updates[:len(saved)] = saved[:ctx.world_size]
    atomic_write_text(run_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")

    logger = Logger(run_dir, display, purge_step=version if resume else None,
                    tensorboard=tensorboard)
    logger.display.start(config.episodes, len(returns_hist))
    t_start = time.perf_counter()
    episodes_at_start = len(returns_hist)
    assigned = len(returns_hist)  # episodes handed out (played or being played)
    traffic = {"push": 0, "reply": 0}
    last_heard = dict.fromkeys(workers, time.monotonic())
    like = flat_parameters(params)  # the flat gradient's shape and dtype

    def wall() -> float:
        return wall_offset + time.perf_counter() - t_start

    def checkpoint() -> None:
        save_checkpoint(run_dir / CHECKPOINT, checkpoint_state(
            config, model, optimizer, version, env_steps, wall(), returns_hist, lengths_hist,
            **{"async": {"dropped": dropped, "staleness_sum": staleness_sum,
                         "worker_updates": list(worker_updates)}}))

    def answer(worker: int) -> bool:
        """Send ``worker`` the parameters and its next share of episodes (or stop)."""
        nonlocal assigned
        n = min(config.episodes_per_update, config.episodes - assigned)
        assigned += max(n, 0)
        traffic["reply"] = send_reply(worker, version, max(n, 0), worker_updates[worker],
                                      flat_parameters(params))
        last_heard[worker] = time.monotonic()
        return n > 0

    def apply(push: Push, step: Update, evals: tuple[int, int] | None) -> None:
        nonlocal version, staleness_sum
        staleness = version - push.version
        set_flat_gradients(params, push.grad)
        if config.anneal_lr:
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * max(0.0, 1.0 - version / config.updates)
        apply_gradient(model, optimizer, config.max_grad_norm)
        version += 1
        staleness_sum += staleness
        now = wall()
        done_here = len(returns_hist) - episodes_at_start
        record_update(logger, step, step.batch.episode_returns.tolist(), returns_hist,
                      env_steps, optimizer.param_groups[0]["lr"], evals, now,
                      done_here / max(time.perf_counter() - t_start, 1e-9))
        logger.record("async/agent", push.source)
        logger.record("async/staleness", staleness)
        logger.record("async/dropped", dropped)
        logger.dump(version, len(returns_hist))
        if version % config.checkpoint_every == 0:
            logger.flush()
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
            step, evals = unpack_update(push.info, push.episodes)
            fresh = version - push.version <= config.max_staleness
            now = wall()
            for ret, length in zip(step.batch.episode_returns.tolist(),
                                   step.batch.episode_lengths.tolist(), strict=True):
                env_steps += int(length)
                returns_hist.append(ret)
                lengths_hist.append(int(length))
                logger.episode(version + fresh, len(returns_hist), ret, length, now, worker)
            if fresh:
                apply(push, step, evals)
            else:
                dropped += 1
                log.debug("dropped agent %d's gradient: version %d, now %d (bound %d)",
                          worker, push.version, version, config.max_staleness)
            if not answer(worker):
                active.discard(worker)
                last_heard.pop(worker)
            _check_silent(last_heard, config.agent_timeout)
        logger.flush()
        checkpoint()
    finally:
        logger.close()

    return finish_run(run_dir, config, model, returns_hist, env_steps, wall(),
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

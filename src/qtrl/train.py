"""Train a Quantum-Train (or classical) policy with REINFORCE — the whole loop.

Read it top to bottom: set-up, then one update per iteration following the
hot path of DESIGN §4:

1. generate the policy weights once (circuit + mapping model, with autograd);
2. roll out ``episodes_per_update`` complete episodes over a vector env with
   those weights *detached* (numpy actor, no autograd);
3. recompute log π(a|s) of every collected step in one batched, differentiable
   forward (``torch.func.functional_call`` with the generated weights);
4. REINFORCE loss → backward into circuit angles and mapping model → Adam step;
5. log, checkpoint.

``--classical`` runs the same loop with the policy network's own parameters
as the "generated" weights: the baseline.

Randomness. The initial parameters come from ``torch.manual_seed(seed)``.
Everything random inside update ``u`` depends only on ``(seed, agent, u)``: the
action draws come from ``SeedSequence(seed, spawn_key=(agent, u, 1))``, the
environments' resets from each copy's stream advanced to block ``u``
(:class:`~qtrl.rl.env.EnvStreams`). With the parameters, that is all an update
depends on: a resumed run continues bit-for-bit like an uninterrupted one.

The run directory (DESIGN §5): ``config.json``, ``metrics.csv`` (one row per
episode), ``progress.csv`` (one row per update), TensorBoard events,
``checkpoint.pt`` (atomic), ``learning_curve.png``, ``summary.json``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import pickle
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from . import jit
from .config import QUANTUM_FIELDS, TrainConfig
from .distributed import (
    AgentContext,
    allreduce_gradients,
    broadcast_parameters,
    check_agreement,
    gather_objects,
    gather_over_agents,
    sum_over_agents,
)
from .errors import UserError
from .generator import QuantumTrain
from .logger import Display, Logger, truncate_csv
from .presets import build_policy
from .quantum.sharding import RowShards
from .rl.direct import direct_gradient
from .rl.env import EnvStreams, env_dims, make_vector_env
from .rl.optim import clip_, global_norm
from .rl.policy import (
    Actor,
    ClassicalPolicy,
    build_model,
    counts_dict,
    make_actor,
    make_optimizer,
)
from .rl.policy_gradient import dense_reinforce_loss
from .rl.reinforce import normalise_returns, reinforce_loss
from .rl.rollout import Resets, Rollout, collect_episodes, play

__all__ = [
    "CHECKPOINT",
    "WINDOW",
    "Resumed",
    "Update",
    "apply_gradient",
    "atomic_write_text",
    "check_config",
    "checkpoint_state",
    "create_run_dir",
    "evaluate",
    "finish_run",
    "load_checkpoint",
    "load_policy",
    "load_trained_model",
    "moving_average",
    "quantum_seeds",
    "record_update",
    "reinforce_gradient",
    "reinforce_update",
    "restore_run",
    "save_checkpoint",
    "train",
    "update_seeds",
]

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
WINDOW = 100  # episodes in the moving average
SINGLE_AGENT = AgentContext()  # not distributed


# ------------------------------------------------------------------------------------
# Run directory and checkpoints
# ------------------------------------------------------------------------------------

def check_config(config: TrainConfig) -> tuple[int, int]:
    """Fail early (``UserError``) on what the dataclass cannot check alone: the
    environment and the model's size. Returns ``(obs_dim, n_actions)``."""
    obs_dim, n_actions = env_dims(config.env, config.n_actions)
    try:
        build_model(config, obs_dim, n_actions)
    except ValueError as err:
        raise UserError(f"cannot build the policy for {config.env}: {err}") from None
    return obs_dim, n_actions


def create_run_dir(out: Path | str | None, config: TrainConfig) -> Path:
    """Create the run directory; never reuse one that holds anything.

    ``out=None`` gives ``runs/<name>-<date>-<time>``.
    """
    if out is None:
        out = Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise UserError(f"--out {out}: exists and is not a directory")
        if (out / "config.json").exists() or (out / CHECKPOINT).exists():
            raise UserError(f"--out {out}: already holds a run; continue it with "
                            f"--resume {out}, or choose a new --out")
        if any(out.iterdir()):
            raise UserError(f"--out {out}: directory is not empty; choose a new --out")
    else:
        parent = out.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"--out {out}: cannot create it, {parent} is not a writable "
                            f"directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"--out {out}: not writable ({err.strerror or err})") from None
    return out


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    _atomic_write_bytes(path, text.encode())


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file, then ``os.replace``: a crash leaves the
    previous checkpoint intact, never a truncated one."""
    import io
    buffer = io.BytesIO()
    torch.save(state, buffer)
    _atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(run_dir: Path) -> tuple[TrainConfig, dict[str, Any]]:
    """The saved configuration and checkpoint of ``run_dir`` (``weights_only`` load).

    Raises ``UserError`` when the directory, its config or its checkpoint is
    missing, unreadable, truncated or inconsistent.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist")
    if not (run_dir / "config.json").exists():
        raise UserError(f"{run_dir} holds no run (no config.json)")
    config = TrainConfig.load(run_dir / "config.json")
    path = run_dir / CHECKPOINT
    if not path.exists():
        raise UserError(f"{run_dir} has no {CHECKPOINT} (the run saved no checkpoint yet)")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except (RuntimeError, EOFError, pickle.UnpicklingError, OSError, ValueError) as err:
        raise UserError(f"{path} is truncated or corrupt ({type(err).__name__}); "
                        f"it cannot be resumed") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a qtrl checkpoint of format {CHECKPOINT_FORMAT}")
    saved = TrainConfig.from_dict(json.loads(state["config"]))
    if saved.to_dict() | {"episodes": 0} != config.to_dict() | {"episodes": 0}:
        raise UserError(f"{path} was written by a different configuration than "
                        f"{run_dir / 'config.json'}")
    return config, state


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": json.dumps([np_state[0], np_state[1].tolist(), *np_state[2:]]),
            "python": json.dumps(random.getstate(), default=list)}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = json.loads(state["numpy"])
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))


def update_seeds(seed: int, update: int, n_envs: int, agent: int = 0
                 ) -> tuple[Callable[[gym.vector.VectorEnv], Any], np.random.Generator]:
    """The reset of the ``n_envs`` copies (:meth:`EnvStreams.at`) and the action
    RNG of one update: pure functions of ``(seed, agent, update)``."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(agent, update, 1)))
    return _env_streams(seed, n_envs, agent).at(update), rng


@functools.lru_cache(maxsize=64)
def _env_streams(seed: int, n_envs: int, agent: int) -> EnvStreams:
    return EnvStreams(seed, n_envs, agent)


def quantum_seeds(seed: int, update: int, agent: int = 0,
                  shared: bool = True) -> tuple[int, int]:
    """(this agent's shot sampling, SPSA draws) seeds of one update.

    ``shared``: the SPSA draws are the same on every agent (they split one
    backward pass, sync mode); else each agent's own (async workers).
    """
    def draw(*key: int) -> int:
        return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1, np.uint64)[0])
    return draw(agent, update, 2), draw(update, 3) if shared else draw(agent, update, 4)


def moving_average(values: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Trailing mean over the last ``min(window, i+1)`` values at each ``i``."""
    values = np.asarray(values, dtype=np.float64)
    csum = np.concatenate(([0.0], np.cumsum(values)))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def first_solved(returns: np.ndarray, threshold: float | None, window: int = WINDOW) -> int | None:
    """First episode (1-based) whose full ``window``-episode average reaches
    ``threshold``, or ``None``."""
    if threshold is None or len(returns) < window:
        return None
    hits = np.flatnonzero(moving_average(returns, window)[window - 1:] >= threshold)
    return int(hits[0]) + window if len(hits) else None


class Resumed(NamedTuple):
    """Where a checkpoint left a run: next update, counters, episode history."""

    update: int
    env_steps: int
    wall_time: float
    returns: list[float]
    lengths: list[int]
    state: dict[str, Any]


def restore_run(run_dir: Path, config: TrainConfig, model: nn.Module,
                optimizer: torch.optim.Optimizer, main: bool) -> Resumed:
    """Load the checkpoint of ``run_dir`` into ``model``, ``optimizer`` and the global
    RNGs; agent 0 (``main``) drops the CSV rows written after it."""
    saved_config, state = load_checkpoint(run_dir)
    if saved_config.to_dict() | {"episodes": 0} != config.to_dict() | {"episodes": 0}:
        raise UserError(f"--resume {run_dir}: the run was trained with a different "
                        f"configuration")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    _set_rng_state(state["rng"])
    resumed = Resumed(int(state["update"]), int(state["env_steps"]), float(state["wall_time"]),
                      state["episode_returns"].tolist(), state["episode_lengths"].tolist(), state)
    if main:
        truncate_csv(run_dir / "metrics.csv", len(resumed.returns))
        truncate_csv(run_dir / "progress.csv", resumed.update)
    log.info("resuming %s at update %d (episode %d)", run_dir, resumed.update,
             len(resumed.returns))
    return resumed


def checkpoint_state(config: TrainConfig, model: QuantumTrain | ClassicalPolicy,
                     optimizer: torch.optim.Optimizer, next_update: int, env_steps: int,
                     wall_time: float, returns: list[float], lengths: list[int],
                     **extra: Any) -> dict[str, Any]:
    """What :func:`save_checkpoint` writes (``extra``: mode-specific counters)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "config": json.dumps(config.to_dict()),
        "update": next_update,
        "env_steps": env_steps,
        "wall_time": wall_time,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "policy": model.materialize().state_dict(),
        "episode_returns": torch.tensor(returns, dtype=torch.float64),
        "episode_lengths": torch.tensor(lengths, dtype=torch.int64),
        "rng": _rng_state(),
        "env_seeding": {"seed": config.seed, "agents": config.agents,
                        "scheme": "SeedSequence(seed, spawn_key=(agent, update, 0))"},
        **extra,
    }


def record_update(logger: Logger, step: Update, returns: list[float], returns_hist: list[float],
                  env_steps: int, lr: float, circuit_evals: tuple[int, int] | None,
                  now: float, episodes_per_s: float) -> None:
    """Record one update's scalars. ``step``: the update (its batch's per-episode
    fields at least); ``returns``: every agent's episode returns of this update;
    ``circuit_evals``: (per update, this agent's share), or None without circuits."""
    batch = step.batch
    logger.record("rollout/return_mean", float(np.mean(returns)))
    logger.record("rollout/return_avg100", float(np.mean(returns_hist[-WINDOW:])))
    logger.record("rollout/length_mean", float(batch.episode_lengths.mean()))
    logger.record("rollout/truncated_frac", float(batch.truncated.mean()))
    logger.record("rollout/episodes", len(returns_hist))
    logger.record("rollout/env_steps", env_steps)
    logger.record("train/loss", step.loss)
    logger.record("train/policy_loss", step.policy_loss)
    logger.record("train/entropy", step.entropy)
    logger.record("train/grad_norm", step.grad_norm)
    logger.record("train/lr", lr)
    if circuit_evals is not None:
        logger.record("quantum/circuit_evals_per_update", circuit_evals[0])
        logger.record("quantum/circuit_evals_this_agent", circuit_evals[1])
    logger.record("time/generate_s", step.t_generate)
    logger.record("time/rollout_s", step.t_rollout)
    logger.record("time/learn_s", step.t_learn)
    logger.record("time/update_s", step.t_total)
    logger.record("time/env_steps_per_s",
                  float(batch.episode_lengths.sum()) / max(step.t_total, 1e-9))
    logger.record("time/episodes_per_s", episodes_per_s)
    logger.record("time/wall_s", now)


def finish_run(run_dir: Path, config: TrainConfig, model: QuantumTrain | ClassicalPolicy,
               returns_hist: list[float], env_steps: int, wall_time: float,
               **extra: Any) -> dict[str, Any]:
    """Write ``summary.json`` (``extra``: mode-specific entries) and the learning
    curve; return the summary."""
    returns_arr = np.asarray(returns_hist)
    summary = {
        "mode": config.mode,
        "env": config.env,
        "preset": config.preset,
        "seed": config.seed,
        "episodes": len(returns_hist),
        "updates": config.updates,
        "agents": config.agents,
        "dist_mode": config.dist_mode,
        **extra,
        "env_steps": env_steps,
        "wall_time_s": round(wall_time, 3),
        "final_return_avg100": float(np.mean(returns_arr[-WINDOW:])) if len(returns_arr) else None,
        "best_return_avg100": float(moving_average(returns_arr).max()) if len(returns_arr) else None,
        "solve_threshold": config.solve_threshold,
        "solved_at_episode": first_solved(returns_arr, config.solve_threshold),
        "parameter_counts": counts_dict(model),
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    plot_learning_curve(run_dir / "learning_curve.png", returns_arr, config)
    return summary


# ------------------------------------------------------------------------------------
# One update: the hot path of DESIGN §4
# ------------------------------------------------------------------------------------

class Update(NamedTuple):
    """What one update did: its episodes, loss parts and timings (seconds)."""

    batch: Rollout
    loss: float
    policy_loss: float
    entropy: float
    grad_norm: float
    t_generate: float
    t_rollout: float
    t_learn: float
    norm: torch.Tensor | None = None   # grad_norm as computed, to clip with

    @property
    def t_total(self) -> float:
        return self.t_generate + self.t_rollout + self.t_learn


def reinforce_update(model: QuantumTrain | ClassicalPolicy, optimizer: torch.optim.Optimizer,
                     envs: gym.vector.VectorEnv, episodes: int, env_seeds: Resets,
                     rng: np.random.Generator, discount: float, entropy: float,
                     before_step: Callable[[], None] | None = None,
                     behaviour: Callable[[Actor], Actor] | None = None,
                     max_grad_norm: float | None = None) -> Update:
    """Collect ``episodes`` complete episodes and take one REINFORCE step.

    Args:
        before_step: called between backward and the optimizer step (the
            distributed trainer all-reduces the gradients there).
        behaviour: benchmarks only — wraps the update's own actor into the one
            that plays (it still runs the generated policy, so its cost is paid,
            but takes, say, a fixed controller's actions: controlled episodes).
        max_grad_norm: clip the (averaged) gradient's global norm before the step.
    """
    step = reinforce_gradient(model, envs, episodes, env_seeds, rng, discount, entropy,
                              behaviour=behaviour)
    t0 = time.perf_counter()
    if before_step is not None:
        before_step()   # changes the gradients: their norm is taken again
    apply_gradient(model, optimizer, max_grad_norm,
                   total=step.norm if before_step is None else None)
    return step._replace(t_learn=step.t_learn + time.perf_counter() - t0)


@contextlib.contextmanager
def plain_blas() -> Iterator[None]:
    """Route torch's CPU matmuls to BLAS instead of oneDNN while inside.

    The mapping model's and policy's matmuls are tiny with odd sizes (say
    898 × 11 @ 11 × 10), where oneDNN's per-call set-up costs more than the
    product: measured 2.8 → 2.0 ms for the CartPole generation forward +
    backward, results bit for bit the same."""
    was = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = was


def reinforce_gradient(model: QuantumTrain | ClassicalPolicy, envs: gym.vector.VectorEnv,
                       episodes: int, env_seeds: Resets, rng: np.random.Generator,
                       discount: float, entropy: float,
                       behaviour: Callable[[Actor], Actor] | None = None) -> Update:
    """Steps 1–4 of an update short of the optimizer: collect ``episodes`` complete
    episodes and leave the REINFORCE gradient in every ``p.grad`` (an async worker
    sends it to the learner instead of stepping)."""
    with plain_blas():
        return _reinforce_gradient(model, envs, episodes, env_seeds, rng, discount, entropy,
                                   behaviour)


def _reinforce_gradient(model: QuantumTrain | ClassicalPolicy, envs: gym.vector.VectorEnv,
                        episodes: int, env_seeds: Resets, rng: np.random.Generator,
                        discount: float, entropy: float,
                        behaviour: Callable[[Actor], Actor] | None) -> Update:
    direct = direct_gradient(model, envs, episodes, env_seeds, rng, discount, entropy,
                             behaviour)
    if direct is not None:   # the common case, every step a compiled call
        t0 = time.perf_counter()
        norm = global_norm([p.grad for p in model.parameters() if p.grad is not None])
        return Update(direct.batch, direct.loss, direct.policy_loss, direct.entropy,
                      float(norm), direct.t_generate, direct.t_rollout,
                      direct.t_learn + time.perf_counter() - t0, norm)
    t0 = time.perf_counter()
    # 1. generate the policy weights once for this update (autograd on)
    weights = model.generate()
    t1 = time.perf_counter()

    # 2. roll out with the weights detached: batched over the copies, no autograd
    batch = play(model.target, weights, envs, episodes, rng, env_seeds, discount, behaviour)
    t2 = time.perf_counter()

    # 3. one batched, differentiable pass: log-probabilities and the loss (compiled
    #    for dense policies, else torch ops)
    terms = dense_reinforce_loss(model.target, weights, batch.obs, batch.actions,
                                 batch.returns, episodes, entropy)
    if terms is None:
        logits = model(torch.from_numpy(batch.obs), weights=weights)
        returns = normalise_returns(torch.from_numpy(batch.returns).to(logits.dtype))
        terms = reinforce_loss(logits, torch.from_numpy(batch.actions), returns, episodes,
                               entropy)

    # 4. backward into circuit angles and mapping model (the Adam step follows)
    params = list(model.parameters())   # one walk of the module tree, not two
    for p in params:
        p.grad = None
    terms.loss.backward()
    norm = global_norm([p.grad for p in params if p.grad is not None])
    t3 = time.perf_counter()
    return Update(batch, terms.loss.item(), float(terms.policy_loss), float(terms.entropy),
                  float(norm), t1 - t0, t2 - t1, t3 - t2, norm)


def apply_gradient(model: nn.Module, optimizer: torch.optim.Optimizer,
                   max_grad_norm: float | None, total: torch.Tensor | None = None) -> None:
    """The optimizer step on the gradients in ``p.grad``, clipped to
    ``max_grad_norm`` (``total``: their global norm, when already known)."""
    if max_grad_norm is not None:
        clip_([p.grad for p in model.parameters() if p.grad is not None], max_grad_norm,
              total)
    optimizer.step()


def spread_over_agents(model: nn.Module, ctx: AgentContext) -> None:
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


# ------------------------------------------------------------------------------------
# The training loop
# ------------------------------------------------------------------------------------

def train(config: TrainConfig, run_dir: Path | str, *, resume: bool = False,
          display: Display | None = None, tensorboard: bool = True,
          ctx: AgentContext = SINGLE_AGENT) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (created by :func:`create_run_dir`, or a run
    to continue when ``resume``). Returns the summary also written to ``summary.json``.

    With several agents (``ctx``; one process each) every agent runs this same
    loop on its own environments; one all-reduce per update averages the
    gradients, so all agents take the same optimizer step (Dist-QTRL, DESIGN §3).
    Agent 0 owns the run directory; the others write nothing and return ``{}``.
    ``config.dist_mode == "async"`` runs :func:`qtrl.train_async.train_async` instead.
    """
    jit.ensure_cached()  # the kernels as cached, so that a resumed run matches
    if config.dist_mode == "async":
        from .train_async import train_async
        return train_async(config, run_dir, resume=resume, display=display,
                           tensorboard=tensorboard, ctx=ctx)
    run_dir = Path(run_dir)
    main = ctx.is_main

    # ---- set-up: model, optimizer, environments --------------------------------------
    obs_dim, n_actions = check_config(config)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    random.seed(config.seed)
    model = build_model(config, obs_dim, n_actions, rank=ctx.rank)  # own shot stream per QPU
    estimator = getattr(model, "estimator", None)  # circuit gradients from extra circuit runs
    spread_over_agents(model, ctx)
    params = list(model.parameters())
    broadcast_parameters(params, ctx)  # the same seed gives the same start; make sure
    optimizer = make_optimizer(model, config)
    traffic = {"bytes": 0}

    def average_gradients() -> None:  # between backward and the Adam step
        traffic["bytes"] = allreduce_gradients(params, ctx)
    start_update, wall_offset, env_steps = 0, 0.0, 0
    returns_hist: list[float] = []
    lengths_hist: list[int] = []

    if resume:
        start_update, env_steps, wall_offset, returns_hist, lengths_hist, _ = restore_run(
            run_dir, config, model, optimizer, main)
    if main:
        atomic_write_text(run_dir / "config.json",
                           json.dumps(config.to_dict(), indent=2) + "\n")

    envs = make_vector_env(config.env, config.vector_envs, config.max_steps, config.autoreset)
    logger = Logger(run_dir, display, purge_step=start_update if resume else None,
                    tensorboard=tensorboard) if main else None
    if logger is not None:
        logger.display.start(config.episodes, len(returns_hist))
    t_start = time.perf_counter()
    episodes_at_start = len(returns_hist)

    def wall() -> float:
        return wall_offset + time.perf_counter() - t_start

    def checkpoint(next_update: int) -> None:
        if not main:
            return
        save_checkpoint(run_dir / CHECKPOINT, checkpoint_state(
            config, model, optimizer, next_update, env_steps, wall(), returns_hist, lengths_hist))

    try:
        for update in range(start_update, config.updates):
            n_episodes = config.episodes_in_update(update)
            env_seeds, action_rng = update_seeds(config.seed, update, config.vector_envs,
                                                 agent=ctx.rank)
            if config.anneal_lr:
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * (1.0 - update / config.updates)

            if estimator is not None:
                estimator.counts.reset()  # count this update's circuit evaluations only
                model.reseed(*quantum_seeds(config.seed, update, ctx.rank))
            # ---- generate once → roll out → log-probabilities → (all-reduce) → Adam --
            step = reinforce_update(model, optimizer, envs, n_episodes, env_seeds, action_rng,
                                    config.gamma, config.entropy,
                                    before_step=average_gradients if ctx.distributed else None,
                                    max_grad_norm=config.max_grad_norm)
            batch = step.batch

            # ---- agents agree? then agent 0 logs everyone's episodes and checkpoints --
            if ctx.distributed and (update + 1) % config.sync_check_every == 0:
                check_agreement(params, ctx, update + 1)
            every_agent = gather_objects((batch.episode_returns.tolist(),
                                          batch.episode_lengths.tolist()), ctx)
            if logger is None:
                continue
            now = wall()
            for agent, (rets, lens) in enumerate(every_agent):
                for ret, length in zip(rets, lens):
                    env_steps += int(length)
                    returns_hist.append(ret)
                    lengths_hist.append(length)
                    logger.episode(update + 1, len(returns_hist), ret, length, now, agent)
            done_here = len(returns_hist) - episodes_at_start
            circuit_evals = None
            if estimator is not None:  # one forward + the whole backward; this agent's part
                counts = estimator.counts
                total = counts.forward + counts.last_backward_total
                if model.chunk_shards is not None:  # the counts are this agent's chunks only
                    total = model.chunks + estimator.backward_evaluations(model.chunks)
                circuit_evals = (total, counts.forward + counts.last_backward)
            record_update(logger, step, [r for rets, _ in every_agent for r in rets],
                          returns_hist, env_steps, optimizer.param_groups[0]["lr"],
                          circuit_evals, now, done_here / max(time.perf_counter() - t_start, 1e-9))
            logger.dump(update + 1, len(returns_hist))
            if (update + 1) % config.checkpoint_every == 0 or update + 1 == config.updates:
                logger.flush()
                checkpoint(update + 1)
    finally:
        envs.close()
        if logger is not None:
            logger.close()
    if not main:
        return {}

    # ---- finish: summary and learning curve --------------------------------------------
    return finish_run(run_dir, config, model, returns_hist, env_steps, wall(),
                      bytes_allreduced_per_update=traffic["bytes"],
                      bytes_allreduced_per_update_classical_dp=4 * counts_dict(model)[
                          "target_weights"])


def plot_learning_curve(path: Path, returns: np.ndarray, config: TrainConfig) -> None:
    """Raw episode returns and their 100-episode moving average (matplotlib, Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    episodes = np.arange(1, len(returns) + 1)
    ax.plot(episodes, returns, color="tab:blue", alpha=0.3, lw=0.8, label="episode return")
    ax.plot(episodes, moving_average(returns), color="tab:blue", lw=2,
            label=f"{WINDOW}-episode average")
    if config.solve_threshold is not None:
        ax.axhline(config.solve_threshold, color="gray", ls="--", lw=1, label="solve threshold")
    ax.set_xlabel("episode")
    ax.set_ylabel("return")
    ax.set_title(f"{config.env} — {config.mode}, seed {config.seed}")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------
# Using a trained run: the classical policy, no quantum computation
# ------------------------------------------------------------------------------------

def load_policy(run_dir: Path | str) -> tuple[nn.Module, TrainConfig]:
    """The trained policy of ``run_dir`` as a plain classical ``nn.Module``
    (the generated weights saved in its checkpoint) and the run's configuration."""
    config, state = load_checkpoint(Path(run_dir))
    obs_dim, n_actions = env_dims(config.env, config.n_actions)
    policy = build_policy(obs_dim, config.hidden, n_actions)
    return _load_saved(policy, state, "policy", run_dir), config


def load_trained_model(run_dir: Path | str) -> tuple[QuantumTrain | ClassicalPolicy,
                                                     TrainConfig]:
    """The trained model of ``run_dir`` (Quantum-Train with its circuit and mapping
    model, or the classical policy) and the run's configuration.

    Whatever backend, shots or noise the run trained with, the rebuilt circuits
    run on our exact simulator: this is the trained circuit itself.
    """
    config, state = load_checkpoint(Path(run_dir))
    obs_dim, n_actions = env_dims(config.env, config.n_actions)
    exact = {f.name: f.default for f in fields(TrainConfig) if f.name in QUANTUM_FIELDS}
    model = build_model(config if config.classical else replace(config, **exact),
                        obs_dim, n_actions)
    return _load_saved(model, state, "model", run_dir), config


def _load_saved(module: nn.Module, state: dict[str, Any], key: str,
                run_dir: Path | str) -> nn.Module:
    """``module`` with the checkpoint's ``state[key]`` loaded, in eval mode."""
    try:
        module.load_state_dict(state[key])
    except (KeyError, RuntimeError) as err:
        raise UserError(f"{run_dir}: the checkpoint's {key} does not fit the configured "
                        f"network ({err})") from None
    return module.eval()


def evaluate(policy: nn.Module, config: TrainConfig, episodes: int = 100, greedy: bool = False,
             seed: int = 0) -> np.ndarray:
    """Undiscounted returns of ``episodes`` episodes of ``policy`` (no training)."""
    if episodes < 1:
        raise UserError(f"--episodes {episodes}: must be a positive integer")
    n_envs = min(episodes, 8)
    envs = make_vector_env(config.env, n_envs, config.max_steps, "same-step")
    try:
        seeds, rng = update_seeds(seed, 0, n_envs, agent=1_000_003)  # never a training stream
        actor = make_actor(policy, dict(policy.named_parameters()))
        batch = collect_episodes(envs, actor, episodes, rng, seeds, 1.0, greedy=greedy)
    finally:
        envs.close()
    return batch.episode_returns

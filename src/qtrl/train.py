"""Train a Quantum-Train (or classical) policy: the entry point of ``qtrl train``.

:func:`train` runs one agent's loop: :func:`qtrl.loops.sync.train_sync`
(every agent takes the same optimizer step on the averaged gradients; one
agent is ordinary training) or :func:`qtrl.loops.asynchronous.train_async`
(workers push gradients to a learner). :func:`train_local` starts ``N`` local
agent processes and :func:`train_torchrun` is one agent of a torchrun group.
The algorithm (:mod:`qtrl.algos`) is chosen by ``config.algo``; the loops do
not know which it is.

Using a trained run needs no quantum computation: :func:`load_policy` gives
the classical policy network with its generated weights, :func:`evaluate`
plays it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist
from torch import nn

from .config import QUANTUM_FIELDS, TrainConfig, is_multiagent
from .distributed import AgentContext, init_torchrun, launch_local, shutdown
from .errors import RunWriteError, UserError
from .generator import QuantumTrain
from .loops.asynchronous import train_async
from .loops.common import check_config
from .loops.sync import train_sync
from .presets import build_policy
from .rl.multiagent import evaluate_players, task_spec, task_views
from .rl.policy import ClassicalPolicy, build_model, make_actor
from .rl.rollout import evaluation_returns
from .run.callbacks import Callback, CallbackList, LogProgress
from .run.checks import check_state_fits
from .run.directory import CHECKPOINT, create_run_dir, load_checkpoint, write_failure
from .run.lock import RunDirLock

__all__ = ["check_config", "create_run_dir", "evaluate", "load_checkpoint", "load_policy",
           "load_trained_model", "train", "train_local", "train_torchrun"]

log = logging.getLogger(__name__)

SINGLE_AGENT = AgentContext()  # not distributed
# A file of the run could not be written: the run stops with one line, not a traceback.
DISK_ERRORS = frozenset({errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def train(config: TrainConfig, run_dir: Path | str, *, resume: bool = False,
          callbacks: Sequence[Callback] = (), tensorboard: bool = True,
          ctx: AgentContext = SINGLE_AGENT) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (created by :func:`create_run_dir`, or a run
    to continue when ``resume``) as agent ``ctx.rank``. Returns the summary also
    written to ``summary.json`` (agent 0; the others write nothing and return ``{}``).

    ``callbacks``: progress displays and benchmark hooks
    (:class:`~qtrl.run.callbacks.Callback`); none given logs progress lines.

    A single agent holds ``run_dir``'s lock for the run (:class:`~qtrl.run.lock.RunDirLock`;
    in a group, its launcher or agent 0 does). A run file that cannot be written
    (disk full, I/O error) raises :class:`~qtrl.errors.RunWriteError` naming the
    last good checkpoint.
    """
    callback = CallbackList(list(callbacks) or [LogProgress()])
    loop = train_async if config.dist_mode == "async" else train_sync
    run_dir = Path(run_dir)
    try:
        with RunDirLock(run_dir) if not ctx.distributed else contextlib.nullcontext():
            return loop(config, run_dir, resume=resume, callback=callback,
                        tensorboard=tensorboard, ctx=ctx)
    except OSError as err:
        if err.errno not in DISK_ERRORS:
            raise
        raise RunWriteError(write_failure(run_dir, err)) from None
    finally:
        if ctx.is_main:
            callback.on_end()


# ------------------------------------------------------------------------------------
# Several agents: local processes, or one agent of a torchrun group
# ------------------------------------------------------------------------------------

def _agent_entry(ctx: AgentContext, payload: dict[str, Any]) -> None:
    import torch
    torch.set_num_threads(payload["threads"])
    config = TrainConfig.from_dict(payload["config"])
    train(config, payload["run_dir"], resume=payload["resume"],
          callbacks=payload["callbacks"] if ctx.is_main else (),
          tensorboard=payload["tensorboard"], ctx=ctx)


def train_local(config: TrainConfig, run_dir: Path, *, resume: bool, tensorboard: bool,
                callbacks: Sequence[Callback] = (), threads: int = 1) -> None:
    """Train with ``config.agents`` local agent processes (file-store rendezvous,
    gloo on loopback). Raises :class:`~qtrl.distributed.launch.AgentFailure`.
    ``callbacks`` (picklable) run in agent 0's process."""
    payload = {"config": config.to_dict(), "run_dir": str(run_dir), "resume": resume,
               "tensorboard": tensorboard, "callbacks": list(callbacks), "threads": threads}
    with RunDirLock(run_dir):   # the launcher holds it for its agents
        launch_local(_agent_entry, config.agents, payload, timeout_s=config.agent_timeout,
                     threads=threads)


def train_torchrun(config: TrainConfig, run_dir: Path, *, tensorboard: bool,
                   callbacks: Sequence[Callback] = ()) -> None:
    """Train as one agent of a torchrun group (``config.agents`` is the world size).

    Agent 0 creates the run directory; a restarted group (torchrun
    ``--max-restarts``) finds the checkpoint there and resumes from it.
    """
    ctx = init_torchrun(config.agent_timeout)
    try:
        with contextlib.ExitStack() as held:
            resume = (run_dir / CHECKPOINT).exists()
            if ctx.is_main:   # agent 0 is the group's writer: it holds the lock
                if not resume and not (run_dir / "config.json").exists():
                    create_run_dir(run_dir, config)
                held.enter_context(RunDirLock(run_dir))
            dist.barrier()
            if resume:
                log.warning("agent %d: resuming %s after restart %d", ctx.rank, run_dir,
                            ctx.restart)
            train(config, run_dir, resume=resume, callbacks=callbacks if ctx.is_main else (),
                  tensorboard=tensorboard, ctx=ctx)
        dist.barrier()   # leave together: no agent tears down a mesh a peer still uses
    finally:
        shutdown(ctx)


# ------------------------------------------------------------------------------------
# Using a trained run: the classical policy, no quantum computation
# ------------------------------------------------------------------------------------

def load_policy(run_dir: Path | str) -> tuple[nn.Module, TrainConfig]:
    """The trained policy of ``run_dir`` as a plain classical ``nn.Module``
    (the generated weights saved in its checkpoint) and the run's configuration."""
    config, state = load_checkpoint(Path(run_dir))
    spec = task_spec(config)
    if is_multiagent(config.env):   # the players' network(s), as the run built them
        exact = {f.name: f.default for f in fields(TrainConfig) if f.name in QUANTUM_FIELDS}
        policy = build_model(replace(config, **exact), spec.obs_dim, spec.n_actions,
                             views=task_views(config, spec),
                             players=len(spec.players)).target
    else:
        policy = build_policy(spec.obs_dim, config.hidden, spec.n_actions, config.activation)
    return _load_saved(policy, state, "policy", run_dir), config


def load_trained_model(run_dir: Path | str) -> tuple[QuantumTrain | ClassicalPolicy,
                                                     TrainConfig]:
    """The trained model of ``run_dir`` (Quantum-Train with its circuit and mapping
    model, or the classical policy) and the run's configuration.

    Whatever backend, shots or noise the run trained with, the rebuilt circuits
    run on our exact simulator: this is the trained circuit itself.
    """
    config, state = load_checkpoint(Path(run_dir))
    spec = task_spec(config)
    exact = {f.name: f.default for f in fields(TrainConfig) if f.name in QUANTUM_FIELDS}
    model = build_model(config if config.classical else replace(config, **exact),
                        spec.obs_dim, spec.n_actions, continuous=spec.continuous,
                        views=task_views(config, spec),
                        players=len(getattr(spec, "players", ())) or 1)
    return _load_saved(model, state, "model", run_dir), config


def _load_saved(module: nn.Module, state: dict[str, Any], key: str,
                run_dir: Path | str) -> nn.Module:
    """``module`` with the checkpoint's ``state[key]`` loaded, in eval mode."""
    check_state_fits(module, state[key], key, Path(run_dir) / CHECKPOINT)
    module.load_state_dict(state[key])
    return module.eval()


def evaluate(policy: nn.Module, config: TrainConfig, episodes: int = 100, greedy: bool = False,
             seed: int = 0) -> np.ndarray:
    """Undiscounted returns of ``episodes`` episodes of ``policy`` (no training),
    ``(episodes,)``; resets and actions from the evaluation streams of ``seed``."""
    if episodes < 1:
        raise UserError(f"--episodes {episodes}: must be a positive integer")
    actor = make_actor(policy, dict(policy.named_parameters()))
    if is_multiagent(config.env):   # the team's return; evaluate_players has each player's
        return evaluate_players(actor, config.env, config.env_kwarg, config.max_steps,
                                episodes, seed, greedy).sum(1)
    return evaluation_returns(config.env, config.max_steps, actor, episodes, seed, greedy)

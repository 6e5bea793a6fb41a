"""Run the training loop as N agents: locally (spawned processes) or under torchrun.

``qtrl train --agents N`` calls :func:`train_local`; ``torchrun … -m qtrl train``
calls :func:`train_torchrun`. Both end up in :func:`qtrl.train.train` with an
:class:`AgentContext`, one process per agent.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch.distributed as dist

from .context import AgentContext, init_torchrun, shutdown
from .launch import launch_local

__all__ = ["check_agent_count", "train_local", "train_torchrun"]

log = logging.getLogger(__name__)

# More agents than this per core is never sensible on one machine.
_MAX_AGENTS_PER_CORE = 8


def check_agent_count(agents: int) -> str | None:
    """Refuse absurd agent counts (UserError); return a warning above the core count."""
    from ..errors import UserError

    cores = os.cpu_count() or 1
    if agents < 1:
        raise UserError(f"--agents {agents}: must be a positive integer")
    if agents > _MAX_AGENTS_PER_CORE * cores:
        raise UserError(f"--agents {agents}: this machine has {cores} cores; at most "
                        f"{_MAX_AGENTS_PER_CORE * cores} local agents are accepted (use "
                        f"torchrun across hosts for more)")
    if agents > cores:
        return (f"{agents} agents on {cores} cores: agents will share cores, so wall-clock "
                f"per update grows; the number of updates is unaffected")
    return None


def _agent_entry(ctx: AgentContext, payload: dict[str, Any]) -> None:
    import torch

    from ..config import TrainConfig
    from ..train import train
    torch.set_num_threads(payload["threads"])
    config = TrainConfig.from_dict(payload["config"])
    display = payload["display"] if ctx.is_main else None
    train(config, payload["run_dir"], resume=payload["resume"], display=display,
          tensorboard=payload["tensorboard"], ctx=ctx)


def train_local(config: Any, run_dir: Path, *, resume: bool, tensorboard: bool,
                display: Any, threads: int = 1) -> None:
    """Train with ``config.agents`` local agent processes (file-store rendezvous,
    gloo on loopback). Raises :class:`~qtrl.distributed.launch.AgentFailure`."""
    payload = {"config": config.to_dict(), "run_dir": str(run_dir), "resume": resume,
               "tensorboard": tensorboard, "display": display, "threads": threads}
    # Each agent's Numba thread pool as large as its torch threads: a larger pool
    # is woken (and spins) on every parallel kernel call even for one share of
    # work, measured 1.7x slower for 4 CartPole agents on 2 cores. Spawned
    # agents read it when they import Numba; results do not depend on it.
    before = os.environ.get("NUMBA_NUM_THREADS")
    os.environ["NUMBA_NUM_THREADS"] = str(max(1, threads))
    try:
        launch_local(_agent_entry, config.agents, payload, timeout_s=config.agent_timeout)
    finally:
        if before is None:
            os.environ.pop("NUMBA_NUM_THREADS", None)
        else:
            os.environ["NUMBA_NUM_THREADS"] = before


def train_torchrun(config: Any, run_dir: Path, *, tensorboard: bool, display: Any) -> None:
    """Train as one agent of a torchrun group (``config.agents`` is the world size).

    Agent 0 creates the run directory; a restarted group (torchrun
    ``--max-restarts``) finds the checkpoint there and resumes from it.
    """
    from ..train import CHECKPOINT, create_run_dir, train

    ctx = init_torchrun(config.agent_timeout)
    try:
        resume = (run_dir / CHECKPOINT).exists()
        if ctx.is_main and not resume and not (run_dir / "config.json").exists():
            create_run_dir(run_dir, config)
        dist.barrier()
        if resume:
            log.warning("agent %d: resuming %s after restart %d", ctx.rank, run_dir, ctx.restart)
        train(config, run_dir, resume=resume, display=display if ctx.is_main else None,
              tensorboard=tensorboard, ctx=ctx)
    finally:
        shutdown(ctx)

"""Process-group set-up: a local file-store rendezvous or torchrun's env://.

A local run (``qtrl train --agents N``) rendezvous through a file store in a
private temporary directory and binds gloo to the loopback interface, so it
opens no listening socket on any other address. Under torchrun the rendezvous
is torchrun's TCP store, which listens on all interfaces (see docs/DISTRIBUTED.md).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = ["AgentContext", "init_local", "init_torchrun", "shutdown", "under_torchrun"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentContext:
    """Who this process is among the agents. The default is a single,
    non-distributed agent."""

    rank: int = 0                 # this agent's index, 0..world_size-1
    world_size: int = 1           # number of agents N
    local_rank: int = 0           # index on this host
    backend: str | None = None    # "gloo"/"nccl" when a process group is up, else None
    restart: int = 0              # torchrun restart count (0 on the first attempt)

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0 owns the run directory."""
        return self.rank == 0


def _backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_local(rank: int, world_size: int, store_path: str, timeout_s: float) -> AgentContext:
    """Join a local group through a file store; gloo bound to loopback.

    Args:
        rank: this agent.
        world_size: number of agents.
        store_path: a file path private to this run (created by the launcher).
        timeout_s: collectives that wait longer than this raise (dead agent).
    """
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    store = dist.FileStore(store_path, world_size)
    backend = _backend()
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout_s))
    log.debug("agent %d/%d joined (%s, file store %s)", rank, world_size, backend, store_path)
    return AgentContext(rank, world_size, rank, backend)


def under_torchrun() -> bool:
    """True when launched by torchrun (it sets these variables)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or (
        "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ)


def init_torchrun(timeout_s: float) -> AgentContext:
    """Join the group torchrun set up (``env://``)."""
    backend = _backend()
    dist.init_process_group(backend, init_method="env://", timeout=timedelta(seconds=timeout_s))
    ctx = AgentContext(dist.get_rank(), dist.get_world_size(),
                       int(os.environ.get("LOCAL_RANK", "0")), backend,
                       int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")))
    log.debug("agent %d/%d joined via torchrun (restart %d)", ctx.rank, ctx.world_size, ctx.restart)
    return ctx


def shutdown(ctx: AgentContext) -> None:
    """Leave the process group (no-op when not distributed)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()

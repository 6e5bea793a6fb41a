"""Process-group set-up: a local file-store rendezvous or torchrun's env://.

A local run (``qtrl train --agents N``) rendezvous through a file store in a
private temporary directory and binds gloo to the loopback interface, so it
opens no listening socket on any other address. Under torchrun the rendezvous
is torchrun's TCP store, which listens on all interfaces (see docs/DISTRIBUTED.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import UserError
from .attempt import attempt_token

__all__ = ["LAUNCHER_VARIABLES", "LOOPBACK", "TORCHRUN_VARIABLES", "AgentContext", "init_local",
           "init_torchrun", "shutdown", "under_torchrun"]

log = logging.getLogger(__name__)

LOOPBACK = "lo"


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
    # Whatever the environment says: a local run listens on loopback only
    # (the launcher has said so once when the variable named another interface).
    os.environ["GLOO_SOCKET_IFNAME"] = LOOPBACK
    store = dist.FileStore(store_path, world_size)
    backend = _backend()
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout_s))
    log.debug("agent %d/%d joined (%s, file store %s)", rank, world_size, backend, store_path)
    return AgentContext(rank, world_size, rank, backend)


# What torchrun always sets and the ``env://`` rendezvous needs; LOCAL_RANK is
# set by torchrun too but has a default. See docs/DISTRIBUTED.md.
TORCHRUN_VARIABLES = ("TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
LAUNCHER_VARIABLES = (*TORCHRUN_VARIABLES, "LOCAL_RANK")


def under_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """True when launched by torchrun: every one of :data:`TORCHRUN_VARIABLES`
    is set, with valid values; False when none of :data:`LAUNCHER_VARIABLES` is.

    Raises :class:`~qtrl.errors.UserError` naming the variables for anything in
    between (leftovers of another shell, a hand-made launch): it would otherwise
    switch modes or fail deep inside the rendezvous.
    """
    env = os.environ if environ is None else environ
    present = [v for v in LAUNCHER_VARIABLES if v in env]
    if not present:
        return False
    missing = [v for v in TORCHRUN_VARIABLES if v not in env]
    if missing:
        shown = ", ".join(f"{v}={env[v]}" for v in present)
        raise UserError(f"launcher variables {shown} are set but {', '.join(missing)} "
                        f"{'is' if len(missing) == 1 else 'are'} not: torchrun sets all of "
                        f"them; for a local run unset them (env -u {' -u '.join(present)} "
                        f"qtrl train ...)")
    world = _int_variable(env, "WORLD_SIZE", 1, None)
    _int_variable(env, "RANK", 0, world - 1)
    _int_variable(env, "MASTER_PORT", 1, 65535)
    if "LOCAL_RANK" in env:
        _int_variable(env, "LOCAL_RANK", 0, None)
    return True


def _int_variable(env: Mapping[str, str], name: str, low: int, high: int | None) -> int:
    """The integer in environment variable ``name``, within ``low..high``, or a UserError."""
    text = env[name].strip()
    value = int(text) if text.lstrip("-").isdigit() and len(text) < 20 else None
    if value is None or value < low or (high is not None and value > high):
        accepted = f"an integer from {low} to {high}" if high is not None else \
            f"an integer >= {low}"
        raise UserError(f"launcher variable {name}={env[name]!r}: must be {accepted}")
    return value


def init_torchrun(timeout_s: float) -> AgentContext:
    """Join the group torchrun set up, on the store it hands its workers
    (``MASTER_ADDR``/``MASTER_PORT``), under a prefix fresh for this attempt
    (:mod:`qtrl.distributed.attempt`: a restarted group must not read the
    addresses its dead predecessors published)."""
    backend = _backend()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    timeout = timedelta(seconds=timeout_s)
    # torchrun's own store (its agent hosts it), or, with
    # TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, one that agent 0 hosts per attempt.
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                          is_master=not agent_store and rank == 0, timeout=timeout,
                          multi_tenant=not agent_store)
    namespace = f"qtrl/{os.environ['TORCHELASTIC_RUN_ID']}"
    token = attempt_token(store, rank, world, namespace, timeout_s)
    dist.init_process_group(backend, store=dist.PrefixStore(f"{namespace}/{token}", store),
                            rank=rank, world_size=world, timeout=timeout)
    ctx = AgentContext(rank, world, int(os.environ.get("LOCAL_RANK", "0")), backend,
                       int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")))
    log.debug("agent %d/%d joined via torchrun (restart %d)", ctx.rank, ctx.world_size, ctx.restart)
    return ctx


def shutdown(ctx: AgentContext) -> None:
    """Leave the process group (no-op when not distributed)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()

"""One torchrun attempt, kept apart from the attempts before it.

torchrun (``--rdzv-backend c10d``) hands its workers the rendezvous store
itself (``TORCHELASTIC_USE_AGENT_STORE=True``): one TCP store that outlives
every restart of the group. ``init_process_group("env://")`` writes gloo's
listening addresses into it under the same keys on every attempt, so after
``--max-restarts`` restarts a worker may read the address a *dead* worker of
the previous attempt published: its mesh connect is refused
("connectFullMesh ... Connection refused") or waits for the timeout, and the
whole group fails again (pytorch/pytorch#135712). torchrun's restart count
cannot name the attempt: each host's agent counts its own restarts.

:func:`attempt_token` agrees on a fresh random token among the workers of
this attempt, with nothing but the store: every worker asks agent 0 with a
nonce of its own, agent 0 answers each question it sees with the nonce and
its token, and a worker takes only the answer carrying its own nonce (stale
questions get answers nobody reads; stale answers carry stale nonces). Agent
0 returns once every worker has acknowledged the token. The process group then
lives under the token's prefix, where no earlier attempt wrote.

Every wait is bounded by ``timeout_s``; :func:`exit_soon_after_sigterm` bounds
the one wait Python cannot interrupt, a SIGTERM arriving while the main thread
is blocked in C++ (a store or mesh wait): torchrun would otherwise wait 30 s
before its SIGKILL.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import time

import torch.distributed as dist

__all__ = ["attempt_token", "exit_soon_after_sigterm"]

log = logging.getLogger(__name__)

_POLL_S = 0.02


def attempt_token(store: dist.Store, rank: int, world_size: int, namespace: str,
                  timeout_s: float) -> str:
    """The token every worker of this attempt agrees on (hex string).

    Args:
        store: the store all workers share (possibly holding earlier attempts' keys).
        rank, world_size: this worker and the group's size.
        namespace: a key prefix for this run (e.g. ``TORCHELASTIC_RUN_ID``).
        timeout_s: give up (``TimeoutError`` naming the missing ranks) after this long.
    """
    deadline = time.monotonic() + timeout_s
    if rank == 0:
        return _answer_all(store, world_size, namespace, deadline)
    nonce = secrets.token_hex(8)
    store.set(f"{namespace}/ask/{rank}", nonce)
    answer_key = f"{namespace}/answer/{rank}"
    while time.monotonic() < deadline:
        if store.check([answer_key]):
            asked, _, token = store.get(answer_key).decode().partition(" ")
            if asked == nonce:
                store.set(f"{namespace}/{token}/ready/{rank}", "1")
                log.debug("agent %d: attempt token %s", rank, token)
                return token
        time.sleep(_POLL_S)
    raise TimeoutError(f"agent {rank}: agent 0 of this attempt did not answer within "
                       f"{timeout_s:g} s")


def _answer_all(store: dist.Store, world_size: int, namespace: str, deadline: float) -> str:
    """Agent 0's side: answer every question until every worker is ready."""
    token = secrets.token_hex(8)
    answered: dict[int, str] = {}
    waiting = set(range(1, world_size))
    while waiting:
        for rank in sorted(waiting):
            ask = f"{namespace}/ask/{rank}"
            if store.check([ask]):
                nonce = store.get(ask).decode()
                if answered.get(rank) != nonce:
                    store.set(f"{namespace}/answer/{rank}", f"{nonce} {token}")
                    answered[rank] = nonce
            if store.check([f"{namespace}/{token}/ready/{rank}"]):
                waiting.discard(rank)
        if waiting and time.monotonic() > deadline:
            raise TimeoutError(f"agent 0: agent(s) {sorted(waiting)} of this attempt did not "
                               f"join within the timeout")
        if waiting:
            time.sleep(_POLL_S)
    log.debug("agent 0: attempt token %s agreed by %d agents", token, world_size)
    return token


def exit_soon_after_sigterm(grace_s: float) -> None:
    """End this process ``grace_s`` seconds after a SIGTERM, if it has not ended by then.

    The SIGTERM handler (the CLI's: unwind like Ctrl-C) runs only when the main
    thread is back in Python; a thread woken through :func:`signal.set_wakeup_fd`
    sees the signal at once, gives the handler ``grace_s`` seconds, then exits
    with SIGTERM's status. Call from the main thread, with a Python SIGTERM handler
    installed (without one the signal ends the process anyway).
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def watch() -> None:
        while signal.SIGTERM not in os.read(read_fd, 64):
            pass
        time.sleep(grace_s)
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="qtrl-sigterm-watch", daemon=True).start()

"""Start N local agents, watch them, and end the whole run when one fails.

Each agent is a process (forked from the launcher where that is safe, else
spawned: :func:`_start_method`) that joins the group through a file store in a
private temporary directory. The launcher polls its agents: an agent that dies
ends the run at once; one that stops answering makes the others' collectives
time out (``timeout_s``), which ends the run too. Either way every remaining
agent is terminated and :class:`AgentFailure` names the agent at fault.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import torch.distributed as dist

from .. import jit
from ..errors import RunStopped, Terminated
from .context import LOOPBACK, AgentContext, init_local, shutdown

__all__ = ["AgentFailure", "check_agent_count", "launch_local"]

log = logging.getLogger(__name__)

_POLL_S = 0.1
_GRACE_S = 3.0


class AgentFailure(RuntimeError):
    """An agent died, failed or stopped answering; the run was ended."""


def _exit_with_parent(parent: int) -> None:
    """Leave no orphan: an agent whose launcher vanished exits."""
    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(0.5)
    threading.Thread(target=watch, daemon=True).start()


def _agent_main(rank: int, world_size: int, store_path: str, timeout_s: float,
                entry: Callable[[AgentContext, Any], None], payload: Any,
                errors: mp.Queue[tuple[int, str, bool]], parent: int) -> None:
    _exit_with_parent(parent)
    # Started with SIGINT blocked (see _sigint_deferred): ignore it, then lift
    # the block, which discards a Ctrl-C pending since start.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    # SIGTERM (the launcher ending the run) unwinds like Ctrl-C: files closed.
    signal.signal(signal.SIGTERM, _raise_terminated)
    ctx = None
    try:
        # Also started with SIGTERM blocked: one sent meanwhile lands here, where
        # it unwinds as below (a forked agent would otherwise meet the
        # launcher's own handler, outside this try).
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        ctx = init_local(rank, world_size, store_path, timeout_s)
        entry(ctx, payload)
        dist.barrier()  # leave together: no agent tears down a mesh a peer still uses
        shutdown(ctx)
    except Terminated:
        # Cleaned up; now end as the signal would have, so that the launcher
        # still sees "killed by SIGTERM" when someone else sent it.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        os._exit(128 + signal.SIGTERM)
    except BaseException as err:  # noqa: BLE001 - reported to the launcher, then exit 1
        if isinstance(err, RunStopped):   # the run's own verdict, reported as it is
            errors.put((rank, str(err), True))
        else:
            last = traceback.format_exception_only(type(err), err)[-1].strip()
            errors.put((rank, last, False))
        log.debug("agent %d failed:\n%s", rank, traceback.format_exc())
        errors.close()
        errors.join_thread()  # flush the report before the hard exit below
        os._exit(1)
    # Skip the interpreter's C++ teardown: gloo's threads can abort it
    # ("terminate called without an active exception") after a clean run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(f"terminated by {signal.Signals(signum).name}")


def _describe(rank: int, proc: mp.Process, messages: dict[int, str]) -> str:
    code = proc.exitcode
    if code is None:
        return f"agent {rank} (pid {proc.pid}) stopped answering"
    if code < 0:
        return f"agent {rank} (pid {proc.pid}) was killed by {signal.Signals(-code).name}"
    return f"agent {rank} (pid {proc.pid}) failed: {messages.get(rank, f'exit code {code}')}"


def _culprits(procs: list[mp.Process], messages: dict[int, str]) -> list[int]:
    killed = [r for r, p in enumerate(procs) if p.exitcode is not None and p.exitcode < 0]
    if killed:
        return killed
    timed_out = any("timed out" in m.lower() or "timeout" in m.lower() or "connection" in m.lower()
                    for m in messages.values())
    alive = [r for r, p in enumerate(procs) if p.exitcode is None]
    if timed_out and alive:
        return alive
    failed = [r for r, p in enumerate(procs) if p.exitcode not in (None, 0)
              and not any(w in messages.get(r, "").lower() for w in ("timed out", "timeout",
                                                                   "connection"))]
    return failed or [r for r, p in enumerate(procs) if p.exitcode not in (None, 0)]


def _terminate(procs: list[mp.Process]) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + _GRACE_S
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def launch_local(entry: Callable[[AgentContext, Any], None], n_agents: int, payload: Any,
                 timeout_s: float = 60.0, threads: int = 1) -> None:
    """Run ``entry(ctx, payload)`` in ``n_agents`` processes joined in one group.

    ``entry`` must be a module-level function (it is pickled when the agents
    are spawned). ``threads``: torch threads each agent will use (agents on
    one are forked, :func:`_start_method`). Returns when all agents finished;
    raises :class:`AgentFailure` naming the agent at fault otherwise, with no
    agent left running.
    """
    ifname = os.environ.get("GLOO_SOCKET_IFNAME")
    if ifname not in (None, LOOPBACK):
        log.warning("GLOO_SOCKET_IFNAME=%s ignored: local agents bind gloo to loopback (%s) "
                    "only; the variable applies under torchrun", ifname, LOOPBACK)
    method = _start_method(threads)
    context = mp.get_context(method)
    errors: mp.Queue = context.Queue()
    procs: list[mp.Process] = []
    workdir = None
    try:
        with _sigint_deferred(), _numba_threads(threads if method == "spawn" else None):
            workdir = tempfile.mkdtemp(prefix="qtrl-rendezvous-")
            store_path = os.path.join(workdir, "store")
            procs += [context.Process(target=_agent_main, name=f"qtrl-agent-{r}",
                                      args=(r, n_agents, store_path, timeout_s, entry, payload,
                                            errors, os.getpid()))
                      for r in range(n_agents)]
            for p in procs:
                p.start()
        log.info("started %d agents: pids %s", n_agents, [p.pid for p in procs])
        _wait(procs, errors, timeout_s)
    finally:
        _terminate(procs)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _start_method(threads: int) -> str:
    """``fork`` where it is safe, so that the agents inherit the launcher's
    imports (torch, Numba, gymnasium) instead of importing them again, most of
    an agent's start-up: on Linux, for agents on one torch thread (they never
    enter a parallel region), from a launcher with no Python thread besides the
    main one and without Numba's thread pool (a forked child keeps only the
    forking thread: locks another thread held stay held). The BLAS pools of
    NumPy and SciPy shut themselves down around a fork. ``spawn`` otherwise."""
    if (sys.platform != "linux" or threads != 1 or threading.active_count() > 1
            or jit.pool_started()):
        return "spawn"
    return "fork"


@contextlib.contextmanager
def _numba_threads(threads: int | None) -> Iterator[None]:
    """``NUMBA_NUM_THREADS`` set to ``threads`` (None: left alone) while agents
    start. Spawned agents read it when they import Numba: a pool as large as
    their torch threads, since a larger one is woken (and spins) on every
    parallel kernel call. Forked ones must keep the launcher's value, which
    their Numba has loaded: a compilation re-reads the variable, and a pool
    started under one value refuses the other."""
    before = os.environ.get("NUMBA_NUM_THREADS")
    if threads is not None:
        os.environ["NUMBA_NUM_THREADS"] = str(max(1, threads))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("NUMBA_NUM_THREADS", None)
        else:
            os.environ["NUMBA_NUM_THREADS"] = before


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Start agents with SIGINT blocked: Ctrl-C reaches the launcher alone,
    which ends the agents with SIGTERM, so none dies half-imported with a
    traceback of its own. SIGTERM is blocked too, until an agent has its own
    handler in place (``_agent_main``); the launcher takes one sent to it
    meanwhile as soon as the block lifts.

    The block is per thread and inherited by the agents' processes, which
    turn it into "ignored" once running (``_agent_main``). In the launcher a
    Ctrl-C landing meanwhile (kept pending, or taken by another thread) is
    recorded and raised as KeyboardInterrupt when the block lifts, once the
    agents and the rendezvous folder are known to the clean-up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    before = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.signal(signal.SIGINT, before)
    if pending:
        raise KeyboardInterrupt


def _drain(errors: mp.Queue, messages: dict[int, str], stopped: dict[int, str],
           wait: float = 0.5) -> None:
    """Collect the agents' failure reports (waiting up to ``wait`` s for late ones);
    a run that stopped itself (:class:`~qtrl.errors.RunStopped`) goes to ``stopped``."""
    import queue
    while True:
        try:
            rank, msg, is_stop = errors.get(timeout=wait) if wait else errors.get_nowait()
        except queue.Empty:
            return
        (stopped if is_stop else messages)[rank] = msg


def _wait(procs: list[mp.Process], errors: mp.Queue, timeout_s: float) -> None:
    messages: dict[int, str] = {}
    stopped: dict[int, str] = {}
    failed_at: float | None = None
    while True:
        _drain(errors, messages, stopped, wait=0.0)
        if 0 in stopped:  # agent 0 owns the run: its verdict is the run's, at once
            raise RunStopped(stopped[0])
        codes = [p.exitcode for p in procs]
        if all(c == 0 for c in codes):
            return
        if any(c not in (None, 0) for c in codes):
            failed_at = failed_at or time.monotonic()
            # Give the others a moment to report (their collectives fail too).
            settle = all(c is not None for c in codes) or time.monotonic() - failed_at > _GRACE_S
            if settle:
                _drain(errors, messages, stopped)
                if stopped:
                    raise RunStopped(stopped[min(stopped)])
                culprits = _culprits(procs, messages)
                raise AgentFailure("; ".join(_describe(r, procs[r], messages) for r in culprits)
                                   + "; the run was stopped")
        time.sleep(_POLL_S)


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

"""Dist-QTRL plumbing: gradient all-reduce, agreement checks, fault handling.

Agents are real processes joined by torch.distributed (gloo on loopback,
file-store rendezvous); every test bounds its own time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from qtrl.distributed import (
    AgentContext,
    AgentFailure,
    DesyncError,
    allreduce_gradients,
    check_agreement,
    launch_local,
    parameter_checksum,
)

from .agents import launch_and_watch_listeners


def _entry_allreduce(ctx: AgentContext, out_dir: str) -> None:
    p = torch.nn.Parameter(torch.zeros(3))
    q = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.full((3,), float(ctx.rank + 1))
    q.grad = torch.tensor([float(ctx.rank), 10.0 * ctx.rank])
    sent = allreduce_gradients([p, q], ctx)
    torch.save({"p": p.grad, "q": q.grad, "bytes": sent},
               os.path.join(out_dir, f"rank{ctx.rank}.pt"))


def test_allreduce_averages_gradients_across_agents(tmp_path):
    launch_local(_entry_allreduce, 3, str(tmp_path), timeout_s=30)
    for r in range(3):
        got = torch.load(tmp_path / f"rank{r}.pt", weights_only=True)
        # mean of rank+1 over ranks 0..2 = 2; mean of rank = 1, of 10*rank = 10
        assert torch.equal(got["p"], torch.full((3,), 2.0))
        assert torch.equal(got["q"], torch.tensor([1.0, 10.0]))
        assert got["bytes"] == 5 * 4


def test_single_agent_allreduce_is_identity():
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([1.5, -2.0])
    assert allreduce_gradients([p], AgentContext()) == 8
    assert torch.equal(p.grad, torch.tensor([1.5, -2.0]))


def _entry_desync(ctx: AgentContext, _: None) -> None:
    p = torch.nn.Parameter(torch.ones(4) * (1.0 if ctx.rank == 0 else 1.0 + 1e-7))
    check_agreement([p], ctx, update=7)


def test_parameter_mismatch_stops_the_run():
    with pytest.raises(AgentFailure, match="DesyncError.*agent\\(s\\) \\[1\\]"):
        launch_local(_entry_desync, 2, None, timeout_s=30)


def test_checksum_is_order_sensitive():
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([2.0, 1.0])
    assert not torch.equal(parameter_checksum([a]), parameter_checksum([b]))
    assert DesyncError.__mro__[1] is RuntimeError


def _entry_die(ctx: AgentContext, _: None) -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    for _step in range(1000):
        if ctx.rank == 1 and _step == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        p.grad = torch.ones(1)
        allreduce_gradients([p], ctx)
        time.sleep(0.01)


def test_killed_agent_ends_run_and_is_named():
    start = time.monotonic()
    with pytest.raises(AgentFailure, match="agent 1 .*killed by SIGKILL"):
        launch_local(_entry_die, 2, None, timeout_s=60)
    assert time.monotonic() - start < 45  # well before the 60 s collective timeout


def _entry_hang(ctx: AgentContext, _: None) -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    for _step in range(1000):
        if ctx.rank == 1 and _step == 3:
            time.sleep(3600)  # stops answering
        p.grad = torch.ones(1)
        allreduce_gradients([p], ctx)


def test_hung_agent_ends_run_within_timeout():
    start = time.monotonic()
    with pytest.raises(AgentFailure, match="agent 1 .*stopped answering"):
        launch_local(_entry_hang, 2, None, timeout_s=3)
    # 3 s of silence + grace, plus spawning two torch processes on a busy machine
    assert time.monotonic() - start < 45


def _entry_linger(ctx: AgentContext, _: None) -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    for _step in range(40):  # ~4 s of collectives while the test looks at sockets
        p.grad = torch.ones(1)
        allreduce_gradients([p], ctx)
        time.sleep(0.1)


def test_local_run_listens_on_loopback_only():
    _, listening, _ = launch_and_watch_listeners(
        lambda: launch_local(_entry_linger, 2, None, timeout_s=30))
    assert listening, "agents opened no listening socket at all (gloo should, on loopback)"
    assert all(addr.ip in ("127.0.0.1", "::1") for addr in listening), listening


def test_agents_fork_only_when_safe() -> None:
    """A launcher that generated a preset's weights (the serial kernels, loaded or
    compiled) has not started Numba's pool, so its single-threaded agents fork;
    agents on several threads, or a launcher running another Python thread, spawn."""
    code = """
import sys, threading
from qtrl import jit
from qtrl.config import TrainConfig
from qtrl.distributed.launch import _start_method
from qtrl.loops.common import build
build(TrainConfig.from_preset("cartpole"), 0).model.policy.generate()
print(jit.pool_started(), _start_method(1), _start_method(2))
stop = threading.Event()
threading.Thread(target=stop.wait).start()
print(_start_method(1))
stop.set()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300).stdout.split()
    assert out == (["False", "fork", "spawn", "spawn"] if sys.platform == "linux"
                   else ["False", "spawn", "spawn", "spawn"])

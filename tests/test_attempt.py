"""A restarted torchrun group agrees on a fresh attempt token despite the keys
its dead predecessors left in the shared store, and a SIGTERM ends a worker
blocked in C++ within its grace time."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
import torch.distributed as dist

from qtrl.distributed.attempt import attempt_token


def _agree(store: dist.Store, world: int, timeout_s: float = 20.0) -> list[str | BaseException]:
    """Every rank's :func:`attempt_token` (or its exception), ranks run as threads."""
    out: list[str | BaseException] = [""] * world

    def one(rank: int) -> None:
        try:
            out[rank] = attempt_token(store, rank, world, "qtrl/run", timeout_s)
        except BaseException as err:  # noqa: BLE001 - handed to the test
            out[rank] = err

    threads = [threading.Thread(target=one, args=(r,)) for r in range(world)]
    for t in reversed(threads):      # the workers ask before agent 0 is up
        t.start()
        time.sleep(0.01)
    for t in threads:
        t.join(timeout_s + 5)
    return out


def test_all_ranks_agree_on_one_token():
    tokens = _agree(dist.HashStore(), 4)
    assert all(isinstance(t, str) and len(t) == 16 for t in tokens), tokens
    assert len(set(tokens)) == 1


def test_stale_keys_of_a_dead_attempt_are_not_taken():
    store = dist.HashStore()
    # What a killed attempt left: a question and agent 0's answer to it.
    store.set("qtrl/run/ask/1", "0123456789abcdef")
    store.set("qtrl/run/answer/1", "0123456789abcdef deadbeefdeadbeef")
    store.set("qtrl/run/deadbeefdeadbeef/ready/1", "1")
    first = _agree(store, 2)
    second = _agree(store, 2)     # and the attempt after that
    assert first[0] == first[1] and second[0] == second[1]
    assert len({"deadbeefdeadbeef", first[0], second[0]}) == 3


def test_a_missing_worker_times_out_naming_it():
    store = dist.HashStore()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"agent\(s\) \[1, 2\]"):
        attempt_token(store, 0, 3, "qtrl/run", timeout_s=0.5)
    assert time.monotonic() - t0 < 5


def test_a_worker_without_agent_0_times_out():
    with pytest.raises(TimeoutError, match="agent 2: agent 0"):
        attempt_token(dist.HashStore(), 2, 3, "qtrl/run", timeout_s=0.3)


_BLOCKED = """
import signal, sys, time
from datetime import timedelta
import torch.distributed as dist
from qtrl.distributed.attempt import exit_soon_after_sigterm
def handler(signum, frame):
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, handler)
exit_soon_after_sigterm(0.5)
print("blocked", flush=True)
dist.HashStore().wait(["never"], timedelta(seconds=60))   # C++: no Python handler runs
"""


def test_sigterm_ends_a_worker_blocked_in_cpp():
    proc = subprocess.Popen([sys.executable, "-c", _BLOCKED], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "blocked"
        time.sleep(0.2)
        sent = time.monotonic()
        proc.terminate()
        code = proc.wait(timeout=20)
    finally:
        proc.kill()
    assert code == 143                       # 128 + SIGTERM, as the signal would give
    assert 0.4 < time.monotonic() - sent < 10


def test_store_wait_really_blocks_sigterm_handlers(tmp_path):
    """Without the watcher the same process outlives SIGTERM (so the test above
    measures the watcher, not the handler)."""
    script = _BLOCKED.replace("exit_soon_after_sigterm(0.5)", "")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "blocked"
        time.sleep(0.2)
        proc.terminate()
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=2)
    finally:
        proc.kill()
        proc.wait()

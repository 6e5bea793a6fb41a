"""Helpers for tests that start a run as a subprocess and then stop one of its agents."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil


def wait_for_checkpoint(run: Path, seconds: float) -> None:
    """Wait until ``run`` holds a checkpoint (the agents are well into training)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (run / "checkpoint.pt").exists():
        time.sleep(0.2)
    assert (run / "checkpoint.pt").exists(), "no checkpoint written"


def python_children(pid: int) -> list[psutil.Process]:
    """The Python processes below ``pid`` (the launcher's agents)."""
    return [c for c in psutil.Process(pid).children(recursive=True)
            if c.name().startswith("python")]


def launch_and_watch_listeners(launch: Callable[[], object],
                               seconds: float = 25) -> tuple[list, list, bool]:
    """Run ``launch`` (a local multi-agent launch) in a thread and poll its child
    processes until one listens on a socket (or it ends, or ``seconds`` pass).

    Returns ``launch``'s result (a one-item list once it returned), the listening
    addresses seen, and whether the thread is still alive after a bounded join."""
    done: list = []
    thread = threading.Thread(target=lambda: done.append(launch()))
    thread.start()
    me = psutil.Process()
    listening: list = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and thread.is_alive() and not listening:
        for child in me.children(recursive=True):
            try:
                conns = child.net_connections(kind="inet")
            except psutil.Error:
                continue
            listening += [c.laddr for c in conns if c.status == psutil.CONN_LISTEN]
        time.sleep(0.2)
    thread.join(30)
    return done, listening, thread.is_alive()

"""Helpers for tests that start a run as a subprocess and then stop one of its agents."""

from __future__ import annotations

import time
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

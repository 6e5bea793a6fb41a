"""Where a measurement was made: one line for the header of every results table."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

import torch

__all__ = ["cpu_name", "machine_line"]


def cpu_name() -> str:
    """The CPU model as the OS reports it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    """``date, CPU, cores, Python, torch`` — e.g. for a results file's header."""
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return (f"{dt.date.today().isoformat()}; {cpu_name()} ({platform.machine()}), "
            f"{os.cpu_count()} cores{gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}")

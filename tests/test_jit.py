"""Runs load the kernels from Numba's cache: a cold cache is filled by a child."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from qtrl import jit

pytestmark = pytest.mark.skipif(not jit.available(), reason="needs Numba")


def test_a_cold_cache_is_filled_by_a_child_process(monkeypatch, tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **_: object) -> subprocess.CompletedProcess:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(jit, "_ensured", False)
    monkeypatch.setattr(jit, "_marker", lambda: tmp_path / "missing.ok")
    monkeypatch.setattr(jit.subprocess, "run", fake_run)
    jit.ensure_cached()
    jit.ensure_cached()  # once per process
    assert len(calls) == 1 and "jit.warm()" in calls[0][-1]


def test_a_warm_cache_starts_nothing(monkeypatch, tmp_path: Path) -> None:
    marker = tmp_path / "kernels.ok"
    marker.write_text("")
    monkeypatch.setattr(jit, "_ensured", False)
    monkeypatch.setattr(jit, "_marker", lambda: marker)
    monkeypatch.setattr(jit.subprocess, "run", lambda *a, **k: pytest.fail("started a child"))
    jit.ensure_cached()


def test_the_marker_names_the_kernel_sources_stamps() -> None:
    marker = jit._marker()
    assert marker.name.startswith("kernels-") and marker.suffix == ".ok"
    assert marker == jit._marker()
    here = Path(jit.__file__).parent
    assert all((here / name).is_file() for name in jit._KERNEL_SOURCES)

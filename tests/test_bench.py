"""Smoke tests of ``qtrl bench``: the tables come out with their rows (no timing asserts)."""

from __future__ import annotations

import pytest
import torch

from qtrl.bench import generation, simulator
from qtrl.cli import main
from qtrl.quantum.ansatz import RingU3Ansatz


def _rows(text: str, first: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.split()[:1] == [first]]


def test_bench_simulator_quick(capsys) -> None:
    threads = torch.get_num_threads()
    args = ["bench", "simulator", "--quick", "--threads", "1", "--repeats", "1",
            "--pennylane-max-qubits", "10"]
    assert main(args) == 0
    assert torch.get_num_threads() == threads  # restored
    out = capsys.readouterr().out
    assert "1 thread:" in out
    rows = _rows(out, "10") + _rows(out, "13")
    assert [r[:2] for r in rows] == [["10", "5"], ["13", "13"]]
    pytest.importorskip("pennylane")
    assert rows[0][8] != "-" and rows[0][9].endswith("x")   # PennyLane ran at n = 10
    assert rows[1][8] == "-"                                  # but not above the limit
    assert "<= 3 ms:" in " ".join(rows[0])                    # the goal beside the figure


def test_bench_generation_quick(capsys) -> None:
    threads = torch.get_num_threads()
    assert main(["bench", "generation", "--quick", "--repeats", "1", "--layers", "1",
                 "--mapping-hidden", "4"]) == 0
    assert torch.get_num_threads() == threads  # restored
    out = capsys.readouterr().out
    rows = _rows(out, "1e3") + _rows(out, "1e4")
    assert [(r[0], r[2], r[4]) for r in rows] == [
        ("1e3", "898", "1"), ("1e3", "898", "2"), ("1e4", "9,667", "1"), ("1e4", "9,667", "2")]
    assert all(len(r) == 11 for r in rows)  # ... trainable, fwd+bwd ms, circuit ms


def test_bench_bad_input_is_one_line(capsys) -> None:
    assert main(["bench", "generation", "--quick", "--repeats", "0"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_kernel_bytes_counts_passes() -> None:
    ansatz = RingU3Ansatz(10, 5, compiled=False)  # the sweep: 50 pairs, 4 per 5-qubit window
    moved, stored = simulator.kernel_bytes(ansatz)
    state = 2**10 * 8
    assert stored  # a small circuit keeps its states
    assert ansatz.state_passes == 13
    assert moved == 13 * (2 + 4) * state
    # Compiled: a pass per gate, 10 U3 (whole) + 10 CU3 (half) a layer, over
    # complex64 (wide kernels) or, for float64 angles, complex128.
    moved, stored = simulator.kernel_bytes(RingU3Ansatz(10, 5))
    assert moved == 5 * 10 * 1.5 * (2 + 4) * 2**10 * 8 and not stored
    moved, _ = simulator.kernel_bytes(RingU3Ansatz(10, 5, dtype=torch.float64))
    assert moved == 5 * 10 * 1.5 * (2 + 4) * 2**10 * 16
    layered = RingU3Ansatz(15, 2)  # above the sweep's range: fused layer template
    assert layered.state_passes == 2 * len(layered.layered_operations())


def test_chunks_for() -> None:
    assert generation.chunks_for(898, 14) == 2
    assert generation.chunks_for(1_004_003, 14) == 62
    k = 1_004_003
    assert (k / generation.chunks_for(k, 14)) <= 2**14


def test_bench_simulator_bad_threads(capsys) -> None:
    assert main(["bench", "simulator", "--quick", "--threads", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threads" in err[0]


def test_peak_rss_of_a_fresh_process() -> None:
    # Run from this (large) test process: the child must not report our size.
    mb = simulator.peak_rss_mb(12, 2, threads=1)
    assert 0 <= mb < 200

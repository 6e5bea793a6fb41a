"""Generation cost: forward + backward time of Quantum-Train weight generation vs k.

For MLP targets of about 1e3 … 1e6 weights, the wall time of one
``QuantumTrain(target).generate_flat()`` followed by the backward pass of a
weighted sum (what one training update pays for the generator), median over
repeats after a warm-up. Each target is measured unchunked (one circuit of
``ceil(log2 k)`` qubits) and chunked (at least 2 circuits of at most
``--chunk-qubits`` qubits each, run as one batched simulation).

Reproduce: ``qtrl bench generation`` (add ``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from ..generator import QuantumTrain
from ..presets import build_policy

__all__ = [
    "QUICK_TARGETS",
    "TARGETS",
    "chunks_for",
    "measure",
    "register_args",
    "run",
    "time_circuit",
    "time_generation",
]

# (label, observation size, hidden sizes, actions): k ≈ 1e3, 1e4, 1e5, 1e6.
TARGETS: list[tuple[str, int, tuple[int, ...], int]] = [
    ("1e3", 4, (128,), 2),            # k = 898 (the CartPole preset's policy)
    ("1e4", 147, (64,), 3),           # k = 9,667
    ("1e5", 147, (256, 256), 3),      # k = 104,451
    ("1e6", 1000, (1000,), 3),        # k = 1,004,003
]
QUICK_TARGETS = TARGETS[:2]


def register_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="only k ≈ 1e3 and 1e4, few repeats")
    p.add_argument("--layers", type=int, default=5, help="ansatz layers L (default 5)")
    p.add_argument("--mapping-hidden", type=int, nargs="+", default=[10, 10, 10], metavar="H",
                   help="mapping-model hidden sizes (default 10 10 10)")
    p.add_argument("--chunk-qubits", type=int, default=14, metavar="N",
                   help="chunked rows: at least 2 circuits of at most N qubits (default 14)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats (default 5, --quick 2); the median is shown")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: reproducible figures)")


def chunks_for(k: int, max_qubits: int) -> int:
    """Fewest chunks (at least 2) whose circuits need at most ``max_qubits`` qubits."""
    return max(2, math.ceil(k / 2**max_qubits))


def _median_seconds(step: Callable[[], Any], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_generation(qt: QuantumTrain, repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``generate_flat()`` + backward of a weighted sum."""
    w = torch.randn(qt.k, generator=torch.Generator().manual_seed(0))

    def step() -> None:
        qt.zero_grad(set_to_none=True)
        (qt.generate_flat() * w).sum().backward()

    return _median_seconds(step, repeats, warmup)


def time_circuit(qt: QuantumTrain, repeats: int, warmup: int = 1) -> float:
    """Median seconds of the circuits alone: ``qt.qnn()`` + backward of a weighted sum."""
    w = torch.randn(qt.chunks, 2**qt.n_qubits, generator=torch.Generator().manual_seed(0))

    def step() -> None:
        qt.zero_grad(set_to_none=True)
        (qt.qnn() * w).sum().backward()

    return _median_seconds(step, repeats, warmup)


def measure(targets: list[tuple[str, int, tuple[int, ...], int]], layers: int,
            mapping_hidden: tuple[int, ...], chunk_qubits: int,
            repeats: int) -> list[dict[str, Any]]:
    """One row per (target, unchunked | chunked)."""
    rows = []
    for label, obs, hidden, actions in targets:
        policy = build_policy(obs, hidden, actions)
        k = sum(p.numel() for p in policy.parameters())
        for chunks in (1, chunks_for(k, chunk_qubits)):
            torch.manual_seed(0)
            qt = QuantumTrain(policy, layers, mapping_hidden, chunks=chunks)
            counts = qt.parameter_counts()
            seconds = time_generation(qt, repeats)
            circuit = time_circuit(qt, repeats)
            rows.append({"label": label, "policy": "-".join(map(str, (obs, *hidden, actions))),
                         "k": k, "qubits": counts.qubits, "chunks": counts.chunks,
                         "layers": layers, "qnn": counts.qnn, "mapping": counts.mapping,
                         "trainable": counts.total, "ms": seconds * 1e3,
                         "circuit_ms": circuit * 1e3})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'target':>6} {'policy':>16} {'k':>10} {'n':>3} {'Q':>4} {'L':>3} "
            f"{'QNN':>7} {'mapping':>7} {'trainable':>9} {'fwd+bwd ms':>11} {'circuit ms':>11}")
    lines = [head]
    for r in rows:
        lines.append(f"{r['label']:>6} {r['policy']:>16} {r['k']:>10,} {r['qubits']:>3} "
                     f"{r['chunks']:>4} {r['layers']:>3} {r['qnn']:>7,} {r['mapping']:>7,} "
                     f"{r['trainable']:>9,} {r['ms']:11.1f} {r['circuit_ms']:11.1f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError

    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    if (repeats < 1 or args.layers < 1 or args.chunk_qubits < 2 or args.threads < 1
            or min(args.mapping_hidden) < 1):
        raise UserError("--repeats, --layers, --threads and --mapping-hidden must be positive "
                        "and --chunk-qubits at least 2")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    targets = QUICK_TARGETS if args.quick else TARGETS
    try:
        rows = measure(targets, args.layers, tuple(args.mapping_hidden), args.chunk_qubits,
                       repeats)
    finally:
        torch.set_num_threads(old_threads)
    print(f"Generation: QuantumTrain.generate_flat() + backward of a weighted sum, ring-u3, "
          f"float32, {args.threads} thread(s); median of {repeats} after 1 warm-up.")
    print(f"Q = 1: one circuit of ceil(log2 k) qubits; Q > 1: chunks of at most "
          f"{args.chunk_qubits} qubits. 'circuit ms': the circuits' share (qnn() + backward).")
    print(format_table(rows))
    return 0

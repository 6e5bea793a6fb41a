"""Simulator speed: forward + backward of the default ansatz, bandwidth, PennyLane side by side.

What is measured, per (n qubits, L layers): the wall time of one forward +
backward pass of :class:`~qtrl.quantum.ansatz.RingU3Ansatz` (complex64) with
the loss ``(probs * w).sum()``, median over repeats after a warm-up, with torch
pinned to a given number of threads. The goals are judged at one thread, as
the issue measured them; the compiled kernels run one thread whatever torch
gets, so the 2-thread table shows what torch's own threads buy the yardstick,
PennyLane and the torch path.

Effective bandwidth = bytes of state moved by the kernel passes / time.

On the CPU every size runs by compiled kernels, one pass over the state per
gate: the vectorised split-complex kernels of :mod:`qtrl.quantum.wide` in
complex64 (backward 'wide'; :func:`~qtrl.quantum.ansatz.ring_kernel` keeps the
complex128 loops of :mod:`qtrl.quantum.compiled` for float64 angles only). Both are the adjoint method: per U3 the whole state and per
CU3 its control-1 half is read and written, forward the state (2 passes' worth)
and backward the state and the adjoint (4). Nothing else touches the state
apart from the final ``|ψ|²``, so this count is the bytes the kernels really
move, and also what any gate-by-gate simulator would have to ('gate GB/s';
both columns agree for the compiled kernels by construction).

The torch paths (``compiled=False``: fused GEMM windows, rotating frames above
14 qubits) are timed beside them at 13 qubits and up ('torch ms'); their own
bytes moved would be fewer (a window covers several gates), which is why the
goal is judged on the compiled kernels' count.

The yardstick is a plain ``torch.clone()`` of a state of the same size (one
read + one write), the bandwidth the machine gives a simple streaming copy.

Reproduce: ``qtrl bench simulator`` (add ``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from ..quantum import statevector
from ..quantum.ansatz import COMPILED_MAX_QUBITS, RingU3Ansatz, ring_kernel

__all__ = [
    "QUICK_SIZES",
    "SIZES",
    "clone_bandwidth",
    "gate_bytes",
    "kernel_bytes",
    "measure",
    "peak_rss_mb",
    "register_args",
    "run",
    "time_ours",
    "time_pennylane",
]

SIZES: list[tuple[int, int]] = [(10, 5), (13, 13), (16, 16), (20, 20)]
QUICK_SIZES: list[tuple[int, int]] = [(10, 5), (13, 13)]

GOAL_SMALL_MS = 3.0          # (10, 5) forward + backward
GOAL_SPEEDUP = 10.0          # vs PennyLane at n = 13, 16
GOAL_BANDWIDTH = 0.30        # n = 20: fraction of the clone() yardstick
GOAL_RSS_MB = 1024.0         # n = 20 peak RSS above the imports, MiB


def register_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="only (10,5) and (13,13), few repeats, no n=20 memory run")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], metavar="T",
                   help="torch thread counts, one table each (default: 1 2)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats per size (default 7, --quick 3); the median is shown")
    p.add_argument("--pennylane-max-qubits", type=int, default=16, metavar="N",
                   help="run PennyLane default.qubit only up to N qubits (default 16)")
    p.add_argument("--no-pennylane", action="store_true", help="skip the PennyLane column")
    p.add_argument("--no-rss", action="store_true",
                   help="skip the n=20 peak-memory run in a fresh subprocess")


# ---------------------------------------------------------------- measurement


def _median_time(step: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``step()`` in seconds, ``warmup`` calls excluded."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _loss_weights(n: int) -> torch.Tensor:
    return torch.randn(2**n, generator=torch.Generator().manual_seed(n))


def kernel_bytes(ansatz: RingU3Ansatz) -> tuple[int, bool]:
    """Bytes of state read + written by the forward and backward kernel passes,
    and whether the backward pass uses kept states (torch path only)."""
    if ansatz.compiled:  # one pass per gate: the gate-by-gate count
        c128 = ring_kernel(ansatz.n_qubits, ansatz.real_dtype) == "compiled"
        return gate_bytes(ansatz, element=16 if c128 else None), False
    n, circuits = ansatz.n_qubits, ansatz.circuits
    state = circuits * 2**n * torch.empty(0, dtype=ansatz.complex_dtype).element_size()
    steps = ansatz.state_passes
    stored = steps * state <= statevector.STORE_STATES_BYTES
    per_step = 2 + (2 + 2 if stored else 2 + 4)
    return steps * per_step * state, stored


def gate_bytes(ansatz: RingU3Ansatz, element: int | None = None) -> int:
    """Bytes a gate-by-gate simulator would move in forward + backward (see the
    module docstring): per layer ``n`` U3s (whole state) and ``n``
    CU3s (half of it), each read + written forward (2) and backward (4).
    ``element``: bytes per amplitude (default: the ansatz's complex dtype)."""
    n, circuits = ansatz.n_qubits, ansatz.circuits
    element = element or torch.empty(0, dtype=ansatz.complex_dtype).element_size()
    state = circuits * 2**n * element
    return int(ansatz.layers * n * (1 + 0.5) * (2 + 4) * state)


def time_ours(n: int, layers: int, repeats: int, compiled: bool = True) -> dict[str, Any]:
    """Forward + backward of ``RingU3Ansatz(n, layers)``: time and bandwidth.
    ``compiled=False`` times the torch path instead."""
    torch.manual_seed(0)
    ansatz = RingU3Ansatz(n, layers, compiled=compiled)
    w = _loss_weights(n)

    def step() -> None:
        ansatz.zero_grad(set_to_none=True)
        (ansatz()[0] * w).sum().backward()

    seconds = _median_time(step, repeats)
    moved, stored = kernel_bytes(ansatz)
    passes = 2 * n * layers if ansatz.compiled else ansatz.state_passes
    backward = ("stored" if stored else "recomputed") if not ansatz.compiled else (
        ring_kernel(n, ansatz.real_dtype))
    return {"n": n, "layers": layers, "ops_per_layer": passes / layers,
            "fuse_qubits": ansatz.fuse_qubits, "backward": backward, "ms": seconds * 1e3,
            "bytes": moved, "gbps": moved / seconds / 1e9,
            "gate_gbps": gate_bytes(ansatz) / seconds / 1e9}


def clone_bandwidth(n: int, repeats: int) -> float:
    """GB/s of ``clone()`` of an ``n``-qubit complex64 state (read + write)."""
    state = torch.randn(2**n, dtype=torch.complex64)
    reps = max(repeats, min(200, 2 ** max(0, 24 - n)))  # enough to time small states
    seconds = _median_time(state.clone, reps, warmup=3)
    return 2 * state.numel() * state.element_size() / seconds / 1e9


def _pennylane_step(n: int, layers: int) -> Callable[[], None] | None:
    """A PennyLane default.qubit (torch, backprop) forward + backward of the same circuit."""
    try:
        import pennylane as qml
    except ImportError:
        return None
    torch.manual_seed(0)
    ansatz = RingU3Ansatz(n, layers)
    u = ansatz.u3_angles.detach()[0].clone().requires_grad_()   # (L, n, 3)
    c = ansatz.cu3_angles.detach()[0].clone().requires_grad_()
    w = _loss_weights(n)
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(u: torch.Tensor, c: torch.Tensor):
        for layer in range(layers):
            for q in range(n):
                qml.U3(u[layer, q, 0], u[layer, q, 1], u[layer, q, 2], wires=q)
            for q in range(n):
                qml.ctrl(qml.U3(c[layer, q, 0], c[layer, q, 1], c[layer, q, 2],
                                wires=(q + 1) % n), control=q)
        return qml.probs(wires=range(n))

    def step() -> None:
        u.grad = c.grad = None
        (circuit(u, c).to(w.dtype) * w).sum().backward()

    return step


def time_pennylane(n: int, layers: int, repeats: int) -> float | None:
    """Milliseconds of PennyLane's forward + backward, or None if it is not installed."""
    step = _pennylane_step(n, layers)
    if step is None:
        return None
    return _median_time(step, repeats) * 1e3


_RSS_SCRIPT = """
import json, resource, sys, torch
from qtrl.quantum.ansatz import RingU3Ansatz

def status_kb(key):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None

torch.set_num_threads({threads})
torch.manual_seed(0)
base = status_kb("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:  # reset the high-water mark, so an import-time spike does not count
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
ansatz = RingU3Ansatz({n}, {layers})
w = torch.randn(2 ** {n})
(ansatz()[0] * w).sum().backward()
peak = status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
json.dump({{"base_kb": base, "peak_kb": peak}}, sys.stdout)
"""


def peak_rss_mb(n: int = 20, layers: int = 20, threads: int = 1) -> float:
    """Peak RSS (MiB) of one forward + backward in a fresh process, above its imports.

    The peak is the process's own high-water mark (``VmHWM``, Linux), not
    ``ru_maxrss``: Linux carries ``ru_maxrss`` over from the parent across
    fork + exec, so a child of a large benchmark process would report the
    parent's size. Elsewhere ``ru_maxrss`` (KiB on Linux) is the fallback.
    """
    script = _RSS_SCRIPT.format(n=n, layers=layers, threads=threads)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    usage = json.loads(out.stdout)
    return max(0, usage["peak_kb"] - usage["base_kb"]) / 1024


def measure(sizes: list[tuple[int, int]], threads: int, repeats: int,
            pennylane_max_qubits: int | None) -> list[dict[str, Any]]:
    """One row per size with ``threads`` torch threads; PennyLane up to the given n."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rows = []
        for n, layers in sizes:
            row = time_ours(n, layers, repeats)
            row["threads"] = threads
            row["clone_gbps"] = clone_bandwidth(n, repeats)
            row["torch_ms"] = None
            if n > COMPILED_MAX_QUBITS:
                row["torch_ms"] = time_ours(n, layers, max(1, min(repeats, 3)), False)["ms"]
            row["pennylane_ms"] = None
            if pennylane_max_qubits is not None and n <= pennylane_max_qubits:
                row["pennylane_ms"] = time_pennylane(n, layers, max(1, min(repeats, 3)))
            rows.append(row)
        return rows
    finally:
        torch.set_num_threads(old)


# ---------------------------------------------------------------- printing


def _goal(row: dict[str, Any]) -> str:
    n, layers = row["n"], row["layers"]
    if row["threads"] != 1:
        # The goals are one-thread figures; the compiled kernels run one
        # thread whatever torch is given, while torch's clone() and GEMMs use all.
        return "(goals are at 1 thread)"
    if (n, layers) == (10, 5):
        ok = row["ms"] <= GOAL_SMALL_MS
        return f"<= {GOAL_SMALL_MS:g} ms: {'met' if ok else 'NOT met'}"
    if n in (13, 16) and row["pennylane_ms"] is not None:
        ok = row["pennylane_ms"] / row["ms"] >= GOAL_SPEEDUP
        return f">= {GOAL_SPEEDUP:g}x PennyLane: {'met' if ok else 'NOT met'}"
    if n == 20:
        ok = row["gbps"] / row["clone_gbps"] >= GOAL_BANDWIDTH
        return f">= {GOAL_BANDWIDTH:.0%} of clone: {'met' if ok else 'NOT met'}"
    return ""


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'n':>3} {'L':>3} {'ops/L':>5} {'backward':>10} {'ours ms':>10} {'GB/s':>7} "
            f"{'clone GB/s':>10} {'of clone':>8} {'PennyLane ms':>12} {'speed-up':>8} "
            f"{'torch ms':>9} {'vs torch':>8}  goal")
    lines = [head]
    for r in rows:
        pl = r["pennylane_ms"]
        pl_s = f"{pl:12.1f}" if pl is not None else f"{'-':>12}"
        up = f"{pl / r['ms']:7.1f}x" if pl is not None else f"{'-':>8}"
        tm = r["torch_ms"]
        tm_s = f"{tm:9.1f} {tm / r['ms']:7.2f}x" if tm is not None else f"{'-':>9} {'-':>8}"
        lines.append(f"{r['n']:>3} {r['layers']:>3} {r['ops_per_layer']:>5.1f} {r['backward']:>10} "
                     f"{r['ms']:10.2f} {r['gbps']:7.2f} {r['clone_gbps']:10.2f} "
                     f"{r['gbps'] / r['clone_gbps']:8.0%} {pl_s} {up} {tm_s}  {_goal(r)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    sizes = QUICK_SIZES if args.quick else SIZES
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 7)
    if repeats < 1 or any(t < 1 for t in args.threads):
        from ..errors import UserError
        raise UserError("--repeats and --threads must be positive integers")
    pl_max = None if args.no_pennylane else args.pennylane_max_qubits
    print("Simulator: RingU3Ansatz forward + backward, loss (probs * w).sum(), complex64 "
          "(the float32 angles of training; complex128 runs only float64 circuits); "
          f"median of {repeats} after 1 warm-up.")
    print("GB/s = state bytes moved by the kernels (one pass per gate, adjoint backward) / "
          "time; 'of clone' = that over the bandwidth of torch clone() of the same state; "
          "'torch ms' = the torch path (compiled=False: fused GEMM windows) of the same "
          "circuit, 'vs torch' its time over ours.")
    for threads in args.threads:
        rows = measure(sizes, threads, repeats, pl_max)
        print(f"\n{threads} thread{'s' if threads > 1 else ''}:")
        print(format_table(rows))
    if not args.quick and not args.no_rss:
        mb = peak_rss_mb(20, 20, min(args.threads))
        print(f"\nPeak RSS at n=20, L=20 (fresh process, forward + backward, above imports): "
              f"{mb:.0f} MiB   goal < 1 GiB: {'met' if mb < GOAL_RSS_MB else 'NOT met'}")
    return 0

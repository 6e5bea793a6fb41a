"""Gate fusion: merge runs of gates on a few neighbouring wires into one matrix.

Small circuits are dominated by per-gate overhead and large ones by passes over
the state, so both win when consecutive gates whose wires fit in a window of at
most ``max_qubits`` contiguous wires become one ``(2^m, 2^m)`` matrix. The fused
matrix is built by running the window's gates on the identity, viewed as a state
of ``2m`` qubits (rows = the window's wires, columns = spectators), with the same
kernel as the simulator; it stays differentiable by plain autograd, which is
cheap because the matrices are small.

Matrices may carry leading batch axes (for example ``(circuits, layers, d, d)``),
so one call fuses a layer template for every layer and circuit at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .statevector import Operation, _apply_flat

__all__ = ["fuse"]


def fuse(operations: Sequence[Operation], max_qubits: int) -> list[Operation]:
    """Greedily merge consecutive operations into windows of ≤ ``max_qubits`` wires.

    Order is preserved, so the fused circuit equals the original exactly. An
    operation whose wires span more than ``max_qubits`` (for example the wrap-around
    gate of a ring) is passed through on its own.

    Args:
        operations: gates with matrices ``(*lead, d, d)``; all ``lead`` broadcastable.
        max_qubits: largest window width (≥ 1).
    Returns:
        Fused operations; each window's wires are ``lo..hi`` ascending.
    """
    if max_qubits < 1:
        raise ValueError(f"max_qubits must be >= 1, got {max_qubits}")
    fused: list[Operation] = []
    window: list[Operation] = []
    lo = hi = 0
    for op in operations:
        op_lo, op_hi = min(op.wires), max(op.wires)
        if op_hi - op_lo + 1 > max_qubits:
            fused.extend(_flush(window, lo, hi))
            window = []
            fused.append(op)
            continue
        if window and max(hi, op_hi) - min(lo, op_lo) + 1 > max_qubits:
            fused.extend(_flush(window, lo, hi))
            window = []
        if not window:
            lo, hi = op_lo, op_hi
        lo, hi = min(lo, op_lo), max(hi, op_hi)
        window.append(op)
    fused.extend(_flush(window, lo, hi))
    return fused


def _flush(window: list[Operation], lo: int, hi: int) -> list[Operation]:
    if not window:
        return []
    wires = tuple(range(lo, hi + 1))
    if len(window) == 1 and tuple(window[0].wires) == wires:
        return [window[0]]
    m = len(wires)
    d = 2**m
    first = window[0].matrix
    # Identity as a 2m-qubit state: row wires 0..m-1, column wires m..2m-1.
    acc = torch.eye(d, dtype=first.dtype, device=first.device).reshape(d * d)
    for op in window:
        local = tuple(w - lo for w in op.wires)
        acc = _apply_flat(acc, op.matrix, local, 2 * m)
    return [Operation(acc.reshape(*acc.shape[:-1], d, d), wires)]

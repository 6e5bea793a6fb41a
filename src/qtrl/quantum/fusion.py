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
from torch import Tensor

from .kernels import apply_flat
from .statevector import Operation

__all__ = ["chain_matrix", "chain_matrix_vjp", "fuse"]


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
        acc = apply_flat(acc, op.matrix, local, 2 * m)
    return [Operation(acc.reshape(*acc.shape[:-1], d, d), wires)]


def chain_matrix(first: Tensor, sites: Tensor) -> tuple[Tensor, list[Tensor]]:
    """The matrix of a window of wires linked by a chain of controlled gates.

    Wires ``0 … m`` of the window; wire ``i+1`` gets one-qubit gates and then a
    gate controlled by wire ``i``, after wire ``i``'s last gate (a CU chain
    ``0→1→…→m``, each wire's own U3s before or after its CU). Then the row bit
    ``c_i`` of the window matrix is the control value seen by wire ``i+1``, so

        M[(c_0 … c_m), (j_0 … j_m)] = first[c_0, j_0] · Π_i sites[i, c_i][c_{i+1}, j_{i+1}],

    ``sites[i, c]`` being wire ``i+1``'s one-qubit matrix when its control is ``|c>``
    (for ``post · CU · pre``: ``post·pre`` and ``post·U·pre``). One broadcast
    product per wire, no matmul: cheaper than Kronecker products and CU matmuls.

    Args:
        first: ``(B, 2, 2)``, wire 0's matrix.
        sites: ``(B, m, 2, 2, 2)``, ``[b, i, c]`` the matrix of wire ``i+1``.
    Returns:
        ``M`` of shape ``(B, 2^(m+1), 2^(m+1))`` (wire 0 most significant) and the
        partial products that :func:`chain_matrix_vjp` needs.
    """
    batch = first.shape[0]
    mat, partial = first, []
    for i in range(sites.shape[1]):
        r = mat.shape[-1]
        partial.append(mat)
        mat = (mat.view(batch, r // 2, 2, 1, r, 1)
               * sites[:, i].view(batch, 1, 2, 2, 1, 2)).view(batch, 2 * r, 2 * r)
    return mat, partial


def chain_matrix_vjp(grad: Tensor, sites: Tensor, partial: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Gradients of ``first`` and ``sites`` from that of :func:`chain_matrix`'s output.

    Step ``i`` was ``M' = M ⊗_c sites[i]`` (rows of ``M`` split as ``(r, c)``), so
    ``∂sites[i][c] = Σ_{r,s} G[r,c,·,s,·] conj(M[r,c,s])`` and
    ``∂M[r,c,s] = Σ G[r,c,c',s,j] conj(sites[i][c,c',j])``: with ``G`` laid out
    as ``(c, (c', j), (r, s))`` both are one batched matmul, for one copy of ``G``.
    """
    batch, steps = sites.shape[:2]
    grad_sites = []
    sites_conj = sites.conj().resolve_conj().view(batch, steps, 2, 1, 4).unbind(1)
    size = 2**steps
    g = grad.view(batch, size // 2, 2, 2, size, 2)              # (b, r, c, c', s, j)
    for i in range(steps - 1, -1, -1):
        rows, cols = 2**i, 2 ** (i + 1)                          # r and s of step i
        gp = g.permute(0, 2, 3, 5, 1, 4).reshape(2 * batch, 4, rows * cols)
        m = partial[i].view(batch, rows, 2, cols).permute(0, 2, 1, 3).reshape(
            2 * batch, rows * cols, 1)
        grad_sites.append(torch.bmm(gp, m.conj()).view(batch, 2, 2, 2))
        grad_mat = torch.bmm(sites_conj[i].reshape(2 * batch, 1, 4), gp)   # (b c, 1, r s)
        if i:  # as (b, c, r', c_prev, s', j_prev) -> (b, r', c_prev, c, s', j_prev)
            g = grad_mat.view(batch, 2, rows // 2, 2, cols // 2, 2).permute(0, 2, 3, 1, 4, 5)
    grad_sites = torch.stack(grad_sites[::-1], 1).view(sites.shape)
    return grad_mat.view(batch, 2, 2), grad_sites

"""Pure statevector kernels: a gate matrix applied to flat states, and its gradient.

A state of ``n`` qubits is kept flat, ``(*lead, 2**n)``, with wire 0 the most
significant bit of the index (see :mod:`qtrl.quantum.statevector`). A gate on
``wires`` contracts their axes with a ``(d, d)`` matrix (``d = 2**len(wires)``);
no ``2**n x 2**n`` matrix is ever formed. When the wires are a contiguous
ascending range the state is only *reshaped*, never permuted, so a gate costs
one matmul over the state.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["SMALL_STATE", "apply_flat", "check_wires", "outer_sum"]


@functools.lru_cache(maxsize=4096)
def _is_ascending_range(wires: tuple[int, ...]) -> bool:
    return all(b == a + 1 for a, b in itertools.pairwise(wires))


@functools.lru_cache(maxsize=4096)
def _layout(wires: tuple[int, ...], n: int) -> tuple[list[int], list[int], list[int]]:
    """A few-axis view of ``n`` qubits for moving ``wires`` to the end.

    Returns ``(shape, rest_axes, wire_axes)``: the state viewed with ``shape``
    (runs of untouched wires merged into one axis each, so copies stay fast);
    ``rest_axes`` the untouched axes in order; ``wire_axes`` the axes of
    ``wires`` in the given order (one axis of size ``d`` if they are an
    ascending range).
    """
    if _is_ascending_range(wires):
        lo, m = wires[0], len(wires)
        return [2**lo, 2**m, 2 ** (n - lo - m)], [0, 2], [1]
    order = sorted(wires)
    shape, rest, axis_of = [], [], {}
    prev = -1
    for w in order:
        if w - prev > 1:  # no empty (size-1) axes: they slow the copy kernel down
            shape.append(2 ** (w - prev - 1))
            rest.append(len(shape) - 1)
        axis_of[w] = len(shape)
        shape.append(2)
        prev = w
    if prev < n - 1:
        shape.append(2 ** (n - prev - 1))
        rest.append(len(shape) - 1)
    return shape, rest, [axis_of[w] for w in wires]


def _to_end(x: Tensor, wires: Sequence[int], n: int) -> Tensor:
    """Flat ``(*lead, 2**n)`` -> ``(*lead, 2**n / d, d)`` with ``wires`` last (a copy)."""
    shape, rest, wire_axes = _layout(wires, n)
    k = x.dim() - 1
    perm = list(range(k)) + [k + a for a in rest + wire_axes]
    return x.reshape(*x.shape[:-1], *shape).permute(perm).reshape(*x.shape[:-1], -1, 2 ** len(wires))


def _from_end(y: Tensor, wires: Sequence[int], n: int) -> Tensor:
    """Inverse of :func:`_to_end`: ``(*lead, R, d)`` -> flat ``(*lead, 2**n)``."""
    shape, rest, wire_axes = _layout(wires, n)
    k = y.dim() - 2
    moved_shape = [shape[a] for a in rest + wire_axes]
    order = rest + wire_axes
    inverse = [0] * len(order)
    for i, a in enumerate(order):
        inverse[a] = i
    y = y.reshape(*y.shape[:k], *moved_shape).permute(list(range(k)) + [k + i for i in inverse])
    return y.reshape(*y.shape[:k], 2**n)


# A trailing axis thinner than this makes batched matmuls several times slower
# than one GEMM. There the gate is widened to M ⊗ I over the trailing wires and
# applied as one GEMM on the fastest axes, which costs a little more arithmetic
# but no copy. States smaller than SMALL_STATE skip all this: their cost is
# per-call overhead.
_THIN = 8
SMALL_STATE = 2**14


def _widen(matrix: Tensor, below: int) -> Tensor:
    """``matrix ⊗ I_below``: ``(d, d)`` -> ``(d·below, d·below)``."""
    d = matrix.shape[-1]
    eye = torch.eye(below, dtype=matrix.dtype, device=matrix.device)
    return (matrix[:, None, :, None] * eye[None, :, None, :]).reshape(d * below, d * below)


def apply_flat(x: Tensor, matrix: Tensor, wires: Sequence[int], n: int) -> Tensor:
    """Apply ``matrix`` to ``wires`` of flat states ``x`` of shape ``(*lead, 2**n)``.

    ``matrix`` is ``(d, d)`` (shared) or ``(*lead_m, d, d)`` with ``lead_m``
    broadcastable against ``lead``. Returns ``(*broadcast(lead, lead_m), 2**n)``.
    Contiguous wires with a wide trailing axis cost one (batched) GEMM and no
    copy; other wires are moved to the end and back (two copies).
    """
    m = len(wires)
    d = 2**m
    lead = x.shape[:-1]
    if _is_ascending_range(wires):
        above = 2 ** wires[0]
        below = 2 ** (n - wires[0] - m)
        if below == 1:
            # The gate acts on the fastest axes: rows of (…, above, d) times M^T.
            y = x.reshape(*lead, above, d) @ matrix.mT
            return y.reshape(*y.shape[:-2], 2**n)
        if matrix.dim() == 2 and above == 1 and x.numel() == 2**n:
            return (matrix @ x.reshape(d, below)).reshape(x.shape)
        if below >= _THIN or x.shape[-1] < SMALL_STATE:
            if matrix.dim() == 2:
                xs = x.reshape(-1, d, below)
                return torch.bmm(matrix.expand(xs.shape[0], d, d), xs).reshape(x.shape)
            y = matrix.unsqueeze(-3) @ x.reshape(*lead, above, d, below)
            return y.reshape(*y.shape[:-3], 2**n)
        if matrix.dim() == 2:
            wide = _widen(matrix, below)
            return (x.reshape(-1, d * below) @ wide.mT).reshape(x.shape)
    return _from_end(_to_end(x, wires, n) @ matrix.mT, wires, n)


def outer_sum(adjoint: Tensor, state: Tensor, wires: Sequence[int], n: int,
               per_circuit: bool) -> Tensor:
    """``Σ adjoint ⊗ conj(state)`` over every axis but ``wires``: the gradient
    of a gate matrix ``M`` in ``y = M x`` is this sum of ``dL/dy*`` and ``x``.

    Both inputs are flat ``(batch, 2**n)``. Returns ``(batch, d, d)`` if
    ``per_circuit`` else ``(d, d)`` (also summed over the batch).
    """
    m = len(wires)
    d = 2**m
    batch = adjoint.shape[0]
    above = below = 0
    if _is_ascending_range(wires):
        above = 2 ** wires[0]
        below = 2 ** (n - wires[0] - m)
    if below > 1 and (below >= _THIN or adjoint.shape[-1] < SMALL_STATE):
        if per_circuit:
            a = adjoint.reshape(batch, above, d, below)
            s = state.reshape(batch, above, d, below)
            return (a @ s.mH).sum(1)
        a = adjoint.reshape(batch * above, d, below)
        s = state.reshape(batch * above, d, below)
        if a.shape[0] == 1:
            return a[0] @ s[0].mH
        return torch.bmm(a, s.mH).sum(0)
    if below == 1:
        a = adjoint.reshape(batch, -1, d)
        s = state.reshape(batch, -1, d)
    elif below > 1 and not per_circuit:
        # As for M ⊗ I in apply_flat: outer product on the widened block, then
        # trace out the identity part.
        wide = d * below
        g = (adjoint.reshape(-1, wide).mH @ state.reshape(-1, wide)).conj()
        return g.reshape(d, below, d, below).diagonal(dim1=1, dim2=3).sum(-1)
    else:
        a = _to_end(adjoint, wires, n)
        s = _to_end(state, wires, n)
    if per_circuit:
        return a.mT @ s.conj()
    # 2-D conj-transpose is passed to BLAS as a flag; a batched one would be copied.
    return (a.reshape(-1, d).mH @ s.reshape(-1, d)).conj()


def check_wires(wires: Sequence[int], n: int, matrix: Tensor) -> None:
    """Raise ValueError unless ``wires`` are distinct, in ``0..n-1``, and ``matrix``
    is ``(..., d, d)`` with ``d = 2**len(wires)``."""
    if len(set(wires)) != len(wires) or any(not 0 <= w < n for w in wires):
        raise ValueError(f"wires {tuple(wires)} must be distinct and in 0..{n - 1}")
    d = 2 ** len(wires)
    if matrix.shape[-2:] != (d, d):
        raise ValueError(f"matrix of shape {tuple(matrix.shape)} does not act on "
                         f"{len(wires)} wire(s); expected (..., {d}, {d})")

"""Exact statevector simulation: pure kernels plus an adjoint-differentiated circuit.

Layout. A state of ``n`` qubits is a complex tensor of shape ``(batch, 2, ..., 2)``
(``n`` axes of size 2). Axis ``1 + w`` is wire ``w``, so flattening row-major
makes wire 0 the *most significant* bit of the basis index — the same order as
PennyLane. (Qiskit numbers qubits the other way round; see :mod:`qtrl.quantum.qasm`.)

Gates are applied by contracting the target axes with a ``(d, d)`` matrix
(``d = 2**len(wires)``); no ``2**n x 2**n`` matrix is ever formed. When the wires
are a contiguous ascending range the state is only *reshaped*, never permuted,
so a gate costs one matmul over the state.

Differentiation. :func:`run_circuit` is a custom autograd function using the
adjoint method (as PennyLane-Lightning does): the forward pass keeps only the
final state; the backward pass walks the circuit in reverse, recovering each
earlier state by applying the inverse (conjugate-transpose) gate, and forms the
gradient of every gate matrix from the adjoint and the recovered state. Peak
memory is a few states, independent of circuit depth.

Large states (2^15 amplitudes and up, on the CPU) whose gates act on wires
consecutive around the ring run in rotating frames instead (``_FramedCircuit``):
the state's axes start at some wire ``f`` and wrap around, so each window is a
GEMM with a wide trailing axis, and the frame is rotated by one transpose copy
only every few windows. A window block-diagonal in its first wire (a control
only) is applied as its two diagonal blocks, half the arithmetic.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "Operation",
    "apply_matrix",
    "num_qubits",
    "probabilities",
    "run_circuit",
    "run_layers",
    "run_sweep",
    "zero_state",
]


class Operation(NamedTuple):
    """One gate: ``matrix`` of shape ``(d, d)`` (shared by the batch) or
    ``(batch, d, d)`` (one per circuit), acting on ``wires`` (``d = 2**len(wires)``).
    The first wire is the most significant bit of the matrix's row index."""

    matrix: Tensor
    wires: tuple[int, ...]


def zero_state(n_qubits: int, batch: int = 1, dtype: torch.dtype = torch.complex64,
               device: torch.device | str | None = None) -> Tensor:
    """|0…0> for ``batch`` circuits, shape ``(batch, 2, …, 2)``."""
    state = torch.zeros(batch, 2**n_qubits, dtype=dtype, device=device)
    state[:, 0] = 1
    return state.reshape(batch, *([2] * n_qubits))


def num_qubits(state: Tensor) -> int:
    """Number of qubits of a ``(batch, 2, …, 2)`` state."""
    return state.dim() - 1


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


# A trailing axis thinner than this makes batched matmuls slow (measured at
# n = 20: 4-7x slower than one GEMM). There the gate is widened to M ⊗ I over
# the trailing wires and applied as one GEMM on the fastest axes, which costs
# a little more arithmetic but no copy. Small states skip all this: their cost
# is per-call overhead.
_THIN = 8
_SMALL_STATE = 2**14


def _widen(matrix: Tensor, below: int) -> Tensor:
    """``matrix ⊗ I_below``: ``(d, d)`` -> ``(d·below, d·below)``."""
    d = matrix.shape[-1]
    eye = torch.eye(below, dtype=matrix.dtype, device=matrix.device)
    return (matrix[:, None, :, None] * eye[None, :, None, :]).reshape(d * below, d * below)


def _apply_flat(x: Tensor, matrix: Tensor, wires: Sequence[int], n: int) -> Tensor:
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
        if below >= _THIN or x.shape[-1] < _SMALL_STATE:
            if matrix.dim() == 2:
                xs = x.reshape(-1, d, below)
                return torch.bmm(matrix.expand(xs.shape[0], d, d), xs).reshape(x.shape)
            y = matrix.unsqueeze(-3) @ x.reshape(*lead, above, d, below)
            return y.reshape(*y.shape[:-3], 2**n)
        if matrix.dim() == 2:
            wide = _widen(matrix, below)
            return (x.reshape(-1, d * below) @ wide.mT).reshape(x.shape)
    return _from_end(_to_end(x, wires, n) @ matrix.mT, wires, n)


def _outer_sum(adjoint: Tensor, state: Tensor, wires: Sequence[int], n: int,
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
    if below > 1 and (below >= _THIN or adjoint.shape[-1] < _SMALL_STATE):
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
        # As for M ⊗ I in _apply_flat: outer product on the widened block, then
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


def apply_matrix(state: Tensor, matrix: Tensor, wires: Sequence[int]) -> Tensor:
    """Apply a gate to a state (pure function, differentiable by plain autograd).

    Args:
        state: ``(batch, 2, …, 2)`` complex.
        matrix: ``(d, d)`` or ``(batch, d, d)``, ``d = 2**len(wires)``.
        wires: distinct wire indices; the first is the matrix's most significant bit.
    Returns:
        The new state, ``(batch, 2, …, 2)``.
    """
    n = num_qubits(state)
    _check_wires(wires, n, matrix)
    flat = _apply_flat(state.reshape(state.shape[0], 2**n), matrix, tuple(wires), n)
    return flat.reshape(state.shape)


def _check_wires(wires: Sequence[int], n: int, matrix: Tensor) -> None:
    if len(set(wires)) != len(wires) or any(not 0 <= w < n for w in wires):
        raise ValueError(f"wires {tuple(wires)} must be distinct and in 0..{n - 1}")
    d = 2 ** len(wires)
    if matrix.shape[-2:] != (d, d):
        raise ValueError(f"matrix of shape {tuple(matrix.shape)} does not act on "
                         f"{len(wires)} wire(s); expected (..., {d}, {d})")


def probabilities(state: Tensor) -> Tensor:
    """Basis-state probabilities ``|ψ_i|²``, shape ``(batch, 2**n)``; wire 0 is the MSB of ``i``."""
    flat = state.reshape(state.shape[0], -1)
    return flat.real.square() + flat.imag.square()


# Below this many bytes of intermediate states the forward pass keeps them, and
# the backward pass skips recomputing them by inverse gates (a quarter of the
# work). Above it, memory stays at a few states whatever the depth.
STORE_STATES_BYTES = 256 * 2**20


class _AdjointCircuit(torch.autograd.Function):
    """Forward: apply every layer's operations. Backward: the adjoint method.

    Earlier states are either kept from the forward pass (small circuits) or
    recomputed by applying inverse gates to the final state (large ones).
    """

    @staticmethod
    def forward(ctx, initial: Tensor, n: int, wires: tuple, layers: int,
                *stacks: Tensor) -> Tensor:
        steps = layers * len(stacks)
        store = steps * initial.numel() * initial.element_size() <= STORE_STATES_BYTES
        kept = []
        x = initial
        for layer in range(layers):
            for stack, w in zip(stacks, wires):
                if store:
                    kept.append(x)
                x = _apply_flat(x, stack[layer], w, n)
        ctx.n, ctx.wires, ctx.layers, ctx.n_stacks = n, wires, layers, len(stacks)
        ctx.save_for_backward(x, *stacks, *kept)
        return x

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        final, *rest = ctx.saved_tensors
        stacks, kept = rest[:ctx.n_stacks], rest[ctx.n_stacks:]
        n, wires = ctx.n, ctx.wires
        wanted = ctx.needs_input_grad[4:]
        grads = [torch.empty_like(st) if need else None for st, need in zip(stacks, wanted)]
        # Inverse gates, conj-transposed once for all layers (not per call).
        inverses = [st.mH.resolve_conj() for st in stacks]
        if kept:
            adjoint = grad_out.expand_as(final)
            step = len(kept)
            for layer in range(ctx.layers - 1, -1, -1):
                for j in range(len(stacks) - 1, -1, -1):
                    step -= 1
                    matrix = stacks[j][layer]
                    if grads[j] is not None:
                        # y = M x  =>  dL/dM = g x^H, x kept from the forward pass
                        grads[j][layer] = _outer_sum(adjoint, kept[step], wires[j], n,
                                                     matrix.dim() == 3)
                    adjoint = _apply_flat(adjoint, inverses[j][layer], wires[j], n)
            grad_initial = adjoint
        else:
            # buf[0] is the state after a gate, buf[1] the adjoint dL/dψ* after it;
            # both are walked back together with one (batched) matmul per gate.
            buf = torch.stack(torch.broadcast_tensors(final, grad_out))
            for layer in range(ctx.layers - 1, -1, -1):
                for j in range(len(stacks) - 1, -1, -1):
                    matrix = stacks[j][layer]
                    if grads[j] is not None:
                        # y = M x  =>  dL/dM = g x^H = g (M^H y)^H = (g y^H) M
                        outer = _outer_sum(buf[1], buf[0], wires[j], n, matrix.dim() == 3)
                        grads[j][layer] = outer @ matrix
                    buf = _apply_flat(buf, inverses[j][layer], wires[j], n)
            grad_initial = buf[1]
        return (grad_initial if ctx.needs_input_grad[0] else None, None, None, None, *grads)


# ---------------------------------------------------------------- rotating frames
#
# Large states (n > 14) on the CPU. A window on wires in the middle of the state
# is a batched GEMM over (above, d, below); when ``below`` is thin that is several
# times slower than one GEMM. So the state is kept in a *frame*: its axes are the
# wires from some wire ``f`` on around the ring (``f, f+1, …, f-1``), and the frame
# is rotated (one transpose copy) only when the next window would sit too close to
# the end of it. A ring of windows that each start where the last one ended then
# runs several windows per copy. The plan of frames is fixed by the template, so
# it is made once; the backward pass walks the same frames in reverse.

# Fewest trailing amplitudes (``below``) a window may leave: measured at n = 20
# (1 thread) a batched GEMM is within ~15% of one GEMM down to 2^9, twice as slow
# at 2^7.
_FRAME_MIN_BELOW_BITS = 9
# Smallest state that runs in frames: below it per-call overhead dominates and
# the plain kernels (:func:`_apply_flat`) are as fast.
_FRAME_MIN_STATE = 2**15


def _ring_start(wires: tuple[int, ...], n: int) -> int | None:
    """First wire if ``wires`` are consecutive around the ring (``w, w+1, …`` mod n)."""
    if all((b - a) % n == 1 for a, b in itertools.pairwise(wires)):
        return wires[0]
    return None


def _rotation_cost(shift: int, n: int) -> float:
    """Relative cost of :func:`_rotate_frame` by ``shift`` wires (measured at n = 20,
    in units of one window apply): a transpose with a side of at most 8 is a cheap
    strided copy, any other goes through the blocked 2-D transpose."""
    if shift % n == 0:
        return 0.0
    return 0.7 if min(shift % n, n - shift % n) <= 3 else 1.5


@functools.lru_cache(maxsize=256)
def _frame_plan(wires: tuple[tuple[int, ...], ...], n: int, layers: int,
                min_below_bits: int) -> tuple[int, ...] | None:
    """Frame start before every step (layer-major, one per template operation and
    layer), or None if some operation fits no frame (its wires not consecutive
    around the ring, or too many to leave ``2**min_below_bits`` trailing amplitudes).

    The frames minimise the summed :func:`_rotation_cost` (a shortest path over
    steps × frame starts), starting and ending in wire order (frame 0).
    """
    starts = [_ring_start(w, n) for w in wires]
    if any(s is None for s in starts) or any(len(w) + min_below_bits > n for w in wires):
        return None
    fit = [[(lo - f) % n + len(w) + min_below_bits <= n for f in range(n)]
           for lo, w in zip(starts, wires)]
    cost = [[_rotation_cost(b - a, n) for b in range(n)] for a in range(n)]
    inf = float("inf")
    best = [0.0] + [inf] * (n - 1)          # cost of reaching each frame so far
    back: list[list[int]] = []              # per step: the previous frame of each frame
    for _ in range(layers):
        for j in range(len(wires)):
            new, came = [inf] * n, [0] * n
            for f in range(n):
                if fit[j][f]:
                    came[f] = min(range(n), key=lambda g: best[g] + cost[g][f])
                    new[f] = best[came[f]] + cost[came[f]][f]
            best = new
            back.append(came)
    f = min(range(n), key=lambda g: best[g] + cost[g][0])
    frames = []
    for came in reversed(back):
        frames.append(f)
        f = came[f]
    return tuple(reversed(frames))


def _rotate_frame(x: Tensor, shift: int, n: int, out: Tensor) -> Tensor:
    """Flat states ``(rows, 2**n)`` in the frame from wire ``f`` re-laid from wire
    ``f + shift`` on, into ``out``: a transpose of ``(2**shift, 2**(n - shift))``.

    A side of at most 8 is fastest as one strided copy; otherwise each state goes
    through torch's blocked 2-D transpose (the strided copy thrashes the cache on
    power-of-two strides there: ~3x slower).
    """
    rows, a, c = x.shape[0], 2**shift, 2 ** (n - shift)
    if min(a, c) <= 8:
        out.view(rows, c, a).copy_(x.view(rows, a, c).transpose(1, 2))
        return out
    for r in range(rows):
        out[r].view(c, a).copy_(x[r].view(a, c).t())
    return out


def _diagonal_blocks(stack: Tensor) -> Tensor | None:
    """``(…, d, d)`` -> ``(…, 2, d/2, d/2)``, the two diagonal blocks, if every matrix is
    block-diagonal in its first wire (a window whose first wire is only a control),
    else None. Then each block is applied to its half: half the arithmetic."""
    d = stack.shape[-1]
    if d < 4:
        return None
    h = d // 2
    if stack[..., :h, h:].any() or stack[..., h:, :h].any():
        return None
    return torch.stack((stack[..., :h, :h], stack[..., h:, h:]), -3)


def _per_row(matrix: Tensor, rows: int, above: int) -> Tensor:
    """Matrices ``(u, k, k)`` (shared) or ``(rows, u, k, k)`` -> one per GEMM of
    :func:`_apply_framed`, ``(rows · above · u, k, k)`` (a view when it can be)."""
    u, k = matrix.shape[-3], matrix.shape[-1]
    if matrix.dim() == 3:
        return matrix.unsqueeze(0).expand(rows * above, u, k, k).reshape(-1, k, k)
    return matrix.unsqueeze(1).expand(rows, above, u, k, k).reshape(-1, k, k)


def _apply_framed(x: Tensor, matrix: Tensor, p: int, n: int, out: Tensor) -> Tensor:
    """Apply a window at axes ``p …`` of flat states ``x`` ``(rows, 2**n)`` into ``out``.

    ``matrix`` is ``(u, k, k)`` (shared) or ``(rows, u, k, k)``: ``u = 1`` a dense
    ``(d, d)`` window (``k = d``), ``u = 2`` the diagonal blocks of one that is
    block-diagonal in its first wire (``k = d/2``). One (batched) GEMM, no copy.
    """
    rows = x.shape[0]
    u, k = matrix.shape[-3], matrix.shape[-1]
    below = 2 ** (n - p) // (u * k)
    above = 2**p
    if rows * above * u == 1:
        torch.mm(matrix.reshape(k, k), x.view(k, below), out=out.view(k, below))
        return out
    torch.bmm(_per_row(matrix, rows, above), x.view(-1, k, below), out=out.view(-1, k, below))
    return out


def _outer_framed(adjoint_conj: Tensor, state: Tensor, p: int, m: int, n: int,
                  per_circuit: bool) -> Tensor:
    """``Σ adjoint ⊗ conj(state)`` over every wire but the window's (axes ``p … p+m-1``).

    Takes the *conjugated* adjoint ``(rows, 2**n)`` so that no operand needs a
    conjugate copy: ``conj(Σ a* ⊗ x)`` is one (batched) GEMM with a transposed
    operand and the conjugate of a ``(d, d)`` result. Returns ``(rows, d, d)`` if
    ``per_circuit`` else ``(d, d)``.
    """
    rows = state.shape[0]
    d = 2**m
    below = 2 ** (n - p - m)
    if rows * 2**p == 1:
        return torch.mm(adjoint_conj.view(d, below), state.view(d, below).t()).conj()
    a = adjoint_conj.view(-1, d, below)
    s = state.view(-1, d, below)
    g = torch.bmm(a, s.transpose(1, 2)).view(rows, -1, d, d).sum(1)
    return (g if per_circuit else g.sum(0)).conj()


def _free(bufs: list[Tensor], x: Tensor) -> Tensor:
    """A buffer of ``bufs`` that is not ``x``, or a new tensor if there are none."""
    if not bufs:
        return torch.empty_like(x)
    return bufs[1] if x is bufs[0] else bufs[0]


class _FramedCircuit(torch.autograd.Function):
    """:class:`_AdjointCircuit` in rotating frames (see ``_frame_plan``).

    Forward: per step, rotate the frame if the plan says so, then one GEMM; the
    result is rotated back to wire order. Backward: the same frames in reverse,
    with the *conjugated* adjoint (so that the gradient outer product needs no
    conjugate copy) and, for large circuits, the state recomputed by inverse gates,
    both walked back by one batched GEMM per step.
    """

    @staticmethod
    def forward(ctx, initial: Tensor, n: int, wires: tuple, layers: int, frames: tuple,
                *stacks: Tensor) -> Tensor:
        steps = layers * len(stacks)
        store = steps * initial.numel() * initial.element_size() <= STORE_STATES_BYTES
        # A window block-diagonal in its first wire (every layer) runs as two halves.
        blocks = [_diagonal_blocks(st) for st in stacks]
        mats = [(st.unsqueeze(-3) if b is None else b) for st, b in zip(stacks, blocks)]
        starts = [w[0] for w in wires]
        kept = []
        # Recomputed states: two buffers, each step writes into the one not read.
        bufs = [] if store else [torch.empty_like(initial), torch.empty_like(initial)]
        x, f = initial, 0
        for step in range(steps):
            layer, j = divmod(step, len(stacks))
            if frames[step] != f:
                x = _rotate_frame(x, (frames[step] - f) % n, n, _free(bufs, x))
                f = frames[step]
            if store:
                kept.append(x)
            x = _apply_framed(x, mats[j][layer], (starts[j] - f) % n, n, _free(bufs, x))
        final = _rotate_frame(x, (n - f) % n, n, torch.empty_like(x)) if f else x
        ctx.n, ctx.wires, ctx.layers, ctx.frames = n, wires, layers, frames
        ctx.blocked = [b is not None for b in blocks]
        ctx.save_for_backward(final, *stacks, *kept)
        return final

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        final, *rest = ctx.saved_tensors
        n_ops = len(ctx.wires)
        stacks, kept = rest[:n_ops], rest[n_ops:]
        n, frames, wires = ctx.n, ctx.frames, ctx.wires
        rows = final.shape[0]
        wanted = ctx.needs_input_grad[5:]
        starts = [w[0] for w in wires]
        # Inverse gates M^H, and their conjugates M^T for the conjugated adjoint,
        # as diagonal blocks where the forward pass used them.
        inverses, conj_inverses = [], []
        for st, blocked in zip(stacks, ctx.blocked):
            inv = st.mH.resolve_conj()
            inv = torch.stack((inv[..., :inv.shape[-1] // 2, :inv.shape[-1] // 2],
                               inv[..., inv.shape[-1] // 2:, inv.shape[-1] // 2:]),
                              -3) if blocked else inv.unsqueeze(-3)
            inverses.append(inv.contiguous())
            conj_inverses.append(inv.conj().resolve_conj())
        outers: list[list[Tensor | None]] = [[None] * ctx.layers for _ in stacks]
        f = frames[-1]
        adjoint_conj = torch.conj_physical(grad_out.expand_as(final)).contiguous()
        if kept:
            a = _rotate_frame(adjoint_conj, f, n, torch.empty_like(adjoint_conj)) if f else adjoint_conj
            spare = torch.empty_like(a)
            for step in range(len(frames) - 1, -1, -1):
                layer, j = divmod(step, n_ops)
                p = (starts[j] - f) % n
                if wanted[j]:
                    # y = M x  =>  dL/dM = g x^H, x kept from the forward pass
                    outers[j][layer] = _outer_framed(a, kept[step], p, len(wires[j]), n,
                                                     stacks[j].dim() == 4)
                a, spare = _apply_framed(a, conj_inverses[j][layer], p, n, spare), a
                back = frames[step - 1] if step else 0
                if back != f:
                    a, spare = _rotate_frame(a, (back - f) % n, n, spare), a
                    f = back
            grads = [torch.stack(o) if need else None for o, need in zip(outers, wanted)]
            grad_initial = torch.conj_physical(a)
        else:
            # Rows [0, rows) the state after a step, [rows, 2 rows) the conjugated adjoint.
            both = torch.cat((final, adjoint_conj))
            buf = _rotate_frame(both, f, n, torch.empty_like(both)) if f else both
            spare = torch.empty_like(buf)
            # One matrix per row of buf: M^H on the state, M^T on the adjoint.
            pairs = []
            for inv, cinv in zip(inverses, conj_inverses):
                lead = inv.shape[:1]
                if inv.dim() == 4:   # shared: (L, u, k, k) -> (L, 2 rows, u, k, k)
                    pair = torch.stack((inv, cinv), 1).unsqueeze(2).expand(
                        *lead, 2, rows, *inv.shape[1:])
                else:                # per circuit: (L, rows, u, k, k)
                    pair = torch.stack((inv, cinv), 1)
                pairs.append(pair.reshape(*lead, 2 * rows, *inv.shape[-3:]))
            for step in range(len(frames) - 1, -1, -1):
                layer, j = divmod(step, n_ops)
                p = (starts[j] - f) % n
                if wanted[j]:
                    # y = M x  =>  dL/dM = g x^H = g (M^H y)^H = (g y^H) M
                    outers[j][layer] = _outer_framed(buf[rows:], buf[:rows], p,
                                                     len(wires[j]), n, stacks[j].dim() == 4)
                buf, spare = _apply_framed(buf, pairs[j][layer], p, n, spare), buf
                back = frames[step - 1] if step else 0
                if back != f:
                    buf, spare = _rotate_frame(buf, (back - f) % n, n, spare), buf
                    f = back
            grads = [torch.stack(o) @ st if need else None
                     for o, st, need in zip(outers, stacks, wanted)]
            grad_initial = torch.conj_physical(buf[rows:])
        return (grad_initial if ctx.needs_input_grad[0] else None, None, None, None, None,
                *grads)


def run_layers(template: Sequence[Operation], n_qubits: int, layers: int, batch: int = 1,
               dtype: torch.dtype = torch.complex64, initial: Tensor | None = None) -> Tensor:
    """Run ``layers`` repetitions of a layer template from |0…0> (or ``initial``).

    Layer ``l`` applies, in order, ``op.matrix[l]`` on ``op.wires`` for every
    template operation. Differentiable in every matrix by the adjoint method:
    memory of forward + backward stays a few states, whatever the depth. The
    matrices must be unitary (the backward pass inverts them by conjugate transpose).

    Args:
        template: operations with matrices ``(layers, d, d)`` (shared by the batch)
            or ``(layers, batch, d, d)`` (one per circuit).
        n_qubits: number of qubits ``n``.
        layers: number of layers ``L``.
        batch: number of circuits run side by side.
        dtype: complex64 (default) or complex128.
        initial: optional start state ``(batch, 2, …, 2)``.
    Returns:
        Final state, ``(batch, 2, …, 2)``.
    """
    for op in template:
        _check_wires(op.wires, n_qubits, op.matrix)
        if op.matrix.shape[0] != layers or op.matrix.dim() not in (3, 4):
            raise ValueError(f"template matrix of shape {tuple(op.matrix.shape)} must be "
                             f"({layers}, d, d) or ({layers}, {batch}, d, d)")
    if initial is None:
        device = template[0].matrix.device if template else None
        initial = zero_state(n_qubits, batch, dtype, device)
    flat = initial.reshape(initial.shape[0], 2**n_qubits)
    wires = tuple(tuple(op.wires) for op in template)
    stacks = [op.matrix.to(flat.dtype) for op in template]
    frames = None
    if template and flat.device.type == "cpu" and 2**n_qubits >= _FRAME_MIN_STATE:
        frames = _frame_plan(wires, n_qubits, layers, _FRAME_MIN_BELOW_BITS)
    if frames is not None:
        out = _FramedCircuit.apply(flat.contiguous(), n_qubits, wires, layers, frames, *stacks)
    else:
        out = _AdjointCircuit.apply(flat, n_qubits, wires, layers, *stacks)
    return out.reshape(out.shape[0], *([2] * n_qubits))


def _rotate(x: Tensor, shift: int, n: int, out: Tensor | None = None) -> Tensor:
    """Flat states ``(batch, 2**n)`` whose axes are the wires from ``f`` around the
    ring, re-laid from wire ``f + shift`` on: one transpose copy (into ``out`` if given)."""
    batch = x.shape[0]
    moved = x.view(batch, 2**shift, 2 ** (n - shift)).transpose(1, 2)
    if out is None:
        return moved.reshape(batch, 2**n)
    out.view(batch, 2 ** (n - shift), 2**shift).copy_(moved)
    return out


def _apply_leading(matrix: Tensor, x: Tensor, d: int) -> Tensor:
    """``matrix`` on the leading wires of flat states ``x`` ``(batch, 2**n)``: one GEMM.

    ``matrix`` is ``(d, d)`` (shared) or ``(batch, d, d)``."""
    batch = x.shape[0]
    if batch == 1 and matrix.dim() == 2:
        return torch.mm(matrix, x.view(d, -1)).view(1, -1)
    return torch.matmul(matrix, x.view(batch, d, -1)).view(batch, -1)


def _gemm_views(states: Tensor, matrices: Tensor, d: int) -> tuple[Tensor, ...]:
    """Each of ``states`` ``(K, batch, 2**n)`` as the right GEMM operand of window ``k``'s
    matrix: ``(d, rest)`` for one circuit and a shared matrix, else ``(batch, d, rest)``."""
    windows, batch = states.shape[:2]
    if batch == 1 and matrices.dim() == 3:
        return states.view(windows, d, -1).unbind(0)
    return states.view(windows, batch, d, -1).unbind(0)


class _Sweep(torch.autograd.Function):
    """Forward: the windows of :func:`run_sweep`. Backward: the adjoint method.

    The state is kept in a rotating frame: before window ``k`` its axes are the
    wires from the window's first wire around the ring, so every window acts on
    the leading axes (one GEMM, no permutation) and moving on to the next window
    is one 2-D transpose copy.
    """

    @staticmethod
    def forward(ctx, initial: Tensor, n: int, matrices: Tensor) -> Tensor:
        windows, d = matrices.shape[0], matrices.shape[-1]
        batch = initial.shape[0]
        step = d.bit_length() - 2                       # g - 1 wires from one window to the next
        last = (windows - 1) * step % n                 # first wire of the last window
        store = windows * initial.numel() * initial.element_size() <= STORE_STATES_BYTES
        mats = matrices.unbind(0)
        if store:
            # states[k]: the state before window k, in its frame. Views made once.
            states = initial.new_empty(windows, batch, 2**n)
            states[0] = initial
            inputs = _gemm_views(states, matrices, d)
            rotated = states.view(windows, batch, 2 ** (n - step), 2**step).unbind(0)
            for k in range(windows):
                y = torch.matmul(mats[k], inputs[k])
                if k + 1 < windows:
                    rotated[k + 1].copy_(y.view(batch, 2**step, -1).transpose(1, 2))
            saved = states
        else:
            y = initial
            for k in range(windows):
                x = _rotate(y, step, n) if k else y
                y = _apply_leading(mats[k], x, d)
        y = y.reshape(batch, 2**n)
        out = _rotate(y, (n - last) % n, n) if last else y
        ctx.n, ctx.store = n, store
        ctx.save_for_backward(matrices, saved if store else out)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        matrices, saved = ctx.saved_tensors
        n = ctx.n
        windows, d = matrices.shape[0], matrices.shape[-1]
        step = d.bit_length() - 2
        last = (windows - 1) * step % n
        batch = grad_out.shape[0]
        shared = matrices.dim() == 3
        inverses = matrices.mH.resolve_conj()   # conj copy, transposed view: BLAS reads it as is
        grad_out = grad_out.expand(batch, 2**n)
        if ctx.store:
            states = saved
            # adjoint[k] = dL/dψ* right after window k, in window k's frame.
            adjoint = torch.empty_like(states)
            if last:
                _rotate(grad_out, last, n, adjoint[-1])
            else:
                adjoint[-1].copy_(grad_out)
            invs = inverses.unbind(0)
            inputs = _gemm_views(adjoint, matrices, d)
            rotated = adjoint.view(windows, batch, 2**step, 2 ** (n - step)).unbind(0)
            for k in range(windows - 1, 0, -1):
                a = torch.matmul(invs[k], inputs[k])
                rotated[k - 1].copy_(a.view(batch, 2 ** (n - step), 2**step).transpose(1, 2))
            grad_initial = None
            if ctx.needs_input_grad[0]:
                grad_initial = torch.matmul(invs[0], inputs[0]).reshape(batch, 2**n)
            if ctx.needs_input_grad[2]:
                # y = M x  =>  dL/dM = g x^H, summed over the trailing wires: one batched GEMM.
                a = adjoint.view(windows, batch, d, -1)
                x = states.view(windows, batch, d, -1)
                if shared and batch > 1:
                    a = a.transpose(1, 2).reshape(windows, d, -1)
                    x = x.transpose(1, 2).reshape(windows, d, -1)
                grad_matrices = (a @ x.mH).view(matrices.shape)
            else:
                grad_matrices = None
            return grad_initial, None, grad_matrices
        # Recomputed states: walk the final state and the adjoint back together.
        grads = torch.empty_like(matrices) if ctx.needs_input_grad[2] else None
        both = torch.stack((saved, grad_out)).view(2 * batch, 2**n)
        if last:
            both = _rotate(both, last, n)
        for k in range(windows - 1, -1, -1):
            pair = both.view(2, batch, d, -1)
            if grads is not None:
                # dL/dM = g x^H = g (M^H y)^H = (g y^H) M, y the state after the window
                outer = pair[1] @ pair[0].mH
                grads[k] = (outer.sum(0) if shared else outer) @ matrices[k]
            both = torch.matmul(inverses[k], pair).view(2 * batch, 2**n)
            if k:
                both = _rotate(both, n - step, n)
        grad_initial = both[batch:] if ctx.needs_input_grad[0] else None
        return grad_initial, None, grads


def run_sweep(matrices: Tensor, n_qubits: int, batch: int = 1,
              dtype: torch.dtype = torch.complex64, initial: Tensor | None = None) -> Tensor:
    """Run windows that sweep around a ring of wires, from |0…0> (or ``initial``).

    Window ``k`` is a ``(d, d)`` matrix, ``d = 2**g``, on the ``g`` consecutive
    wires ``(k (g-1) + i) mod n``, ``i = 0 … g-1`` (first wire most significant):
    each window starts on the last wire of the one before, so a chain of
    two-qubit gates running round and round the ring fits in them in order.
    Differentiable in every matrix by the adjoint method, as :func:`run_layers`;
    the matrices must be unitary.

    Args:
        matrices: ``(K, d, d)`` (shared by the batch) or ``(K, batch, d, d)``,
            ``2 <= g <= n``.
        n_qubits: number of qubits ``n``.
        batch: number of circuits run side by side.
        dtype: complex64 (default) or complex128.
        initial: optional start state ``(batch, 2, …, 2)``.
    Returns:
        Final state, ``(batch, 2, …, 2)``.
    """
    d = matrices.shape[-1]
    g = d.bit_length() - 1
    if (matrices.dim() not in (3, 4) or matrices.shape[-2] != d or d != 2**g
            or not 2 <= g <= n_qubits or (matrices.dim() == 4 and matrices.shape[1] != batch)):
        raise ValueError(f"sweep matrices of shape {tuple(matrices.shape)} must be (K, d, d) or "
                         f"(K, {batch}, d, d) with d = 2**g, 2 <= g <= {n_qubits}")
    if initial is None:
        initial = zero_state(n_qubits, batch, dtype, matrices.device)
    flat = initial.reshape(initial.shape[0], 2**n_qubits)
    out = _Sweep.apply(flat, n_qubits, matrices.to(flat.dtype))
    return out.reshape(out.shape[0], *([2] * n_qubits))


def run_circuit(operations: Sequence[Operation], n_qubits: int, batch: int = 1,
                dtype: torch.dtype = torch.complex64, initial: Tensor | None = None) -> Tensor:
    """Run a circuit of (unitary) operations, adjoint-differentiated (see :func:`run_layers`).

    Args:
        operations: gates in application order, matrices ``(d, d)`` or ``(batch, d, d)``.
    Returns:
        Final state, ``(batch, 2, …, 2)``.
    """
    template = [Operation(op.matrix.unsqueeze(0), op.wires) for op in operations]
    return run_layers(template, n_qubits, 1, batch, dtype, initial)

"""Rotating frames: :func:`~qtrl.quantum.statevector.run_layers` for large states on the CPU.

A window on wires in the middle of the state is a batched GEMM over
``(above, d, below)``; when ``below`` is thin that is several times slower than
one GEMM. So the state is kept in a *frame*: its axes are the wires from some
wire ``f`` on around the ring (``f, f+1, …, f-1``), and the frame is rotated
(one transpose copy) only when the next window would sit too close to the end
of it. A ring of windows that each start where the last one ended then runs
several windows per copy. The plan of frames is fixed by the template, so it is
made once; the backward pass walks the same frames in reverse. A window
block-diagonal in its first wire (a control only) is applied as its two diagonal
blocks, half the arithmetic.

Which circuits run here is decided by :func:`qtrl.quantum.simulate.choose_path`
(from :data:`~qtrl.quantum.simulate.FRAMES_MIN_STATE` amplitudes, when :func:`fits`).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import torch
from torch import Tensor

from . import adjoint

__all__ = ["MIN_BELOW_BITS", "FramedCircuit", "diagonal_blocks", "fits", "frame_plan"]

# Fewest trailing amplitudes (``below``) a window may leave: below 2^9 a batched
# GEMM falls well behind one GEMM of the same size.
MIN_BELOW_BITS = 9


def _ring_start(wires: tuple[int, ...], n: int) -> int | None:
    """First wire if ``wires`` are consecutive around the ring (``w, w+1, …`` mod n)."""
    if all((b - a) % n == 1 for a, b in itertools.pairwise(wires)):
        return wires[0]
    return None


def fits(wires: Sequence[Sequence[int]], n: int) -> bool:
    """Whether windows on ``wires`` run in frames: each consecutive around the ring
    and leaving ``2**MIN_BELOW_BITS`` trailing amplitudes (then :func:`frame_plan`
    finds a plan)."""
    return all(_ring_start(tuple(w), n) is not None and len(w) + MIN_BELOW_BITS <= n
               for w in wires)


def _rotation_cost(shift: int, n: int) -> float:
    """Relative cost of :func:`_rotate_frame` by ``shift`` wires (measured at n = 20,
    in units of one window apply): a transpose with a side of at most 8 is a cheap
    strided copy, any other goes through the blocked 2-D transpose."""
    if shift % n == 0:
        return 0.0
    return 0.7 if min(shift % n, n - shift % n) <= 3 else 1.5


@functools.lru_cache(maxsize=256)
def frame_plan(wires: tuple[tuple[int, ...], ...], n: int, layers: int,
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


def diagonal_blocks(stack: Tensor) -> Tensor | None:
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


class FramedCircuit(torch.autograd.Function):
    """:class:`~qtrl.quantum.adjoint.AdjointCircuit` in rotating frames (see :func:`frame_plan`).

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
        store = steps * initial.numel() * initial.element_size() <= adjoint.STORE_STATES_BYTES
        # A window block-diagonal in its first wire (every layer) runs as two halves.
        blocks = [diagonal_blocks(st) for st in stacks]
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

"""The ring-U3 ansatz's windows: its sweep's window matrices, built and
differentiated by hand (:class:`SweepWindows`), and the fused layer template's
cover of the ring (:func:`ring_windows`). Used by
:class:`~qtrl.quantum.ansatz.RingU3Ansatz`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import gates
from .fusion import chain_matrix, chain_matrix_vjp

__all__ = ["SweepWindows", "ring_windows", "sweep_rows"]


def sweep_rows(n: int, layers: int, g: int) -> list[int]:
    """Rows of ``[u_0 … u_{P-1}, T_0 … T_{P-1}, 0]`` (U3 angles, CU3 angles, zeros:
    the identity) that :class:`SweepWindows` gathers, ``P = n · layers`` pairs
    padded to ``K (g-1)`` slots: ``left``, ``right`` (the control-1 matrix is
    ``left · right``), ``plain`` (the control-0 matrix) of every slot, then ``u_0``."""
    pairs = n * layers
    slots = -(-pairs // (g - 1)) * (g - 1)
    ident = 2 * pairs
    left, right, plain = [], [], []
    for p in range(slots):
        u = p + 1 if p + 1 < pairs else ident
        t = pairs + p if p < pairs else ident
        pre = (p + 1) % n != 0                  # T u, else u T (the pair into q_0)
        left.append(t if pre else u)
        right.append(u if pre else t)
        plain.append(u)
    return left + right + plain + [0]


class SweepWindows(torch.autograd.Function):
    """The windows of the ring ansatz's sweep, built and differentiated by hand.

    Pair ``p = l n + j`` of the unrolled circuit is CU3 ``q_j → q_{j+1}`` of
    layer ``l``; window ``k`` holds pairs ``k(g-1) … k(g-1)+g-2`` (the last
    window padded with identities) on wires ``(k(g-1) + i) mod n``. Wire ``i+1``
    of a window receives its pair's CU3 target ``T_p`` and the U3 ``u_{p+1}``
    (pairs and U3s both counted layer-major): for ``j < n-1`` that U3 is
    ``U3_l(q_{j+1})``, applied before the CU3; for ``j = n-1`` it is the next
    layer's ``U3_{l+1}(q_0)``, applied after it (the CU3 into ``q_0`` is the
    last gate of its layer on ``q_0``, the next layer's first CU3 is the first
    gate that follows). ``U3_0(q_0)`` is wire 0 of window 0. So
    :func:`~qtrl.quantum.fusion.chain_matrix` gets, for ``(control 0, control 1)``,
    ``(u, T u)`` or ``(u, u T)``, gathered by ``rows`` (:func:`sweep_rows`).

    Forward ``(u3, cu3)`` angles ``(c, L, n, 3)`` -> ``(c, K, 2^g, 2^g)``; the
    backward retraces it with a few batched matmuls (far fewer ops than autograd).
    """

    @staticmethod
    def forward(ctx, u3: Tensor, cu3: Tensor, rows: Tensor, g: int) -> Tensor:
        c, layers, n, _ = u3.shape
        slots = (rows.numel() - 1) // 3
        windows = slots // (g - 1)
        table = torch.cat((u3.reshape(c, -1, 3), cu3.reshape(c, -1, 3),
                           u3.new_zeros(()).expand(c, 1, 3)), 1)    # U3(0, 0, 0) = identity
        mats, saved = gates.u3_polar(table[:, rows])                   # (c, 3 slots + 1, 2, 2)
        left, right = mats[:, :slots], mats[:, slots:2 * slots]
        control = torch.bmm(left.reshape(-1, 2, 2), right.reshape(-1, 2, 2))
        sites = torch.stack((mats[:, 2 * slots:3 * slots], control.view(c, slots, 2, 2)), 2)
        eye = torch.eye(2, dtype=mats.dtype, device=mats.device).expand(c, windows - 1, 2, 2)
        first = torch.cat((mats[:, 3 * slots:], eye), 1).view(c * windows, 2, 2)
        mat, partial = chain_matrix(first, sites.view(c * windows, g - 1, 2, 2, 2))
        ctx.save_for_backward(rows, saved, left, right, sites, *partial)
        ctx.sizes = (c, layers, n, windows, g)
        return mat.view(c, windows, 2**g, 2**g)

    @staticmethod
    def backward(ctx, grad: Tensor):
        rows, saved, left, right, sites, *partial = ctx.saved_tensors
        c, layers, n, windows, g = ctx.sizes
        slots = windows * (g - 1)
        grad_first, grad_sites = chain_matrix_vjp(
            grad.reshape(c * windows, 2**g, 2**g), sites.view(c * windows, g - 1, 2, 2, 2),
            partial)
        grad_sites = grad_sites.view(c, slots, 2, 2, 2)
        grad_control = grad_sites[:, :, 1].reshape(-1, 2, 2)              # control = left right
        grad_left = torch.bmm(grad_control, right.reshape(-1, 2, 2).mH)
        grad_right = torch.bmm(left.reshape(-1, 2, 2).mH, grad_control)
        grad_mats = torch.cat((grad_left.view(c, slots, 2, 2), grad_right.view(c, slots, 2, 2),
                               grad_sites[:, :, 0], grad_first.view(c, windows, 2, 2)[:, :1]), 1)
        grad_rows = gates.u3_vjp(grad_mats, saved).view(c, -1, 3)
        pairs = layers * n
        grad_table = grad_rows.new_zeros(c, 2 * pairs + 1, 3).index_add_(1, rows, grad_rows)
        return (grad_table[:, :pairs].view(c, layers, n, 3),
                grad_table[:, pairs:2 * pairs].view(c, layers, n, 3), None, None)


def ring_windows(n: int, g: int) -> list[tuple[tuple[int, ...], list[int], list[int]]]:
    """Cover the ring q0→q1→…→q(n-1)→q0 with windows of ``g`` consecutive wires.

    Pair ``j`` is the CU3 ``q_j → q_{(j+1) mod n}``; each window takes ``g-1``
    consecutive pairs, so neighbouring windows share a wire. The last window
    ends with the wrap-around pair, its wires ``(n-g+1, …, n-1, 0)``; the
    others are laid backwards from it, the first clamped to wire 0, so every
    window but the last has a wide trailing axis (the matmul kernel is slow on
    thin ones). Returns per window ``(wires, u_slots, cu_slots)``: its wires in
    order, the U3 index of each wire and the pair index of each of its ``g-1``
    pairs (``n`` means identity: that gate belongs to another window).
    """
    n_windows = -(-n // (g - 1))
    starts = [max(0, n - g + 1 - (n_windows - 1 - w) * (g - 1)) for w in range(n_windows)]
    out = []
    next_pair = 0  # pairs below this are done, and so are the U3s of wires <= it
    for w, lo in enumerate(starts):
        # The first window (clamped to wire 0) takes only the pairs left of the next one.
        last_pair = starts[w + 1] - 1 if w + 1 < n_windows else n - 1
        wires = tuple((lo + i) % n for i in range(g))
        cu_slots = [p if next_pair <= p <= last_pair else n for p in range(lo, lo + g - 1)]
        u_slots = [q if (q > next_pair or q == next_pair == 0) and lo + i <= last_pair + 1
                   and lo + i < n else n for i, q in enumerate(wires)]
        out.append((wires, u_slots, cu_slots))
        next_pair = last_pair + 1
    return out

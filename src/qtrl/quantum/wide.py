"""Compiled ring-U3 kernels for wide circuits, vectorised over split real/imaginary arrays.

From 13 qubits on (above :data:`~qtrl.quantum.ansatz.COMPILED_MAX_QUBITS`) the
scalar complex128 loops of :mod:`qtrl.quantum.compiled` lose to the torch path,
which fuses gates into 3-qubit windows, each a small complex GEMM. Those GEMMs
run compute-bound (~30 GFLOP/s here) and, above 14 qubits, the frame changes
between windows cost a fifth of the time. Here each gate is one vectorised
loop over the state held as two float arrays (real parts, imaginary parts), so
that LLVM turns the pair update ``(x0, x1) ← U (x0, x1)`` into plain SIMD
arithmetic with no complex shuffles: at 2^20 amplitudes a forward gate costs
about what streaming the state through memory costs. Measured forward +
backward against the torch path: 2-3x faster at 13-16 qubits, 1.3x at 20.

Gradients by the adjoint method, as in :mod:`qtrl.quantum.compiled`: the state
and the adjoint ``λ`` are walked back gate by gate (``ψ ← U†ψ``, ``λ ← U†λ``)
while ``M_rs = Σ conj(λ_r) ψ_s`` is summed over the gate's pairs; memory is two
states whatever the depth.

Pair layouts. A gate on bit ``t`` (wire ``n-1-t``) pairs amplitude ``i`` with
``i + 2^t``. From ``t = 5`` on, the pairs come in contiguous runs of ``2^t``,
vectorised as they are. Below, runs are too short: :func:`_low_kernel` loops
over periods of ``2^(t+1)`` (or ``2^(t+2)`` for a gate controlled by the next
bit) with the period's pairs unrolled at compile time. The ring's closing gate,
controlled by bit 0 with its target on the top bit, runs over stride-2 views
(one gate per layer; about 3x slower per pair than the others).

Arithmetic is in the angles' precision: float32 angles run complex64 states,
float64 ones complex128. The pair sums of ``M`` are taken in that precision per
run and added up in float64.

Threads: from 2^17 amplitudes on, each gate is shared out over torch's thread
count (:func:`_states_threaded`, :func:`_vjp_threaded`, :func:`_gate_parallel`;
``qtrl bench simulator`` measures the gain; below that size there is none).
One thread gives bit-for-bit the serial result; more threads change only the
order of the gradient sums.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from .. import jit
from ..jit import prange
from .compiled import _u3_grad

__all__ = ["available", "ring_u3_probabilities"]

available = jit.available
_njit = jit.njit(fastmath=True)
_njit_parallel = jit.njit(fastmath=True, parallel=True)
_LOW = 5
"""Bits below this pair amplitudes in runs shorter than 32: :func:`_low`."""
_PARALLEL_MIN = 2**17
"""States at least this long split each gate over threads (when torch has several)."""


@_njit
def _u3(theta: float, phi: float, lam: float, out) -> None:
    """U3 as ``(u00, u01, u10, u11)`` (real, imag) pairs into ``out`` (8,)."""
    c, s = math.cos(0.5 * theta), math.sin(0.5 * theta)
    out[0], out[1] = c, 0.0
    out[2], out[3] = -math.cos(lam) * s, -math.sin(lam) * s
    out[4], out[5] = math.cos(phi) * s, math.sin(phi) * s
    out[6], out[7] = math.cos(phi + lam) * c, math.sin(phi + lam) * c


@_njit
def _dagger(u, out) -> None:
    """``out`` ← U† of ``u`` (both in :func:`_u3`'s layout)."""
    out[0], out[1] = u[0], -u[1]
    out[2], out[3] = u[4], -u[5]
    out[4], out[5] = u[2], -u[3]
    out[6], out[7] = u[6], -u[7]


@_njit
def _entries(u):
    """The eight reals of ``u`` (:func:`_u3`'s layout) as a tuple, kept in registers."""
    return (u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7])


@_njit
def _mul(u, x0r, x0i, x1r, x1i):
    """``U (x0, x1)`` for ``u`` in :func:`_u3`'s layout, as four reals."""
    ar, ai, br, bi, cr, ci, dr, di = u
    return (ar * x0r - ai * x0i + br * x1r - bi * x1i, ar * x0i + ai * x0r + br * x1i + bi * x1r,
            cr * x0r - ci * x0i + dr * x1r - di * x1i, cr * x0i + ci * x0r + dr * x1i + di * x1r)


@_njit
def _outer(m, a0r, a0i, a1r, a1i, x0r, x0i, x1r, x1i):
    """``m + conj(a) ⊗ x`` (the 2x2 ``M_rs``, eight reals) for one pair."""
    return (m[0] + a0r * x0r + a0i * x0i, m[1] + a0r * x0i - a0i * x0r,
            m[2] + a0r * x1r + a0i * x1i, m[3] + a0r * x1i - a0i * x1r,
            m[4] + a1r * x0r + a1i * x0i, m[5] + a1r * x0i - a1i * x0r,
            m[6] + a1r * x1r + a1i * x1i, m[7] + a1r * x1i - a1i * x1r)


@_njit
def _run(r0, i0, r1, i1, u) -> None:
    """``(x0, x1) ← U (x0, x1)`` on equal runs of the two halves of each pair."""
    m = _entries(u)
    for k in range(r0.shape[0]):
        r0[k], i0[k], r1[k], i1[k] = _mul(m, r0[k], i0[k], r1[k], i1[k])


@_njit
def _run_back(r0, i0, r1, i1, l0r, l0i, l1r, l1i, v, acc) -> None:
    """Undo a gate on a run (``v`` = U†) for the state and the adjoint, adding
    ``M_rs = Σ conj(λ_r) ψ_s`` (λ before, ψ after the undo) to ``acc`` (8,) float64."""
    m = _entries(v)
    # The pair step is spelled out (as in _low_kernel): one helper returning the
    # sums, state and adjoint together was slower (it stops the loop vectorising).
    zero = r0.dtype.type(0.0)
    s = (zero, zero, zero, zero, zero, zero, zero, zero)
    for k in range(r0.shape[0]):
        x0r, x0i, x1r, x1i = _mul(m, r0[k], i0[k], r1[k], i1[k])
        a0r, a0i, a1r, a1i = l0r[k], l0i[k], l1r[k], l1i[k]
        s = _outer(s, a0r, a0i, a1r, a1i, x0r, x0i, x1r, x1i)
        r0[k], i0[k], r1[k], i1[k] = x0r, x0i, x1r, x1i
        l0r[k], l0i[k], l1r[k], l1i[k] = _mul(m, a0r, a0i, a1r, a1i)
    for q in range(8):
        acc[q] += s[q]


@_njit
def _low_kernel(re, im, lr, li, span: int, period: int, off: int, u, acc, back: bool) -> None:
    """A gate on bit ``log2(span) < 5``: the pairs ``(b + k, b + k + span)``, ``k < span``,
    of every period ``b = m·period + off``. The three are compile-time constants
    (one specialisation each), so each period's pairs unroll and the loop over
    periods vectorises: about 3x faster than with them at run time."""
    jit.literally(span)
    jit.literally(period)
    jit.literally(off)
    m = _entries(u)
    if not back:
        for p in range(re.shape[0] // period):
            for k in range(span):
                i = p * period + off + k
                j = i + span
                re[i], im[i], re[j], im[j] = _mul(m, re[i], im[i], re[j], im[j])
        return
    zero = re.dtype.type(0.0)
    s = (zero, zero, zero, zero, zero, zero, zero, zero)
    for p in range(re.shape[0] // period):
        for k in range(span):
            i = p * period + off + k
            j = i + span
            x0r, x0i, x1r, x1i = _mul(m, re[i], im[i], re[j], im[j])
            a0r, a0i, a1r, a1i = lr[i], li[i], lr[j], li[j]
            s = _outer(s, a0r, a0i, a1r, a1i, x0r, x0i, x1r, x1i)
            re[i], im[i], re[j], im[j] = x0r, x0i, x1r, x1i
            lr[i], li[i], lr[j], li[j] = _mul(m, a0r, a0i, a1r, a1i)
    for q in range(8):
        acc[q] += s[q]


@_njit
def _low(re, im, lr, li, t: int, controlled: bool, u, acc, back: bool) -> None:
    """:func:`_low_kernel` for bit ``t < 5``, uncontrolled or controlled by bit ``t+1``
    (period ``4·2^t`` from ``2·2^t`` on); the constants spelled out per call."""
    if not controlled:
        if t == 0:
            _low_kernel(re, im, lr, li, 1, 2, 0, u, acc, back)
        elif t == 1:
            _low_kernel(re, im, lr, li, 2, 4, 0, u, acc, back)
        elif t == 2:
            _low_kernel(re, im, lr, li, 4, 8, 0, u, acc, back)
        elif t == 3:
            _low_kernel(re, im, lr, li, 8, 16, 0, u, acc, back)
        else:
            _low_kernel(re, im, lr, li, 16, 32, 0, u, acc, back)
    elif t == 0:
        _low_kernel(re, im, lr, li, 1, 4, 2, u, acc, back)
    elif t == 1:
        _low_kernel(re, im, lr, li, 2, 8, 4, u, acc, back)
    elif t == 2:
        _low_kernel(re, im, lr, li, 4, 16, 8, u, acc, back)
    elif t == 3:
        _low_kernel(re, im, lr, li, 8, 32, 16, u, acc, back)
    else:
        _low_kernel(re, im, lr, li, 16, 64, 32, u, acc, back)


@_njit
def _share(re, im, lr, li, t: int, c: int, u, acc, back: bool, p: int, parts: int) -> None:
    """Share ``p`` of ``parts`` of a gate: apply U (``back``: undo it, ``u`` = U†, on
    the state and the adjoint ``lr, li``, summing ``M`` into ``acc``) on bit ``t``,
    controlled by bit ``c`` (``-1``: none). ``parts = 1`` is the whole gate.

    Every gate of the ring is one of three shapes: no control, control on the
    next bit up (``c = t + 1``), or the closing gate (``c < t``); no other
    control is supported. Shares never touch the same amplitude: low bits split
    the state into pieces of whole periods; runs are dealt out block by block
    when there are enough blocks, else each run is cut into ``parts`` sub-runs."""
    dim, span = re.shape[0], 1 << t
    if c < 0 or c == t + 1:
        if t < _LOW:
            unit = min(64, dim)                # a multiple of every low-bit period
            a, b = _cut(dim // unit, parts, p)
            a, b = unit * a, unit * b
            _low(re[a:b], im[a:b], lr[a:b], li[a:b], t, c >= 0, u, acc, back)
            return
        # Pairs in runs of `span` every `period`, from `off` on (the control's half).
        period, off = (2 * span, 0) if c < 0 else (4 * span, 2 * span)
        if (dim - off) // period >= parts:
            for o in range(off + p * period, dim, parts * period):
                _pair_run(re, im, lr, li, o, o + span, span, 1, u, acc, back)
            return
        a, b = _cut(span, parts, p)
        for o in range(off, dim, period):
            _pair_run(re, im, lr, li, o + a, o + span + a, b - a, 1, u, acc, back)
        return
    # Control below the target: in each block of 2·span, the pairs whose control
    # bit is set, as strided runs (stride 2^(c+1), one per offset k), cut in parts.
    step = 2 << c
    a, b = _cut(span // step, parts, p)
    for o in range(0, dim, 2 * span):
        for k in range(o + (1 << c), o + step):
            first = k + a * step
            _pair_run(re, im, lr, li, first, first + span, b - a, step, u, acc, back)


@_njit_parallel
def _gate_parallel(re, im, lr, li, t: int, c: int, u, back: bool, parts: int):
    """:func:`_share` ``p`` of ``parts`` on each of as many threads; returns the
    shares' sums ``(parts, 8)`` (backward) for the caller to add up."""
    sums = np.zeros((parts, 8))
    for p in prange(parts):
        _share(re, im, lr, li, t, c, u, sums[p], back, p, parts)
    return sums


@_njit
def _cut(total: int, parts: int, p: int):
    """Share ``p`` of ``range(total)`` cut in ``parts`` near-equal pieces: ``(start, stop)``."""
    return p * total // parts, (p + 1) * total // parts


@_njit
def _pair_run(re, im, lr, li, a: int, b: int, count: int, step: int, u, acc, back: bool):
    """Pairs ``(a + k·step, b + k·step)``, ``k < count``, by :func:`_run` or
    :func:`_run_back`; ``step = 1`` as contiguous views (which vectorise)."""
    if step == 1:
        ea, eb = a + count, b + count
        if back:
            _run_back(re[a:ea], im[a:ea], re[b:eb], im[b:eb],
                      lr[a:ea], li[a:ea], lr[b:eb], li[b:eb], u, acc)
        else:
            _run(re[a:ea], im[a:ea], re[b:eb], im[b:eb], u)
        return
    ea, eb = a + count * step, b + count * step
    if back:
        _run_back(re[a:ea:step], im[a:ea:step], re[b:eb:step], im[b:eb:step],
                  lr[a:ea:step], li[a:ea:step], lr[b:eb:step], li[b:eb:step], u, acc)
    else:
        _run(re[a:ea:step], im[a:ea:step], re[b:eb:step], im[b:eb:step], u)


@_njit
def _apply_threaded(re, im, lr, li, t: int, c: int, u, acc, back: bool, parts: int) -> None:
    """The gate by :func:`_gate_parallel` on ``parts`` threads, its sums added to ``acc``."""
    sums = _gate_parallel(re, im, lr, li, t, c, u, back, parts)
    for q in range(8):
        acc[q] += sums[:, q].sum()


@functools.cache
def _plan(n: int) -> np.ndarray:
    """One layer's gates in the ansatz's order, ``(2n, 4)`` int64 rows
    ``(target bit, control bit or -1, 0 = U3 / 1 = CU3 angles, index)``:
    U3 on wire 0, then U3 on wire j+1 and CU3 j → j+1 for each j, then CU3 n-1 → 0."""
    rows = [(n - 1, -1, 0, 0)]
    for j in range(n - 1):
        rows += [(n - 2 - j, -1, 0, j + 1), (n - 2 - j, n - 1 - j, 1, j)]
    rows.append((n - 1, 0, 1, n - 1))
    return np.array(rows, dtype=np.int64)


@_njit
def _gate(u3, cu3, plan, k: int, ell: int, s: int, u):
    """Gate ``s`` of layer ``ell`` of circuit ``k``: its matrix into ``u``;
    returns its target and control bits, kind and index (a :func:`_plan` row)."""
    t, c, kind, q = plan[s, 0], plan[s, 1], plan[s, 2], plan[s, 3]
    ang = u3[k, ell, q] if kind == 0 else cu3[k, ell, q]
    _u3(ang[0], ang[1], ang[2], u)
    return t, c, kind, q


@_njit
def _start(r, i) -> None:
    r[:] = 0.0
    i[:] = 0.0
    r[0] = 1.0


@_njit
def _adjoint_start(grad_k, r, i, lr, li) -> None:
    """The adjoint at the final state: λ = grad ⊙ ψ."""
    for a in range(lr.shape[0]):
        lr[a] = grad_k[a] * r[a]
        li[a] = grad_k[a] * i[a]


@_njit
def _store_grad(u3, cu3, k: int, ell: int, kind: int, q: int, acc, g_u3, g_cu3) -> None:
    """The gate's three angle gradients from its pair sums ``acc``."""
    ang = u3[k, ell, q] if kind == 0 else cu3[k, ell, q]
    g = _u3_grad(ang[0], ang[1], ang[2], complex(acc[0], acc[1]), complex(acc[2], acc[3]),
                 complex(acc[4], acc[5]), complex(acc[6], acc[7]))
    out = g_u3 if kind == 0 else g_cu3
    out[k, ell, q, 0], out[k, ell, q, 1], out[k, ell, q, 2] = g


# Each walk in two versions, one thread and shared out (distinct functions: a
# compiled function that calls a parallel one starts Numba's thread pool when
# it is loaded, which a process that will fork its agents must not have).

@_njit
def _states(u3, cu3, plan, re, im) -> None:
    """Final states of circuits with angles ``(C, L, n, 3)`` into ``re, im`` ``(C, 2^n)``."""
    u = np.empty(8, re.dtype)
    acc = np.zeros(8)
    for k in range(u3.shape[0]):
        r, i = re[k], im[k]
        _start(r, i)
        for ell in range(u3.shape[1]):
            for s in range(plan.shape[0]):
                t, c, _, _ = _gate(u3, cu3, plan, k, ell, s, u)
                _share(r, i, r, i, t, c, u, acc, False, 0, 1)


@_njit
def _states_threaded(u3, cu3, plan, re, im, parts: int) -> None:
    """:func:`_states` with each gate shared out over ``parts`` threads."""
    u = np.empty(8, re.dtype)
    acc = np.zeros(8)
    for k in range(u3.shape[0]):
        r, i = re[k], im[k]
        _start(r, i)
        for ell in range(u3.shape[1]):
            for s in range(plan.shape[0]):
                t, c, _, _ = _gate(u3, cu3, plan, k, ell, s, u)
                _apply_threaded(r, i, r, i, t, c, u, acc, False, parts)


@_njit
def _vjp(u3, cu3, plan, re, im, grad, g_u3, g_cu3) -> None:
    """Angle gradients of ``Σ grad ⊙ |ψ|²`` into ``g_u3, g_cu3`` ``(C, L, n, 3)``.
    ``re, im`` hold the final states and are walked back to |0…0> on the way."""
    u = np.empty(8, re.dtype)
    v = np.empty(8, re.dtype)
    acc = np.empty(8)
    lr = np.empty(re.shape[1], re.dtype)
    li = np.empty(re.shape[1], re.dtype)
    for k in range(u3.shape[0]):
        r, i = re[k], im[k]
        _adjoint_start(grad[k], r, i, lr, li)
        for ell in range(u3.shape[1] - 1, -1, -1):
            for s in range(plan.shape[0] - 1, -1, -1):
                t, c, kind, q = _gate(u3, cu3, plan, k, ell, s, u)
                _dagger(u, v)
                acc[:] = 0.0
                _share(r, i, lr, li, t, c, v, acc, True, 0, 1)
                _store_grad(u3, cu3, k, ell, kind, q, acc, g_u3, g_cu3)


@_njit
def _vjp_threaded(u3, cu3, plan, re, im, grad, g_u3, g_cu3, parts: int) -> None:
    """:func:`_vjp` with each gate shared out over ``parts`` threads."""
    u = np.empty(8, re.dtype)
    v = np.empty(8, re.dtype)
    acc = np.empty(8)
    lr = np.empty(re.shape[1], re.dtype)
    li = np.empty(re.shape[1], re.dtype)
    for k in range(u3.shape[0]):
        r, i = re[k], im[k]
        _adjoint_start(grad[k], r, i, lr, li)
        for ell in range(u3.shape[1] - 1, -1, -1):
            for s in range(plan.shape[0] - 1, -1, -1):
                t, c, kind, q = _gate(u3, cu3, plan, k, ell, s, u)
                _dagger(u, v)
                acc[:] = 0.0
                _apply_threaded(r, i, lr, li, t, c, v, acc, True, parts)
                _store_grad(u3, cu3, k, ell, kind, q, acc, g_u3, g_cu3)


def angle_arrays(angles: Tensor) -> np.ndarray:
    """A contiguous copy (the backward pass must not see later in-place steps)."""
    return np.array(angles.detach().cpu().numpy(), order="C")


def probabilities_forward(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Probabilities ``(C, 2^n)`` of the circuits with angles ``a``, ``b``
    ``(C, L, n, 3)`` (float32 or float64; the result in that dtype), and what
    :func:`probabilities_vjp` needs: the final states (two float arrays)."""
    circuits, n = a.shape[0], a.shape[2]
    re = np.empty((circuits, 1 << n), a.dtype)
    im = np.empty_like(re)
    plan = _plan(n)
    parts = jit.parts_for(1 << n, _PARALLEL_MIN)
    if parts > 1:
        _states_threaded(a, b, plan, re, im, parts)
    else:
        _states(a, b, plan, re, im)
    return re * re + im * im, (a, b, plan, re, im, parts)


def probabilities_vjp(saved: tuple, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 angle gradients ``(C, L, n, 3)`` of ``Σ grad ⊙ p`` (``grad``
    ``(C, 2^n)``, contiguous) from :func:`probabilities_forward`'s ``saved``."""
    a, b, plan, re, im, parts = saved
    g_u3, g_cu3 = np.zeros(a.shape), np.zeros(b.shape)
    walked = (a, b, plan, re.copy(), im.copy(), grad.astype(re.dtype, copy=False), g_u3, g_cu3)
    if parts > 1:
        _vjp_threaded(*walked, parts)
    else:
        _vjp(*walked)
    return g_u3, g_cu3


class _RingProbabilities(torch.autograd.Function):
    """``(u3, cu3)`` ``(C, L, n, 3)`` -> probabilities ``(C, 2^n)``; the final
    states are kept for the backward pass (two float arrays)."""

    @staticmethod
    def forward(ctx, u3: Tensor, cu3: Tensor) -> Tensor:
        p, ctx.arrays = probabilities_forward(angle_arrays(u3), angle_arrays(cu3))
        return torch.from_numpy(p)

    @staticmethod
    def backward(ctx, grad: Tensor):
        g = angle_arrays(grad)
        g_u3, g_cu3 = probabilities_vjp(ctx.arrays, g)
        return torch.from_numpy(g_u3.astype(g.dtype)), torch.from_numpy(g_cu3.astype(g.dtype))


def ring_u3_probabilities(u3: Tensor, cu3: Tensor) -> Tensor:
    """Basis-state probabilities of ring-U3 circuits, differentiable in both angle sets.

    Args:
        u3, cu3: angles ``(C, L, n, 3)`` on the CPU, float32 (complex64 states)
            or float64 (complex128 states).
    Returns:
        ``(C, 2^n)`` in the angles' dtype; wire 0 is the MSB of the index.
    """
    if u3.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"angles must be float32 or float64, got {u3.dtype}")
    return _RingProbabilities.apply(u3, cu3)


@jit.warmup
def _warm() -> None:
    """Compile the kernels for float32 angles, training's (the size changes no
    signature; float64 circuits compile on first use)."""
    u3 = torch.zeros(1, 1, 6, 3, requires_grad=True)
    cu3 = torch.zeros(1, 1, 6, 3, requires_grad=True)
    ring_u3_probabilities(u3, cu3).sum().backward()

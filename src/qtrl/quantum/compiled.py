"""Whole-circuit kernels of the ring-U3 ansatz for small circuits, compiled by Numba.

A 10-qubit state is 1024 amplitudes: every torch op on it costs more in
dispatch than in arithmetic, so even the fused sweep spends ~2 ms of
forward + backward on overhead (a few hundred small ops). Here the whole circuit
is two compiled loops: the forward pass applies every gate in place; the
backward pass is the adjoint method (Jones & Gacon 2020, as PennyLane's
``lightning.qubit`` does), walking the gates backwards with the state and the
adjoint vector and accumulating each gate's angle gradients on the way:

    λ = g ⊙ ψ                        (L = Σ_i g_i |ψ_i|²,  ∂L/∂θ = 2 Re ⟨λ| ∂ψ/∂θ⟩)
    for each gate U(θ), last first:
        ψ ← U† ψ                      (the state before the gate)
        ∂L/∂θ = 2 Re Σ_rs M_rs ∂U_rs/∂θ,   M_rs = Σ_pairs conj(λ_r) ψ_s
        λ ← U† λ

One pass per gate, the state and adjoint in L1 cache, no intermediate stored:
memory is two states whatever the depth. Arithmetic is complex128 whatever the
angles' dtype (exact to ~1e-15; results are returned in the angles' dtype).

Gate order and conventions are those of :class:`~qtrl.quantum.ansatz.RingU3Ansatz`:
per layer U3 on every wire, then CU3 ``q_j → q_{(j+1) mod n}`` for ``j = 0..n-1``;
wire 0 is the most significant bit of the basis index; U3 as OpenQASM 2.0.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .. import jit

__all__ = ["available", "ring_u3_probabilities", "ring_u3_states"]

available = jit.available
"""Whether the compiled kernels can run (Numba is importable)."""
_njit = jit.njit(fastmath=True)


@_njit
def _u3(theta: float, phi: float, lam: float):
    """U3 entries ``(u00, u01, u10, u11)``."""
    c, s = np.cos(0.5 * theta), np.sin(0.5 * theta)
    ep, el = np.exp(1j * phi), np.exp(1j * lam)
    return c + 0j, -el * s, ep * s, ep * el * c


@_njit
def _u3_grad(theta: float, phi: float, lam: float, m00: complex, m01: complex,
             m10: complex, m11: complex):
    """``2 Re Σ_rs M_rs ∂U_rs/∂(θ, φ, λ)`` for the U3 at these angles."""
    c, s = np.cos(0.5 * theta), np.sin(0.5 * theta)
    ep, el = np.exp(1j * phi), np.exp(1j * lam)
    g_theta = (m00 * (-0.5 * s) + m01 * (-0.5 * el * c) + m10 * (0.5 * ep * c)
               + m11 * (-0.5 * ep * el * s))
    g_phi = m10 * (1j * ep * s) + m11 * (1j * ep * el * c)
    g_lam = m01 * (-1j * el * s) + m11 * (1j * ep * el * c)
    return 2.0 * g_theta.real, 2.0 * g_phi.real, 2.0 * g_lam.real


@_njit
def _apply(psi, dim: int, target: int, control: int, u00, u01, u10, u11) -> None:
    """``psi`` ← U on bit ``target`` (a mask), only where bit ``control`` is set
    (``control = 0``: everywhere)."""
    # Indices with both bits clear, as three nested ranges (the inner one
    # contiguous, so it vectorises); then the control bit set.
    low, high = (min(target, control), max(target, control)) if control else (target, target)
    for outer in range(0, dim, 2 * high):
        for mid in range(outer, outer + high, 2 * low):
            for i0 in range(mid, mid + low):
                i = i0 | control
                j = i | target
                x0, x1 = psi[i], psi[j]
                psi[i] = u00 * x0 + u01 * x1
                psi[j] = u10 * x0 + u11 * x1


@_njit
def _unapply(psi, lam, dim: int, target: int, control: int, u00, u01, u10, u11):
    """Undo U on ``psi`` and ``lam`` (apply U†) and return ``M = Σ conj(λ_r) ψ_s``
    over the pairs touched, with ``λ`` before and ``ψ`` after the undo."""
    a, b, c, d = np.conj(u00), np.conj(u10), np.conj(u01), np.conj(u11)  # U†
    m00 = m01 = m10 = m11 = 0j
    low, high = (min(target, control), max(target, control)) if control else (target, target)
    for outer in range(0, dim, 2 * high):
        for mid in range(outer, outer + high, 2 * low):
            for i0 in range(mid, mid + low):
                i = i0 | control
                j = i | target
                y0, y1 = psi[i], psi[j]
                x0 = a * y0 + b * y1
                x1 = c * y0 + d * y1
                l0, l1 = lam[i], lam[j]
                cl0, cl1 = np.conj(l0), np.conj(l1)
                m00 += cl0 * x0
                m01 += cl0 * x1
                m10 += cl1 * x0
                m11 += cl1 * x1
                psi[i], psi[j] = x0, x1
                lam[i] = a * l0 + b * l1
                lam[j] = c * l0 + d * l1
    return m00, m01, m10, m11


@_njit
def _ring_states(u3, cu3):
    """Final states ``(C, 2^n)`` complex128 of circuits with angles ``(C, L, n, 3)``."""
    circuits, layers, n = u3.shape[0], u3.shape[1], u3.shape[2]
    dim = 1 << n
    out = np.zeros((circuits, dim), dtype=np.complex128)
    for k in range(circuits):
        psi = out[k]
        psi[0] = 1.0
        for ell in range(layers):
            for q in range(n):
                u00, u01, u10, u11 = _u3(u3[k, ell, q, 0], u3[k, ell, q, 1], u3[k, ell, q, 2])
                _apply(psi, dim, 1 << (n - 1 - q), 0, u00, u01, u10, u11)
            for j in range(n):
                u00, u01, u10, u11 = _u3(cu3[k, ell, j, 0], cu3[k, ell, j, 1],
                                         cu3[k, ell, j, 2])
                _apply(psi, dim, 1 << (n - 1 - (j + 1) % n), 1 << (n - 1 - j),
                       u00, u01, u10, u11)
    return out


@_njit
def _ring_vjp(u3, cu3, states, grad):
    """Angle gradients of ``L = Σ grad ⊙ |ψ|²``: ``(C, L, n, 3)`` twice.

    ``states`` are the final states (consumed: overwritten on the way back)."""
    circuits, layers, n = u3.shape[0], u3.shape[1], u3.shape[2]
    dim = 1 << n
    g_u3 = np.zeros(u3.shape)
    g_cu3 = np.zeros(cu3.shape)
    for k in range(circuits):
        psi = states[k]
        lam = grad[k] * psi
        for ell in range(layers - 1, -1, -1):
            for j in range(n - 1, -1, -1):
                t, p, lm = cu3[k, ell, j, 0], cu3[k, ell, j, 1], cu3[k, ell, j, 2]
                u00, u01, u10, u11 = _u3(t, p, lm)
                m00, m01, m10, m11 = _unapply(psi, lam, dim, 1 << (n - 1 - (j + 1) % n),
                                              1 << (n - 1 - j), u00, u01, u10, u11)
                g_cu3[k, ell, j, 0], g_cu3[k, ell, j, 1], g_cu3[k, ell, j, 2] = _u3_grad(
                    t, p, lm, m00, m01, m10, m11)
            for q in range(n - 1, -1, -1):
                t, p, lm = u3[k, ell, q, 0], u3[k, ell, q, 1], u3[k, ell, q, 2]
                u00, u01, u10, u11 = _u3(t, p, lm)
                m00, m01, m10, m11 = _unapply(psi, lam, dim, 1 << (n - 1 - q), 0,
                                              u00, u01, u10, u11)
                g_u3[k, ell, q, 0], g_u3[k, ell, q, 1], g_u3[k, ell, q, 2] = _u3_grad(
                    t, p, lm, m00, m01, m10, m11)
    return g_u3, g_cu3


def numpy_angles(angles: Tensor) -> np.ndarray:
    return np.ascontiguousarray(angles.detach().to("cpu", torch.float64).numpy())


def ring_u3_states(u3: Tensor, cu3: Tensor) -> Tensor:
    """Final states of ring-U3 circuits, not differentiable.

    Args:
        u3, cu3: angles ``(C, L, n, 3)`` (any real dtype, CPU).
    Returns:
        ``(C, 2^n)`` complex128.
    """
    return torch.from_numpy(_ring_states(numpy_angles(u3), numpy_angles(cu3)))


def probabilities_forward(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Probabilities ``(C, 2^n)`` float64 of the circuits with float64 angles
    ``a``, ``b`` ``(C, L, n, 3)``, and what :func:`probabilities_vjp` needs."""
    states = _ring_states(a, b)
    return states.real ** 2 + states.imag ** 2, (a, b, states)


def probabilities_vjp(saved: tuple, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 angle gradients ``(C, L, n, 3)`` of ``Σ grad ⊙ p`` (``grad``
    float64 ``(C, 2^n)``) from :func:`probabilities_forward`'s ``saved``."""
    a, b, states = saved
    return _ring_vjp(a, b, states.copy(), grad)


class _RingProbabilities(torch.autograd.Function):
    """``(u3, cu3)`` ``(C, L, n, 3)`` -> probabilities ``(C, 2^n)``; backward by
    :func:`_ring_vjp` from the final states kept by the forward pass."""

    @staticmethod
    def forward(ctx, u3: Tensor, cu3: Tensor) -> Tensor:
        p, ctx.arrays = probabilities_forward(numpy_angles(u3), numpy_angles(cu3))
        return torch.from_numpy(p).to(u3.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        g_u3, g_cu3 = probabilities_vjp(ctx.arrays, numpy_angles(grad))
        dtype = grad.dtype
        return torch.from_numpy(g_u3).to(dtype), torch.from_numpy(g_cu3).to(dtype)


def ring_u3_probabilities(u3: Tensor, cu3: Tensor) -> Tensor:
    """Basis-state probabilities of ring-U3 circuits, differentiable in both angle sets.

    Args:
        u3, cu3: angles ``(C, L, n, 3)`` on the CPU.
    Returns:
        ``(C, 2^n)`` in the angles' dtype; wire 0 is the MSB of the index.
    """
    return _RingProbabilities.apply(u3, cu3)


@jit.warmup
def _warm() -> None:
    """Compile the kernels (float64 angles are all they take; the size changes
    no signature)."""
    u3 = torch.zeros(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    cu3 = torch.zeros(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    ring_u3_probabilities(u3, cu3).sum().backward()

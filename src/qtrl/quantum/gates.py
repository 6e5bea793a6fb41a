"""Gate matrices as small, vectorised functions of their angles.

Every builder accepts angle tensors of any batch shape ``(...)`` and returns
matrices of shape ``(..., 2, 2)`` (one qubit) or ``(..., 4, 4)`` (two qubits).
The complex dtype follows the angles: float32 -> complex64, float64 -> complex128.

Two-qubit matrices index their basis as ``|first wire, second wire>`` with the
first wire the most significant bit, the same convention as the state layout in
:mod:`qtrl.quantum.statevector` and as PennyLane.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "cnot",
    "complex_dtype_for",
    "controlled",
    "cu3",
    "hadamard",
    "pauli_x",
    "rx",
    "ry",
    "rz",
    "u3",
    "u3_from_angles",
    "u3_polar",
    "u3_vjp",
]


def complex_dtype_for(real_dtype: torch.dtype) -> torch.dtype:
    """The complex dtype whose parts have ``real_dtype`` (float32 -> complex64)."""
    if real_dtype == torch.float64:
        return torch.complex128
    if real_dtype in (torch.float32, torch.float16, torch.bfloat16):
        return torch.complex64
    raise TypeError(f"angles must be a real floating dtype, got {real_dtype}")


def _matrix(a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tensor:
    """Stack four ``(...)`` complex entries into ``(..., 2, 2)`` = [[a, b], [c, d]]."""
    return torch.stack((torch.stack((a, b), -1), torch.stack((c, d), -1)), -2)


# U3 entries as amplitude · e^{i phase}, both affine in (θ, φ, λ):
#   [[cos θ/2,            e^{i(λ+π)} sin θ/2],
#    [e^{iφ} sin θ/2,     e^{i(φ+λ)} cos θ/2]]
# so a whole batch of matrices costs a few small elementwise ops and two matmuls.
_U3_AMP = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.float64)
_U3_AMP_OFFSET = torch.tensor([0, math.pi / 2, math.pi / 2, 0], dtype=torch.float64)
_U3_PHASE = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 1], [0, 1, 0, 1]], dtype=torch.float64)
_U3_PHASE_OFFSET = torch.tensor([0, math.pi, 0, 0], dtype=torch.float64)


def u3_from_angles(angles: Tensor) -> Tensor:
    """U3 for angles ``(..., 3)`` = (θ, φ, λ): matrices ``(..., 2, 2)`` (see :func:`u3`)."""
    dt, dev = angles.dtype, angles.device
    amp = torch.cos(angles @ _U3_AMP.to(dev, dt) - _U3_AMP_OFFSET.to(dev, dt))
    phase = angles @ _U3_PHASE.to(dev, dt) + _U3_PHASE_OFFSET.to(dev, dt)
    # Not torch.polar: its backward assumes a non-negative modulus, and amp is signed.
    mat = torch.complex(amp * torch.cos(phase), amp * torch.sin(phase))
    return mat.reshape(*angles.shape[:-1], 2, 2)


# The same entries as one affine map [θ, φ, λ, 1] -> (α_k, φ_k) pairs: entry k is
# cos(α_k) e^{iφ_k}; pairs 4..7 repeat them with α_k - π/2, i.e. sin(α_k) e^{iφ_k},
# which the hand-written backward needs (so one polar() gives both).
_U3_AFFINE = torch.stack((torch.cat((_U3_AMP, _U3_AMP), 1),
                          torch.cat((_U3_PHASE, _U3_PHASE), 1)), -1).reshape(3, 16)
_U3_AFFINE_OFFSET = torch.stack((torch.cat((-_U3_AMP_OFFSET, -_U3_AMP_OFFSET - math.pi / 2)),
                                 torch.cat((_U3_PHASE_OFFSET, _U3_PHASE_OFFSET))), -1).reshape(16)
# u3_vjp: [Re, Im] of [g conj(cos α e^{iφ}), g conj(sin α e^{iφ})] -> angles:
# ∂L/∂φ_k = Im(g conj(z_k)), ∂L/∂α_k = -Re(g conj(sin α_k e^{iφ_k})).
_U3_VJP = torch.stack((torch.stack((torch.zeros_like(_U3_PHASE), _U3_PHASE), -1),
                       torch.stack((-_U3_AMP, torch.zeros_like(_U3_AMP)), -1)), 1).reshape(3, 16)
_AFFINE_CACHE: dict[tuple[torch.dtype, torch.device], tuple[Tensor, Tensor, Tensor]] = {}


def _u3_affine(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    key = (dtype, device)
    if key not in _AFFINE_CACHE:
        _AFFINE_CACHE[key] = tuple(t.to(device, dtype)  # type: ignore[assignment]
                                   for t in (_U3_AFFINE, _U3_AFFINE_OFFSET, _U3_VJP.T))
    return _AFFINE_CACHE[key]


def u3_polar(angles: Tensor) -> tuple[Tensor, Tensor]:
    """U3 for angles ``(..., 3)`` in four ops, for a hand-written backward.

    Returns the matrices ``(..., 2, 2)`` and what :func:`u3_vjp` takes back.
    Not differentiable by autograd (``torch.polar`` with a signed modulus):
    call it inside a ``torch.autograd.Function``.
    """
    weight, offset, _ = _u3_affine(angles.dtype, angles.device)
    pairs = torch.addmm(offset, angles.reshape(-1, 3), weight).view(-1, 8, 2)
    both = torch.polar(torch.cos(pairs[..., 0]), pairs[..., 1])   # (N, 8): entries, sin-twins
    return both[:, :4].view(*angles.shape[:-1], 2, 2), both


def u3_vjp(grad: Tensor, saved: Tensor) -> Tensor:
    """Gradient of the angles ``(..., 3)`` from that of the U3 matrices ``(..., 2, 2)``.

    For an entry ``z = cos(α) e^{iφ}`` and torch's convention (``grad`` ``g`` is
    ``∂L/∂z*``): ``∂L/∂φ = Im(g z̄)``, ``∂L/∂α = -Re(g · sin α e^{-iφ})``; α and
    φ are affine in the angles, so one complex product and one matmul.
    """
    _, _, weight = _u3_affine(saved.real.dtype, saved.device)
    prod = grad.reshape(-1, 1, 4) * saved.view(-1, 2, 4).conj()
    return (torch.view_as_real(prod).view(-1, 16) @ weight).view(*grad.shape[:-2], 3)


def u3(theta: Tensor, phi: Tensor, lam: Tensor) -> Tensor:
    """U3(θ, φ, λ) of OpenQASM 2.0 / PennyLane ``U3``, shape ``(..., 2, 2)``.

    U3 = [[cos(θ/2), -e^{iλ} sin(θ/2)], [e^{iφ} sin(θ/2), e^{i(φ+λ)} cos(θ/2)]].
    """
    theta, phi, lam = torch.broadcast_tensors(theta, phi, lam)
    return u3_from_angles(torch.stack((theta, phi, lam), -1))


def rx(theta: Tensor) -> Tensor:
    """RX(θ) = exp(-iθX/2), shape ``(..., 2, 2)``."""
    cdt = complex_dtype_for(theta.dtype)
    c = torch.cos(theta / 2).to(cdt)
    s = (-1j * torch.sin(theta / 2)).to(cdt)
    return _matrix(c, s, s, c)


def ry(theta: Tensor) -> Tensor:
    """RY(θ) = exp(-iθY/2), shape ``(..., 2, 2)``."""
    cdt = complex_dtype_for(theta.dtype)
    c = torch.cos(theta / 2).to(cdt)
    s = torch.sin(theta / 2).to(cdt)
    return _matrix(c, -s, s, c)


def rz(theta: Tensor) -> Tensor:
    """RZ(θ) = exp(-iθZ/2) = diag(e^{-iθ/2}, e^{iθ/2}), shape ``(..., 2, 2)``."""
    zero = torch.zeros_like(theta)
    one = torch.ones_like(theta)
    return _matrix(torch.polar(one, -theta / 2), torch.complex(zero, zero),
                   torch.complex(zero, zero), torch.polar(one, theta / 2))


def hadamard(dtype: torch.dtype = torch.complex64) -> Tensor:
    """Hadamard gate, shape ``(2, 2)``."""
    r = 1.0 / math.sqrt(2.0)
    return torch.tensor([[r, r], [r, -r]], dtype=dtype)


def pauli_x(dtype: torch.dtype = torch.complex64) -> Tensor:
    """Pauli X, shape ``(2, 2)``."""
    return torch.tensor([[0, 1], [1, 0]], dtype=dtype)


def controlled(target: Tensor) -> Tensor:
    """Controlled version of a one-qubit matrix: ``(..., 2, 2)`` -> ``(..., 4, 4)``.

    The first wire is the control: the matrix is block-diag(I, target).
    """
    batch = target.shape[:-2]
    top = torch.eye(2, 4, dtype=target.dtype, device=target.device).expand(*batch, 2, 4)
    zeros = torch.zeros((), dtype=target.dtype, device=target.device).expand(*batch, 2, 2)
    return torch.cat((top, torch.cat((zeros, target), -1)), -2)


def cu3(theta: Tensor, phi: Tensor, lam: Tensor) -> Tensor:
    """Controlled-U3 (control first), shape ``(..., 4, 4)``."""
    return controlled(u3(theta, phi, lam))


def cnot(dtype: torch.dtype = torch.complex64) -> Tensor:
    """CNOT with the first wire as control, shape ``(4, 4)``."""
    return controlled(pauli_x(dtype))

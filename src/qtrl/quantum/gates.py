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

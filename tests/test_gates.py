"""Gate builders against PennyLane's matrices and hand-computed ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qtrl.quantum import gates

qml = pytest.importorskip("pennylane")

ANGLES = [0.0, 0.3, -1.2, math.pi / 2, math.pi, 2.5, 2 * math.pi - 0.1]


def _t(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


@pytest.mark.parametrize("theta", ANGLES)
@pytest.mark.parametrize("phi", [0.0, 0.7, -2.1])
@pytest.mark.parametrize("lam", [0.0, 1.3, 4.0])
def test_u3_and_cu3_match_pennylane(theta: float, phi: float, lam: float) -> None:
    ours = gates.u3(_t(theta), _t(phi), _t(lam)).numpy()
    ref = qml.matrix(qml.U3(theta, phi, lam, wires=0))
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    ours_c = gates.cu3(_t(theta), _t(phi), _t(lam)).numpy()
    ref_c = qml.matrix(qml.ctrl(qml.U3(theta, phi, lam, wires=1), control=0), wire_order=[0, 1])
    np.testing.assert_allclose(ours_c, ref_c, atol=1e-12)


@pytest.mark.parametrize("theta", ANGLES)
@pytest.mark.parametrize("name, ref_op", [("rx", qml.RX), ("ry", qml.RY), ("rz", qml.RZ)])
def test_rotations_match_pennylane(theta: float, name: str, ref_op) -> None:
    ours = getattr(gates, name)(_t(theta)).numpy()
    np.testing.assert_allclose(ours, qml.matrix(ref_op(theta, wires=0)), atol=1e-12)


def test_rotations_by_hand() -> None:
    t = 0.8
    c, s = math.cos(t / 2), math.sin(t / 2)
    np.testing.assert_allclose(gates.rx(_t(t)).numpy(), [[c, -1j * s], [-1j * s, c]], atol=1e-15)
    np.testing.assert_allclose(gates.ry(_t(t)).numpy(), [[c, -s], [s, c]], atol=1e-15)
    np.testing.assert_allclose(gates.rz(_t(t)).numpy(),
                               [[np.exp(-0.5j * t), 0], [0, np.exp(0.5j * t)]], atol=1e-15)
    # U3(θ, -π/2, π/2) = RX(θ); U3(θ, 0, 0) = RY(θ); U3(π/2, 0, π) = H.
    np.testing.assert_allclose(gates.u3(_t(t), _t(-math.pi / 2), _t(math.pi / 2)).numpy(),
                               gates.rx(_t(t)).numpy(), atol=1e-15)
    np.testing.assert_allclose(gates.u3(_t(t), _t(0.0), _t(0.0)).numpy(),
                               gates.ry(_t(t)).numpy(), atol=1e-15)
    np.testing.assert_allclose(gates.u3(_t(math.pi / 2), _t(0.0), _t(math.pi)).numpy(),
                               gates.hadamard(torch.complex128).numpy(), atol=1e-15)


def test_fixed_gates() -> None:
    r = 1 / math.sqrt(2)
    np.testing.assert_allclose(gates.hadamard(torch.complex128).numpy(), [[r, r], [r, -r]])
    np.testing.assert_allclose(gates.hadamard(torch.complex128).numpy(),
                               qml.matrix(qml.Hadamard(0)), atol=1e-15)
    np.testing.assert_array_equal(gates.pauli_x().numpy(), [[0, 1], [1, 0]])
    cnot = np.eye(4)[[0, 1, 3, 2]]
    np.testing.assert_array_equal(gates.cnot().numpy(), cnot)
    np.testing.assert_array_equal(gates.cnot().numpy(), qml.matrix(qml.CNOT([0, 1])))
    for build in (gates.hadamard, gates.pauli_x, gates.cnot):
        assert build(torch.complex128).dtype == torch.complex128
        assert build().dtype == torch.complex64


def test_controlled_is_block_diagonal() -> None:
    u = gates.u3(*torch.rand(3, 5, dtype=torch.float64))
    cu = gates.controlled(u)
    assert cu.shape == (5, 4, 4)
    eye = torch.eye(2, dtype=cu.dtype).expand(5, 2, 2)
    torch.testing.assert_close(cu[:, :2, :2], eye)
    torch.testing.assert_close(cu[:, 2:, 2:], u)
    assert cu[:, :2, 2:].abs().max() == 0 and cu[:, 2:, :2].abs().max() == 0


BUILDERS = {
    "u3": (gates.u3, 3, 2), "cu3": (gates.cu3, 3, 4),
    "rx": (gates.rx, 1, 2), "ry": (gates.ry, 1, 2), "rz": (gates.rz, 1, 2),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("batch", [(), (4,), (2, 3, 5)])
def test_unitary_batch_shape(name: str, batch: tuple[int, ...]) -> None:
    build, n_angles, d = BUILDERS[name]
    gen = torch.Generator().manual_seed(0)
    angles = [torch.rand(batch, generator=gen, dtype=torch.float64) * 7 - 1
              for _ in range(n_angles)]
    m = build(*angles)
    assert m.shape == (*batch, d, d)
    eye = torch.eye(d, dtype=m.dtype).expand_as(m)
    torch.testing.assert_close(m @ m.mH, eye, atol=1e-12, rtol=0)
    # Batching is elementwise: each entry equals the unbatched build.
    if batch:
        flat = [a.reshape(-1) for a in angles]
        m_flat = m.reshape(-1, d, d)
        for i in (0, flat[0].numel() - 1):
            torch.testing.assert_close(m_flat[i], build(*(a[i] for a in flat)))


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("real, cplx", [(torch.float32, torch.complex64),
                                        (torch.float64, torch.complex128)])
def test_dtype_follows_angles(name: str, real: torch.dtype, cplx: torch.dtype) -> None:
    build, n_angles, _ = BUILDERS[name]
    m = build(*(torch.rand(3, dtype=real) for _ in range(n_angles)))
    assert m.dtype == cplx
    assert gates.complex_dtype_for(real) == cplx


def test_complex_dtype_for_rejects_non_real() -> None:
    with pytest.raises(TypeError, match="real floating"):
        gates.complex_dtype_for(torch.int64)


def test_gates_are_differentiable() -> None:
    theta = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    m = gates.u3(theta, torch.tensor(0.2, dtype=torch.float64), torch.tensor(1.1, dtype=torch.float64))
    m[0, 0].real.backward()
    # d/dθ cos(θ/2) = -sin(θ/2)/2
    assert theta.grad is not None
    assert math.isclose(theta.grad.item(), -math.sin(0.2) / 2, abs_tol=1e-14)


def test_u3_gradcheck_in_every_quadrant() -> None:
    """Signed cos/sin(θ/2) (θ in (π, 4π)) must differentiate correctly too."""
    gen = torch.Generator().manual_seed(5)
    angles = (torch.rand(24, 3, generator=gen, dtype=torch.float64) * 4 * math.pi - math.pi)
    angles.requires_grad_()

    def real_parts(a: torch.Tensor) -> torch.Tensor:
        m = gates.u3(*a.unbind(-1))
        return torch.view_as_real(m)

    assert torch.autograd.gradcheck(real_parts, (angles,), eps=1e-6, atol=1e-8)
    c = angles.detach()[:, 0].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: torch.view_as_real(gates.rx(t)), (c,))
    assert torch.autograd.gradcheck(lambda t: torch.view_as_real(gates.ry(t)), (c,))
    assert torch.autograd.gradcheck(lambda t: torch.view_as_real(gates.rz(t)), (c,))

"""Ansätze: parameter counts, fusion, agreement with PennyLane, determinism, purity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qtrl.quantum.ansatz import ANSATZE, RingU3Ansatz, RYCNOTAnsatz

qml = pytest.importorskip("pennylane")

F64 = torch.float64



@pytest.mark.parametrize("n, layers, circuits", [(2, 1, 1), (10, 5, 1), (13, 13, 1), (4, 3, 5)])
def test_parameter_counts(n: int, layers: int, circuits: int) -> None:
    ring = RingU3Ansatz(n, layers, circuits)
    assert sum(p.numel() for p in ring.parameters()) == circuits * 6 * n * layers
    ry = RYCNOTAnsatz(n, layers, circuits)
    assert sum(p.numel() for p in ry.parameters()) == circuits * n * layers
    assert sorted(ANSATZE) == ["ring-u3", "ry-cnot"]


def test_constructor_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="at least 2 qubits"):
        RingU3Ansatz(1, 1)
    with pytest.raises(ValueError, match=">= 1"):
        RYCNOTAnsatz(3, 0)
    with pytest.raises(ValueError, match=">= 1"):
        RingU3Ansatz(3, 1, circuits=0)


def _same_angles(a: torch.nn.Module, b: torch.nn.Module) -> None:
    b.load_state_dict(a.state_dict())


FUSE_CASES = [(n, g, 1) for n in (2, 3, 4, 5, 7, 9) for g in (2, 3, 4, 5, 6)]
FUSE_CASES += [(n, g, 3) for n, g in ((2, 2), (4, 2), (5, 5), (7, 3), (9, 4), (3, 6))]
FUSE_CASES += [(12, None, 1), (15, None, 1), (10, 4, 2)]  # None: the default window


@pytest.mark.parametrize("n, g, circuits", FUSE_CASES)
def test_fused_equals_unfused(n: int, g: int | None, circuits: int) -> None:
    layers = 2
    ref = RingU3Ansatz(n, layers, circuits, dtype=F64, fuse_qubits=1, compiled=False)
    fused = RingU3Ansatz(n, layers, circuits, dtype=F64, fuse_qubits=g, compiled=False)
    _same_angles(ref, fused)
    p_ref, p_fused = ref(), fused()
    assert p_fused.shape == (circuits, 2**n)
    torch.testing.assert_close(p_fused, p_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(p_ref.sum(1), torch.ones(circuits, dtype=F64))
    # Gradients agree too (the fused windows are differentiated through their build).
    w = torch.randn(circuits, 2**n, dtype=F64, generator=torch.Generator().manual_seed(n))
    (p_ref * w).sum().backward()
    (p_fused * w).sum().backward()
    torch.testing.assert_close(fused.u3_angles.grad, ref.u3_angles.grad, atol=1e-10, rtol=0)
    torch.testing.assert_close(fused.cu3_angles.grad, ref.cu3_angles.grad, atol=1e-10, rtol=0)


@pytest.mark.parametrize("n, g, circuits", [(2, 2, 1), (4, 2, 2), (5, 3, 1), (6, 5, 3), (3, 6, 2)])
def test_ry_cnot_fused_equals_unfused(n: int, g: int, circuits: int) -> None:
    ref = RYCNOTAnsatz(n, 3, circuits, dtype=F64, fuse_qubits=1)
    fused = RYCNOTAnsatz(n, 3, circuits, dtype=F64, fuse_qubits=g)
    _same_angles(ref, fused)
    torch.testing.assert_close(fused(), ref(), atol=1e-12, rtol=0)


def test_fused_gradients_in_both_adjoint_modes(adjoint_mode: str) -> None:
    ref = RingU3Ansatz(7, 3, 2, dtype=F64, fuse_qubits=1, compiled=False)
    fused = RingU3Ansatz(7, 3, 2, dtype=F64, fuse_qubits=3, compiled=False)
    _same_angles(ref, fused)
    w = torch.randn(2, 2**7, dtype=F64, generator=torch.Generator().manual_seed(0))
    (ref() * w).sum().backward()
    (fused() * w).sum().backward()
    torch.testing.assert_close(fused.u3_angles.grad, ref.u3_angles.grad, atol=1e-10, rtol=0)
    torch.testing.assert_close(fused.cu3_angles.grad, ref.cu3_angles.grad, atol=1e-10, rtol=0)


@pytest.mark.parametrize("compiled", [False, True])
def test_ring_gradcheck(adjoint_mode: str, compiled: bool) -> None:
    ansatz = RingU3Ansatz(4, 2, dtype=F64, fuse_qubits=3, compiled=compiled)
    w = torch.linspace(-1, 1, 16, dtype=F64)
    u0, c0 = ansatz.u3_angles.detach().clone(), ansatz.cu3_angles.detach().clone()

    def loss(u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(ansatz, {"u3_angles": u, "cu3_angles": c}, ())
        return (out * w).sum()

    assert torch.autograd.gradcheck(loss, (u0.requires_grad_(), c0.requires_grad_()),
                                    eps=1e-6, atol=1e-7)


def _pennylane_probs(ansatz, circuit: int = 0) -> np.ndarray:
    """The ansatz rebuilt gate by gate from ``.gates()`` in PennyLane (same wire order)."""
    n = ansatz.n_qubits
    dev = qml.device("default.qubit", wires=n)
    gate_list = [(g.name, g.wires, g.params[circuit].detach().tolist()) for g in ansatz.gates()]

    @qml.qnode(dev)
    def run():
        for name, wires, p in gate_list:
            if name == "u3":
                qml.U3(*p, wires=wires[0])
            elif name == "cu3":
                qml.ctrl(qml.U3(*p, wires=wires[1]), control=wires[0])
            elif name == "ry":
                qml.RY(*p, wires=wires[0])
            elif name == "cx":
                qml.CNOT(wires=list(wires))
            else:
                raise AssertionError(f"unexpected gate {name}")
        return qml.probs(wires=range(n))

    return np.asarray(run())


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("n, layers, circuits", [(2, 2, 1), (3, 1, 2), (5, 2, 1), (8, 2, 2)])
def test_ring_matches_pennylane(n: int, layers: int, circuits: int, compiled: bool) -> None:
    torch.manual_seed(n)
    ansatz = RingU3Ansatz(n, layers, circuits, dtype=F64, compiled=compiled)
    ours = ansatz().detach().numpy()
    for c in range(circuits):
        np.testing.assert_allclose(ours[c], _pennylane_probs(ansatz, c), atol=1e-10, rtol=0)
    gate_names = [g.name for g in ansatz.gates()]
    assert gate_names == (["u3"] * n + ["cu3"] * n) * layers
    ring = [g.wires for g in ansatz.gates()[n:2 * n]]
    assert ring == [(j, (j + 1) % n) for j in range(n)]


@pytest.mark.parametrize("compiled", [False, True])
def test_ring_float32_matches_pennylane(compiled: bool) -> None:
    torch.manual_seed(0)
    ansatz = RingU3Ansatz(6, 3, compiled=compiled)
    ours = ansatz().detach()
    assert ours.dtype == torch.float32
    np.testing.assert_allclose(ours[0].numpy(), _pennylane_probs(ansatz), atol=1e-5, rtol=0)


@pytest.mark.parametrize("n", [1, 4])
def test_ry_cnot_matches_pennylane(n: int) -> None:
    torch.manual_seed(1)
    ansatz = RYCNOTAnsatz(n, 2, 2, dtype=F64)
    ours = ansatz().detach().numpy()
    for c in range(2):
        np.testing.assert_allclose(ours[c], _pennylane_probs(ansatz, c), atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", sorted(ANSATZE))
def test_seed_determinism(name: str) -> None:
    cls = ANSATZE[name]
    torch.manual_seed(123)
    a = cls(5, 2, 2)
    torch.manual_seed(123)
    b = cls(5, 2, 2)
    torch.manual_seed(124)
    c = cls(5, 2, 2)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert torch.equal(a(), b())
    assert not torch.equal(a(), c())


@pytest.mark.parametrize("name", sorted(ANSATZE))
def test_forward_does_not_mutate(name: str) -> None:
    ansatz = ANSATZE[name](6, 2, 2)
    before = {k: v.clone() for k, v in ansatz.state_dict().items()}
    buffers = {k: v.clone() for k, v in ansatz.named_buffers()}
    attrs = dict(vars(ansatz))
    first = ansatz()
    (first.sum()).backward()
    second = ansatz()
    assert torch.equal(first, second)
    for k, v in ansatz.state_dict().items():
        assert torch.equal(v, before[k])
    for k, v in ansatz.named_buffers():
        assert torch.equal(v, buffers[k])
    assert set(vars(ansatz)) == set(attrs)
    assert ansatz.training == attrs["training"]

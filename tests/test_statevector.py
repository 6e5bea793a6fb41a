"""The statevector kernels against PennyLane and Qiskit, and the adjoint gradient.

Qubit order. Our wire 0 is the most significant bit of a basis index (as in
PennyLane), so PennyLane's ``probs`` compare directly. Qiskit is little-endian
(qubit 0 is the least significant bit); the Qiskit reference here puts our wire
``w`` on Qiskit qubit ``w`` and then flips the bit order explicitly
(:func:`_qiskit_to_ours`): reshape to ``(2,)*n`` (axis 0 = qubit n-1), reverse
the axes, flatten.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from qtrl.quantum import gates
from qtrl.quantum.statevector import (
    Operation,
    apply_matrix,
    probabilities,
    run_circuit,
    run_layers,
    zero_state,
)

qml = pytest.importorskip("pennylane")
qiskit = pytest.importorskip("qiskit")
from qiskit.circuit.library import CU3Gate
from qiskit.quantum_info import Statevector

F64 = torch.float64
ONE_QUBIT = {"u3": 3, "rx": 1, "ry": 1, "rz": 1, "h": 0}
TWO_QUBIT = {"cu3": 3, "cnot": 0}


def _random_gates(n: int, count: int, rng: random.Random) -> list[tuple[str, tuple, list]]:
    """``count`` random gates ``(name, wires, angles)``; two-qubit ones on any ordered
    pair of distinct wires (adjacent or not, ascending or reversed)."""
    out = []
    for _ in range(count):
        if n >= 2 and rng.random() < 0.45:
            name = rng.choice(sorted(TWO_QUBIT))
            wires = tuple(rng.sample(range(n), 2))
        else:
            name = rng.choice(sorted(ONE_QUBIT))
            wires = (rng.randrange(n),)
        params = [rng.uniform(-math.pi, 2 * math.pi)
                  for _ in range((ONE_QUBIT | TWO_QUBIT)[name])]
        out.append((name, wires, params))
    return out


def _matrix(name: str, params: list, dtype: torch.dtype = F64) -> torch.Tensor:
    cdt = gates.complex_dtype_for(dtype)
    t = [torch.tensor(p, dtype=dtype) for p in params]
    return {"u3": lambda: gates.u3(*t), "rx": lambda: gates.rx(*t), "ry": lambda: gates.ry(*t),
            "rz": lambda: gates.rz(*t), "h": lambda: gates.hadamard(cdt),
            "cu3": lambda: gates.cu3(*t), "cnot": lambda: gates.cnot(cdt)}[name]()


def _pennylane_probs(n: int, circuit: list) -> np.ndarray:
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev)
    def run():
        for name, wires, p in circuit:
            if name == "u3":
                qml.U3(*p, wires=wires)
            elif name == "rx":
                qml.RX(*p, wires=wires)
            elif name == "ry":
                qml.RY(*p, wires=wires)
            elif name == "rz":
                qml.RZ(*p, wires=wires)
            elif name == "h":
                qml.Hadamard(wires=wires)
            elif name == "cu3":
                qml.ctrl(qml.U3(*p, wires=wires[1]), control=wires[0])
            else:
                qml.CNOT(wires=wires)
        return qml.probs(wires=range(n))

    return np.asarray(run())


def _qiskit_to_ours(probs: np.ndarray, n: int) -> np.ndarray:
    """Qiskit's little-endian probabilities in our order (wire 0 = MSB)."""
    return probs.reshape((2,) * n).transpose(tuple(range(n - 1, -1, -1))).reshape(-1)


def _qiskit_probs(n: int, circuit: list) -> np.ndarray:
    qc = qiskit.QuantumCircuit(n)
    for name, wires, p in circuit:  # our wire w is Qiskit qubit w (flipped afterwards)
        if name == "u3":
            qc.u(*p, wires[0])
        elif name in ("rx", "ry", "rz"):
            getattr(qc, name)(*p, wires[0])
        elif name == "h":
            qc.h(wires[0])
        elif name == "cu3":
            qc.append(CU3Gate(*p), list(wires))  # first qubit is the control
        else:
            qc.cx(*wires)
    return _qiskit_to_ours(Statevector(qc).probabilities(), n)


def test_qubit_order_flip_by_hand() -> None:
    # X on our wire 0 of 3 qubits: |100> = index 4 (wire 0 is the MSB).
    ours = probabilities(apply_matrix(zero_state(3, dtype=torch.complex128),
                                      gates.pauli_x(torch.complex128), [0]))[0].numpy()
    assert ours.argmax() == 4
    assert _qiskit_probs(3, [("rx", (0,), [math.pi])]).argmax() == 4
    assert _pennylane_probs(3, [("rx", (0,), [math.pi])]).argmax() == 4


CASES = [(n, seed) for n in range(1, 9) for seed in range(2)]


@pytest.mark.parametrize("n, seed", CASES)
def test_random_circuits_match_pennylane_and_qiskit(n: int, seed: int) -> None:
    rng = random.Random(1000 * n + seed)
    circuit = _random_gates(n, 6 + 3 * n, rng)
    ops = [Operation(_matrix(name, p), wires) for name, wires, p in circuit]
    ours_adjoint = probabilities(run_circuit(ops, n, dtype=torch.complex128))[0].numpy()
    state = zero_state(n, dtype=torch.complex128)
    for op in ops:
        state = apply_matrix(state, op.matrix, op.wires)
    ours_plain = probabilities(state)[0].numpy()
    pl = _pennylane_probs(n, circuit)
    qk = _qiskit_probs(n, circuit)
    np.testing.assert_allclose(ours_adjoint, pl, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours_plain, pl, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours_adjoint, qk, atol=1e-5, rtol=0)
    # complex64 stays within the same tolerance.
    ops32 = [Operation(_matrix(name, p, torch.float32), wires) for name, wires, p in circuit]
    ours32 = probabilities(run_circuit(ops32, n))[0].numpy()
    assert ours32.dtype == np.float32
    np.testing.assert_allclose(ours32, pl, atol=1e-5, rtol=0)


def test_non_adjacent_and_reversed_wires() -> None:
    """Two-qubit gates whose wires are far apart and/or control below target."""
    n = 6
    rng = random.Random(5)
    circuit = [("h", (w,), []) for w in range(n)]
    for wires in [(5, 0), (0, 5), (4, 1), (1, 4), (3, 2), (2, 3), (5, 3), (0, 2), (4, 0)]:
        circuit.append(("u3", (wires[1],), [rng.uniform(0, 6) for _ in range(3)]))
        circuit.append(("cu3", wires, [rng.uniform(0, 6) for _ in range(3)]))
        circuit.append(("cnot", wires[::-1], []))
    ops = [Operation(_matrix(name, p), wires) for name, wires, p in circuit]
    ours = probabilities(run_circuit(ops, n, dtype=torch.complex128))[0].numpy()
    np.testing.assert_allclose(ours, _pennylane_probs(n, circuit), atol=1e-10, rtol=0)
    np.testing.assert_allclose(ours, _qiskit_probs(n, circuit), atol=1e-10, rtol=0)


def test_batched_circuits_with_per_circuit_matrices() -> None:
    n, batch = 5, 3
    rng = random.Random(7)
    structure = _random_gates(n, 14, rng)
    ops, per_circuit = [], []
    for i, (name, wires, _) in enumerate(structure):
        circuits = []
        for _ in range(batch):
            params = [rng.uniform(0, 2 * math.pi) for _ in range((ONE_QUBIT | TWO_QUBIT)[name])]
            circuits.append((name, wires, params))
        per_circuit.append(circuits)
        if i % 3 == 2:  # every third gate shared by the batch, as (d, d)
            ops.append(Operation(_matrix(name, circuits[0][2]), wires))
            per_circuit[-1] = [circuits[0]] * batch
        else:
            ops.append(Operation(torch.stack([_matrix(nm, p) for nm, _, p in circuits]), wires))
    out = probabilities(run_circuit(ops, n, batch=batch, dtype=torch.complex128))
    assert out.shape == (batch, 2**n)
    for b in range(batch):
        ref = _pennylane_probs(n, [gs[b] for gs in per_circuit])
        np.testing.assert_allclose(out[b].numpy(), ref, atol=1e-10, rtol=0)


def test_apply_matrix_batched_matrix_and_errors() -> None:
    state = zero_state(3, batch=2, dtype=torch.complex128)
    m = torch.stack([gates.pauli_x(torch.complex128), torch.eye(2, dtype=torch.complex128)])
    out = probabilities(apply_matrix(state, m, [2]))
    assert out[0].argmax() == 1 and out[1].argmax() == 0
    with pytest.raises(ValueError, match="distinct"):
        apply_matrix(state, gates.cnot(torch.complex128), [1, 1])
    with pytest.raises(ValueError, match="in 0..2"):
        apply_matrix(state, gates.pauli_x(torch.complex128), [3])
    with pytest.raises(ValueError, match="expected"):
        apply_matrix(state, gates.cnot(torch.complex128), [1])


def test_run_layers_equals_unrolled_circuit() -> None:
    n, layers = 4, 3
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(layers, n, 3, generator=gen, dtype=F64) * 6
    b = torch.rand(layers, 3, generator=gen, dtype=F64) * 6
    template = [Operation(gates.u3(*a[:, q].unbind(-1)), (q,)) for q in range(n)]
    template.append(Operation(gates.cu3(*b.unbind(-1)), (3, 1)))
    template.append(Operation(gates.cnot(torch.complex128).expand(layers, 4, 4), (0, 2)))
    layered = run_layers(template, n, layers, dtype=torch.complex128)
    flat = [Operation(op.matrix[l], op.wires) for l in range(layers) for op in template]
    torch.testing.assert_close(layered, run_circuit(flat, n, dtype=torch.complex128))


# ---------------------------------------------------------------- gradients



def _angle_circuit(n: int, seed: int):
    """A parameterised circuit ``f(angles) -> probs`` and random angles, float64."""
    rng = random.Random(seed)
    structure = [(name, wires) for name, wires, _ in _random_gates(n, 4 * n, rng)]
    sizes = [(ONE_QUBIT | TWO_QUBIT)[name] for name, _ in structure]
    angles = torch.tensor([rng.uniform(0, 2 * math.pi) for _ in range(sum(sizes))], dtype=F64)

    def operations(theta: torch.Tensor) -> list[Operation]:
        ops, i = [], 0
        for (name, wires), k in zip(structure, sizes):
            p = list(theta[i:i + k])
            i += k
            if name == "u3":
                m = gates.u3(*p)
            elif name == "cu3":
                m = gates.cu3(*p)
            elif name in ("rx", "ry", "rz"):
                m = getattr(gates, name)(*p)
            elif name == "h":
                m = gates.hadamard(torch.complex128)
            else:
                m = gates.cnot(torch.complex128)
            ops.append(Operation(m, wires))
        return ops

    return operations, angles


@pytest.mark.parametrize("n, seed", [(1, 0), (3, 1), (4, 2)])
def test_gradcheck_run_circuit(n: int, seed: int, adjoint_mode: str) -> None:
    operations, angles = _angle_circuit(n, seed)
    weights = torch.linspace(-1, 2, 2**n, dtype=F64)

    def loss(theta: torch.Tensor) -> torch.Tensor:
        probs = probabilities(run_circuit(operations(theta), n, dtype=torch.complex128))
        return torch.stack(((probs * weights).sum(), probs[0, -1]))

    theta = angles.clone().requires_grad_()
    assert torch.autograd.gradcheck(loss, (theta,), eps=1e-6, atol=1e-7)
    # And by hand against central differences of the scalar loss.
    (grad,) = torch.autograd.grad(loss(theta)[0], theta)
    h = 1e-5
    for i in range(angles.numel()):
        e = torch.zeros_like(angles)
        e[i] = h
        fd = (loss(angles + e)[0] - loss(angles - e)[0]) / (2 * h)
        assert abs(fd.item() - grad[i].item()) < 1e-7


def test_gradcheck_run_layers_batched(adjoint_mode: str) -> None:
    n, layers, batch = 3, 2, 2
    weights = torch.randn(batch, 2**n, dtype=F64, generator=torch.Generator().manual_seed(0))

    def loss(u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        template = [Operation(gates.u3(*u[:, :, q].unbind(-1)), (q,)) for q in range(n)]
        template.append(Operation(gates.cu3(*c.unbind(-1)), (2, 0)))       # per circuit
        template.append(Operation(gates.cnot(torch.complex128).expand(layers, 4, 4), (0, 1)))
        probs = probabilities(run_layers(template, n, layers, batch, torch.complex128))
        return (probs * weights).sum(1)

    gen = torch.Generator().manual_seed(1)
    u = (torch.rand(layers, batch, n, 3, generator=gen, dtype=F64) * 6).requires_grad_()
    c = (torch.rand(layers, batch, 3, generator=gen, dtype=F64) * 6).requires_grad_()
    assert torch.autograd.gradcheck(loss, (u, c), eps=1e-6, atol=1e-7)


def _plain_probs(ops: list[Operation], n: int, batch: int = 1) -> torch.Tensor:
    state = zero_state(n, batch, torch.complex128)
    for op in ops:
        state = apply_matrix(state, op.matrix, op.wires)
    return probabilities(state)


@pytest.mark.parametrize("n, seed", [(2, 3), (5, 4), (7, 5)])
def test_adjoint_gradient_equals_plain_autograd(n: int, seed: int, adjoint_mode: str) -> None:
    operations, angles = _angle_circuit(n, seed)
    weights = torch.randn(2**n, dtype=F64, generator=torch.Generator().manual_seed(seed))
    theta_a = angles.clone().requires_grad_()
    theta_b = angles.clone().requires_grad_()
    probs_a = probabilities(run_circuit(operations(theta_a), n, dtype=torch.complex128))
    probs_b = _plain_probs(operations(theta_b), n)
    torch.testing.assert_close(probs_a, probs_b, atol=1e-12, rtol=0)
    (probs_a * weights).sum().backward()
    (probs_b * weights).sum().backward()
    torch.testing.assert_close(theta_a.grad, theta_b.grad, atol=1e-6, rtol=0)


def test_adjoint_matrix_gradient_equals_plain_autograd(adjoint_mode: str) -> None:
    """Gradients with respect to the (unitary) complex matrices themselves."""
    n, batch = 4, 2
    operations, angles = _angle_circuit(n, 9)
    with torch.no_grad():
        ops = operations(angles)
    # Make a couple of matrices per-circuit to exercise the batched branch.
    ops[0] = Operation(ops[0].matrix.expand(batch, *ops[0].matrix.shape).clone(), ops[0].wires)
    leaves_a = [op.matrix.clone().requires_grad_() for op in ops]
    leaves_b = [op.matrix.clone().requires_grad_() for op in ops]
    weights = torch.randn(batch, 2**n, dtype=F64, generator=torch.Generator().manual_seed(2))
    pa = probabilities(run_circuit([Operation(m, op.wires) for m, op in zip(leaves_a, ops)],
                                   n, batch, torch.complex128))
    pb = _plain_probs([Operation(m, op.wires) for m, op in zip(leaves_b, ops)], n, batch)
    (pa * weights).sum().backward()
    (pb * weights).sum().backward()
    for a, b in zip(leaves_a, leaves_b):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=0)


def test_run_circuit_without_grad_needs_no_backward() -> None:
    operations, angles = _angle_circuit(3, 0)
    with torch.no_grad():
        out = run_circuit(operations(angles), 3, dtype=torch.complex128)
    assert not out.requires_grad
    torch.testing.assert_close(probabilities(out).sum(), torch.tensor(1.0, dtype=F64))


def test_gradient_wrt_initial_state(adjoint_mode: str) -> None:
    n = 3
    operations, angles = _angle_circuit(n, 11)
    with torch.no_grad():
        ops = operations(angles)
    gen = torch.Generator().manual_seed(4)
    init = torch.randn(2, 2**n, dtype=torch.complex128, generator=gen)
    init = init / init.abs().square().sum(1, keepdim=True).sqrt()
    weights = torch.randn(2, 2**n, dtype=F64, generator=gen)
    a = init.clone().reshape(2, 2, 2, 2).requires_grad_()
    b = init.clone().reshape(2, 2, 2, 2).requires_grad_()
    (probabilities(run_circuit(ops, n, 2, torch.complex128, initial=a)) * weights).sum().backward()
    state = b
    for op in ops:
        state = apply_matrix(state, op.matrix, op.wires)
    (probabilities(state) * weights).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-10, rtol=0)

"""OpenQASM 2.0 export, loaded back by Qiskit.

Because the export writes our wire ``j`` as ``q[n-1-j]``, Qiskit's
little-endian probabilities come out in *our* index order: no flip here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qtrl.quantum.ansatz import ANSATZE, RingU3Ansatz, RYCNOTAnsatz
from qtrl.quantum.qasm import ansatz_to_qasm

qiskit_qasm2 = pytest.importorskip("qiskit.qasm2")
from qiskit.quantum_info import Statevector


@pytest.mark.parametrize("name", sorted(ANSATZE))
@pytest.mark.parametrize("n, layers, circuits", [(2, 1, 1), (3, 2, 2), (6, 3, 1), (9, 2, 2)])
def test_qiskit_reproduces_probabilities(name: str, n: int, layers: int, circuits: int) -> None:
    torch.manual_seed(n + layers)
    ansatz = ANSATZE[name](n, layers, circuits)  # float32 angles: what training uses
    ours = ansatz().detach().double().numpy()
    for c in range(circuits):
        circuit = qiskit_qasm2.loads(ansatz_to_qasm(ansatz, c))
        assert circuit.num_qubits == n
        theirs = Statevector(circuit).probabilities()
        np.testing.assert_allclose(theirs, ours[c], atol=1e-5, rtol=0)


def test_float64_round_trip_is_exact() -> None:
    ansatz = RingU3Ansatz(5, 2, dtype=torch.float64)
    theirs = Statevector(qiskit_qasm2.loads(ansatz_to_qasm(ansatz))).probabilities()
    np.testing.assert_allclose(theirs, ansatz()[0].detach().numpy(), atol=1e-12, rtol=0)
    # Angles are written with repr: they parse back bit for bit.
    text = ansatz_to_qasm(ansatz)
    first = text.splitlines()[3]
    assert first.startswith("u3(") and first.endswith(") q[4];")
    values = [float(v) for v in first[3:first.index(")")].split(",")]
    assert values == ansatz.u3_angles[0, 0, 0].tolist()


def test_program_text_and_wire_mapping() -> None:
    ansatz = RYCNOTAnsatz(3, 1)
    lines = ansatz_to_qasm(ansatz).splitlines()
    assert lines[:3] == ["OPENQASM 2.0;", 'include "qelib1.inc";', "qreg q[3];"]
    # Our wire 0 (the most significant bit) is q[2].
    assert lines[3].startswith("ry(") and lines[3].endswith(" q[2];")
    assert lines[-2:] == ["cx q[2], q[1];", "cx q[1], q[0];"]
    ring = ansatz_to_qasm(RingU3Ansatz(3, 1)).splitlines()
    assert [line.split(")")[-1] for line in ring if line.startswith("cu3")] == [
        " q[2], q[1];", " q[1], q[0];", " q[0], q[2];"]


def test_basis_state_index_is_the_measured_bitstring() -> None:
    """A state prepared on basis index i measures as the bitstring of i."""
    ansatz = RYCNOTAnsatz(3, 1, dtype=torch.float64, fuse_qubits=1)
    with torch.no_grad():
        # RY(π) on wire 0, then the CNOT chain 0→1→2: |100> → |110> → |111>.
        ansatz.ry_angles.zero_()
        ansatz.ry_angles[0, 0, 0] = torch.pi  # wire 0 = MSB
    probs = ansatz()[0]
    index = int(probs.argmax())
    assert index == 0b111 and probs[index] > 1 - 1e-12
    text = ansatz_to_qasm(ansatz, measure=True)
    assert text.rstrip().endswith("measure q -> c;")
    circuit = qiskit_qasm2.loads(text)
    circuit.remove_final_measurements()
    counts = Statevector(circuit).probabilities_dict()
    assert max(counts, key=counts.get) == format(index, "03b")


def test_bitstring_order_on_an_asymmetric_state() -> None:
    ansatz = RYCNOTAnsatz(3, 1, dtype=torch.float64, fuse_qubits=1)
    with torch.no_grad():
        ansatz.ry_angles.zero_()
        ansatz.ry_angles[0, 0, 2] = torch.pi  # only the last wire (LSB): index 1
    assert int(ansatz()[0].argmax()) == 1
    circuit = qiskit_qasm2.loads(ansatz_to_qasm(ansatz))
    probs = Statevector(circuit).probabilities_dict()
    assert max(probs, key=probs.get) == "001"


def test_bad_circuit_index() -> None:
    with pytest.raises(ValueError, match="circuit must be in 0..1"):
        ansatz_to_qasm(RingU3Ansatz(3, 1, circuits=2), circuit=2)

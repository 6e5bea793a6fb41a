"""OpenQASM 2.0 export of an ansatz's circuit with its current angles.

Qubit order. Our wire ``j`` is axis ``1 + j`` of the state, so wire 0 is the
*most significant* bit of a basis index ``i`` (PennyLane's order). Qiskit and
most OpenQASM tools are little-endian: ``q[0]`` is the *least* significant bit.
The export therefore writes our wire ``j`` as ``q[n-1-j]``. With that mapping
the probability of basis index ``i`` is the same number on both sides:

    Statevector(qiskit.qasm2.loads(ansatz_to_qasm(a))).probabilities()[i]
        == a()[0, i]

and a measured bitstring ``c[n-1] … c[0]`` (``measure=True`` writes
``measure q -> c``), read as a binary number, *is* the index ``i`` of the
generated weight that basis state feeds. No reversal is needed anywhere.

Angles are written with Python's ``repr`` of the float, which round-trips
exactly, so a loaded circuit reproduces the angles bit for bit.
"""

from __future__ import annotations

from .ansatz import Ansatz

__all__ = ["QASM_GATES", "ansatz_to_qasm"]

# Our Gate.name -> (OpenQASM 2.0 name in qelib1.inc, number of wires, number of angles).
# Each has the same matrix on both sides (first wire = control for two-qubit gates).
QASM_GATES: dict[str, tuple[str, int, int]] = {
    "u3": ("u3", 1, 3),
    "rx": ("rx", 1, 1),
    "ry": ("ry", 1, 1),
    "rz": ("rz", 1, 1),
    "h": ("h", 1, 0),
    "x": ("x", 1, 0),
    "cu3": ("cu3", 2, 3),
    "cx": ("cx", 2, 0),
    "cnot": ("cx", 2, 0),
    "cz": ("cz", 2, 0),
    "crz": ("crz", 2, 1),
}


def ansatz_to_qasm(ansatz: Ansatz, circuit: int = 0, measure: bool = False) -> str:
    """The ``circuit``-th circuit of ``ansatz`` as an OpenQASM 2.0 program.

    Args:
        ansatz: any :class:`~qtrl.quantum.ansatz.Ansatz`; its gates come from
            :meth:`~qtrl.quantum.ansatz.Ansatz.gates` with their current angles.
        circuit: which of the ansatz's ``circuits`` batched circuits to write.
        measure: append ``creg c[n]; measure q -> c;`` (for sampling backends).
    Returns:
        The program text; our wire ``j`` is ``q[n-1-j]`` (see the module docstring).
    Raises:
        ValueError: ``circuit`` out of range, or a gate with no OpenQASM 2.0 name.
    """
    if not 0 <= circuit < ansatz.circuits:
        raise ValueError(f"circuit must be in 0..{ansatz.circuits - 1}, got {circuit}")
    n = ansatz.n_qubits
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{n}];"]
    for gate in ansatz.gates():
        if gate.name not in QASM_GATES:
            raise ValueError(f"gate {gate.name!r} has no OpenQASM 2.0 export; "
                             f"supported: {', '.join(sorted(QASM_GATES))}")
        name, n_wires, n_params = QASM_GATES[gate.name]
        if len(gate.wires) != n_wires or gate.params.shape[-1] != n_params:
            raise ValueError(f"gate {gate.name!r} on wires {gate.wires} with "
                             f"{gate.params.shape[-1]} angle(s); expected {n_wires} wire(s) "
                             f"and {n_params} angle(s)")
        qubits = ", ".join(f"q[{n - 1 - w}]" for w in gate.wires)
        if n_params:
            angles = ", ".join(repr(float(a)) for a in gate.params[circuit].tolist())
            lines.append(f"{name}({angles}) {qubits};")
        else:
            lines.append(f"{name} {qubits};")
    if measure:
        lines += [f"creg c[{n}];", "measure q -> c;"]
    return "\n".join(lines) + "\n"

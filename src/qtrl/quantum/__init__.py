"""Quantum layer: statevector kernels, gates, ansätze, fusion and QASM export."""

from .ansatz import ANSATZE, Ansatz, Gate, RingU3Ansatz, RYCNOTAnsatz
from .simulate import SimPath, choose_path
from .statevector import Operation, apply_matrix, probabilities, run_circuit, zero_state

__all__ = [
           "ANSATZE",
           "Ansatz",
           "Gate",
           "Operation",
           "RYCNOTAnsatz",
           "RingU3Ansatz",
           "SimPath",
           "apply_matrix",
           "choose_path",
           "probabilities",
           "run_circuit",
           "zero_state",
]

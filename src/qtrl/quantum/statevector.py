"""Exact statevector simulation: states, gates, and adjoint-differentiated circuits.

Layout. A state of ``n`` qubits is a complex tensor of shape ``(batch, 2, ..., 2)``
(``n`` axes of size 2). Axis ``1 + w`` is wire ``w``, so flattening row-major
makes wire 0 the *most significant* bit of the basis index — the same order as
PennyLane. (Qiskit numbers qubits the other way round; see :mod:`qtrl.quantum.qasm`.)

Gates are applied by the pure kernels of :mod:`qtrl.quantum.kernels`: the target
axes are contracted with a ``(d, d)`` matrix (``d = 2**len(wires)``); no
``2**n x 2**n`` matrix is ever formed.

Differentiation. :func:`run_layers`, :func:`run_circuit` and :func:`run_sweep`
are custom autograd functions using the adjoint method
(:mod:`qtrl.quantum.adjoint`): peak memory is a few states, independent of
circuit depth. Large states on the CPU whose gates act on wires consecutive
around the ring run in rotating frames instead (:mod:`qtrl.quantum.frames`);
:func:`qtrl.quantum.simulate.choose_path` decides which.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from . import frames
from .adjoint import STORE_STATES_BYTES, AdjointCircuit, Sweep
from .kernels import apply_flat, check_wires
from .simulate import SimPath, choose_path

__all__ = [
    "STORE_STATES_BYTES",  # re-exported to be read; qtrl.quantum.adjoint owns it
    "Operation",
    "apply_matrix",
    "num_qubits",
    "probabilities",
    "run_circuit",
    "run_layers",
    "run_sweep",
    "zero_state",
]


class Operation(NamedTuple):
    """One gate: ``matrix`` of shape ``(d, d)`` (shared by the batch) or
    ``(batch, d, d)`` (one per circuit), acting on ``wires`` (``d = 2**len(wires)``).
    The first wire is the most significant bit of the matrix's row index."""

    matrix: Tensor
    wires: tuple[int, ...]


def zero_state(n_qubits: int, batch: int = 1, dtype: torch.dtype = torch.complex64,
               device: torch.device | str | None = None) -> Tensor:
    """|0…0> for ``batch`` circuits, shape ``(batch, 2, …, 2)``."""
    state = torch.zeros(batch, 2**n_qubits, dtype=dtype, device=device)
    state[:, 0] = 1
    return state.reshape(batch, *([2] * n_qubits))


def num_qubits(state: Tensor) -> int:
    """Number of qubits of a ``(batch, 2, …, 2)`` state."""
    return state.dim() - 1


def apply_matrix(state: Tensor, matrix: Tensor, wires: Sequence[int]) -> Tensor:
    """Apply a gate to a state (pure function, differentiable by plain autograd).

    Args:
        state: ``(batch, 2, …, 2)`` complex.
        matrix: ``(d, d)`` or ``(batch, d, d)``, ``d = 2**len(wires)``.
        wires: distinct wire indices; the first is the matrix's most significant bit.
    Returns:
        The new state, ``(batch, 2, …, 2)``.
    """
    n = num_qubits(state)
    check_wires(wires, n, matrix)
    flat = apply_flat(state.reshape(state.shape[0], 2**n), matrix, tuple(wires), n)
    return flat.reshape(state.shape)


def probabilities(state: Tensor) -> Tensor:
    """Basis-state probabilities ``|ψ_i|²``, shape ``(batch, 2**n)``; wire 0 is the MSB of ``i``."""
    flat = state.reshape(state.shape[0], -1)
    return flat.real.square() + flat.imag.square()


def run_layers(template: Sequence[Operation], n_qubits: int, layers: int, batch: int = 1,
               dtype: torch.dtype = torch.complex64, initial: Tensor | None = None) -> Tensor:
    """Run ``layers`` repetitions of a layer template from |0…0> (or ``initial``).

    Layer ``l`` applies, in order, ``op.matrix[l]`` on ``op.wires`` for every
    template operation. Differentiable in every matrix by the adjoint method
    (:mod:`qtrl.quantum.adjoint`): memory of forward + backward stays a few states,
    whatever the depth. The matrices must be unitary (the backward pass inverts them
    by conjugate transpose). Large states on the CPU run in rotating frames
    (:mod:`qtrl.quantum.frames`) where :func:`~qtrl.quantum.simulate.choose_path` says so.

    Args:
        template: operations with matrices ``(layers, d, d)`` (shared by the batch)
            or ``(layers, batch, d, d)`` (one per circuit).
        n_qubits: number of qubits ``n``.
        layers: number of layers ``L``.
        batch: number of circuits run side by side.
        dtype: complex64 (default) or complex128.
        initial: optional start state ``(batch, 2, …, 2)``.
    Returns:
        Final state, ``(batch, 2, …, 2)``.
    """
    for op in template:
        check_wires(op.wires, n_qubits, op.matrix)
        if op.matrix.shape[0] != layers or op.matrix.dim() not in (3, 4):
            raise ValueError(f"template matrix of shape {tuple(op.matrix.shape)} must be "
                             f"({layers}, d, d) or ({layers}, {batch}, d, d)")
    if initial is None:
        device = template[0].matrix.device if template else None
        initial = zero_state(n_qubits, batch, dtype, device)
    flat = initial.reshape(initial.shape[0], 2**n_qubits)
    wires = tuple(tuple(op.wires) for op in template)
    stacks = [op.matrix.to(flat.dtype) for op in template]
    if choose_path(n_qubits, flat.dtype, flat.device, windows=wires) is SimPath.FRAMES:
        plan = frames.frame_plan(wires, n_qubits, layers, frames.MIN_BELOW_BITS)
        out = frames.FramedCircuit.apply(flat.contiguous(), n_qubits, wires, layers, plan,
                                         *stacks)
    else:
        out = AdjointCircuit.apply(flat, n_qubits, wires, layers, *stacks)
    return out.reshape(out.shape[0], *([2] * n_qubits))


def run_sweep(matrices: Tensor, n_qubits: int, batch: int = 1,
              dtype: torch.dtype = torch.complex64, initial: Tensor | None = None) -> Tensor:
    """Run windows that sweep around a ring of wires, from |0…0> (or ``initial``).

    Window ``k`` is a ``(d, d)`` matrix, ``d = 2**g``, on the ``g`` consecutive
    wires ``(k (g-1) + i) mod n``, ``i = 0 … g-1`` (first wire most significant):
    each window starts on the last wire of the one before, so a chain of
    two-qubit gates running round and round the ring fits in them in order.
    Differentiable in every matrix by the adjoint method, as :func:`run_layers`;
    the matrices must be unitary.

    Args:
        matrices: ``(K, d, d)`` (shared by the batch) or ``(K, batch, d, d)``,
            ``2 <= g <= n``.
        n_qubits: number of qubits ``n``.
        batch: number of circuits run side by side.
        dtype: complex64 (default) or complex128.
        initial: optional start state ``(batch, 2, …, 2)``.
    Returns:
        Final state, ``(batch, 2, …, 2)``.
    """
    d = matrices.shape[-1]
    g = d.bit_length() - 1
    if (matrices.dim() not in (3, 4) or matrices.shape[-2] != d or d != 2**g
            or not 2 <= g <= n_qubits or (matrices.dim() == 4 and matrices.shape[1] != batch)):
        raise ValueError(f"sweep matrices of shape {tuple(matrices.shape)} must be (K, d, d) or "
                         f"(K, {batch}, d, d) with d = 2**g, 2 <= g <= {n_qubits}")
    if initial is None:
        initial = zero_state(n_qubits, batch, dtype, matrices.device)
    flat = initial.reshape(initial.shape[0], 2**n_qubits)
    out = Sweep.apply(flat, n_qubits, matrices.to(flat.dtype))
    return out.reshape(out.shape[0], *([2] * n_qubits))


def run_circuit(operations: Sequence[Operation], n_qubits: int, batch: int = 1,
                dtype: torch.dtype = torch.complex64, initial: Tensor | None = None) -> Tensor:
    """Run a circuit of (unitary) operations, adjoint-differentiated (see :func:`run_layers`).

    Args:
        operations: gates in application order, matrices ``(d, d)`` or ``(batch, d, d)``.
    Returns:
        Final state, ``(batch, 2, …, 2)``.
    """
    template = [Operation(op.matrix.unsqueeze(0), op.wires) for op in operations]
    return run_layers(template, n_qubits, 1, batch, dtype, initial)

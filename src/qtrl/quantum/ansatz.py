"""Parameterised circuits (ansätze) as modules that own their angles.

An ansatz describes one *layer template* — gates whose matrices carry the
leading axes ``(circuits, layers)`` — and repeats it ``layers`` times. That
shape lets every gate matrix of every layer be built in one vectorised call and
fused once (see :mod:`qtrl.quantum.fusion`). ``forward()`` returns the
basis-state probabilities of each circuit, ``(circuits, 2**n)``, and never
mutates the module.

``circuits`` independent copies (each with its own angles) run side by side as
one batched simulation; the chunked generator uses that to give every chunk of
the weights its own circuit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from . import compiled, gates, wide
from .fusion import fuse
from .ring import SweepWindows, ring_windows, sweep_rows
from .simulate import (
    COMPILED_MAX_QUBITS,
    RING_KERNELS,
    SWEEP_MAX_QUBITS,
    SimPath,
    choose_path,
    default_fuse_qubits,
)
from .statevector import Operation, probabilities, run_layers, run_sweep, zero_state

__all__ = ["ANSATZE", "COMPILED_MAX_QUBITS", "SWEEP_MAX_QUBITS", "Ansatz", "Gate",
           "RYCNOTAnsatz", "RingU3Ansatz", "compiled_ring", "default_fuse_qubits",
           "ring_probabilities"]


class Gate(NamedTuple):
    """A named gate of the unrolled circuit, for export (QASM) and other backends.

    ``params``: ``(circuits, n_params)`` angles (empty for fixed gates).
    """

    name: str
    wires: tuple[int, ...]
    params: Tensor


ALL = slice(None)  # every circuit


class Ansatz(nn.Module):
    """Base class: subclasses define the angles and :meth:`layer_template`."""

    def __init__(self, n_qubits: int, layers: int, circuits: int = 1,
                 dtype: torch.dtype = torch.float32, fuse_qubits: int | None = None) -> None:
        super().__init__()
        if n_qubits < 1 or layers < 1 or circuits < 1:
            raise ValueError(f"n_qubits, layers and circuits must be >= 1, got "
                             f"{n_qubits}, {layers}, {circuits}")
        if fuse_qubits is not None and fuse_qubits < 1:
            raise ValueError(f"fuse_qubits must be >= 1 (or None for the default), "
                             f"got {fuse_qubits}")
        self.n_qubits = n_qubits
        self.layers = layers
        self.circuits = circuits
        # Fixed at construction: the fused layout (windows, gather indices) depends on it.
        self._fuse_qubits = fuse_qubits or default_fuse_qubits(n_qubits)

    @property
    def fuse_qubits(self) -> int:
        """Width of the fusion windows (set at construction)."""
        return self._fuse_qubits

    @property
    def real_dtype(self) -> torch.dtype:
        """Dtype of the angles; follows ``.double()`` / ``.float()``."""
        return next(self.parameters()).dtype

    @property
    def complex_dtype(self) -> torch.dtype:
        return gates.complex_dtype_for(self.real_dtype)

    def layer_template(self) -> list[Operation]:
        """Gates of one layer, matrices ``(circuits, layers, d, d)``."""
        raise NotImplementedError

    def simulator_path(self) -> SimPath:
        """The path :meth:`forward` runs by (:func:`~qtrl.quantum.simulate.choose_path`):
        the fused layer template (which :func:`run_layers` may run in frames)."""
        p = next(self.parameters())
        return choose_path(self.n_qubits, p.dtype, p.device)

    def stage(self) -> RingStage | None:
        """The compiled kernels :meth:`forward` runs, as NumPy stages; None where
        it runs torch ops."""
        return None

    def gates(self) -> list[Gate]:
        """The unrolled circuit as named gates, for QASM export and other backends."""
        raise NotImplementedError

    def layered_operations(self, circuits: slice = ALL) -> list[Operation]:
        """The fused layer template of the ``circuits`` selected (all by default),
        matrices ``(layers, d, d)`` for one circuit else ``(layers, circuits, d, d)``:
        the input of :func:`run_layers`."""
        ell = self.layers
        count = len(range(self.circuits)[circuits])
        return [Operation(self._layer_major(
                    op.matrix.expand(self.circuits, ell, *op.matrix.shape[-2:])[circuits]),
                    op.wires)
                for op in fuse(self.layer_template(), self.fuse_qubits)] if count else []

    def _layer_major(self, m: Tensor) -> Tensor:
        """``(C, L, d, d)`` -> ``(L, d, d)`` for one circuit else ``(L, C, d, d)``."""
        return m[0] if m.shape[0] == 1 else m.transpose(0, 1)

    def state(self, circuits: slice = ALL) -> Tensor:
        """Final state of the ``circuits`` selected (all by default), ``(c, 2, …, 2)``.

        A slice runs only those circuits: an agent simulating its share of the chunks.
        """
        count = len(range(self.circuits)[circuits])
        ops = self.layered_operations(circuits)
        if not ops:  # no circuit selected, or no gate: nothing to simulate
            return zero_state(self.n_qubits, count, self.complex_dtype,
                              next(self.parameters()).device)
        return run_layers(ops, self.n_qubits, self.layers, count, self.complex_dtype)

    def forward(self, circuits: slice = ALL) -> Tensor:
        """Basis-state probabilities of the ``circuits`` selected (all by default),
        ``(c, 2**n)``; wire 0 is the MSB of the index."""
        state = self.state(circuits)
        if not state.shape[0]:
            return state.real.reshape(0, 2**self.n_qubits)
        return probabilities(state)


class RingU3Ansatz(Ansatz):
    """The Quantum-Train reference block: U3 on every qubit, then a controlled-U3
    on each neighbour pair of a ring (q0→q1, …, q(n-1)→q0); ``layers`` blocks.

    Parameters: ``6 · n · layers`` angles per circuit (3 per U3, 3 per CU3).
    The gates are applied in an interleaved order (U3 on q_{j+1} just before
    CU3 q_j→q_{j+1}), which is the same circuit since a U3 commutes with every
    gate on other wires; it lets neighbouring gates fuse.

    On the CPU the probabilities and their gradients come from compiled
    kernels (:func:`ring_probabilities`; ``compiled=False`` uses the torch paths
    below, as other devices do). Up to
    :data:`SWEEP_MAX_QUBITS` qubits the torch simulation ignores layer
    boundaries: the CU3s of all layers form one chain round and round the ring,
    cut into windows of ``fuse_qubits - 1`` pairs each (:func:`run_sweep`), built
    by :class:`~qtrl.quantum.ring.SweepWindows`. Larger circuits run the fused layer template
    (:meth:`layered_operations`), which is also what other backends and export use.
    """

    def __init__(self, n_qubits: int, layers: int, circuits: int = 1,
                 dtype: torch.dtype = torch.float32, fuse_qubits: int | None = None,
                 compiled: bool = True) -> None:
        if n_qubits < 2:
            raise ValueError(f"the ring ansatz needs at least 2 qubits, got {n_qubits}")
        super().__init__(n_qubits, layers, circuits, dtype, fuse_qubits)
        shape = (circuits, layers, n_qubits, 3)
        self.u3_angles = nn.Parameter(torch.empty(shape, dtype=dtype))
        self.cu3_angles = nn.Parameter(torch.empty(shape, dtype=dtype))
        self.reset_parameters()
        # Whether the compiled kernels may run (torch sweep / fused layers otherwise).
        self.compiled = compiled and compiled_ring(n_qubits)
        g = self.fuse_qubits
        # The torch path of this size: the sweep, or the fused layers.
        self._sweep = choose_path(n_qubits, dtype, ring=True, compiled=False,
                                  fuse_qubits=g) is SimPath.SWEEP
        self.register_buffer("_sweep_rows", torch.tensor(
            sweep_rows(n_qubits, layers, g) if self._sweep else [], dtype=torch.long),
            persistent=False)
        self._windows = ring_windows(n_qubits, g) if 2 <= g < n_qubits else []
        # Gather indices into the table [U3 of each wire, CU3 of each pair, identity].
        n = n_qubits
        self.register_buffer("_u_index", torch.tensor(
            [[q if q < n else 2 * n for q in w[1]] for w in self._windows], dtype=torch.long),
            persistent=False)
        self.register_buffer("_cu_index", torch.tensor(
            [[n + q if q < n else 2 * n for q in w[2]] for w in self._windows], dtype=torch.long),
            persistent=False)

    @property
    def state_passes(self) -> int:
        """Matrix applications to the state in one forward pass (all layers): the
        sweep's windows up to :data:`SWEEP_MAX_QUBITS` qubits, else the fused layer
        template's operations times the layers."""
        if self._sweep:
            return -(-self.n_qubits * self.layers // (self.fuse_qubits - 1))
        with torch.no_grad():
            return len(self.layered_operations()) * self.layers

    def reset_parameters(self) -> None:
        """Uniform angles in [0, 2π), as the reference's TorchQuantum gates."""
        with torch.no_grad():
            self.u3_angles.uniform_(0, 2 * math.pi)
            self.cu3_angles.uniform_(0, 2 * math.pi)

    def _pairs(self) -> list[tuple[int, int]]:
        n = self.n_qubits
        return [(j, (j + 1) % n) for j in range(n)]

    def layer_template(self) -> list[Operation]:
        u = gates.u3_from_angles(self.u3_angles)                      # (C, L, n, 2, 2)
        cu = gates.controlled(gates.u3_from_angles(self.cu3_angles))  # (C, L, n, 4, 4)
        n = self.n_qubits
        ops = [Operation(u[:, :, 0], (0,))]
        for j in range(n - 1):
            ops.append(Operation(u[:, :, j + 1], (j + 1,)))
            ops.append(Operation(cu[:, :, j], (j, j + 1)))
        ops.append(Operation(cu[:, :, n - 1], (n - 1, 0)))
        return ops

    def simulator_path(self) -> SimPath:
        """The path :meth:`forward` runs by (:func:`~qtrl.quantum.simulate.choose_path`):
        the compiled kernels, the sweep, or the fused layers."""
        return choose_path(self.n_qubits, self.u3_angles.dtype, self.u3_angles.device,
                           ring=True, compiled=self.compiled, fuse_qubits=self.fuse_qubits)

    def forward(self, circuits: slice = ALL) -> Tensor:
        path = self.simulator_path()
        if path in RING_KERNELS:
            if circuits.indices(self.circuits) == (0, self.circuits, 1):  # no slice nodes
                return ring_probabilities(self.u3_angles, self.cu3_angles, path)
            return ring_probabilities(self.u3_angles[circuits], self.cu3_angles[circuits], path)
        return super().forward(circuits)  # the sweep or the fused layers (state)

    def stage(self) -> RingStage | None:
        """The kernels :meth:`forward` runs over all circuits as NumPy stages, or
        None where it runs torch ops (no Numba, not on the CPU, ``compiled=False``)."""
        path = self.simulator_path()
        return ring_stage(path) if path in RING_KERNELS else None

    def state(self, circuits: slice = ALL) -> Tensor:
        if not self._sweep:
            return super().state(circuits)
        return self.sweep_state(self.u3_angles[circuits], self.cu3_angles[circuits])

    @property
    def sweeps(self) -> bool:
        """Whether this size runs by :func:`run_sweep` (and :meth:`sweep_state` works)."""
        return self._sweep

    def sweep_state(self, u3: Tensor, cu3: Tensor) -> Tensor:
        """Final states of circuits with this layout and the angles given, not the
        module's own: ``u3``, ``cu3`` ``(c, L, n, 3)`` -> ``(c, 2, …, 2)``.

        Differentiable in both. Any number of circuits; only for sizes that
        :attr:`sweeps` (a backend running many shifted copies of one circuit uses it).
        """
        if not self._sweep:
            raise ValueError(f"{self.n_qubits} qubits do not run by the sweep")
        count = u3.shape[0]
        cdt = gates.complex_dtype_for(u3.dtype)
        if not count:
            return zero_state(self.n_qubits, 0, cdt, u3.device)
        mats = SweepWindows.apply(u3, cu3, self._sweep_rows, self.fuse_qubits)  # (c, K, d, d)
        return run_sweep(mats[0] if count == 1 else mats.transpose(0, 1), self.n_qubits,
                         count, cdt)

    def layered_operations(self, circuits: slice = ALL) -> list[Operation]:
        if not self._windows:  # one window holds the ring, or no fusion
            return super().layered_operations(circuits)
        if not len(range(self.circuits)[circuits]):
            return []
        mats = self._window_matrices(circuits)                    # (c, L, W, 2^g, 2^g)
        return [Operation(self._layer_major(mats[:, :, w]), wires)
                for w, (wires, _, _) in enumerate(self._windows)]

    def _window_matrices(self, circuits: slice = ALL) -> Tensor:
        """Every window of every layer and circuit, in one vectorised build.

        A window over g wires is (CU chain) · (⊗ U3): a U3 commutes with all
        earlier gates on other wires, so within a window all its U3s can go
        first. Slots of gates that belong to another window hold the identity.
        Plain autograd differentiates the build: its matrices are small.
        Only the ``circuits`` selected: returns ``(c, L, W, 2^g, 2^g)``.
        """
        g = self.fuse_qubits
        u3, cu3 = self.u3_angles[circuits], self.cu3_angles[circuits]
        table = gates.u3_from_angles(torch.cat((u3, cu3), 2))   # U3 of wires, CU3 targets
        # Then the identity, exact: U3(0) has cos(π/2) ~ 4e-8 off the diagonal in float32,
        # and exact zeros let the simulator see a window whose first wire is only a
        # control (block-diagonal) and apply it as two half-size blocks.
        eye = torch.eye(2, dtype=table.dtype, device=table.device)
        table = torch.cat((table, eye.expand(*table.shape[:2], 1, 2, 2)), 2)  # (c, L, 2n+1, 2, 2)
        u_slots = table[:, :, self._u_index].unbind(-3)                  # g × (C, L, W, 2, 2)
        cu_slots = gates.controlled(table[:, :, self._cu_index]).unbind(-3)  # g-1 × (..., 4, 4)
        mat = u_slots[0]
        for b in u_slots[1:]:  # Kronecker product, first wire most significant
            d = mat.shape[-1]
            mat = (mat[..., :, None, :, None] * b[..., None, :, None, :]).reshape(
                *mat.shape[:-2], 2 * d, 2 * d)
        dim = 2**g
        for s, cu in enumerate(cu_slots):  # CU on rows (s, s+1): one batched matmul
            rows = mat.reshape(*mat.shape[:-2], 2**s, 4, -1)
            mat = (cu.unsqueeze(-3) @ rows).reshape(*mat.shape[:-2], dim, dim)
        return mat

    def gates(self) -> list[Gate]:
        out: list[Gate] = []
        for layer in range(self.layers):
            for q in range(self.n_qubits):
                out.append(Gate("u3", (q,), self.u3_angles[:, layer, q]))
            for j, (c, t) in enumerate(self._pairs()):
                out.append(Gate("cu3", (c, t), self.cu3_angles[:, layer, j]))
        return out


class RYCNOTAnsatz(Ansatz):
    """A hardware-efficient alternative: RY on every qubit, then a CNOT chain
    q0→q1→…→q(n-1). ``n · layers`` angles per circuit; real amplitudes only."""

    def __init__(self, n_qubits: int, layers: int, circuits: int = 1,
                 dtype: torch.dtype = torch.float32, fuse_qubits: int | None = None) -> None:
        super().__init__(n_qubits, layers, circuits, dtype, fuse_qubits)
        self.ry_angles = nn.Parameter(torch.empty(circuits, layers, n_qubits, dtype=dtype))
        with torch.no_grad():
            self.ry_angles.uniform_(0, 2 * math.pi)

    def layer_template(self) -> list[Operation]:
        r = gates.ry(self.ry_angles)                          # (C, L, n, 2, 2)
        cx = gates.cnot(self.complex_dtype).to(r.device)
        ops = [Operation(r[:, :, 0], (0,))]
        for j in range(self.n_qubits - 1):
            ops.append(Operation(r[:, :, j + 1], (j + 1,)))
            ops.append(Operation(cx, (j, j + 1)))
        return ops

    def gates(self) -> list[Gate]:
        out: list[Gate] = []
        empty = self.ry_angles.new_zeros(self.circuits, 0)
        for layer in range(self.layers):
            for q in range(self.n_qubits):
                out.append(Gate("ry", (q,), self.ry_angles[:, layer, q, None]))
            for j in range(self.n_qubits - 1):
                out.append(Gate("cx", (j, j + 1), empty))
        return out


def compiled_ring(n_qubits: int) -> bool:
    """Whether a ring-U3 circuit of ``n_qubits`` runs by the compiled kernels on
    the CPU (Numba present), as :func:`~qtrl.quantum.simulate.choose_path` decides."""
    return choose_path(n_qubits, torch.float64, ring=True) in RING_KERNELS


def ring_kernel(n_qubits: int, dtype: torch.dtype) -> str:
    """Which compiled kernels :func:`ring_probabilities` runs on the CPU:
    ``"compiled"`` (complex128 whole-circuit loops) or ``"wide"`` (split complex)."""
    return "compiled" if choose_path(n_qubits, dtype, ring=True) is SimPath.COMPILED else "wide"


class RingStage(NamedTuple):
    """The compiled ring-U3 kernels of :func:`ring_probabilities` as NumPy
    stages, for a caller that runs them inside its own autograd Function
    (:func:`qtrl.mapping.generate_from_ring`): the same arrays, the same calls."""

    arrays: Callable[[Tensor], np.ndarray]
    """angles ``(C, L, n, 3)`` -> the kernels' input array (a copy, or float64)."""
    forward: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, tuple]]
    """``(u3, cu3)`` arrays -> probabilities ``(C, 2^n)`` in the angles' dtype, saved state."""
    vjp: Callable[[tuple, np.ndarray], tuple[np.ndarray, np.ndarray]]
    """``(saved, grad (C, 2^n) in the angles' dtype)`` -> float64 ``(g_u3, g_cu3)``."""


def ring_stage(path: SimPath) -> RingStage:
    """The kernels of ``path`` (``SimPath.COMPILED`` or ``SimPath.WIDE``) as stages."""
    if path is SimPath.COMPILED:
        return RingStage(compiled.numpy_angles, compiled.probabilities_forward,
                         compiled.probabilities_vjp)
    return RingStage(wide.angle_arrays, wide.probabilities_forward, wide.probabilities_vjp)


def ring_probabilities(u3: Tensor, cu3: Tensor, path: SimPath | None = None) -> Tensor:
    """Probabilities of ring-U3 circuits by the compiled kernels, differentiable.

    Args:
        u3, cu3: angles ``(C, L, n, 3)`` on the CPU.
        path: ``SimPath.COMPILED`` or ``SimPath.WIDE``; default
            :func:`~qtrl.quantum.simulate.choose_path`'s choice for these angles.
    Returns:
        ``(C, 2^n)`` in the angles' dtype.
    """
    if path is None:
        path = choose_path(u3.shape[2], u3.dtype, u3.device, ring=True)
    if path is SimPath.COMPILED:
        return compiled.ring_u3_probabilities(u3, cu3)
    if path is SimPath.WIDE:
        return wide.ring_u3_probabilities(u3, cu3)
    raise ValueError(f"the compiled ring-U3 kernels cannot run these angles ({u3.dtype} on "
                     f"{u3.device}; Numba needed): {path.value!r} was chosen; run the ansatz "
                     f"module instead")


ANSATZE: dict[str, type[Ansatz]] = {"ring-u3": RingU3Ansatz, "ry-cnot": RYCNOTAnsatz}

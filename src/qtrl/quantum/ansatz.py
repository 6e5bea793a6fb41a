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
from typing import NamedTuple

import torch
from torch import Tensor, nn

from . import gates
from .fusion import fuse
from .statevector import Operation, probabilities, run_layers

__all__ = ["Gate", "Ansatz", "RingU3Ansatz", "RYCNOTAnsatz", "ANSATZE", "default_fuse_qubits"]


class Gate(NamedTuple):
    """A named gate of the unrolled circuit, for export (QASM) and other backends.

    ``params``: ``(circuits, n_params)`` angles (empty for fixed gates).
    """

    name: str
    wires: tuple[int, ...]
    params: Tensor


def default_fuse_qubits(n_qubits: int) -> int:
    """Fusion window width that measured fastest on a CPU for ``n`` qubits.

    Small circuits are overhead-bound (wide windows: few ops); large ones are
    compute-bound in the window matmul (narrow windows).
    """
    return 5 if n_qubits <= 14 else 3


class Ansatz(nn.Module):
    """Base class: subclasses define the angles and :meth:`layer_template`."""

    def __init__(self, n_qubits: int, layers: int, circuits: int = 1,
                 dtype: torch.dtype = torch.float32, fuse_qubits: int | None = None) -> None:
        super().__init__()
        if n_qubits < 1 or layers < 1 or circuits < 1:
            raise ValueError(f"n_qubits, layers and circuits must be >= 1, got "
                             f"{n_qubits}, {layers}, {circuits}")
        self.n_qubits = n_qubits
        self.layers = layers
        self.circuits = circuits
        self.real_dtype = dtype
        self.fuse_qubits = fuse_qubits or default_fuse_qubits(n_qubits)

    @property
    def complex_dtype(self) -> torch.dtype:
        return gates.complex_dtype_for(self.real_dtype)

    def layer_template(self) -> list[Operation]:
        """Gates of one layer, matrices ``(circuits, layers, d, d)``."""
        raise NotImplementedError

    def gates(self) -> list[Gate]:
        """The unrolled circuit as named gates, for QASM export and other backends."""
        raise NotImplementedError

    def layered_operations(self) -> list[Operation]:
        """The fused layer template, matrices ``(layers, d, d)`` for one circuit else
        ``(layers, circuits, d, d)``: the input of :func:`run_layers`."""
        c, ell = self.circuits, self.layers
        return [Operation(self._layer_major(op.matrix.expand(c, ell, *op.matrix.shape[-2:])),
                          op.wires)
                for op in fuse(self.layer_template(), self.fuse_qubits)]

    def _layer_major(self, m: Tensor) -> Tensor:
        """``(C, L, d, d)`` -> ``(L, d, d)`` for one circuit else ``(L, C, d, d)``."""
        return m[0] if self.circuits == 1 else m.transpose(0, 1)

    def state(self) -> Tensor:
        """Final state of every circuit, ``(circuits, 2, …, 2)``."""
        return run_layers(self.layered_operations(), self.n_qubits, self.layers,
                          self.circuits, self.complex_dtype)

    def forward(self) -> Tensor:
        """Basis-state probabilities, ``(circuits, 2**n)``; wire 0 is the MSB of the index."""
        return probabilities(self.state())


class RingU3Ansatz(Ansatz):
    """The Quantum-Train reference block: U3 on every qubit, then a controlled-U3
    on each neighbour pair of a ring (q0→q1, …, q(n-1)→q0); ``layers`` blocks.

    Parameters: ``6 · n · layers`` angles per circuit (3 per U3, 3 per CU3).
    The gates are applied in an interleaved order (U3 on q_{j+1} just before
    CU3 q_j→q_{j+1}), which is the same circuit since a U3 commutes with every
    gate on other wires; it lets neighbouring gates fuse.
    """

    def __init__(self, n_qubits: int, layers: int, circuits: int = 1,
                 dtype: torch.dtype = torch.float32, fuse_qubits: int | None = None) -> None:
        if n_qubits < 2:
            raise ValueError(f"the ring ansatz needs at least 2 qubits, got {n_qubits}")
        super().__init__(n_qubits, layers, circuits, dtype, fuse_qubits)
        shape = (circuits, layers, n_qubits, 3)
        self.u3_angles = nn.Parameter(torch.empty(shape, dtype=dtype))
        self.cu3_angles = nn.Parameter(torch.empty(shape, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform angles in [0, 2π), as the reference's TorchQuantum gates."""
        with torch.no_grad():
            self.u3_angles.uniform_(0, 2 * math.pi)
            self.cu3_angles.uniform_(0, 2 * math.pi)

    def _pairs(self) -> list[tuple[int, int]]:
        n = self.n_qubits
        return [(j, (j + 1) % n) for j in range(n)]

    def layer_template(self) -> list[Operation]:
        u = gates.u3(*self.u3_angles.unbind(-1))                  # (C, L, n, 2, 2)
        cu = gates.controlled(gates.u3(*self.cu3_angles.unbind(-1)))  # (C, L, n, 4, 4)
        n = self.n_qubits
        ops = [Operation(u[:, :, 0], (0,))]
        for j in range(n - 1):
            ops.append(Operation(u[:, :, j + 1], (j + 1,)))
            ops.append(Operation(cu[:, :, j], (j, j + 1)))
        ops.append(Operation(cu[:, :, n - 1], (n - 1, 0)))
        return ops

    def layered_operations(self) -> list[Operation]:
        g = self.fuse_qubits
        if self.n_qubits <= g or g < 2:
            return super().layered_operations()  # one window holds the ring, or no fusion
        windows = _ring_windows(self.n_qubits, g)
        mats = self._window_matrices(windows)                     # (C, L, W, 2^g, 2^g)
        wrap = gates.controlled(gates.u3(*self.cu3_angles[:, :, -1].unbind(-1)))  # (C, L, 4, 4)
        ops = [Operation(self._layer_major(mats[:, :, w]), tuple(range(lo, lo + g)))
               for w, (lo, _, _) in enumerate(windows)]
        ops.append(Operation(self._layer_major(wrap), (self.n_qubits - 1, 0)))
        return ops

    def _window_matrices(self, windows: list[tuple[int, list[int], list[int]]]) -> Tensor:
        """Every window of every layer and circuit in one vectorised build.

        A window over wires lo..lo+g-1 is (CU chain) · (⊗ U3): a U3 commutes with
        all earlier gates on other wires, so within a window all its U3s can go
        first. Slots of gates that belong to another window hold the identity.
        Returns ``(C, L, W, 2^g, 2^g)``.
        """
        g = self.fuse_qubits
        u = gates.u3(*self.u3_angles.unbind(-1))                  # (C, L, n, 2, 2)
        cu = gates.u3(*self.cu3_angles.unbind(-1))                # (C, L, n, 2, 2)
        eye = torch.eye(2, dtype=u.dtype, device=u.device).expand(*u.shape[:2], 1, 2, 2)
        u_idx = torch.tensor([w[1] for w in windows], device=u.device)   # (W, g)
        cu_idx = torch.tensor([w[2] for w in windows], device=u.device)  # (W, g-1)
        u_slots = torch.cat((u, eye), 2)[:, :, u_idx]             # (C, L, W, g, 2, 2)
        cu_slots = torch.cat((cu, eye), 2)[:, :, cu_idx]          # (C, L, W, g-1, 2, 2)
        mat = u_slots[..., 0, :, :]
        for s in range(1, g):
            b = u_slots[..., s, :, :]
            d = mat.shape[-1]
            mat = (mat[..., :, None, :, None] * b[..., None, :, None, :]).reshape(
                *mat.shape[:-2], 2 * d, 2 * d)
        dim = 2**g
        for s in range(g - 1):
            # Controlled-U on rows (s, s+1): rows whose bit s is 1 get U on bit s+1.
            rows = mat.reshape(*mat.shape[:-2], 2**s, 2, 2, -1)
            flipped = cu_slots[..., s, None, :, :] @ rows[..., 1, :, :]
            mat = torch.stack((rows[..., 0, :, :], flipped), -3).reshape(*mat.shape[:-2], dim, dim)
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


def _ring_windows(n: int, g: int) -> list[tuple[int, list[int], list[int]]]:
    """Cover the ring's chain q0→q1→…→q(n-1) with windows of ``g`` wires.

    Windows are laid from the last wire backwards, ``g-1`` apart (neighbours
    share a wire), so every window but the last has at least ``2^(g-1)``
    amplitudes below it: the matmul kernel is slow on thin trailing axes.
    Returns per window ``(lo, u_slots, cu_slots)``: the first wire, the U3 index
    for each of its ``g`` wires and the CU3 index for each of its ``g-1`` pairs
    (``n`` means identity: that gate belongs to another window).
    """
    n_windows = -(-(n - 1) // (g - 1))
    los = [max(0, n - g - (n_windows - 1 - w) * (g - 1)) for w in range(n_windows)]
    out = []
    next_pair = 0  # pairs (j, j+1) below this are done, as are U3s on wires <= it
    for w, lo in enumerate(los):
        # The first window (clamped to wire 0) takes only the pairs left of the next one.
        last_pair = los[w + 1] - 1 if w + 1 < n_windows else n - 2
        cu_slots = [q if next_pair <= q <= last_pair else n for q in range(lo, lo + g - 1)]
        u_slots = [q if (q > next_pair or (next_pair == 0 and q == 0)) and q <= last_pair + 1
                   else n for q in range(lo, lo + g)]
        out.append((lo, u_slots, cu_slots))
        next_pair = last_pair + 1
    return out


ANSATZE: dict[str, type[Ansatz]] = {"ring-u3": RingU3Ansatz, "ry-cnot": RYCNOTAnsatz}

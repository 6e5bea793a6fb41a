"""Circuits as templates: a gate sequence whose angles are columns of one flat vector.

A backend sees a circuit as a :class:`CircuitTemplate` — the gates of
:meth:`Ansatz.gates() <qtrl.quantum.ansatz.Ansatz.gates>` with each gate's
angles given by columns of one flat angle vector — and runs a *batch* of such
circuits, one row of angles each (see :mod:`qtrl.quantum.backends`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .ansatz import Ansatz, Gate

__all__ = ["GATE_ARITY", "CircuitTemplate", "GateSlot", "circuit_of", "ring_u3_layout"]

# Gate name -> (wires, angles) this module can run on every backend.
GATE_ARITY: dict[str, tuple[int, int]] = {
    "u3": (1, 3), "rx": (1, 1), "ry": (1, 1), "rz": (1, 1), "h": (1, 0), "x": (1, 0),
    "cu3": (2, 3), "cx": (2, 0), "cnot": (2, 0),
}


class GateSlot(NamedTuple):
    """One gate of a template: its angles are columns ``offset .. offset+n_angles-1``."""

    name: str
    wires: tuple[int, ...]
    offset: int
    n_angles: int


@dataclass(frozen=True)
class CircuitTemplate:
    """The gate sequence of a circuit, without its angles (hashable: backends cache by it).

    ``gates`` in application order; angle column ``k`` of a row feeds exactly one
    gate (see :attr:`owner`).
    """

    n_qubits: int
    gates: tuple[GateSlot, ...]
    n_angles: int = field(init=False)

    def __post_init__(self) -> None:
        offset = 0
        for g in self.gates:
            if g.name not in GATE_ARITY:
                raise ValueError(f"gate {g.name!r} is not supported by the backends; "
                                 f"supported: {', '.join(sorted(GATE_ARITY))}")
            n_wires, n_angles = GATE_ARITY[g.name]
            if len(g.wires) != n_wires or g.n_angles != n_angles or g.offset != offset:
                raise ValueError(f"gate {g.name!r} on wires {g.wires} with angles "
                                 f"{g.offset}..{g.offset + g.n_angles - 1}: expected "
                                 f"{n_wires} wire(s), {n_angles} angle(s) from column {offset}")
            if any(not 0 <= w < self.n_qubits for w in g.wires) or len(set(g.wires)) != n_wires:
                raise ValueError(f"gate {g.name!r} wires {g.wires} must be distinct, "
                                 f"in 0..{self.n_qubits - 1}")
            offset += n_angles
        object.__setattr__(self, "n_angles", offset)

    @classmethod
    def from_gates(cls, gates: Sequence[Gate], n_qubits: int) -> CircuitTemplate:
        slots, offset = [], 0
        for g in gates:
            k = int(g.params.shape[-1])
            slots.append(GateSlot(g.name, tuple(g.wires), offset, k))
            offset += k
        return cls(n_qubits, tuple(slots))

    def owner(self) -> list[tuple[str, int]]:
        """For every angle column: ``(gate name, index of the angle within the gate)``."""
        return [(g.name, i) for g in self.gates for i in range(g.n_angles)]


def circuit_of(ansatz: Ansatz) -> tuple[CircuitTemplate, Tensor]:
    """The ansatz as a template plus its flat angles ``(circuits, P)``.

    The angles are a differentiable concatenation of the ansatz's parameters in
    gate order, so gradients with respect to them flow back into the ansatz.
    """
    gate_list = ansatz.gates()
    template = CircuitTemplate.from_gates(gate_list, ansatz.n_qubits)
    params = [g.params for g in gate_list if g.params.shape[-1]]
    if not params:
        return template, torch.zeros(ansatz.circuits, 0, dtype=ansatz.real_dtype)
    return template, torch.cat(params, dim=1)


@functools.lru_cache(maxsize=64)
def ring_u3_layout(template: CircuitTemplate) -> tuple[int, int] | None:
    """``(n, L)`` when ``template`` is exactly the gate sequence of
    :class:`~qtrl.quantum.ansatz.RingU3Ansatz` ``(n, L)`` (``L`` layers of U3 on
    every wire, then CU3 round the ring), else ``None``. Its angle columns are
    then ``(L, 2n, 3)``: U3s, then CU3s."""
    n = template.n_qubits
    if n < 2 or not template.gates or len(template.gates) % (2 * n):
        return None
    layer = [("u3", (q,)) for q in range(n)] + [("cu3", (j, (j + 1) % n)) for j in range(n)]
    for i, g in enumerate(template.gates):
        if (g.name, g.wires) != layer[i % (2 * n)]:
            return None
    return n, len(template.gates) // (2 * n)

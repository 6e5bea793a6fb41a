"""Backends: evaluate an ansatz's circuits at given angles and return probabilities.

A backend is the "QPU" of an agent. It sees a circuit as a
:class:`~qtrl.quantum.template.CircuitTemplate` — the gates of
:meth:`Ansatz.gates() <qtrl.quantum.ansatz.Ansatz.gates>` with each gate's
angles given by columns of one flat angle vector — and runs a *batch* of such
circuits, one row of angles each::

    template, angles = circuit_of(ansatz)          # angles: (circuits, P)
    probs = backend.probabilities(template, angles)  # (circuits, 2**n)

The rows need not be the ansatz's own circuits: the gradient estimators of
:mod:`qtrl.quantum.estimators` pass every shifted copy of the angles as extra
rows of one call. Probabilities always come back in *our* index order: wire 0
is the most significant bit of the basis index.

* :class:`TorchBackend` — our simulators; exact and differentiable without
  shots; with ``shots`` it samples the exact distribution with a seeded NumPy
  generator (no SDK needed). Optional noise, the same model as Qiskit's:
  depolarizing noise runs our exact, differentiable density-matrix simulator
  (:mod:`qtrl.quantum.density`). Which simulator runs is
  :func:`~qtrl.quantum.simulate.choose_path`'s choice.
* :class:`PennyLaneBackend` — a PennyLane device (``default.qubit``,
  ``lightning.qubit``), built gate by gate, parameters broadcast over the batch,
  numpy interface (no autograd). PennyLane's wire 0 is the MSB, as ours.
* :class:`~qtrl.quantum.aer.QiskitBackend` — Qiskit Aer, one parameterised
  circuit bound to all rows in one job. Optional noise: ``depolarizing:p``
  and/or ``readout:p`` (see :func:`~qtrl.quantum.noise.parse_noise`); torch and
  qiskit accept noise, PennyLane does not.

The SDKs are optional extras; a missing one raises :class:`MissingExtraError`
naming the ``pip install`` command. The protocol and shared checks live in
:mod:`qtrl.quantum.qpu`, templates in :mod:`qtrl.quantum.template`, noise specs
in :mod:`qtrl.quantum.noise`; they are re-exported here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError
from . import gates as G
from .aer import QiskitBackend
from .ansatz import RingU3Ansatz, ring_probabilities
from .density import noisy_probabilities
from .fusion import fuse
from .noise import NOISE_FORMS, NoiseSpec, apply_readout_torch, parse_noise
from .qpu import (
    Backend,
    MissingExtraError,
    check_angles,
    check_shots,
    require,
    sample_probabilities,
)
from .simulate import RING_KERNELS, SimPath, choose_path, window_qubits
from .statevector import Operation, zero_state
from .statevector import probabilities as state_probabilities
from .template import CircuitTemplate, GateSlot, circuit_of, ring_u3_layout

__all__ = [
    "BACKENDS",
    "NOISE_FORMS",
    "Backend",
    "CircuitTemplate",
    "GateSlot",
    "MissingExtraError",
    "NoiseSpec",
    "PennyLaneBackend",
    "QiskitBackend",
    "TorchBackend",
    "circuit_of",
    "make_backend",
    "parse_noise",
    "ring_u3_layout",
    "sample_probabilities",
]


# ---------------------------------------------------------------- torch


class TorchBackend:
    """Our simulators (exact; differentiable by autograd), optionally noisy and/or sampled.

    Each row is its own circuit. :func:`~qtrl.quantum.simulate.choose_path`
    picks the simulator: our ring-U3 ansatz (:func:`ring_u3_layout`) runs by the
    compiled kernels (:func:`~qtrl.quantum.ansatz.ring_probabilities`, row by
    row) or by the simulator's batched sweep
    (:meth:`~qtrl.quantum.ansatz.RingU3Ansatz.sweep_state`); any other template
    by its gates, consecutive ones fused into windows of at most
    :attr:`FUSE_QUBITS` wires, each window one batched matmul over the rows
    after moving its wires next to the batch axis.

    Noise is Qiskit Aer's model as :class:`~qtrl.quantum.aer.QiskitBackend`
    builds it: with depolarizing noise the rows run through the density-matrix
    simulator of :mod:`qtrl.quantum.density` (gates decomposed to u3/cx as
    Qiskit does, a depolarizing channel after each); readout error flips every
    measured bit with its probability, applied to the exact probabilities (as
    the Qiskit backend does), before any sampling. Exact noisy probabilities
    stay differentiable by autograd.

    Args:
        shots: ``None`` for exact probabilities, else samples per circuit, drawn
            from the exact distribution (:func:`sample_probabilities`).
        seed: seed of the sampling generator (the stream advances call by call).
        noise: a spec for :func:`parse_noise` or a :class:`NoiseSpec`.
        path: run every call by this path (``choose_path``'s ``force``: e.g.
            ``SimPath.DENSITY`` without noise, to compare simulators); ``None``
            lets :func:`~qtrl.quantum.simulate.choose_path` choose.
    """

    name = "torch"
    FUSE_QUBITS = 4

    def __init__(self, shots: int | None = None, seed: int = 0,
                 noise: str | NoiseSpec | None = None, path: SimPath | None = None) -> None:
        self.noise = noise if isinstance(noise, NoiseSpec) else parse_noise(noise)
        self.shots = check_shots(shots)
        self.seed = seed
        self.path = path
        self._rng = np.random.default_rng(seed)
        self._rings: dict[tuple[int, int, int], RingU3Ansatz] = {}  # (n, L, window width)

    def reseed(self, seed: int) -> None:
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    @property
    def differentiable(self) -> bool:
        return self.shots is None

    def probabilities(self, template: CircuitTemplate, angles: Tensor) -> Tensor:
        check_angles(template, angles)
        layout = ring_u3_layout(template)
        n, rows = template.n_qubits, angles.shape[0]
        path = choose_path(n, angles.dtype, angles.device, ring=layout is not None,
                           noise=self.noise, rows=rows, force=self.path)
        if path is SimPath.DENSITY:
            probs = noisy_probabilities(template, angles, self.noise.depolarizing)
        elif path in RING_KERNELS:  # our ansatz: the compiled kernels, row by row
            layers = layout[1]
            both = angles.reshape(rows, layers, 2 * n, 3)
            probs = ring_probabilities(both[:, :, :n], both[:, :, n:], path)
        elif path is SimPath.SWEEP:    # our ansatz: the simulator's own batched sweep
            probs = self._sweep(layout, angles, window_qubits(n, rows))
        else:
            probs = self._gates(template, angles)
        if self.noise.readout:
            probs = apply_readout_torch(probs, self.noise.readout, n)
        if self.shots is None:
            return probs
        return sample_probabilities(probs, self.shots, self._rng)

    def _sweep(self, layout: tuple[int, int], angles: Tensor, width: int) -> Tensor:
        """:attr:`SimPath.SWEEP`: rows of ring-U3 angles through a ring ansatz's sweep."""
        ring = self._rings.get((*layout, width))
        if ring is None:
            ring = self._rings[(*layout, width)] = RingU3Ansatz(*layout, fuse_qubits=width)
        n, layers = layout
        both = angles.reshape(angles.shape[0], layers, 2 * n, 3)
        state = ring.sweep_state(both[:, :, :n], both[:, :, n:])
        return state_probabilities(state).to(angles.dtype)

    def _gates(self, template: CircuitTemplate, angles: Tensor) -> Tensor:
        """:attr:`SimPath.GATES`: each row's gate matrices, fused into windows."""
        cdt = G.complex_dtype_for(angles.dtype)
        n, batch = template.n_qubits, angles.shape[0]
        ops = [Operation(_torch_matrix(g, angles, cdt), g.wires) for g in template.gates]
        state = zero_state(n, batch, cdt, angles.device)
        for op in fuse(ops, min(n, self.FUSE_QUBITS)):
            state = _apply_per_row(state, op.matrix, op.wires)
        return state_probabilities(state).to(angles.dtype)


def _apply_per_row(state: Tensor, matrix: Tensor, wires: tuple[int, ...]) -> Tensor:
    """Apply ``matrix`` ``(batch, d, d)`` (or ``(d, d)``) to ``wires`` of ``state``
    ``(batch, 2, …, 2)``: the wires move next to the batch axis, one ``bmm``, back."""
    batch, n = state.shape[0], state.dim() - 1
    d = 2 ** len(wires)
    perm = [0, *(1 + w for w in wires), *(1 + w for w in range(n) if w not in wires)]
    inverse = [0] * len(perm)
    for i, axis in enumerate(perm):
        inverse[axis] = i
    moved = state.permute(perm).reshape(batch, d, -1)
    out = torch.bmm(matrix.expand(batch, d, d), moved)
    return out.reshape([batch] + [2] * n).permute(inverse)


def _torch_matrix(g: GateSlot, angles: Tensor, cdt: torch.dtype) -> Tensor:
    """The gate's matrix for every row: ``(batch, d, d)`` (or ``(d, d)`` if fixed)."""
    a = angles[:, g.offset:g.offset + g.n_angles]
    if g.name == "u3":
        return G.u3_from_angles(a)
    if g.name == "cu3":
        return G.controlled(G.u3_from_angles(a))
    if g.name in ("rx", "ry", "rz"):
        return {"rx": G.rx, "ry": G.ry, "rz": G.rz}[g.name](a[:, 0]).to(cdt)
    if g.name in ("cx", "cnot"):
        return G.cnot(cdt).to(angles.device)
    if g.name == "h":
        return G.hadamard(cdt).to(angles.device)
    return G.pauli_x(cdt).to(angles.device)


# ---------------------------------------------------------------- PennyLane


class PennyLaneBackend:
    """A PennyLane device, circuits built gate by gate with broadcast parameters.

    Args:
        device: ``"default.qubit"`` or ``"lightning.qubit"`` (any PennyLane qubit device).
        shots: ``None`` for exact probabilities, else ``qml.probs`` from ``shots`` samples.
        seed: the device's seed (its sampling stream advances call by call).
    """

    name = "pennylane"

    def __init__(self, device: str = "default.qubit", shots: int | None = None,
                 seed: int = 0) -> None:
        self.qml = require("pennylane", "pennylane", "pennylane")
        self.device_name = device
        self.shots = check_shots(shots)
        self.seed = seed
        self._devices: dict[int, Any] = {}

    def reseed(self, seed: int) -> None:
        self.seed = seed
        self._devices.clear()  # a device's seed is fixed when it is opened

    @property
    def differentiable(self) -> bool:
        return False

    def _device(self, n: int) -> Any:
        if n not in self._devices:
            try:
                self._devices[n] = self.qml.device(self.device_name, wires=n, seed=self.seed)
            except Exception as err:  # PennyLane raises DeviceError for unknown names
                raise UserError(f"cannot open PennyLane device {self.device_name!r} ({err}); "
                                f"try 'default.qubit' or 'lightning.qubit'") from err
        return self._devices[n]

    def probabilities(self, template: CircuitTemplate, angles: Tensor) -> Tensor:
        check_angles(template, angles)
        qml = self.qml
        a = angles.detach().cpu().double().numpy()
        batch = a.shape[0]

        def col(k: int) -> Any:  # broadcast over the batch (a scalar for one row)
            return a[:, k] if batch > 1 else float(a[0, k])

        ops = []
        for g in template.gates:
            w, k = g.wires, g.offset
            if g.name == "u3":
                ops.append(qml.U3(col(k), col(k + 1), col(k + 2), wires=w[0]))
            elif g.name == "cu3":
                ops.append(qml.ctrl(qml.U3(col(k), col(k + 1), col(k + 2), wires=w[1]),
                                    control=w[0]))
            elif g.name in ("rx", "ry", "rz"):
                ops.append(getattr(qml, g.name.upper())(col(k), wires=w[0]))
            elif g.name in ("cx", "cnot"):
                ops.append(qml.CNOT(wires=list(w)))
            elif g.name == "h":
                ops.append(qml.Hadamard(wires=w[0]))
            else:
                ops.append(qml.PauliX(wires=w[0]))
        n = template.n_qubits
        tape = qml.tape.QuantumScript(ops, [qml.probs(wires=range(n))], shots=self.shots)
        (res,) = qml.execute([tape], self._device(n), diff_method=None)
        probs = np.asarray(res, dtype=np.float64).reshape(batch, 2**n)
        return torch.from_numpy(probs).to(angles.dtype)


# ---------------------------------------------------------------- factory


BACKENDS: dict[str, type] = {"torch": TorchBackend, "pennylane": PennyLaneBackend,
                             "qiskit": QiskitBackend}


def make_backend(name: str, shots: int | None = None, noise: str | None = None,
                 seed: int = 0) -> Backend:
    """Build a backend from its name (``torch``, ``pennylane[:device]``, ``qiskit``).

    ``pennylane:lightning.qubit`` picks a PennyLane device (default ``default.qubit``).

    Raises:
        UserError: unknown name, bad shots, bad noise spec, or noise for
            pennylane (torch and qiskit accept noise).
        MissingExtraError: the backend's SDK is not installed.
    """
    base, _, device = name.partition(":")
    if base not in BACKENDS or (device and base != "pennylane"):
        raise UserError(f"unknown backend {name!r}; choose from torch, pennylane, "
                        f"pennylane:lightning.qubit, qiskit")
    noise_spec = parse_noise(noise)
    if noise_spec and base == "pennylane":
        raise UserError(f"noise {noise!r} is not supported by the {name!r} backend; "
                        f"use backend 'torch' (exact density matrices) or 'qiskit' (Aer)")
    if base == "torch":
        return TorchBackend(shots, seed, noise_spec)
    if base == "pennylane":
        return PennyLaneBackend(device or "default.qubit", shots, seed)
    return QiskitBackend(shots, noise_spec, seed)

"""Backends: evaluate an ansatz's circuits at given angles and return probabilities.

A backend is the "QPU" of an agent. It sees a circuit as a
:class:`CircuitTemplate` — the gates of :meth:`Ansatz.gates() <qtrl.quantum.ansatz.Ansatz.gates>`
with each gate's angles given by columns of one flat angle vector — and runs a
*batch* of such circuits, one row of angles each::

    template, angles = circuit_of(ansatz)          # angles: (circuits, P)
    probs = backend.probabilities(template, angles)  # (circuits, 2**n)

The rows need not be the ansatz's own circuits: the gradient estimators of
:mod:`qtrl.quantum.estimators` pass every shifted copy of the angles as extra
rows of one call. Probabilities always come back in *our* index order: wire 0
is the most significant bit of the basis index.

* :class:`TorchBackend` — our statevector simulator; exact and differentiable
  (adjoint method) without shots; with ``shots`` it samples the exact
  distribution with a seeded NumPy generator (no SDK needed). Optional
  noise, the same model as Qiskit's below: depolarizing noise runs our exact,
  differentiable density-matrix simulator (:mod:`qtrl.quantum.density`).
* :class:`PennyLaneBackend` — a PennyLane device (``default.qubit``,
  ``lightning.qubit``), built gate by gate, parameters broadcast over the batch,
  numpy interface (no autograd). PennyLane's wire 0 is the MSB, as ours.
* :class:`QiskitBackend` — Qiskit Aer, one parameterised circuit bound to all
  rows in one job. Our wire ``j`` is Qiskit's qubit ``n-1-j`` (as in
  :mod:`qtrl.quantum.qasm`), so Qiskit's little-endian index is ours. Optional
  noise: ``depolarizing:p`` and/or ``readout:p`` (see :func:`parse_noise`);
  torch and qiskit accept noise, PennyLane does not.

The SDKs are optional extras; a missing one raises :class:`MissingExtraError`
naming the ``pip install`` command.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError
from . import gates as G
from .ansatz import Ansatz, Gate, RingU3Ansatz, compiled_ring, ring_probabilities
from .density import noisy_probabilities
from .fusion import fuse
from .statevector import Operation, zero_state
from .statevector import probabilities as state_probabilities

__all__ = [
    "BACKENDS",
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
    "sample_probabilities",
]

log = logging.getLogger(__name__)

# Gate name -> (wires, angles) this module can run on every backend.
_GATE_ARITY: dict[str, tuple[int, int]] = {
    "u3": (1, 3), "rx": (1, 1), "ry": (1, 1), "rz": (1, 1), "h": (1, 0), "x": (1, 0),
    "cu3": (2, 3), "cx": (2, 0), "cnot": (2, 0),
}


class MissingExtraError(ImportError, UserError):
    """An optional SDK (PennyLane, Qiskit) is not installed; the message names the extra."""


def _require(module: str, extra: str, backend: str) -> Any:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``pip install qtrl[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"the {backend!r} backend needs the Python package {module.split('.')[0]!r}, which "
            f"is not installed; install it with: pip install 'qtrl[{extra}]'") from err


# ---------------------------------------------------------------- circuits


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
            if g.name not in _GATE_ARITY:
                raise ValueError(f"gate {g.name!r} is not supported by the backends; "
                                 f"supported: {', '.join(sorted(_GATE_ARITY))}")
            n_wires, n_angles = _GATE_ARITY[g.name]
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


# ---------------------------------------------------------------- protocol


@runtime_checkable
class Backend(Protocol):
    """Runs a batch of circuits: ``angles (batch, P)`` -> probabilities ``(batch, 2**n)``.

    ``shots=None`` means exact probabilities; otherwise each row is estimated
    from ``shots`` samples. ``differentiable`` says whether autograd can go
    through :meth:`probabilities` (only the torch backend without shots, noisy or not).
    """

    name: str
    shots: int | None

    @property
    def differentiable(self) -> bool: ...

    def probabilities(self, template: CircuitTemplate, angles: Tensor) -> Tensor:
        """Probabilities of each row's circuit, ``(batch, 2**n)``, dtype of ``angles``;
        wire 0 is the MSB of the index."""
        ...

    def reseed(self, seed: int) -> None:
        """Restart the sampling stream from ``seed`` (training reseeds every update,
        so a resumed run samples exactly what an uninterrupted one does)."""
        ...


def _check_angles(template: CircuitTemplate, angles: Tensor) -> None:
    if angles.dim() != 2 or angles.shape[1] != template.n_angles:
        raise ValueError(f"angles must be (batch, {template.n_angles}), "
                         f"got {tuple(angles.shape)}")


def _check_shots(shots: int | None) -> int | None:
    if shots is None:
        return None
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise UserError(f"shots must be a positive integer or None (exact), got {shots!r}")
    return int(shots)


def sample_probabilities(probs: Tensor, shots: int, rng: np.random.Generator) -> Tensor:
    """Empirical frequencies of ``shots`` samples from each row of ``probs`` ``(batch, d)``.

    NumPy's multinomial draws the counts by conditional binomials, a cost that
    does not grow with ``shots`` (7x faster than ``torch.multinomial`` for the 700
    rows of a parameter-shift pass at 8192 shots).
    """
    p = probs.detach().double().clamp_min(0).cpu().numpy()
    p /= p.sum(1, keepdims=True)
    counts = rng.multinomial(shots, p)
    return torch.from_numpy(counts / shots).to(probs.dtype)


# ---------------------------------------------------------------- torch


class TorchBackend:
    """Our simulator (exact; differentiable by autograd), optionally noisy and/or sampled.

    Each row is its own circuit, so gates carry one matrix per row. Our
    ring-U3 ansatz (:func:`ring_u3_layout`) runs by the simulator's batched sweep
    (:meth:`RingU3Ansatz.sweep_state`): 2.5x faster for the 700 shifted copies of
    a parameter-shift pass at (10, 5). Any other template: consecutive gates are
    fused into windows of at most :attr:`FUSE_QUBITS` wires, and each window is
    applied as one batched matmul over the rows after moving its wires next to
    the batch axis.

    Noise is Qiskit Aer's model as :class:`QiskitBackend` builds it: with
    depolarizing noise the rows run through the density-matrix simulator of
    :mod:`qtrl.quantum.density` (gates decomposed to u3/cx as Qiskit does, a
    depolarizing channel after each); readout error flips every measured bit
    with its probability, applied to the exact probabilities (as
    :class:`QiskitBackend` does), before any sampling. Exact noisy
    probabilities stay differentiable by autograd.

    Args:
        shots: ``None`` for exact probabilities, else samples per circuit, drawn
            from the exact distribution (:func:`sample_probabilities`).
        seed: seed of the sampling generator (the stream advances call by call).
        noise: a spec for :func:`parse_noise` or a :class:`NoiseSpec`.
    """

    name = "torch"
    FUSE_QUBITS = 4
    MANY_ROWS = 32

    def __init__(self, shots: int | None = None, seed: int = 0,
                 noise: str | NoiseSpec | None = None) -> None:
        self.noise = noise if isinstance(noise, NoiseSpec) else parse_noise(noise)
        self.shots = _check_shots(shots)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._rings: dict[tuple[int, int, int | None], RingU3Ansatz] = {}  # (n, L, width)

    def reseed(self, seed: int) -> None:
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    @property
    def differentiable(self) -> bool:
        return self.shots is None

    def probabilities(self, template: CircuitTemplate, angles: Tensor) -> Tensor:
        _check_angles(template, angles)
        if self.noise.depolarizing:
            probs = noisy_probabilities(template, angles, self.noise.depolarizing)
        else:
            probs = self._pure_probabilities(template, angles)
        if self.noise.readout:
            probs = _apply_readout_torch(probs, self.noise.readout, template.n_qubits)
        if self.shots is None:
            return probs
        return sample_probabilities(probs, self.shots, self._rng)

    def _pure_probabilities(self, template: CircuitTemplate, angles: Tensor) -> Tensor:
        layout = ring_u3_layout(template)
        if layout is not None and compiled_ring(layout[0]):
            n, layers = layout  # our ansatz: the compiled kernels, row by row
            both = angles.reshape(angles.shape[0], layers, 2 * n, 3)
            return ring_probabilities(both[:, :, :n], both[:, :, n:])
        if layout is not None:  # our ansatz: the simulator's own batched sweep
            # Many rows (shifted copies) are compute-bound: narrow windows cost the
            # fewest flops (measured 165 ms for 700 rows of (10, 5) vs 224 ms at 5
            # qubits); few rows are overhead-bound: the default wide windows.
            width = 2 if angles.shape[0] >= self.MANY_ROWS else None
            ring = self._rings.get((*layout, width))
            if ring is None:
                ring = self._rings[(*layout, width)] = RingU3Ansatz(*layout, fuse_qubits=width)
            if ring.sweeps:
                n, layers = layout
                both = angles.reshape(angles.shape[0], layers, 2 * n, 3)
                state = ring.sweep_state(both[:, :, :n], both[:, :, n:])
                return state_probabilities(state).to(angles.dtype)
        cdt = G.complex_dtype_for(angles.dtype)
        n, batch = template.n_qubits, angles.shape[0]
        ops = [Operation(_torch_matrix(g, angles, cdt), g.wires) for g in template.gates]
        state = zero_state(n, batch, cdt, angles.device)
        for op in fuse(ops, min(n, self.FUSE_QUBITS)):
            state = _apply_per_row(state, op.matrix, op.wires)
        return state_probabilities(state).to(angles.dtype)


@functools.lru_cache(maxsize=64)
def ring_u3_layout(template: CircuitTemplate) -> tuple[int, int] | None:
    """``(n, L)`` when ``template`` is exactly :class:`RingU3Ansatz` ``(n, L)``'s
    gate sequence (``L`` layers of U3 on every wire, then CU3 round the ring),
    else ``None``. Its angle columns are then ``(L, 2n, 3)``: U3s, then CU3s."""
    n = template.n_qubits
    if n < 2 or not template.gates or len(template.gates) % (2 * n):
        return None
    layer = [("u3", (q,)) for q in range(n)] + [("cu3", (j, (j + 1) % n)) for j in range(n)]
    for i, g in enumerate(template.gates):
        if (g.name, g.wires) != layer[i % (2 * n)]:
            return None
    return n, len(template.gates) // (2 * n)


def _apply_readout_torch(probs: Tensor, p: float, n: int) -> Tensor:
    """:func:`_apply_readout` in torch (differentiable): every bit flipped with probability ``p``."""
    x = probs.reshape(probs.shape[0], *([2] * n))
    for axis in range(1, n + 1):
        x = (1 - p) * x + p * x.flip(axis)
    return x.reshape(probs.shape)


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
        self.qml = _require("pennylane", "pennylane", "pennylane")
        self.device_name = device
        self.shots = _check_shots(shots)
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
        _check_angles(template, angles)
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


# ---------------------------------------------------------------- Qiskit


@dataclass(frozen=True)
class NoiseSpec:
    """A parsed noise specification: depolarizing and readout error probabilities."""

    depolarizing: float = 0.0
    readout: float = 0.0

    def __bool__(self) -> bool:
        return self.depolarizing > 0 or self.readout > 0


NOISE_FORMS = ("depolarizing:P", "readout:P", "depolarizing:P,readout:Q")


def parse_noise(spec: str | None) -> NoiseSpec:
    """Parse ``"depolarizing:p"``, ``"readout:p"`` or both joined by ``","``.

    ``p`` is a probability in ``[0, 1]``: depolarizing error ``p`` after every
    one- and two-qubit gate (:data:`QiskitBackend.NOISE_BASIS`); readout error
    ``p`` = each measured bit flipped with probability ``p``. ``None`` or
    ``""`` or ``"none"`` is no noise.

    Raises:
        UserError (a ValueError): naming the bad spec and the accepted forms.
    """
    if spec is None or spec.strip().lower() in ("", "none"):
        return NoiseSpec()

    def bad(reason: str) -> UserError:
        return UserError(f"bad noise spec {spec!r}: {reason}; accepted forms: "
                         f"{', '.join(NOISE_FORMS)} (P, Q probabilities in [0, 1], "
                         f"e.g. 'depolarizing:0.01,readout:0.02')")

    values: dict[str, float] = {}
    for part in spec.split(","):
        kind, sep, number = part.strip().partition(":")
        kind = kind.strip().lower()
        if not sep:
            raise bad(f"{part.strip()!r} has no ':'")
        if kind not in ("depolarizing", "readout"):
            raise bad(f"unknown noise kind {kind!r}")
        if kind in values:
            raise bad(f"{kind!r} given twice")
        try:
            p = float(number)
        except ValueError:
            raise bad(f"{number.strip()!r} is not a number") from None
        if not 0.0 <= p <= 1.0:  # also rejects nan
            raise bad(f"{kind} probability {p} is outside [0, 1]")
        values[kind] = p
    return NoiseSpec(**values)


class QiskitBackend:
    """Qiskit Aer: one parameterised circuit per template, all rows bound in one job.

    Exact without noise: Aer statevector with ``save_probabilities``. Exact with
    noise: Aer density matrix (gate noise) and the readout confusion applied to
    the probabilities analytically. With ``shots``: Aer sampling, with
    ``seed_simulator`` derived from ``seed`` and a call counter (reproducible,
    yet a fresh stream every call).

    Noise: the circuit is transpiled to :attr:`NOISE_BASIS` (``u3``, ``cx``; a
    CU3 becomes 2 CX and 4 one-qubit gates, as on hardware with CNOTs) and every
    gate of that basis gets a depolarizing error of probability ``p``.

    Args:
        shots: ``None`` for exact probabilities, else samples per circuit.
        noise: a spec for :func:`parse_noise` or a :class:`NoiseSpec`.
        seed: base of the simulator seeds.
    """

    name = "qiskit"
    NOISE_BASIS = ("u3", "cx")

    def __init__(self, shots: int | None = None, noise: str | NoiseSpec | None = None,
                 seed: int = 0) -> None:
        self.noise = noise if isinstance(noise, NoiseSpec) else parse_noise(noise)
        self.shots = _check_shots(shots)
        self.seed = seed
        self._qiskit = _require("qiskit", "qiskit", "qiskit")
        self._aer = _require("qiskit_aer", "qiskit", "qiskit")
        self._calls = 0
        self._compiled: dict[CircuitTemplate, tuple[Any, Any, Any]] = {}
        self._simulator = self._make_simulator()

    def reseed(self, seed: int) -> None:
        self.seed, self._calls = seed, 0

    @property
    def differentiable(self) -> bool:
        return False

    def _noise_model(self) -> Any | None:
        if not self.noise.depolarizing and (self.shots is None or not self.noise.readout):
            return None
        noise = _require("qiskit_aer.noise", "qiskit", "qiskit")
        model = noise.NoiseModel(basis_gates=list(self.NOISE_BASIS))
        p = self.noise.depolarizing
        if p:
            model.add_all_qubit_quantum_error(noise.depolarizing_error(p, 1), ["u3"])
            model.add_all_qubit_quantum_error(noise.depolarizing_error(p, 2), ["cx"])
        r = self.noise.readout
        if r and self.shots is not None:
            model.add_all_qubit_readout_error(noise.ReadoutError([[1 - r, r], [r, 1 - r]]))
        return model

    def _make_simulator(self) -> Any:
        model = self._noise_model()
        if self.shots is None:
            method = "density_matrix" if self.noise.depolarizing else "statevector"
            return self._aer.AerSimulator(method=method, noise_model=model)
        return self._aer.AerSimulator(noise_model=model)

    def _compile(self, template: CircuitTemplate) -> tuple[Any, Any, Any]:
        """(transpiled circuit, its parameters in column order, bits) for ``template``."""
        if template in self._compiled:
            return self._compiled[template]
        from qiskit.circuit import ParameterVector, QuantumCircuit
        from qiskit.circuit.library import (
            CU3Gate,
            CXGate,
            HGate,
            RXGate,
            RYGate,
            RZGate,
            U3Gate,
            XGate,
        )

        n = template.n_qubits
        theta = ParameterVector("theta", template.n_angles)
        qc = QuantumCircuit(n)
        make = {"u3": U3Gate, "cu3": CU3Gate, "rx": RXGate, "ry": RYGate, "rz": RZGate,
                "cx": CXGate, "cnot": CXGate, "h": HGate, "x": XGate}
        for g in template.gates:
            params = [theta[g.offset + i] for i in range(g.n_angles)]
            qc.append(make[g.name](*params), [n - 1 - w for w in g.wires])  # our j = q[n-1-j]
        # Always in the u3/cx basis: Aer's parameter binding misses the angles of
        # controlled gates (qiskit-aer PR 2445), and noise is defined on this basis.
        qc = self._qiskit.transpile(qc, basis_gates=list(self.NOISE_BASIS), optimization_level=0)
        if self.shots is None:
            qc.save_probabilities()
        else:
            qc.measure_all()
        self._compiled[template] = (qc, list(theta), n)
        return self._compiled[template]

    def _next_seed(self) -> int:
        seq = np.random.SeedSequence([self.seed, self._calls])
        self._calls += 1
        return int(seq.generate_state(1, np.uint32)[0])

    def probabilities(self, template: CircuitTemplate, angles: Tensor) -> Tensor:
        _check_angles(template, angles)
        qc, params, n = self._compile(template)
        a = angles.detach().cpu().double().numpy()
        batch = a.shape[0]
        binds = [{p: a[:, i].tolist() for i, p in enumerate(params)}] if params else None
        if self.shots is None:
            result = self._simulator.run(qc, parameter_binds=binds).result()
            probs = np.stack([np.asarray(result.data(i)["probabilities"]) for i in range(batch)]) \
                if params else np.asarray(result.data(0)["probabilities"])[None].repeat(batch, 0)
            if self.noise.readout:
                probs = _apply_readout(probs, self.noise.readout, n)
        else:
            result = self._simulator.run(qc, parameter_binds=binds, shots=self.shots,
                                         seed_simulator=self._next_seed()).result()
            probs = np.zeros((batch, 2**n))
            for i in range(batch):
                counts = result.data(i if params else 0)["counts"]
                for key, c in counts.items():
                    probs[i, int(key, 16)] = c
            probs /= self.shots
        return torch.from_numpy(probs).to(angles.dtype)


def _apply_readout(probs: np.ndarray, p: float, n: int) -> np.ndarray:
    """Flip every bit independently with probability ``p``: ``(batch, 2**n)`` -> same."""
    confusion = np.array([[1 - p, p], [p, 1 - p]])
    x = probs.reshape(probs.shape[0], *([2] * n))
    for axis in range(1, n + 1):
        x = np.moveaxis(np.tensordot(x, confusion, axes=([axis], [1])), -1, axis)
    return x.reshape(probs.shape)


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

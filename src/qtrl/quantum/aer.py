"""Qiskit Aer as a backend: one parameterised circuit per template, all rows bound in one job.

Our wire ``j`` is Qiskit's qubit ``n-1-j`` (as in :mod:`qtrl.quantum.qasm`), so
Qiskit's little-endian index is ours. Optional noise: ``depolarizing:p`` and/or
``readout:p`` (:func:`~qtrl.quantum.noise.parse_noise`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .noise import NoiseSpec, apply_readout, parse_noise
from .qpu import check_angles, check_shots, require
from .template import CircuitTemplate

__all__ = ["QiskitBackend"]


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
        self.shots = check_shots(shots)
        self.seed = seed
        self._qiskit = require("qiskit", "qiskit", "qiskit")
        self._aer = require("qiskit_aer", "qiskit", "qiskit")
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
        noise = require("qiskit_aer.noise", "qiskit", "qiskit")
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
        check_angles(template, angles)
        qc, params, n = self._compile(template)
        a = angles.detach().cpu().double().numpy()
        batch = a.shape[0]
        binds = [{p: a[:, i].tolist() for i, p in enumerate(params)}] if params else None
        if self.shots is None:
            result = self._simulator.run(qc, parameter_binds=binds).result()
            probs = np.stack([np.asarray(result.data(i)["probabilities"]) for i in range(batch)]) \
                if params else np.asarray(result.data(0)["probabilities"])[None].repeat(batch, 0)
            if self.noise.readout:
                probs = apply_readout(probs, self.noise.readout, n)
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

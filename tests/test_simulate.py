"""Every simulator path against PennyLane's ``default.qubit``.

:func:`qtrl.quantum.simulate.choose_path` decides which simulator computes a
circuit's probabilities. Each case below builds a circuit that the dispatch
sends down one path, checks that the dispatch chose that path, and compares the
probabilities with ``default.qubit`` at the same random angles.

Qubit order: our wire ``j`` is PennyLane's wire ``j``, and both read wire 0 as
the most significant bit of the basis index, so the arrays compare as they are,
with no flip (:func:`test_wire_0_is_the_most_significant_bit_in_both` checks it
on a basis state).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from qtrl.errors import UserError
from qtrl.quantum.ansatz import Ansatz, RingU3Ansatz, RYCNOTAnsatz
from qtrl.quantum.backends import (
    CircuitTemplate,
    GateSlot,
    NoiseSpec,
    TorchBackend,
    circuit_of,
    make_backend,
)
from qtrl.quantum.compiled import available as numba_available
from qtrl.quantum.simulate import SimPath, choose_path

qml = pytest.importorskip("pennylane")

F32, F64 = torch.float32, torch.float64
TOLERANCE = {F32: 1e-5, F64: 1e-10}  # absolute, on probabilities


def _pennylane(template: CircuitTemplate, angles: Tensor) -> Tensor:
    """``default.qubit``'s probabilities of every row's circuit, ``(rows, 2**n)`` float64."""
    n = template.n_qubits

    @qml.qnode(qml.device("default.qubit", wires=n))
    def circuit(a):
        for g in template.gates:
            k, w = g.offset, g.wires
            if g.name == "u3":
                qml.U3(a[k], a[k + 1], a[k + 2], wires=w[0])
            elif g.name == "cu3":
                qml.ctrl(qml.U3(a[k], a[k + 1], a[k + 2], wires=w[1]), control=w[0])
            elif g.name == "ry":
                qml.RY(a[k], wires=w[0])
            elif g.name == "cx":
                qml.CNOT(wires=list(w))
            elif g.name == "x":
                qml.PauliX(wires=w[0])
            else:
                raise AssertionError(f"no reference for gate {g.name!r}")
        return qml.probs(wires=range(n))

    rows = angles.detach().double().numpy()
    return torch.stack([torch.as_tensor(circuit(row)) for row in rows])


def _ansatz(kind: type[Ansatz], n: int, layers: int, dtype: torch.dtype, **options) -> Ansatz:
    torch.manual_seed(n + 10 * layers)
    return kind(n, layers, circuits=2 if n < 10 else 1, dtype=dtype, **options)


def _module(kind: type[Ansatz], n: int, layers: int, dtype: torch.dtype, **options):
    """The ansatz's own forward (the ``module`` caller)."""
    def run() -> tuple[Tensor, CircuitTemplate, Tensor]:
        ansatz = _ansatz(kind, n, layers, dtype, **options)
        template, angles = circuit_of(ansatz)
        return ansatz().detach(), template, angles.detach()
    return run


def _rows(kind: type[Ansatz], n: int, dtype: torch.dtype, backend: Callable[[], object]):
    """Three rows of random angles through a backend (the ``rows`` caller)."""
    def run() -> tuple[Tensor, CircuitTemplate, Tensor]:
        template, _ = circuit_of(_ansatz(kind, n, 2, dtype))
        angles = torch.rand(3, template.n_angles, dtype=dtype,
                            generator=torch.Generator().manual_seed(n)) * 6.3
        return backend().probabilities(template, angles), template, angles
    return run


KERNELS = pytest.mark.skipif(not numba_available(), reason="the compiled kernels need Numba")

CASES = [
    # path, dtype, how to run it
    pytest.param(SimPath.COMPILED, F64, _module(RingU3Ansatz, 4, 2, F64), marks=KERNELS,
                 id="compiled"),
    pytest.param(SimPath.WIDE, F32, _module(RingU3Ansatz, 4, 2, F32), marks=KERNELS,
                 id="wide-float32"),
    pytest.param(SimPath.WIDE, F64, _module(RingU3Ansatz, 13, 1, F64), marks=KERNELS,
                 id="wide-float64-13-qubits"),
    pytest.param(SimPath.SWEEP, F32, _module(RingU3Ansatz, 5, 2, F32, compiled=False),
                 id="sweep-float32"),
    pytest.param(SimPath.SWEEP, F64, _module(RingU3Ansatz, 5, 2, F64, compiled=False),
                 id="sweep-float64"),
    pytest.param(SimPath.LAYERS, F32, _module(RYCNOTAnsatz, 4, 2, F32), id="layers-float32"),
    # 4 qubits are fewer than the sweep's 5-qubit windows: the fused layers.
    pytest.param(SimPath.LAYERS, F64, _module(RingU3Ansatz, 4, 2, F64, compiled=False),
                 id="layers-float64"),
    pytest.param(SimPath.FRAMES, F64, _module(RingU3Ansatz, 15, 1, F64, compiled=False),
                 id="frames-15-qubits"),
    pytest.param(SimPath.COMPILED, F64, _rows(RingU3Ansatz, 4, F64, TorchBackend), marks=KERNELS,
                 id="torch-backend-ring"),
    pytest.param(SimPath.GATES, F32, _rows(RYCNOTAnsatz, 3, F32, TorchBackend),
                 id="torch-backend-gates-float32"),
    pytest.param(SimPath.GATES, F64, _rows(RYCNOTAnsatz, 3, F64, TorchBackend),
                 id="torch-backend-gates-float64"),
    pytest.param(SimPath.DENSITY, F64, _rows(RingU3Ansatz, 3, F64,
                                          lambda: TorchBackend(path=SimPath.DENSITY)),
                 id="density-no-noise-ring"),
    pytest.param(SimPath.DENSITY, F64, _rows(RYCNOTAnsatz, 3, F64,
                                          lambda: TorchBackend(path=SimPath.DENSITY)),
                 id="density-no-noise-ry-cnot"),
    pytest.param(SimPath.PENNYLANE, F64, _rows(RingU3Ansatz, 3, F64,
                                            lambda: make_backend("pennylane")),
                 id="pennylane-backend"),
    pytest.param(SimPath.QISKIT, F64, _rows(RingU3Ansatz, 3, F64, lambda: make_backend("qiskit")),
                 id="qiskit-backend"),
]


@pytest.mark.parametrize("path, dtype, run", CASES)
def test_every_path_matches_pennylane(path: SimPath, dtype: torch.dtype, run,
                                      caplog: pytest.LogCaptureFixture) -> None:
    if path is SimPath.QISKIT:
        pytest.importorskip("qiskit_aer")
    with caplog.at_level(logging.DEBUG, logger="qtrl.quantum.simulate"):
        ours, template, angles = run()
    chosen = [r.simulator_path for r in caplog.records if hasattr(r, "simulator_path")]
    if path in (SimPath.PENNYLANE, SimPath.QISKIT):  # the SDK backends are chosen by name
        assert choose_path(template.n_qubits, dtype, backend=path.value,
                           rows=angles.shape[0]) is path
    else:  # the last decision is the one that ran (run_layers refines LAYERS to FRAMES)
        assert chosen and chosen[-1] is path, chosen
    assert ours.dtype == dtype and ours.shape == (angles.shape[0], 2**template.n_qubits)
    torch.testing.assert_close(ours.double(), _pennylane(template, angles),
                               atol=TOLERANCE[dtype], rtol=0)


def test_wire_0_is_the_most_significant_bit_in_both() -> None:
    n = 3
    template = CircuitTemplate(n, (GateSlot("x", (0,), 0, 0), GateSlot("ry", (2,), 0, 1)))
    angles = torch.tensor([[torch.pi]], dtype=F64)
    ours = TorchBackend().probabilities(template, angles)
    expected = torch.zeros(1, 2**n, dtype=F64)
    expected[0, 0b101] = 1.0  # wires 0 and 2 set, wire 0 the most significant bit
    torch.testing.assert_close(ours, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(_pennylane(template, angles), expected, atol=1e-12, rtol=0)


@KERNELS
def test_the_table_rules() -> None:
    """A few rows of :func:`choose_path`'s table, at their boundaries."""
    assert choose_path(12, F64, ring=True) is SimPath.COMPILED
    assert choose_path(13, F64, ring=True) is SimPath.WIDE
    assert choose_path(4, F32, ring=True) is SimPath.WIDE
    assert choose_path(5, F64, "cuda", ring=True) is SimPath.SWEEP      # kernels run on the CPU
    assert choose_path(4, F64, "cuda", ring=True, rows=3) is SimPath.GATES  # 5-qubit windows
    assert choose_path(4, F64, "cuda", ring=True, rows=40) is SimPath.SWEEP  # 2-qubit windows
    assert choose_path(15, F64, ring=True, compiled=False) is SimPath.LAYERS
    assert choose_path(15, F64, windows=[(14, 0, 1), (1, 2)]) is SimPath.FRAMES
    assert choose_path(15, F64, windows=[(0, 2)]) is SimPath.LAYERS     # not consecutive
    assert choose_path(4, F64, ring=True, rows=3,
                       noise=NoiseSpec(depolarizing=0.01)) is SimPath.DENSITY
    assert choose_path(4, F64, ring=True, rows=3, noise=NoiseSpec(readout=0.1)) is SimPath.COMPILED
    with pytest.raises(UserError, match="unknown backend 'cirq'"):
        choose_path(4, F64, backend="cirq")
    with pytest.raises(UserError, match="'frames' cannot run"):
        choose_path(4, F64, rows=3, force=SimPath.FRAMES)

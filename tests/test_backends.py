"""Backends: torch, PennyLane and Qiskit Aer agree with our simulator (exact and
sampled), noise specs, Aer noise, and the missing-SDK message."""

from __future__ import annotations

import itertools
import math
import sys

import numpy as np
import pytest
import torch

from qtrl.errors import UserError
from qtrl.quantum.ansatz import ANSATZE, RingU3Ansatz
from qtrl.quantum.backends import (
    BACKENDS,
    CircuitTemplate,
    GateSlot,
    MissingExtraError,
    NoiseSpec,
    QiskitBackend,
    TorchBackend,
    circuit_of,
    make_backend,
    parse_noise,
    sample_probabilities,
)

pytest.importorskip("pennylane")
pytest.importorskip("qiskit_aer")

EXACT = ["torch", "pennylane", "pennylane:lightning.qubit", "qiskit"]
SAMPLING = ["torch", "pennylane", "qiskit"]


def _ansatz(name: str, n: int, circuits: int, layers: int = 2, seed: int = 0):
    torch.manual_seed(seed + 17 * n + circuits)
    return ANSATZE[name](n, layers, circuits, dtype=torch.float64)


def _sampling_bound(p: torch.Tensor, shots: int) -> torch.Tensor:
    """5 standard errors of a frequency, plus a floor for p near 0 or 1."""
    return 5 * torch.sqrt(p * (1 - p) / shots) + 1e-3


@pytest.mark.parametrize("backend", EXACT)
@pytest.mark.parametrize("ansatz", sorted(ANSATZE))
@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("circuits", [1, 2])
def test_exact_backends_agree_with_ours(backend: str, ansatz: str, n: int, circuits: int) -> None:
    a = _ansatz(ansatz, n, circuits)
    template, angles = circuit_of(a)
    ours = a().detach()
    theirs = make_backend(backend).probabilities(template, angles.detach())
    assert theirs.shape == (circuits, 2**n) and theirs.dtype == torch.float64
    torch.testing.assert_close(theirs, ours, atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", EXACT)
def test_index_order_is_ours(backend: str) -> None:
    """X on our wire 0 sets the most significant bit of the index (no hidden flip)."""
    n = 3
    template = CircuitTemplate(n, (GateSlot("x", (0,), 0, 0), GateSlot("ry", (2,), 0, 1)))
    probs = make_backend(backend).probabilities(template, torch.tensor([[math.pi]],
                                                                       dtype=torch.float64))
    expected = torch.zeros(1, 2**n, dtype=torch.float64)
    expected[0, 0b101] = 1.0  # wire 0 and wire 2 set: 1 0 1, MSB first
    torch.testing.assert_close(probs, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", SAMPLING)
@pytest.mark.parametrize("ansatz", sorted(ANSATZE))
def test_sampled_backends_within_statistical_bound(backend: str, ansatz: str) -> None:
    shots = 4000
    a = _ansatz(ansatz, 4, 2)
    template, angles = circuit_of(a)
    exact = a().detach()
    sampled = make_backend(backend, shots=shots, seed=3).probabilities(template, angles.detach())
    assert sampled.shape == exact.shape
    torch.testing.assert_close(sampled.sum(1), torch.ones(2, dtype=torch.float64))
    # frequencies are multiples of 1/shots
    torch.testing.assert_close(sampled * shots, (sampled * shots).round(), atol=1e-6, rtol=0)
    assert ((sampled - exact).abs() <= _sampling_bound(exact, shots)).all()


@pytest.mark.parametrize("backend", SAMPLING)
def test_sampling_is_seeded(backend: str) -> None:
    a = _ansatz("ring-u3", 3, 1)
    template, angles = circuit_of(a)
    angles = angles.detach()
    first = make_backend(backend, shots=200, seed=5)
    again = make_backend(backend, shots=200, seed=5)
    one = first.probabilities(template, angles)
    torch.testing.assert_close(one, again.probabilities(template, angles), atol=0, rtol=0)
    # the stream advances: the next call is a fresh sample
    assert not torch.equal(first.probabilities(template, angles), one)


def test_sample_probabilities_counts() -> None:
    p = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.5]], dtype=torch.float64)
    freq = sample_probabilities(p, 1000, np.random.default_rng(0))
    assert freq[0].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert freq[1, 1] == freq[1, 2] == 0 and abs(freq[1, 0] - 0.5) < 0.08


def test_torch_backend_is_differentiable() -> None:
    a = _ansatz("ring-u3", 3, 2)
    template, angles = circuit_of(a)
    w = torch.randn(2, 8, dtype=torch.float64)
    (TorchBackend().probabilities(template, angles) * w).sum().backward()
    ours = [p.grad.clone() for p in a.parameters()]
    a.zero_grad()
    (a() * w).sum().backward()
    for g, p in zip(ours, a.parameters()):
        torch.testing.assert_close(g, p.grad, atol=1e-10, rtol=0)
    assert TorchBackend().differentiable and not TorchBackend(shots=10).differentiable


@pytest.mark.parametrize("rows", [3, 40])  # few rows: wide windows; many: narrow ones
@pytest.mark.parametrize("n", [2, 3, 5])
def test_ring_ansatz_rows_run_by_the_fast_paths(rows: int, n: int) -> None:
    """Our ring ansatz runs by the compiled kernels (small) or the batched sweep;
    both must equal the generic per-row gate path, values and gradients."""
    from qtrl.quantum.backends import ring_u3_layout
    from qtrl.quantum.compiled import available
    from qtrl.quantum.simulate import SimPath, window_qubits

    template, _ = circuit_of(RingU3Ansatz(n, 2))
    assert ring_u3_layout(template) == (n, 2)
    torch.manual_seed(n + rows)
    angles = (torch.rand(rows, template.n_angles, dtype=torch.float64) * 6.3).requires_grad_()
    w = torch.randn(rows, 2**n, dtype=torch.float64)
    paths = [SimPath.COMPILED, SimPath.WIDE] if available() else []
    paths += [SimPath.SWEEP] if window_qubits(n, rows) <= n else []
    results = []
    for path in [*paths, SimPath.GATES]:
        probs = TorchBackend(path=path).probabilities(template, angles)
        (grad,) = torch.autograd.grad((probs * w).sum(), angles)
        results.append((probs.detach(), grad))
    for probs, grad in results[:-1]:
        torch.testing.assert_close(probs, results[-1][0], atol=1e-12, rtol=0)
        torch.testing.assert_close(grad, results[-1][1], atol=1e-10, rtol=0)


def test_a_path_that_cannot_run_the_circuit_is_refused() -> None:
    from qtrl.quantum.simulate import SimPath

    template, angles = circuit_of(ANSATZE["ry-cnot"](3, 1))
    with pytest.raises(UserError, match="'sweep' cannot run.*density, gates"):
        TorchBackend(path=SimPath.SWEEP).probabilities(template, angles)


def test_ring_layout_is_only_the_ring_ansatz() -> None:
    from qtrl.quantum.backends import ring_u3_layout

    assert ring_u3_layout(circuit_of(ANSATZE["ry-cnot"](4, 2))[0]) is None
    gates = list(circuit_of(RingU3Ansatz(3, 2))[0].gates)
    swapped = CircuitTemplate(3, (gates[1]._replace(offset=0), gates[0]._replace(offset=3),
                                  *gates[2:]))
    assert ring_u3_layout(swapped) is None


def test_template_from_ansatz() -> None:
    a = RingU3Ansatz(3, 2, circuits=2)
    template, angles = circuit_of(a)
    assert template.n_angles == a.u3_angles[0].numel() + a.cu3_angles[0].numel() == 36
    assert angles.shape == (2, 36)
    assert hash(template) == hash(circuit_of(a)[0])  # backends cache compiled circuits by it
    owner = template.owner()
    assert owner[:3] == [("u3", 0), ("u3", 1), ("u3", 2)] and owner[9] == ("cu3", 0)
    with pytest.raises(ValueError, match="not supported"):
        CircuitTemplate(2, (GateSlot("swap", (0, 1), 0, 0),))
    with pytest.raises(ValueError, match="expected 1 wire"):
        CircuitTemplate(2, (GateSlot("ry", (0, 1), 0, 1),))
    with pytest.raises(ValueError, match="angles must be"):
        TorchBackend().probabilities(template, angles[:, :5])


# ---------------------------------------------------------------- noise


def test_parse_noise_accepted_forms() -> None:
    assert parse_noise(None) == NoiseSpec() and not parse_noise("none")
    assert parse_noise("depolarizing:0.01") == NoiseSpec(depolarizing=0.01)
    assert parse_noise("readout:0.02") == NoiseSpec(readout=0.02)
    assert parse_noise(" Depolarizing:0.01 , readout:0.2") == NoiseSpec(0.01, 0.2)


@pytest.mark.parametrize("spec", ["depolarizing", "depolarizing:", "depolarizing:abc",
                                  "depolarizing:1.5", "readout:-0.1", "depolarizing:nan",
                                  "amplitude:0.1", "depolarizing:0.1,depolarizing:0.2",
                                  "depolarizing=0.1"])
def test_parse_noise_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="bad noise spec") as err:
        parse_noise(spec)
    assert repr(spec) in str(err.value)
    assert "depolarizing:P" in str(err.value) and "readout:P" in str(err.value)
    assert isinstance(err.value, UserError)


def test_make_backend_rejects_bad_input() -> None:
    with pytest.raises(UserError, match="unknown backend 'cirq'"):
        make_backend("cirq")
    with pytest.raises(UserError, match="unknown backend"):
        make_backend("qiskit:aer")
    with pytest.raises(UserError, match="not supported by the 'pennylane' backend; use "
                                        "backend 'torch'.* or 'qiskit'"):
        make_backend("pennylane", noise="depolarizing:0.1")
    for shots in (0, -5, 1.5, True):
        with pytest.raises(UserError, match="shots must be a positive integer"):
            make_backend("torch", shots=shots)
    with pytest.raises(UserError, match="cannot open PennyLane device"):
        make_backend("pennylane:no.such.device").probabilities(*_small_circuit())
    assert sorted(BACKENDS) == ["pennylane", "qiskit", "torch"]


def _small_circuit():
    template, angles = circuit_of(_ansatz("ring-u3", 3, 1))
    return template, angles.detach()


def _distance_to_uniform(p: torch.Tensor) -> float:
    return float((p - 1.0 / p.shape[-1]).abs().sum())


def test_depolarizing_moves_toward_uniform_monotonically() -> None:
    template, angles = _small_circuit()
    exact = TorchBackend().probabilities(template, angles)
    distances = [_distance_to_uniform(exact)]
    for p in (0.0, 0.01, 0.05, 0.2, 0.5):
        noisy = QiskitBackend(noise=f"depolarizing:{p}").probabilities(template, angles)
        torch.testing.assert_close(noisy.sum(1), torch.ones(1, dtype=torch.float64))
        distances.append(_distance_to_uniform(noisy))
    assert distances[1] == pytest.approx(distances[0], abs=1e-9)  # p = 0 is the exact circuit
    assert all(a > b for a, b in itertools.pairwise(distances[1:])), distances
    assert distances[-1] < 0.2 * distances[0]


@pytest.mark.parametrize("spec", ["depolarizing:0.03", "readout:0.05",
                                  "depolarizing:0.02,readout:0.03"])
def test_noisy_sampling_matches_exact_noisy_probabilities(spec: str) -> None:
    """Aer's sampled noise (gate errors on trajectories, readout flips on measured
    bits) agrees with the exact density-matrix run plus the analytic readout confusion."""
    template, angles = _small_circuit()
    shots = 8000
    exact = QiskitBackend(noise=spec).probabilities(template, angles)
    sampled = QiskitBackend(shots=shots, noise=spec, seed=1).probabilities(template, angles)
    assert ((sampled - exact).abs() <= _sampling_bound(exact, shots)).all()
    assert (exact - TorchBackend().probabilities(template, angles)).abs().max() > 0.01


def test_readout_error_flips_bits() -> None:
    template = CircuitTemplate(2, (GateSlot("x", (0,), 0, 0),))
    probs = QiskitBackend(noise="readout:0.1").probabilities(template, torch.zeros(1, 0))
    # |10>: first bit stays 1 w.p. 0.9, second stays 0 w.p. 0.9
    expected = torch.tensor([[0.1 * 0.9, 0.1 * 0.1, 0.9 * 0.9, 0.9 * 0.1]])
    torch.testing.assert_close(probs, expected.to(probs.dtype), atol=1e-12, rtol=0)


# ---------------------------------------------------------------- missing SDKs


@pytest.mark.parametrize("backend, module, extra", [
    ("pennylane", "pennylane", "pennylane"),
    ("qiskit", "qiskit_aer", "qiskit"),
    ("qiskit", "qiskit", "qiskit"),
])
def test_missing_sdk_names_the_install_command(monkeypatch: pytest.MonkeyPatch, backend: str,
                                                module: str, extra: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ImportError, match=rf"pip install 'qtrl\[{extra}\]'") as err:
        make_backend(backend)
    assert isinstance(err.value, MissingExtraError) and isinstance(err.value, UserError)
    assert module in str(err.value)

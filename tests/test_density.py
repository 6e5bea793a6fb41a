"""Noisy density-matrix simulation: agrees with our statevector without noise and
with Qiskit Aer's density matrix under the same noise model, differentiable, and
wired into the torch backend and Quantum-Train."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from torch import nn

from qtrl.errors import UserError
from qtrl.generator import QuantumTrain
from qtrl.quantum.ansatz import ANSATZE
from qtrl.quantum.backends import (
    CircuitTemplate,
    GateSlot,
    TorchBackend,
    circuit_of,
    make_backend,
)
from qtrl.quantum.density import DensityMatrixTooLarge, check_density_fits, noisy_probabilities
from qtrl.quantum.estimators import ParameterShift, check_gradient_setup

requires_aer = pytest.mark.skipif(importlib.util.find_spec("qiskit_aer") is None,
                                  reason="needs qiskit-aer (pip install 'qtrl[qiskit]')")


def _ring(n: int, layers: int = 2, circuits: int = 2, seed: int = 0,
          ansatz: str = "ring-u3") -> tuple[CircuitTemplate, torch.Tensor]:
    torch.manual_seed(seed + 31 * n)
    template, angles = circuit_of(ANSATZE[ansatz](n, layers, circuits, dtype=torch.float64))
    return template, angles.detach()


def _mixed(rows: int = 2, seed: int = 0) -> tuple[CircuitTemplate, torch.Tensor]:
    """Every gate kind; a CX against the block's wire order, a gate pair that is not
    adjacent, repeated pairs (merged blocks) and a wire only one-qubit gates touch."""
    spec = [("h", (0,)), ("u3", (1,)), ("cu3", (0, 1)), ("cx", (1, 0)), ("rx", (2,)),
            ("cnot", (2, 0)), ("ry", (1,)), ("cu3", (2, 0)), ("rz", (0,)), ("x", (3,)),
            ("rx", (3,)), ("cu3", (1, 2)), ("cx", (1, 2)), ("u3", (2,)), ("h", (1,))]
    arity = {"u3": 3, "cu3": 3, "rx": 1, "ry": 1, "rz": 1, "h": 0, "x": 0, "cx": 0, "cnot": 0}
    slots, offset = [], 0
    for name, wires in spec:
        slots.append(GateSlot(name, wires, offset, arity[name]))
        offset += arity[name]
    template = CircuitTemplate(4, tuple(slots))
    g = torch.Generator().manual_seed(seed)
    return template, torch.rand(rows, offset, generator=g, dtype=torch.float64) * 2 * math.pi


CIRCUITS = [pytest.param(lambda n=n: _ring(n), id=f"ring-u3-{n}") for n in (2, 3, 4)] + [
    pytest.param(lambda: _ring(3, ansatz="ry-cnot"), id="ry-cnot-3"),
    pytest.param(_mixed, id="mixed-4"),
]


# ---------------------------------------------------------------- against simulators


@pytest.mark.parametrize("circuit", CIRCUITS)
def test_noise_free_density_matrix_is_the_statevector(circuit) -> None:
    template, angles = circuit()
    exact = TorchBackend().probabilities(template, angles)
    torch.testing.assert_close(noisy_probabilities(template, angles, 0.0), exact,
                               atol=1e-6, rtol=0)
    single = noisy_probabilities(template, angles.float(), 0.0)  # float32 in, float32 out
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), exact, atol=1e-5, rtol=0)


@requires_aer
@pytest.mark.parametrize("circuit", CIRCUITS)
@pytest.mark.parametrize("spec", ["depolarizing:0.01", "depolarizing:0.2",
                                  "depolarizing:0.05,readout:0.03", "readout:0.1"])
def test_noisy_probabilities_equal_aer_density_matrix(circuit, spec: str) -> None:
    from qtrl.quantum.backends import QiskitBackend

    template, angles = circuit()
    ours = TorchBackend(noise=spec).probabilities(template, angles)
    aer = QiskitBackend(noise=spec).probabilities(template, angles)
    torch.testing.assert_close(ours, aer, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.sum(1), torch.ones(len(ours), dtype=ours.dtype))


def test_sampling_draws_from_the_noisy_distribution() -> None:
    template, angles = _ring(3, circuits=1)
    spec, shots = "depolarizing:0.1,readout:0.05", 20_000
    exact = TorchBackend(noise=spec).probabilities(template, angles)
    sampled = TorchBackend(shots=shots, noise=spec, seed=3).probabilities(template, angles)
    assert ((sampled - exact).abs() <= 5 * (exact * (1 - exact) / shots).sqrt() + 1e-3).all()
    noise_free = TorchBackend().probabilities(template, angles)
    assert (exact - noise_free).abs().max() > 0.01


# ---------------------------------------------------------------- gradients


def test_gradcheck_float64() -> None:
    template, angles = _mixed(rows=2)
    backend = TorchBackend(noise="depolarizing:0.1,readout:0.05")
    assert backend.differentiable
    assert torch.autograd.gradcheck(lambda a: backend.probabilities(template, a),
                                    angles.clone().requires_grad_())


def _vjps(template: CircuitTemplate, angles: torch.Tensor,
          backend: TorchBackend) -> tuple[torch.Tensor, torch.Tensor]:
    """(autograd, parameter-shift) VJP of the probabilities with one random cotangent."""
    x = angles.clone().requires_grad_()
    probs = backend.probabilities(template, x)
    g = torch.randn(probs.shape, generator=torch.Generator().manual_seed(5), dtype=probs.dtype)
    (backprop,) = torch.autograd.grad((probs * g).sum(), x)
    return backprop, ParameterShift(backend, template).vjp(angles, g)


def _cu3_phi_columns(template: CircuitTemplate) -> list[int]:
    return [j for j, (name, i) in enumerate(template.owner()) if name == "cu3" and i == 1]


@pytest.mark.parametrize("circuit", CIRCUITS)
def test_parameter_shift_matches_backprop_under_noise(circuit) -> None:
    """Noise after every basis gate does not depend on the angles, so an angle that
    enters one basis gate keeps its noise-free spectrum and its shift rule stays
    exact: every U3/RX/RY/RZ angle. A CU3 angle enters several of its six basis
    gates: θ keeps frequencies {1/2, 1} (four-term rule, exact) and λ's phases
    still merge into one controlled phase (frequency 1, exact); φ does not (see
    the next test), so its columns are left out here."""
    template, angles = circuit()
    backprop, shifted = _vjps(template, angles, TorchBackend(noise="depolarizing:0.05"))
    keep = [j for j in range(template.n_angles) if j not in _cu3_phi_columns(template)]
    torch.testing.assert_close(shifted[:, keep], backprop[:, keep], atol=1e-6, rtol=0)


@pytest.mark.xfail(strict=True, reason="ParameterShift's two-term rule for the CU3 φ "
                   "is inexact under noise: there φ has frequencies {1, 2}")
def test_parameter_shift_of_cu3_phi_under_noise() -> None:
    template, angles = _ring(3)
    backprop, shifted = _vjps(template, angles, TorchBackend(noise="depolarizing:0.05"))
    phi = _cu3_phi_columns(template)
    torch.testing.assert_close(shifted[:, phi], backprop[:, phi], atol=1e-6, rtol=0)


def test_cu3_phi_under_noise_needs_the_two_frequency_rule() -> None:
    """φ enters four noisy basis gates (as −φ/2, φ/2, −φ/2 on the target/control,
    then φ): with depolarizing channels between them the phases no longer merge,
    and the probabilities carry frequencies 1 and 2 in φ. The shift rule for
    frequencies {1, 2} (shifts π/4, 3π/4, 5π/4, 7π/4; Wierichs et al. 2022) is
    exact; the two-term rule is not."""
    template, angles = _ring(3, circuits=1)
    backend = TorchBackend(noise="depolarizing:0.05")
    x = angles.clone().requires_grad_()
    jac = torch.autograd.functional.jacobian(lambda a: backend.probabilities(template, a), x)
    for col in _cu3_phi_columns(template)[:3]:  # the first layer's
        def at(shift: float, col: int = col) -> torch.Tensor:
            rows = angles.clone()
            rows[:, col] += shift
            return backend.probabilities(template, rows)[0]
        shifts = [(2 * m - 1) * math.pi / 4 for m in (1, 2, 3, 4)]
        coefs = [(-1) ** (m - 1) / (8 * math.sin(s / 2) ** 2) for m, s in zip((1, 2, 3, 4), shifts)]
        four = sum(c * at(s) for c, s in zip(coefs, shifts))
        two = (at(math.pi / 2) - at(-math.pi / 2)) / 2
        exact = jac[0, :, 0, col]
        torch.testing.assert_close(four, exact, atol=1e-10, rtol=0)
        assert (two - exact).abs().max() > 1e-6


# ---------------------------------------------------------------- Quantum-Train


def test_quantum_train_backprop_through_noise() -> None:
    torch.manual_seed(0)
    target = nn.Linear(3, 2)  # k = 8 weights: 2 chunks of 4, 2 qubits each
    noisy = QuantumTrain(target, 2, chunks=2, noise="depolarizing:0.05,readout:0.02",
                         dtype=torch.float64)
    assert noisy.estimator is None and noisy.grad == "backprop"
    probs = noisy._circuit_probabilities(0, noisy.chunks)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, dtype=torch.float64))
    template, angles = circuit_of(noisy.qnn)
    torch.testing.assert_close(probs, TorchBackend(noise="depolarizing:0.05,readout:0.02")
                               .probabilities(template, angles.detach()))
    assert (probs - noisy.qnn().detach()).abs().max() > 1e-3  # not the noise-free circuit
    (noisy.generate_flat() * torch.arange(8.0)).sum().backward()
    grads = [p.grad for p in noisy.qnn.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().max() > 0 for g in grads)


# ---------------------------------------------------------------- bad inputs


def test_noise_settings_accepted_and_refused() -> None:
    check_gradient_setup("torch", None, "depolarizing:0.01", "backprop")
    with pytest.raises(UserError, match="shots=100, noise='depolarizing:0.01'.*"
                                        "with or without noise, for 'backprop'"):
        check_gradient_setup("torch", 100, "depolarizing:0.01", "backprop")
    assert isinstance(make_backend("torch", noise="depolarizing:0.01"), TorchBackend)
    with pytest.raises(UserError, match="noise 'readout:0.1' is not supported by the "
                                        "'pennylane' backend; use backend 'torch'"):
        make_backend("pennylane", noise="readout:0.1")
    with pytest.raises(UserError, match="not supported by the 'pennylane:lightning.qubit'"):
        QuantumTrain(nn.Linear(3, 2), 1, backend="pennylane:lightning.qubit",
                     noise="depolarizing:0.01", grad="spsa")
    with pytest.raises(UserError, match=r"depolarizing probability must be in \[0, 1\]"):
        noisy_probabilities(*_ring(2), 1.5)


def test_density_matrix_too_large_is_refused() -> None:
    with pytest.raises(DensityMatrixTooLarge, match=r"1 noisy circuit\(s\) of 16 qubits need "
                                                    r"about 64\.0 GiB"):
        check_density_fits(16, available=2**30)
    with pytest.raises(UserError, match="3 noisy circuit"):  # a UserError: the CLI prints it
        check_density_fits(10, circuits=3, blocks=50, available=2**20)
    assert check_density_fits(10, blocks=50, available=2**40) == 54 * 4**10 * 4

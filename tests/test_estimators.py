"""Gradient estimators: parameter-shift equals autograd (four-term rule for CU3),
SPSA is unbiased within its sampling error, shares of a split backward pass sum to
the full VJP, and QuantumTrain routes non-backprop set-ups through them."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from torch import nn

from qtrl.errors import UserError
from qtrl.generator import QuantumTrain
from qtrl.quantum.ansatz import ANSATZE
from qtrl.quantum.backends import CircuitTemplate, TorchBackend, circuit_of
from qtrl.quantum.estimators import (
    FOUR_TERM,
    SPSA,
    TWO_TERM,
    GradientEstimator,
    ParameterShift,
    ShiftRule,
    check_gradient_setup,
    make_estimator,
    shift_rules,
)


def _setup(name: str, n: int, circuits: int, layers: int = 2, seed: int = 0):
    torch.manual_seed(seed + 31 * n + circuits)
    ansatz = ANSATZE[name](n, layers, circuits, dtype=torch.float64)
    template, angles = circuit_of(ansatz)
    g = torch.randn(circuits, 2**n, dtype=torch.float64)
    return ansatz, template, angles.detach(), g


def _autograd_vjp(template: CircuitTemplate, angles: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    x = angles.clone().requires_grad_()
    (TorchBackend().probabilities(template, x) * g).sum().backward()
    return x.grad


# ---------------------------------------------------------------- shift rules


def test_rules_per_gate() -> None:
    template, _ = circuit_of(ANSATZE["ring-u3"](2, 1))
    rules = shift_rules(template)
    # two U3 (θ, φ, λ), then two CU3: only the CU3's θ needs four terms
    assert rules[:6] == [TWO_TERM] * 6
    assert rules[6:] == [FOUR_TERM, TWO_TERM, TWO_TERM] * 2
    d1, d2 = FOUR_TERM.coefficients[0], -FOUR_TERM.coefficients[2]
    assert d1 == pytest.approx((math.sqrt(2) + 1) / (4 * math.sqrt(2)))
    assert d2 == pytest.approx((math.sqrt(2) - 1) / (4 * math.sqrt(2)))


@pytest.mark.parametrize("rule, freqs", [(TWO_TERM, (1.0,)), (FOUR_TERM, (0.5, 1.0))])
def test_rule_is_exact_for_its_frequencies(rule: ShiftRule, freqs: tuple[float, ...]) -> None:
    """f(x) = a + Σ b_w cos(wx) + c_w sin(wx): the rule gives f'(x) exactly."""
    gen = torch.Generator().manual_seed(1)
    b = torch.randn(len(freqs), generator=gen, dtype=torch.float64)
    c = torch.randn(len(freqs), generator=gen, dtype=torch.float64)
    w = torch.tensor(freqs, dtype=torch.float64)

    def f(x: float) -> float:
        return float(0.3 + (b * torch.cos(w * x) + c * torch.sin(w * x)).sum())

    for x in (0.0, 0.7, -2.1):
        exact = float((-b * w * torch.sin(w * x) + c * w * torch.cos(w * x)).sum())
        est = sum(k * f(x + s) for s, k in zip(rule.shifts, rule.coefficients))
        assert est == pytest.approx(exact, abs=1e-12)


# ---------------------------------------------------------------- parameter-shift


@pytest.mark.parametrize("name", sorted(ANSATZE))
@pytest.mark.parametrize("n, circuits", [(2, 1), (3, 2), (4, 1)])
def test_parameter_shift_equals_autograd(name: str, n: int, circuits: int) -> None:
    ansatz, template, angles, g = _setup(name, n, circuits)
    est = ParameterShift(TorchBackend(), template)
    x = angles.clone().requires_grad_()
    probs = est(x)
    torch.testing.assert_close(probs, ansatz().detach(), atol=1e-12, rtol=0)
    (probs * g).sum().backward()
    torch.testing.assert_close(x.grad, _autograd_vjp(template, angles, g), atol=1e-5, rtol=0)
    # and into the ansatz's own parameters, against its fused adjoint simulator
    _, live = circuit_of(ansatz)
    (est(live) * g).sum().backward()
    shifted = [p.grad.clone() for p in ansatz.parameters()]
    ansatz.zero_grad()
    (ansatz() * g).sum().backward()
    for a, b in zip(shifted, ansatz.parameters()):
        torch.testing.assert_close(a, b.grad, atol=1e-5, rtol=0)


def test_two_term_rule_is_wrong_for_controlled_u3_theta() -> None:
    """Why CU3's θ needs four terms: the two-term rule misses its frequency 1/2."""
    _, template, angles, g = _setup("ring-u3", 3, 1)
    est = ParameterShift(TorchBackend(), template)
    est.rules = [TWO_TERM] * template.n_angles
    wrong = est.vjp(angles, g)
    right = _autograd_vjp(template, angles, g)
    theta = [k for k, (name, i) in enumerate(template.owner()) if name == "cu3" and i == 0]
    others = [k for k in range(template.n_angles) if k not in theta]
    torch.testing.assert_close(wrong[:, others], right[:, others], atol=1e-5, rtol=0)
    assert (wrong[:, theta] - right[:, theta]).abs().max() > 1e-3


def test_evaluation_counts() -> None:
    n, layers, circuits = 3, 2, 2
    _, template, angles, g = _setup("ring-u3", n, circuits, layers)
    est = ParameterShift(TorchBackend(), template, max_batch=50)
    expected = circuits * n * layers * (3 * 2 + 4 + 2 + 2)  # U3: 3×2, CU3: 4 + 2 + 2
    assert est.backward_evaluations(circuits) == expected
    x = angles.clone().requires_grad_()
    (est(x) * g).sum().backward()
    c = est.counts
    assert (c.forward, c.backward, c.last_backward, c.last_backward_total) == \
        (circuits, expected, expected, expected)
    assert c.backend_calls == 1 + math.ceil(expected / 50)  # blocks of max_batch rows
    # CartPole preset size: n = 10, L = 5 -> 700 shifted circuits per update
    big, _ = circuit_of(ANSATZE["ring-u3"](10, 5))
    assert ParameterShift(TorchBackend(), big).backward_evaluations(1) == 700
    assert SPSA(TorchBackend(), big, samples=3).backward_evaluations(2) == 12
    c.reset()
    assert c.forward == c.backward == c.backend_calls == 0


# ---------------------------------------------------------------- SPSA


def test_spsa_is_unbiased_within_sampling_error() -> None:
    _, template, angles, g = _setup("ring-u3", 2, 1, layers=1)
    true = _autograd_vjp(template, angles, g)
    est = SPSA(TorchBackend(), template, c=0.01, samples=1, seed=7)
    draws = torch.stack([est.vjp(angles, g) for _ in range(2000)])  # (N, 1, P)
    mean, std = draws.mean(0), draws.std(0)
    bound = 5 * std / math.sqrt(draws.shape[0]) + 1e-3  # + O(c²) bias
    assert ((mean - true).abs() <= bound).all(), (mean - true).abs().max()
    # a single draw is not the gradient: the test above is not vacuous
    assert (draws[0] - true).abs().max() > 1e-2


def test_spsa_averages_samples_and_is_seeded() -> None:
    _, template, angles, g = _setup("ry-cnot", 3, 2)
    one = SPSA(TorchBackend(), template, samples=4, seed=3).vjp(angles, g)
    two = SPSA(TorchBackend(), template, samples=4, seed=3).vjp(angles, g)
    torch.testing.assert_close(one, two, atol=0, rtol=0)
    est = SPSA(TorchBackend(), template, samples=4, seed=3)
    est.vjp(angles, g)
    assert est.counts.last_backward == 2 * 4 * 2
    assert not torch.equal(est.vjp(angles, g), one)  # fresh directions next time
    with pytest.raises(UserError, match="step c"):
        SPSA(TorchBackend(), template, c=0.0)
    with pytest.raises(UserError, match="samples"):
        SPSA(TorchBackend(), template, samples=0)


# ---------------------------------------------------------------- partition


@pytest.mark.parametrize("method", ["parameter-shift", "spsa"])
@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_partition_shares_sum_to_full_vjp(method: str, world: int) -> None:
    _, template, angles, g = _setup("ring-u3", 3, 2)
    options = {"seed": 11} if method == "spsa" else {}
    full_est = make_estimator(method, TorchBackend(), template, **options)
    full = full_est.vjp(angles, g)
    shares, counts = [], []
    for rank in range(world):
        est = make_estimator(method, TorchBackend(), template, partition=(rank, world),
                             **options)
        shares.append(est.vjp(angles, g))
        counts.append(est.counts.last_backward)
        assert est.counts.last_backward_total == full_est.counts.last_backward
    torch.testing.assert_close(sum(shares), full, atol=1e-12, rtol=0)
    assert sum(counts) == full_est.counts.last_backward
    assert max(counts) - min(counts) <= 1  # balanced


def test_partition_through_autograd() -> None:
    _, template, angles, g = _setup("ry-cnot", 3, 1)
    total = torch.zeros_like(angles)
    for rank in range(2):
        est = ParameterShift(TorchBackend(), template)
        est.set_partition(rank, 2)
        x = angles.clone().requires_grad_()
        (est(x) * g).sum().backward()
        total += x.grad
    torch.testing.assert_close(total, _autograd_vjp(template, angles, g), atol=1e-10, rtol=0)
    with pytest.raises(UserError, match="rank"):
        ParameterShift(TorchBackend(), template, partition=(2, 2))


class _FakeGroup:
    """A sum all-reduce among threads (stands in for torch.distributed)."""

    def __init__(self, world: int) -> None:
        self.barrier = threading.Barrier(world)
        self.slots: list[torch.Tensor | None] = [None] * world

    def all_reduce(self, rank: int, t: torch.Tensor) -> torch.Tensor:
        self.slots[rank] = t.clone()
        self.barrier.wait()
        total = sum(self.slots)
        self.barrier.wait()  # nobody overwrites a slot before all have read
        return total


def test_combine_gives_every_agent_the_mean_gradient() -> None:
    """Agents with different losses split one backward pass and all end up with
    the gradient of the mean loss (the Dist-QTRL update)."""
    world = 3
    _, template, angles, _ = _setup("ring-u3", 3, 1)
    gs = [torch.randn(1, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(r))
          for r in range(world)]
    expected = sum(_autograd_vjp(template, angles, g) for g in gs) / world
    group = _FakeGroup(world)
    results: dict[int, torch.Tensor] = {}
    evaluations: dict[int, int] = {}

    def agent(rank: int) -> None:
        est = ParameterShift(TorchBackend(), template, partition=(rank, world),
                             combine=lambda t: group.all_reduce(rank, t))
        results[rank] = est.vjp(angles, gs[rank])
        evaluations[rank] = est.counts.last_backward

    threads = [threading.Thread(target=agent, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == list(range(world))
    for rank in range(world):
        torch.testing.assert_close(results[rank], expected, atol=1e-10, rtol=0)
    assert sum(evaluations.values()) == ParameterShift(TorchBackend(), template) \
        .backward_evaluations(1)


# ---------------------------------------------------------------- set-up checks


def test_gradient_setup_errors() -> None:
    check_gradient_setup("torch", None, None, "backprop")
    for backend in ("torch", "pennylane", "qiskit"):
        for grad in ("parameter-shift", "spsa"):
            check_gradient_setup(backend, 100, None, grad)
    with pytest.raises(UserError, match="backprop.*needs the exact torch backend.*"
                                        "'parameter-shift' or 'spsa'"):
        check_gradient_setup("qiskit", None, None, "backprop")
    with pytest.raises(UserError, match="shots=1024"):
        check_gradient_setup("torch", 1024, None, "backprop")
    with pytest.raises(UserError, match="unknown gradient method 'adjoint'"):
        check_gradient_setup("torch", None, None, "adjoint")
    template, _ = circuit_of(ANSATZE["ry-cnot"](2, 1))
    with pytest.raises(UserError, match="no estimator"):
        make_estimator("backprop", TorchBackend(), template)
    with pytest.raises(UserError, match="bad options"):
        make_estimator("parameter-shift", TorchBackend(), template, samples=3)
    assert isinstance(make_estimator("spsa", TorchBackend(), template), GradientEstimator)


# ---------------------------------------------------------------- generator


def _tiny_target() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 2)  # k = 8 weights: 3 qubits


def test_generator_default_is_backprop() -> None:
    qt = QuantumTrain(_tiny_target(), 2)
    assert qt.estimator is None and qt.grad == "backprop" and qt.backend_name == "torch"
    with pytest.raises(UserError, match="backprop"):
        QuantumTrain(_tiny_target(), 2, backend="qiskit")
    with pytest.raises(UserError, match="backprop"):
        QuantumTrain(_tiny_target(), 2, shots=100)


@pytest.mark.parametrize("ansatz", sorted(ANSATZE))
def test_generator_parameter_shift_matches_backprop(ansatz: str) -> None:
    """Same model, same loss: every gradient (circuit and mapping) agrees."""
    torch.manual_seed(1)
    ref = QuantumTrain(_tiny_target(), 2, chunks=2, ansatz=ansatz, dtype=torch.float64)
    ps = QuantumTrain(_tiny_target(), 2, chunks=2, ansatz=ansatz, dtype=torch.float64,
                      grad="parameter-shift")
    ps.load_state_dict(ref.state_dict())
    target = torch.randn(ref.k, dtype=torch.float64)
    for model in (ref, ps):
        ((model.generate_flat().double() - target) ** 2).sum().backward()
    torch.testing.assert_close(ps.probabilities(), ref.probabilities(), atol=1e-12, rtol=0)
    for (name, a), b in zip(ref.named_parameters(), ps.parameters()):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=0, msg=name)
    assert ps.estimator.counts.last_backward == ps.estimator.backward_evaluations(2)


@pytest.mark.parametrize("grad", ["parameter-shift", "spsa"])
def test_generator_on_qiskit_with_shots(grad: str) -> None:
    qt = QuantumTrain(_tiny_target(), 1, backend="qiskit", shots=1024, grad=grad, seed=3,
                      grad_options={"samples": 2} if grad == "spsa" else None)
    # generate_flat().sum() is 0 by construction (w - mean(w)): weight it instead
    weights = torch.randn(qt.k, generator=torch.Generator().manual_seed(0))
    (qt.generate_flat() * weights).sum().backward()
    grads = [p.grad for p in qt.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(p.grad.abs().sum() > 0 for p in qt.qnn.parameters())
    est = qt.estimator
    assert est.counts.forward == 1
    assert est.counts.last_backward == est.backward_evaluations(1)

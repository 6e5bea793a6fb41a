"""The compiled REINFORCE pass against the torch ops, finite differences, and
through the Quantum-Train generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from qtrl import jit
from qtrl.rl.policy_gradient import _DenseLoss, dense_plan, dense_reinforce_loss
from qtrl.rl.reinforce import normalise_returns, reinforce_loss

pytestmark = pytest.mark.skipif(not jit.available(), reason="needs Numba")


def _net(sizes: list[int], act: type[nn.Module], dtype: torch.dtype, seed: int = 0):
    torch.manual_seed(seed)
    mods: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        mods.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            mods.append(act())
    return nn.Sequential(*mods).to(dtype)


def _batch(d: int, n_actions: int, rows: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(rows, d)).astype(np.float32)
    actions = rng.integers(0, n_actions, rows)
    returns = rng.normal(size=rows) * 3 + 1
    return obs, actions, returns


def _torch_terms(net, obs, actions, returns, episodes, entropy, dtype):
    logits = net(torch.from_numpy(obs).to(dtype))
    g = normalise_returns(torch.from_numpy(returns).to(dtype))
    return reinforce_loss(logits, torch.from_numpy(actions), g, episodes, entropy)


@pytest.mark.parametrize(("sizes", "act"), [([4, 16, 3], nn.ReLU), ([5, 8, 7, 2], nn.Tanh),
                                            ([6, 2], nn.ReLU), ([3, 9, 9, 9, 4], nn.ReLU)])
@pytest.mark.parametrize("entropy", [0.0, 0.05])
def test_matches_the_torch_ops_in_float64(sizes, act, entropy: float) -> None:
    net = _net(sizes, act, torch.float64)
    obs, actions, returns = _batch(sizes[0], sizes[-1], 37)
    ref = _torch_terms(net, obs, actions, returns, 3, entropy, torch.float64)
    ref.loss.backward()
    expected = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    terms = dense_reinforce_loss(net, dict(net.named_parameters()), obs, actions, returns, 3,
                                 entropy)
    terms.loss.backward()
    for ours, theirs in ((terms.loss, ref.loss), (terms.policy_loss, ref.policy_loss),
                         (terms.entropy, ref.entropy)):
        ours = float(ours.detach()) if torch.is_tensor(ours) else ours
        assert ours == pytest.approx(float(theirs.detach()), rel=1e-12, abs=1e-12)
    for p, g in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12)


def test_float32_stays_near_the_torch_ops() -> None:
    net = _net([4, 128, 2], nn.ReLU, torch.float32)
    obs, actions, returns = _batch(4, 2, 400)
    ref = _torch_terms(net, obs, actions, returns, 8, 0.01, torch.float32)
    ref.loss.backward()
    expected = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    terms = dense_reinforce_loss(net, dict(net.named_parameters()), obs, actions, returns, 8,
                                 0.01)
    terms.loss.backward()
    assert terms.loss.dtype == torch.float32
    assert float(terms.loss.detach()) == pytest.approx(float(ref.loss.detach()), rel=1e-4, abs=1e-5)
    for p, g in zip(net.parameters(), expected, strict=True):
        assert p.grad.dtype == torch.float32
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5)


def test_gradients_match_finite_differences() -> None:
    net = _net([3, 5, 4, 3], nn.Tanh, torch.float64, seed=2)
    obs, actions, returns = _batch(3, 3, 11, seed=4)
    tensors = tuple(p.detach().clone().requires_grad_(True) for p in net.parameters())

    def loss(*ts):
        return _DenseLoss.apply(obs, actions, returns, 2, 0.015, (2, 2, 0), [], *ts)
    assert torch.autograd.gradcheck(loss, tensors, eps=1e-6, atol=1e-7)


def test_a_one_step_batch_is_only_centred() -> None:
    net = _net([3, 4, 2], nn.ReLU, torch.float64)
    obs, actions, returns = _batch(3, 2, 1)
    ref = _torch_terms(net, obs, actions, returns, 1, 0.1, torch.float64)
    terms = dense_reinforce_loss(net, dict(net.named_parameters()), obs, actions, returns, 1,
                                 0.1)
    assert float(terms.loss.detach()) == pytest.approx(float(ref.loss.detach()), rel=1e-12)


def test_other_modules_run_the_torch_ops() -> None:
    assert dense_plan(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))) is None
    assert dense_plan(nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(),
                                    nn.Linear(4, 2))) is None
    assert dense_plan(nn.Sequential(nn.Linear(3, 4), nn.ReLU())) is None   # ends activated
    assert dense_plan(nn.Linear(3, 2)) is None
    net = nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2))
    obs, actions, returns = _batch(3, 2, 5)
    assert dense_reinforce_loss(net, dict(net.named_parameters()), obs, actions, returns,
                                1) is None
    assert dense_plan(_net([4, 8, 2], nn.ReLU, torch.float32)) == (
        (("0.weight", "0.bias", 1), ("2.weight", "2.bias", 0)), 2)


def test_gradient_reaches_the_quantum_train_parameters() -> None:
    from qtrl.generator import QuantumTrain
    from qtrl.presets import build_policy
    torch.manual_seed(5)
    qt = QuantumTrain(build_policy(4, [16], 2), layers=2, mapping_hidden=[6, 6],
                      mapping_activation="relu").double()
    obs, actions, returns = _batch(4, 2, 30)

    def grads(compiled: bool) -> list[torch.Tensor]:
        qt.zero_grad()
        weights = qt.generate()
        if compiled:
            terms = dense_reinforce_loss(qt.target, weights, obs, actions, returns, 2, 0.01)
        else:
            logits = qt(torch.from_numpy(obs).double(), weights=weights)
            g = normalise_returns(torch.from_numpy(returns))
            terms = reinforce_loss(logits, torch.from_numpy(actions), g, 2, 0.01)
        terms.loss.backward()
        return [p.grad.clone() for p in qt.parameters()]

    for ours, theirs in zip(grads(True), grads(False), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)

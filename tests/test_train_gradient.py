"""REINFORCE's update (:class:`qtrl.algos.Reinforce`) against independent computations.

Reference (per step): at every step ``t`` of an episode the weights are
regenerated with autograd, the policy is evaluated on ``s_t`` and the term
``-log π(a_t|s_t) · Ĝ_t`` is added to the loss; backward through all of them.
The algorithm: generate once, one batched forward over every step, backward
once. The two are the same function of the trainable parameters, so their
gradients agree to rounding — checked in float64 on a fixed short episode.
The loss is also checked against a hand calculation.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from qtrl.algos.reinforce import Reinforce, normalise_returns
from qtrl.generator import QuantumTrain
from qtrl.presets import build_policy
from qtrl.rl.env import make_vector_env
from qtrl.rl.policy import ClassicalPolicy
from qtrl.rl.returns import discounted_returns
from qtrl.rl.rollout import Rollout, collect_episodes


def _algo(model, entropy: float = 0.0) -> Reinforce:
    return Reinforce(model, SimpleNamespace(gamma=0.99, lr=1e-3, mapping_lr=None,
                                            entropy=entropy, max_grad_norm=None))


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


def _per_step_loss(logits: torch.Tensor, action: int, ret: torch.Tensor,
                   entropy: float) -> torch.Tensor:
    """One step's term, written out: −log π(a|s)·Ĝ − c·H(π(·|s)) (one episode)."""
    p = torch.softmax(logits[0], -1)
    return -torch.log(p[action]) * ret - entropy * -(p * torch.log(p)).sum()


def _check_equal(model, entropy: float) -> None:
    algo = _algo(model, entropy)
    envs = make_vector_env("CartPole-v1", 1, max_steps=12)
    try:   # a real CartPole episode (at most 12 steps) played with the model's weights
        batch = collect_episodes(envs, algo.actor(), 1, np.random.default_rng(3), [3])
    finally:
        envs.close()
    assert 5 <= len(batch.actions) <= 12
    algo.gradient(batch)
    batched = _grads(model)

    # Reference: regenerate and evaluate at every step, sum the per-step terms.
    obs = torch.from_numpy(batch.obs).double()
    g = discounted_returns(batch.rewards, batch.episode_lengths, 0.99)
    returns = normalise_returns(torch.from_numpy(g))
    model.zero_grad()
    total = torch.zeros((), dtype=torch.float64)
    for t in range(len(batch.actions)):
        logits = model(obs[t:t + 1], weights=model.generate())
        total = total + _per_step_loss(logits, int(batch.actions[t]), returns[t], entropy)
    total.backward()
    per_step = _grads(model)

    flat_a = torch.cat([g.flatten() for g in batched])
    flat_b = torch.cat([g.flatten() for g in per_step])
    assert flat_b.norm() > 0
    assert (flat_a - flat_b).norm() <= 1e-5 * flat_b.norm()
    # Element-wise too; a gradient that is zero in exact arithmetic (the mapping's
    # output bias, removed by ``w - mean(w)``) is compared against the scale of the rest.
    torch.testing.assert_close(flat_a, flat_b, rtol=1e-5, atol=1e-10 * flat_b.abs().max().item())


@pytest.mark.parametrize("entropy", [0.0, 0.05])
def test_quantum_train_batched_gradient_equals_per_step(entropy: float) -> None:
    torch.manual_seed(0)
    qt = QuantumTrain(build_policy(4, (16,), 2).double(), layers=2, mapping_hidden=(6, 6),
                      dtype=torch.float64).double()
    _check_equal(qt, entropy)


@pytest.mark.parametrize("entropy", [0.0, 0.05])
def test_classical_batched_gradient_equals_per_step(entropy: float) -> None:
    torch.manual_seed(0)
    _check_equal(ClassicalPolicy(build_policy(4, (16,), 2).double()), entropy)


def test_returns_by_hand() -> None:
    rewards = np.array([1.0, 1.0, 1.0, 2.0, 0.0])
    lengths = np.array([3, 2])
    got = discounted_returns(rewards, lengths, 0.5)
    np.testing.assert_allclose(got, [1 + 0.5 + 0.25, 1 + 0.5, 1.0, 2.0, 0.0])


def test_loss_by_hand() -> None:
    """Two one-step episodes through a 1 → 2 linear policy whose logits are
    (0, 0) and (log 3, 0): the loss from the formula, by hand."""
    net = torch.nn.Sequential(torch.nn.Linear(1, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[np.log(3.0)], [0.0]]))
        net[0].bias.zero_()
    algo = _algo(ClassicalPolicy(net), entropy=0.1)
    algo.actor()
    raw = np.array([2.0, 0.0])        # one-step returns; normalised: ±1/√2 (unbiased std √2)
    batch = Rollout(obs=np.array([[0.0], [1.0]], dtype=np.float32),
                    actions=np.array([0, 0]), rewards=raw,
                    episode=np.array([0, 1]), episode_returns=raw,
                    episode_lengths=np.array([1, 1]), truncated=np.zeros(2, bool), env_steps=2)
    stats = algo.gradient(batch)
    logp = np.log([0.5, 0.75])
    ent = [np.log(2.0), -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))]
    g = 1 / (np.sqrt(2.0) + 1e-8)   # the normaliser's eps
    expected = -(logp[0] * g - logp[1] * g) / 2 - 0.1 * sum(ent) / 2
    assert stats["loss"] == pytest.approx(expected, rel=1e-12)
    assert stats["entropy"] == pytest.approx(np.mean(ent), rel=1e-12)


def test_gradient_needs_the_actors_weights() -> None:
    algo = _algo(ClassicalPolicy(build_policy(4, (8,), 2)))
    with pytest.raises(RuntimeError, match="actor"):
        algo.gradient(None)


def test_two_parameter_groups_step_like_adam() -> None:
    """A separate mapping rate makes two groups; each parameter steps once per
    update, as torch's Adam does (the replaced hand-made step stepped the first
    group twice when a later one had no gradient)."""
    torch.manual_seed(0)
    qt = QuantumTrain(build_policy(4, (8,), 2), layers=1, mapping_hidden=(4,))
    algo = Reinforce(qt, SimpleNamespace(gamma=0.99, lr=1e-2, mapping_lr=1e-3, entropy=0.0,
                                         max_grad_norm=None))
    assert len(algo.optimizer.param_groups) == 2
    mapping = {id(p) for p in qt.mapping.parameters()}
    for _ in range(2):
        for p in qt.parameters():   # the mapping group has no gradient this time
            p.grad = None if id(p) in mapping else torch.ones_like(p)
        algo.step()
    order = [p for group in algo.optimizer.param_groups for p in group["params"]]
    steps = {id(order[i]): int(s["step"]) for i, s in algo.optimizer.state_dict()["state"].items()}
    assert all(steps[id(p)] == 2 for p in qt.parameters() if id(p) not in mapping)
    assert not any(id(p) in steps for p in qt.mapping.parameters())


def test_normalise_returns() -> None:
    g = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    out = normalise_returns(g)
    assert out.mean().abs() < 1e-12
    assert out.std().item() == pytest.approx(1.0, rel=1e-6)
    assert normalise_returns(torch.tensor([5.0])).item() == 0.0


def test_returns_by_the_python_recurrence() -> None:
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 60, 9)
    rewards = rng.normal(size=int(lengths.sum()))
    expected = np.empty_like(rewards)
    end = len(rewards)
    for length in lengths[::-1]:
        g = 0.0
        for t in range(end - 1, end - length - 1, -1):
            g = float(rewards[t]) + 0.99 * g
            expected[t] = g
        end -= length
    np.testing.assert_allclose(discounted_returns(rewards, lengths, 0.99), expected,
                               rtol=1e-13, atol=1e-13)

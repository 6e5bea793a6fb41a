"""The batched update's gradient equals the reference's per-step formulation.

Reference (per step): at every step ``t`` of an episode the weights are
regenerated with autograd, the policy is evaluated on ``s_t`` and the term
``-log π(a_t|s_t) · Ĝ_t`` is added to the loss; backward through all of them.
Ours: generate once, one batched forward over every step, backward once.
The two are the same function of the trainable parameters, so their gradients
agree to rounding — checked in float64 on a fixed short episode.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qtrl.generator import QuantumTrain
from qtrl.presets import build_policy
from qtrl.rl.env import make_vector_env
from qtrl.rl.policy import ClassicalPolicy, make_actor
from qtrl.rl.reinforce import discounted_returns, normalise_returns, reinforce_loss
from qtrl.rl.rollout import collect_episodes


def _episode(model, seed: int = 3):
    """A real CartPole episode (at most 12 steps) played with the model's weights."""
    envs = make_vector_env("CartPole-v1", 1, max_steps=12)
    try:
        actor = make_actor(model.target, {k: v.float() for k, v in model.generate().items()})
        return collect_episodes(envs, actor, 1, np.random.default_rng(seed), [seed], 0.99)
    finally:
        envs.close()


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


def _check_equal(model, entropy: float) -> None:
    batch = _episode(model)
    assert 5 <= len(batch.actions) <= 12
    obs = torch.from_numpy(batch.obs).double()
    actions = torch.from_numpy(batch.actions)
    returns = normalise_returns(torch.from_numpy(batch.returns))

    # Ours: one generation, one batched forward.
    model.zero_grad()
    weights = model.generate()
    reinforce_loss(model(obs, weights=weights), actions, returns, 1, entropy).loss.backward()
    batched = _grads(model)

    # Reference: regenerate and evaluate at every step, sum the per-step terms.
    model.zero_grad()
    total = torch.zeros((), dtype=torch.float64)
    for t in range(len(actions)):
        w_t = model.generate()
        logits = model(obs[t:t + 1], weights=w_t)
        total = total + reinforce_loss(logits, actions[t:t + 1], returns[t:t + 1], 1,
                                       entropy).loss
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


def test_classical_batched_gradient_equals_per_step() -> None:
    torch.manual_seed(0)
    _check_equal(ClassicalPolicy(build_policy(4, (16,), 2).double()), 0.0)


def test_returns_by_hand() -> None:
    rewards = np.array([1.0, 1.0, 1.0, 2.0, 0.0])
    lengths = np.array([3, 2])
    got = discounted_returns(rewards, lengths, 0.5)
    np.testing.assert_allclose(got, [1 + 0.5 + 0.25, 1 + 0.5, 1.0, 2.0, 0.0])


def test_loss_by_hand() -> None:
    logits = torch.tensor([[0.0, 0.0], [np.log(3.0), 0.0]], dtype=torch.float64)
    actions = torch.tensor([0, 0])
    returns = torch.tensor([1.0, -1.0], dtype=torch.float64)
    terms = reinforce_loss(logits, actions, returns, episodes=2, entropy_coef=0.1)
    logp = np.log([0.5, 0.75])
    ent = [np.log(2.0), -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))]
    expected = -(logp[0] * 1 - logp[1]) / 2 - 0.1 * sum(ent) / 2
    assert terms.loss.item() == pytest.approx(expected, rel=1e-12)


def test_normalise_returns() -> None:
    g = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    out = normalise_returns(g)
    assert out.mean().abs() < 1e-12
    assert out.std().item() == pytest.approx(1.0, rel=1e-6)
    assert normalise_returns(torch.tensor([5.0])).item() == 0.0


def test_plain_blas_changes_no_result_and_restores_onednn() -> None:
    """Updates run their matmuls through BLAS (``qtrl.train.plain_blas``) for speed;
    the generated weights and gradients are bit for bit those of the default path."""
    from qtrl.train import plain_blas
    torch.manual_seed(0)
    qt = QuantumTrain(build_policy(4, [16], 2), layers=2, mapping_hidden=[10, 10])

    def weights_and_grads():
        qt.zero_grad(set_to_none=True)
        w = qt.generate_flat()
        (w * torch.linspace(-1, 1, w.numel())).sum().backward()
        return w.detach(), [p.grad.clone() for p in qt.parameters()]

    before = torch.backends.mkldnn.enabled
    w_default, g_default = weights_and_grads()
    with plain_blas():
        assert not torch.backends.mkldnn.enabled
        w_blas, g_blas = weights_and_grads()
    assert torch.backends.mkldnn.enabled == before
    assert torch.equal(w_default, w_blas)
    assert all(torch.equal(a, b) for a, b in zip(g_default, g_blas, strict=True))


def test_returns_round_as_the_python_recurrence() -> None:
    """The compiled recurrence gives Python's floats bit for bit (no fused
    multiply-add): runs trained before it was compiled stay reproducible."""
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
    np.testing.assert_array_equal(discounted_returns(rewards, lengths, 0.99), expected)

"""The autograd-free update gradient against the autograd path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qtrl import jit
from qtrl.generator import QuantumTrain
from qtrl.presets import build_policy
from qtrl.rl import direct
from qtrl.rl.env import make_vector_env
from qtrl.rl.policy import ClassicalPolicy
from qtrl.train import reinforce_gradient, update_seeds

pytestmark = pytest.mark.skipif(not jit.available(), reason="needs Numba")


def _grads(model, monkeypatch, use_direct: bool, entropy: float):
    if not use_direct:
        monkeypatch.setattr("qtrl.train.direct_gradient", lambda *a, **k: None)
    envs = make_vector_env("CartPole-v1", 3)
    try:
        seeds, rng = update_seeds(4, 2, 3)
        step = reinforce_gradient(model, envs, 5, seeds, rng, 0.97, entropy)
    finally:
        envs.close()
    monkeypatch.undo()
    return step, [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("entropy", [0.0, 0.02])
def test_direct_equals_the_autograd_path_bit_for_bit(monkeypatch, dtype, entropy) -> None:
    torch.manual_seed(1)
    qt = QuantumTrain(build_policy(4, [16], 2), layers=2, mapping_hidden=[6, 6],
                      mapping_activation="relu").to(dtype)
    assert direct._Generation.of(qt) is not None
    a, grads_a = _grads(qt, monkeypatch, True, entropy)
    b, grads_b = _grads(qt, monkeypatch, False, entropy)
    assert a.loss == pytest.approx(b.loss, rel=1e-12) and a.grad_norm == b.grad_norm
    np.testing.assert_array_equal(a.batch.obs, b.batch.obs)
    for g, h in zip(grads_a, grads_b, strict=True):
        assert torch.equal(g, h)


def test_direct_classical_equals_the_autograd_path(monkeypatch) -> None:
    torch.manual_seed(2)
    model = ClassicalPolicy(build_policy(4, [16], 2))
    _, grads_a = _grads(model, monkeypatch, True, 0.01)
    _, grads_b = _grads(model, monkeypatch, False, 0.01)
    for g, h in zip(grads_a, grads_b, strict=True):
        assert torch.equal(g, h)


def test_other_models_take_the_autograd_path() -> None:
    torch.manual_seed(3)
    qt = QuantumTrain(build_policy(4, [8], 2), layers=1, mapping_hidden=[4],
                      ansatz="ry-cnot")
    envs = make_vector_env("CartPole-v1", 2)
    try:
        seeds, rng = update_seeds(0, 0, 2)
        assert direct.direct_gradient(qt, envs, 2, seeds, rng, 0.9, 0.0) is None
    finally:
        envs.close()

"""The trainable models behind one API, and the initial scale of generated weights."""

from __future__ import annotations

import pytest
import torch

from qtrl.config import TrainConfig
from qtrl.generator import QuantumTrain
from qtrl.rl.policy import ClassicalPolicy, build_model


@pytest.mark.parametrize("activation", ["none", "relu", "tanh"])
def test_qt_init_std_sets_the_generated_weight_scale(activation: str) -> None:
    config = TrainConfig.from_preset("cartpole-paper", hidden=(16,), layers=1, qt_init_std=0.25,
                                     mapping_activation=activation)
    torch.manual_seed(0)
    model = build_model(config, 4, 2)
    assert isinstance(model, QuantumTrain)
    assert model.generate_flat().std().item() == pytest.approx(0.25, rel=1e-5)
    torch.manual_seed(0)
    plain = build_model(TrainConfig.from_preset("cartpole-paper", hidden=(16,), layers=1,
                                                mapping_activation=activation,
                                                qt_init_std=None), 4, 2)
    # Only the scale changes: the same weights up to one factor.
    a, b = model.generate_flat().detach(), plain.generate_flat().detach()
    torch.testing.assert_close(a, b * (0.25 / b.std()), rtol=1e-4, atol=1e-6)


def test_classical_model_has_the_generator_api() -> None:
    model = build_model(TrainConfig.from_preset("cartpole-paper", classical=True), 4, 2)
    assert isinstance(model, ClassicalPolicy)
    weights = model.generate()
    assert set(weights) == {n for n, _ in model.target.named_parameters()}
    x = torch.randn(3, 4)
    torch.testing.assert_close(model(x, weights=weights), model.target(x))
    assert model.parameter_counts() == {"target_weights": 898, "total": 898}
    copy = model.materialize()
    assert copy is not model.target
    torch.testing.assert_close(copy(x), model.target(x))

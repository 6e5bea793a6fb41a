"""Learning runs (slow): the tuned Quantum-Train recipe solves CartPole.

The full three-seed comparison is ``scripts/results_training.py``; this checks
one seed end to end so a regression in the loop shows up in ``pytest -m slow``.
"""

from __future__ import annotations

import pytest
import torch

from qtrl.config import TrainConfig
from qtrl.train import train

TUNED = {"mapping_activation": "relu", "qt_init_std": 0.1, "episodes_per_update": 4,
         "lr": 7e-3, "anneal_lr": True, "max_grad_norm": 1.0}


@pytest.mark.slow
def test_quantum_train_solves_cartpole(tmp_path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = TrainConfig.from_preset("cartpole", seed=0, **TUNED)
        summary = train(config, tmp_path, tensorboard=False)
    finally:
        torch.set_num_threads(threads)
    assert summary["solved_at_episode"] is not None, summary
    assert summary["solved_at_episode"] <= 1000
    assert summary["final_return_avg100"] >= 400

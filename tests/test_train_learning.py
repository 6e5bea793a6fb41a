"""Learning runs (slow): the presets solve their tasks, end to end.

What the peer run (``scripts/peer_run.py``, tables in docs/RESULTS.md) shows
over ten seeds, checked on three so that a regression in the loop or the
algorithm shows up in ``pytest -m slow``: each preset's 100-episode average
reaches its target within the preset's budget, with a Quantum-Train actor and
critic, and does not collapse by the end of the budget.
"""

from __future__ import annotations

import pytest
import torch

from qtrl.config import TrainConfig
from qtrl.train import train


def _train(tmp_path, preset: str, seed: int) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = TrainConfig.from_preset(preset, seed=seed)
        run_dir = tmp_path / f"{preset}-seed{seed}"
        run_dir.mkdir()
        return train(config, run_dir, tensorboard=False)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("preset, floor", [("cartpole", 450.0), ("minigrid", 0.85)])
def test_preset_solves_its_task(tmp_path, preset: str, floor: float) -> None:
    summaries = [_train(tmp_path, preset, seed) for seed in (0, 1, 2)]
    assert all(s["solved_at_episode"] is not None for s in summaries), [
        (s["seed"], s["final_return_avg100"]) for s in summaries]
    assert all(s["final_return_avg100"] >= floor for s in summaries), [
        s["final_return_avg100"] for s in summaries]

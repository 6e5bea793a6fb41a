"""The training bench's controlled regimes and its reference-circuit mode."""

from __future__ import annotations

import torch

from qtrl.bench.per_step import gate_by_gate
from qtrl.bench.training import _build, controlled, random_play, time_update_pairs


def test_same_episode_regimes_give_both_models_identical_env_work() -> None:
    for behaviour, length in ((random_play, None), (controlled, 500)):
        totals = time_update_pairs([0], 1, 4, 4, behaviour)
        qt, classical = totals["QT"], totals["classical"]
        assert qt["steps"] == classical["steps"] and qt["env_steps"] == classical["env_steps"]
        if length:
            assert qt["steps"] == 4 * length      # the controller lasts every episode
        else:
            assert qt["steps"] < 4 * 100          # random play falls early


def test_own_policies_play_their_own_episodes() -> None:
    totals = time_update_pairs([1], 1, 4, 4, None)
    assert totals["QT"]["steps"] != totals["classical"]["steps"]


def test_gate_by_gate_runs_the_reference_circuit_with_the_same_weights() -> None:
    _, fast, _ = _build(False, 0)
    _, slow, _ = _build(False, 0)
    gate_by_gate(slow)
    assert slow.qnn.stage() is None
    w_fast, w_slow = fast.generate_flat(), slow.generate_flat()
    assert type(w_fast.grad_fn).__name__ == "_FusedRingGenerateBackward"   # one node
    assert type(w_slow.grad_fn).__name__ == "_FusedGenerateBackward"       # mapping only
    torch.testing.assert_close(w_slow, w_fast, rtol=1e-4, atol=1e-6)


def test_the_yardstick_is_stepped_beside_every_update() -> None:
    totals = time_update_pairs([0], 2, 4, 4, None)
    for t in totals.values():
        assert t["random_time"] > 0
        assert t["random_steps"] == 2 * 512 * 4

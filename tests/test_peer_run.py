"""scripts/peer_run.py: steps to target, the seeds parser, bad input, the table and SB3's view."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("peer_run", ROOT / "scripts" / "peer_run.py")
peer = importlib.util.module_from_spec(_spec)
sys.modules["peer_run"] = peer  # dataclasses look their module up there
_spec.loader.exec_module(peer)


def _episodes(returns: list[float], lengths: list[int]) -> list[tuple[float, int, float]]:
    return [(r, n, float(i)) for i, (r, n) in enumerate(zip(returns, lengths, strict=True))]


def test_steps_to_target_first_window_that_reaches_it():
    # 100 episodes of return 4 (length 10), then 104s (length 20): the window ending at
    # episode 101 averages (99·4 + 104)/100 = 5 — the target, reached there.
    eps = _episodes([4.0] * 100 + [104.0] * 5, [10] * 100 + [20] * 5)
    assert peer.steps_to_target(eps, 5.0) == (100 * 10 + 20, 100.0)
    assert peer.steps_to_target(eps, 5.01) == (100 * 10 + 2 * 20, 101.0)


def test_steps_to_target_needs_a_full_window():
    assert peer.steps_to_target(_episodes([500.0] * 99, [500] * 99), 475) is None
    assert peer.steps_to_target(_episodes([500.0] * 100, [7] * 100), 475) == (700, 99.0)
    assert peer.steps_to_target(_episodes([1.0] * 300, [1] * 300), 475) is None
    assert peer.steps_to_target([], 0.0) is None


def test_parse_seeds():
    assert peer.parse_seeds(["0-2"]) == [0, 1, 2]
    assert peer.parse_seeds(["0", "1", "5"]) == [0, 1, 5]
    assert peer.parse_seeds(["0-2", "2", "7-7"]) == [0, 1, 2, 7]


@pytest.mark.parametrize("bad", ["a", "3-1", "-1", "1-x", "1.5", ""])
def test_parse_seeds_rejects(bad):
    with pytest.raises(peer.UsageError, match=re.escape(repr(bad))):
        peer.parse_seeds([bad])


@pytest.mark.parametrize("argv, named", [
    (["--tasks", "cartpole", "nope"], ["'nope'", "cartpole, minigrid"]),
    (["--trainers", "ppo"], ["'ppo'", "qtrl, sb3, qtrl-classical"]),
    (["--seeds", "2-0"], ["'2-0'", "0-9"]),
])
def test_bad_input_is_one_line_and_exit_2(argv, named, capsys, tmp_path):
    assert peer.main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(n in err for n in named)
    assert not any(tmp_path.iterdir())


def test_missing_sb3_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(peer.importlib.util, "find_spec",
                        lambda name, *a: None if name == "stable_baselines3" else real(name, *a))
    assert peer.main(["--trainers", "sb3", "--out", str(tmp_path)]) == 2
    assert "pip install -e .[compare]" in capsys.readouterr().err


def test_qtrl_args():
    task = peer.TASKS["cartpole"]
    assert peer.qtrl_args(task, "qtrl", [], 1.0) == ["--preset", "cartpole"]
    assert peer.qtrl_args(task, "qtrl-classical", ["--lr", "0.01"], 0.5) == [
        "--preset", "cartpole", "--classical", "--lr", "0.01", "--total-steps", "50000"]
    assert peer.qtrl_args(task, "qtrl", ["--episodes", "60"], 0.5) == [
        "--preset", "cartpole", "--episodes", "60"]


def _run(trainer: str, seed: int, steps: int | None, wall: float | None) -> dict:
    return {"task": "cartpole", "trainer": trainer, "seed": seed, "ok": True,
            "steps_to_target": steps, "wall_to_target_s": wall, "final_avg100": 480.0,
            "params": 10, "env_steps": 1000}


def test_summary_medians_ratios_and_failures():
    runs = [_run("sb3", 0, 100, 10.0), _run("sb3", 1, 200, 20.0), _run("sb3", 2, 300, 30.0),
            _run("qtrl", 0, 400, 10.0), _run("qtrl", 1, None, None), _run("qtrl", 2, 600, 30.0),
            {"task": "cartpole", "trainer": "qtrl-classical", "seed": 0, "ok": False}]
    rows = peer.summarize(runs, ["cartpole"], ["qtrl", "qtrl-classical", "sb3"])
    qtrl, classical, sb3 = rows
    assert (sb3["steps_median"], sb3["wall_median"], sb3["reached"]) == (200, 20.0, 3)
    # The seed that did not reach the target counts as +inf in the median.
    assert (qtrl["steps_median"], qtrl["steps_range"], qtrl["reached"]) == (600, [400, 600], 2)
    assert qtrl["steps_ratio"] == 3.0 and qtrl["wall_ratio"] == 1.5
    assert classical["failed"] == [0] and classical["ok"] == 0
    text = peer.table(rows, "python scripts/peer_run.py")
    assert "| cartpole (≥ 475) | qtrl | 2/3 | 600 (400–600) | 30.0 s |" in text
    assert "FAILED (seeds [0])" in text and "| 3.00 | 1.50 |" in text


def test_sb3_sees_minigrid_as_qtrl_does():
    pytest.importorskip("minigrid")
    env = peer.make_sb3_env(peer.TASKS["minigrid"])
    obs, _ = env.reset(seed=0)
    assert obs.shape == (147,) and str(obs.dtype) == "float32"
    assert env.observation_space.contains(obs) and env.action_space.n == 3
    steps, done = 0, False
    while not done:  # turning left forever: the cap of 100 steps ends it
        obs, _, term, trunc, _ = env.step(0)
        steps, done = steps + 1, term or trunc
    assert steps == 100


def test_sb3_worker_tiny_run(tmp_path):
    pytest.importorskip("stable_baselines3")
    out = tmp_path / "episodes.json"
    peer.sb3_worker("cartpole", 0, out, 0.0, 0.004)  # 400 steps: two rollouts of 8 × 32
    data = json.loads(out.read_text())
    assert data["params"] == 9155 and data["env_steps"] == 512
    assert data["episodes"] and all(len(e) == 3 and e[0] == e[1] for e in data["episodes"])

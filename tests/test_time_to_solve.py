"""scripts/time_to_solve.py: the solve point read from a run's files (checked
against a hand count), the split recipe's flags, and the intervals."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("time_to_solve",
                                               ROOT / "scripts" / "time_to_solve.py")
tts = importlib.util.module_from_spec(_spec)
sys.modules["time_to_solve"] = tts
_spec.loader.exec_module(tts)


def _write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _fake_run(out: Path) -> None:
    """A PPO run of 2 agents (8 envs x 16 steps each): updates 1-2 play 50 episodes
    of return 100 each, updates 3-4 play 50 of 500 each."""
    out.mkdir()
    episodes = [{"update": u, "return": 100.0 if u <= 2 else 500.0, "length": 100,
                 "wall_time": 0.5 * u} for u in (1, 2, 3, 4) for _ in range(50)]
    _write(out / "metrics.csv", episodes)
    progress = [{"update": u, "time/critical_path_total_s": 0.03 * u, "time/compute_max_s": 0.02,
                 "time/communicate_cpu_s": 0.01, "time/rollout_s": 0.004,
                 "time/learn_s": 0.012} for u in (1, 2, 3, 4)]
    _write(out / "progress.csv", progress)
    (out / "summary.json").write_text(json.dumps({"wall_time_s": 2.5, "critical_path_s": 0.12}))
    (out / "config.json").write_text(json.dumps({"algo": "ppo", "num_envs": 8, "num_steps": 16,
                                                 "agents": 2}))


def test_solve_point_matches_a_hand_count(tmp_path):
    _fake_run(tmp_path / "run")
    s = tts.solve_stats(tmp_path / "run")
    # A 100-episode window averages >= 475 with 94 or more returns of 500 among
    # its 100 (500k + 100(100 - k) >= 47500): the first ends at 0-based episode
    # 100 + 93 = 193, in update 4 (episodes 150-199).
    assert s["updates"] == 4
    assert s["learned"] == 3                      # update 3's own episodes average 500
    assert s["steps"] == 4 * 8 * 16 * 2           # fixed-length roll-outs of both agents
    assert s["wall"] == pytest.approx(2.0)
    assert s["critical"] == pytest.approx(0.12)
    assert s["compute_path"] == pytest.approx(4 * 0.02)   # the all-reduces left out
    assert s["compute"] == pytest.approx(0.02) and s["allreduce"] == pytest.approx(0.01)
    assert s["final"] == pytest.approx(500.0)


def test_unreached_target_gives_none(tmp_path):
    _fake_run(tmp_path / "run")
    with open(tmp_path / "run" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["return"] = "100.0"
    _write(tmp_path / "run" / "metrics.csv", rows)
    s = tts.solve_stats(tmp_path / "run")
    assert s["updates"] is None and s["compute_path"] is None
    assert s["final"] == pytest.approx(100.0)


def test_split_recipe_divides_the_roll_out_and_keeps_the_batch():
    for n in (1, 2, 4, 8, 16):
        assert n * tts.steps_per_agent("ppo-split", n) == tts.PPO_ENVS * tts.PPO_STEPS
        assert tts.steps_per_agent("ppo", n) == tts.PPO_ENVS * tts.PPO_STEPS
    assert tts.recipe("ppo-split", 4)[-2:] == ["--num-steps", str(tts.PPO_STEPS // 4)]
    assert "--num-steps" not in tts.recipe("ppo-split", 1)
    assert tts.run_dir("ppo-split", 1, 0, 100) == tts.run_dir("ppo", 1, 0, 100)
    with pytest.raises(SystemExit, match="N=3"):
        tts.steps_per_agent("ppo-split", 3)


def test_intervals_of_constant_samples_are_the_value():
    assert tts.bootstrap([2.0, 2.0, 2.0]) == (2.0, 2.0)
    assert tts.ratio_interval([1.0, 1.0], [4.0, 4.0]) == (0.25, 0.25)
    lo, hi = tts.bootstrap([1.0, 2.0, 3.0, 4.0])
    assert 1.0 <= lo < 2.5 < hi <= 4.0


def test_split_reading_quotes_the_rows(monkeypatch):
    monkeypatch.setattr(tts, "_cores", lambda: 2)
    def run(updates, compute, rollout, learn, final=500.0):
        return {"updates": updates, "compute_path": None if updates is None else compute * updates,
                "rollout": rollout, "learn": learn, "final": final}
    stats = {("ppo-split", 1): [run(60, 0.030, 0.015, 0.012), run(80, 0.030, 0.015, 0.012)],
             ("ppo-split", 4): [run(70, 0.018, 0.004, 0.011),
                                run(None, None, None, None, final=300.0)],
             ("ppo-split", 2): [run(65, 0.022, 0.007, 0.0115)],
             ("ppo", 4): [run(40, 0.030, 0.015, 0.012)]}
    text = tts.split_reading(stats)[1]
    assert ("2 of 2 at N=1, 1 of 1 at N=2, 1 of 2 at N=4 (final 100-episode averages "
            "500.0, 500.0, 400.0)") in text
    assert "from 30.0 ms at N=1 to 22.0 ms at N=2, 18.0 ms at N=4" in text
    assert "At N=2, where each agent has a core of its own" in text
    assert "roll-out takes 7.0 ms against 15.0 at N=1, its learning step 11.5 ms against 12.0" \
        in text
    assert tts.split_reading({("ppo-split", 4): stats["ppo-split", 4]}) == []

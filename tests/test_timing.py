"""Where an update's time goes: the split of measured times by hand, and the
columns a two-agent run writes."""

from __future__ import annotations

import csv
import json

import pytest

from qtrl.config import TrainConfig
from qtrl.run.timing import AgentTimes, split_update
from qtrl.train import train_local


def test_split_by_hand():
    # Agent 1 computes longest (0.5 s CPU) and arrives last: its 0.02 s all-reduce
    # (0.004 s of CPU) is the transfer; agent 0 arrived 0.3 s earlier and waited that long.
    split = split_update([AgentTimes(0.01, 0.1, 0.05, 0.32, 0.2, 0.005),
                          AgentTimes(0.01, 0.3, 0.15, 0.02, 0.5, 0.004)])
    assert split.communicate == pytest.approx(0.02)
    assert split.communicate_cpu == pytest.approx(0.004)
    assert split.waits == pytest.approx((0.30, 0.0))
    assert split.slowest_agent == 1
    assert split.critical_path == pytest.approx(0.504)
    cols = split.columns()
    assert cols["time/agent0/wait_s"] == pytest.approx(0.30)
    assert cols["time/agent1/rollout_s"] == 0.3
    assert cols["time/critical_path_s"] == pytest.approx(0.504)
    assert cols["time/communicate_cpu_s"] == pytest.approx(0.004)
    assert cols["time/critical_path_wall_s"] == pytest.approx(0.52)


def test_one_agent_has_no_wait():
    split = split_update([AgentTimes(0.1, 0.2, 0.3, 0.0, 0.55, 0.0)])
    assert split.waits == (0.0,) and split.communicate == 0.0
    assert split.critical_path == 0.55


def test_no_agents_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        split_update([])


def test_two_agent_run_logs_every_agents_split(tmp_path):
    config = TrainConfig.from_preset("cartpole-paper", agents=2, episodes=8)
    train_local(config, tmp_path, resume=False, tensorboard=False)
    with open(tmp_path / "progress.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    total = 0.0
    for row in rows:
        value = {k: float(v) for k, v in row.items()}
        # one agent arrived last and waited for no one
        assert min(value["time/agent0/wait_s"], value["time/agent1/wait_s"]) == 0.0
        for agent in (0, 1):
            assert value[f"time/agent{agent}/communicate_s"] == value["time/communicate_s"]
            assert value[f"time/agent{agent}/compute_cpu_s"] > 0
        slowest = int(value["time/slowest_agent"])
        assert value["time/critical_path_s"] == pytest.approx(
            value[f"time/agent{slowest}/compute_cpu_s"] + value["time/communicate_cpu_s"])
        assert 0 < value["time/communicate_cpu_s"] <= value["time/communicate_s"] + 0.01
        # agent 0's update: its parts plus its all-reduce (transfer + wait)
        assert value["time/update_s"] == pytest.approx(
            sum(value[f"time/{k}_s"] for k in ("generate", "rollout", "learn", "communicate",
                                                "wait")))
        total += value["time/critical_path_s"]
        assert value["time/critical_path_total_s"] == pytest.approx(total)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["critical_path_s"] == pytest.approx(total, abs=1e-3)

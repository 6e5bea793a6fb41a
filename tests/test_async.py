"""Asynchronous Dist-QTRL (``--mode async``): a learner and workers on loopback.

Every run is a tiny CartPole run in local agent processes, each well under
30 s. What is checked: one worker is plain sequential training on its seeds
(exactly), the episode count, who played what, the staleness bound, resume,
and refused input.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from qtrl.algos import anneal
from qtrl.cli import main
from qtrl.config import TrainConfig
from qtrl.loops.asynchronous import WorkerReport, pack_report, unpack_report
from qtrl.loops.common import build, play
from qtrl.rl.env import EnvStreams, make_vector_env
from qtrl.run.recorder import Timings
from qtrl.run.seeds import Stream, generator
from qtrl.train import load_checkpoint, train_local

from .agents import python_children, wait_for_checkpoint


def _config(**kw) -> TrainConfig:
    base = {"episodes": 8, "hidden": (8,), "layers": 1, "mapping_hidden": (4,),
            "checkpoint_every": 1, "agents": 2, "dist_mode": "async",
            "agent_timeout": 60.0}  # bounds a hung test; generous: a loaded machine is slow
    return TrainConfig.from_preset("cartpole-paper", **{**base, **kw})


def _rows(run: Path, name: str) -> list[dict[str, str]]:
    with open(run / name, newline="") as fh:
        return list(csv.DictReader(fh))


def _reference(config: TrainConfig, agent: int) -> tuple[dict, list[float]]:
    """Plain single-process training (the sync loop's pieces, its order) whose
    episodes are played with agent ``agent``'s seeds."""
    plain = replace(config, agents=1, dist_mode="sync")
    algo = build(plain, rank=0)
    envs = make_vector_env(plain.env, plain.vector_envs, plain.max_steps, plain.autoreset)
    resets = EnvStreams(plain.seed, plain.vector_envs, agent=agent)
    returns: list[float] = []
    try:
        for update in range(plain.updates):
            if plain.anneal_lr:
                anneal(algo.optimizer, update / plain.updates)
            batch, _, _ = play(algo, envs, plain.episodes_in_update(update),
                               generator(plain.seed, Stream.ACTIONS, agent, update),
                               resets.at(update))
            algo.update(batch)
            returns += batch.episode_returns.tolist()
    finally:
        envs.close()
    return algo.model.state_dict(), returns


def test_one_worker_is_plain_training_on_its_seeds(tmp_path):
    # 7 episodes of 2: the last push collects one; clipping and annealing on
    config = _config(episodes=7, episodes_per_update=2, anneal_lr=True, max_grad_norm=0.5)
    train_local(config, tmp_path, resume=False, tensorboard=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the agents: reductions must match
    try:
        expected, returns = _reference(config, agent=1)
    finally:
        torch.set_num_threads(threads)
    state = load_checkpoint(tmp_path)[1]
    assert state["model"].keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(state["model"][key], value), key
    rows = _rows(tmp_path, "metrics.csv")
    assert [float(r["return"]) for r in rows] == returns
    assert {r["agent"] for r in rows} == {"1"}
    assert [int(r["update"]) for r in rows] == [1, 1, 2, 2, 3, 3, 4]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["dist_mode"], summary["episodes"]) == ("async", 7)
    assert (summary["updates_applied"], summary["updates_dropped"]) == (4, 0)
    assert summary["mean_staleness"] == 0.0 and summary["updates"] == 4


@pytest.mark.parametrize("bound", [0, 4])
def test_two_workers_respect_the_staleness_bound(tmp_path, bound):
    config = _config(agents=3, episodes=12, max_staleness=bound)
    train_local(config, tmp_path, resume=False, tensorboard=False)
    rows = _rows(tmp_path, "metrics.csv")
    assert [int(r["episode"]) for r in rows] == list(range(1, 13))  # exactly 12
    assert {r["agent"] for r in rows} == {"1", "2"}
    progress = _rows(tmp_path, "progress.csv")
    staleness = [int(float(r["async/staleness"])) for r in progress]
    assert all(0 <= s <= bound for s in staleness), staleness
    summary = json.loads((tmp_path / "summary.json").read_text())
    applied, dropped = summary["updates_applied"], summary["updates_dropped"]
    assert applied == len(progress) == int(load_checkpoint(tmp_path)[1]["update"])
    assert applied + dropped == 12  # one push per episode
    assert summary["mean_staleness"] == pytest.approx(np.mean(staleness))
    if bound == 0:
        # Both workers start from version 0; whichever pushes second is stale.
        assert dropped > 0
    state = load_checkpoint(tmp_path)[1]
    assert len(state["episode_returns"]) == 12
    assert sum(state["async"]["worker_updates"]) == 12


def test_resume_continues_the_run(tmp_path):
    """With one worker nothing depends on timing, so a resumed run even equals the
    uninterrupted one (with several workers it only continues from the checkpoint)."""
    train_local(_config(episodes=6), tmp_path, resume=False, tensorboard=False)
    first = load_checkpoint(tmp_path)[1]
    config = _config(episodes=10)
    train_local(config, tmp_path, resume=True, tensorboard=False)
    state = load_checkpoint(tmp_path)[1]
    assert len(state["episode_returns"]) == 10
    assert torch.equal(state["episode_returns"][:6], first["episode_returns"])
    assert state["async"]["worker_updates"] == [0, 10]  # the worker's seed stream went on
    rows = _rows(tmp_path, "metrics.csv")
    assert [int(r["episode"]) for r in rows] == list(range(1, 11))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected, returns = _reference(config, agent=1)
    finally:
        torch.set_num_threads(threads)
    assert state["episode_returns"].tolist() == returns
    for key, value in expected.items():
        assert torch.equal(state["model"][key], value), key


def test_pack_unpack_round_trip():
    names = ("loss", "policy_loss", "entropy")
    report = WorkerReport({"loss": 0.5, "policy_loss": 0.25, "entropy": 0.1},
                          Timings(0.01, 0.02, 0.03),
                          {"quantum/circuit_evals_per_update": 7,
                           "quantum/circuit_evals_this_agent": 5},
                          np.array([3.0, 5.0]), np.array([3, 5]), np.array([False, True]))
    got = unpack_report(pack_report(report, names), 2, names)
    assert got.stats == report.stats and got.timings == report.timings
    assert got.evals == report.evals
    assert got.returns.tolist() == [3.0, 5.0]
    assert got.lengths.tolist() == [3, 5]
    assert got.truncated.tolist() == [False, True]
    bare = report._replace(evals={})
    assert unpack_report(pack_report(bare, names), 2, names).evals == {}


@pytest.mark.parametrize(("flags", "needle"), [
    (["--mode", "async", "--agents", "1"], "--mode async --agents 1"),
    (["--mode", "async", "--agents", "2", "--max-staleness", "-1"], "--max-staleness -1"),
    (["--max-staleness", "2"], "--max-staleness 2: only used with --mode async"),
])
def test_bad_async_input_is_refused(flags, needle, capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--preset", "cartpole-paper", "--episodes", "2", *flags,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists()


def test_unknown_mode_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--mode", "gossip"])
    assert exc.value.code == 2
    assert "invalid choice: 'gossip'" in capsys.readouterr().err


def test_silent_worker_ends_the_run_naming_it(tmp_path):
    """A stopped (SIGSTOP) worker: the other keeps the learner busy, so no receive
    times out; the learner notices the silence itself after --agent-timeout."""
    import signal
    import subprocess
    import sys
    import time


    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "qtrl", "train", "--preset", "cartpole-paper", "--hidden", "8",
           "--layers", "1", "--mapping-hidden", "4", "--agents", "3", "--mode", "async",
           "--episodes", "100000", "--checkpoint-every", "2", "--agent-timeout", "5",
           "--no-tensorboard", "--out", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    try:
        wait_for_checkpoint(run, 60)
        victim = max(python_children(proc.pid), key=lambda c: c.pid)  # the last: agent 2
        victim.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        if victim is not None and victim.is_running():
            victim.kill()
    assert proc.returncode == 1, err
    assert time.monotonic() - stopped_at < 30
    assert "agent 2" in err and "stopped answering" in err, err
    assert len([line for line in err.splitlines() if "error" in line]) == 1, err

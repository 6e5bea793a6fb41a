"""Dist-QTRL training end to end: sync equivalence, agent faults, torchrun.

Every test starts and stops its own agent processes (loopback only) and bounds
its time. Runs are tiny CartPole runs; what is checked is exact equality of
parameters, complete episode counts and clean failure, not learning.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from qtrl.config import TrainConfig
from qtrl.train import load_checkpoint, train, train_local

from .agents import python_children, wait_for_checkpoint

QTRL = [sys.executable, "-m", "qtrl"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def _config(**kw) -> TrainConfig:
    base = {"episodes": 6, "checkpoint_every": 1, "sync_check_every": 1}
    return TrainConfig.from_preset("cartpole-paper", **{**base, **kw})


def test_one_agent_group_is_bit_identical_to_plain_training(tmp_path):
    config = _config(agents=1)
    plain, dist = tmp_path / "plain", tmp_path / "dist"
    plain.mkdir()
    dist.mkdir()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # agents run one thread each; reductions must match
    try:
        train(config, plain, tensorboard=False)
    finally:
        torch.set_num_threads(threads)
    # The same run as a real process group of one agent (all-reduce executed).
    train_local(config, dist, resume=False, tensorboard=False)
    a = load_checkpoint(plain)[1]["model"]
    b = load_checkpoint(dist)[1]["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    def rows(run: Path) -> list[list[str]]:  # all columns but the wall time
        return [r.split(",")[:4] + r.split(",")[5:]
                for r in (run / "metrics.csv").read_text().splitlines()]
    assert rows(plain) == rows(dist)


def test_two_agents_log_every_agents_episodes(tmp_path):
    config = _config(agents=2, episodes=8)
    train_local(config, tmp_path, resume=False, tensorboard=False)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",")[-1] == "agent"
    agents = [int(r.split(",")[-1]) for r in rows[1:]]
    assert len(agents) == 8 and sorted(set(agents)) == [0, 1]
    state = load_checkpoint(tmp_path)[1]
    assert int(state["update"]) == 4
    import json
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["agents"] == 2
    # 651 trainable float32 parameters cross the network, not the 898 weights
    assert summary["bytes_allreduced_per_update"] == 651 * 4
    assert summary["bytes_allreduced_per_update_classical_dp"] == 898 * 4


def _backprop_vs_parameter_shift(tmp_path: Path, **kw) -> list[tuple[float, float]]:
    """Train the same tiny run by backprop and by parameter-shift on 2 agents; check
    that they follow each other; return the shift run's (circuit evaluations per
    update, this agent's) of every update."""
    runs = {}
    for grad in ("backprop", "parameter-shift"):
        runs[grad] = tmp_path / grad
        runs[grad].mkdir()
        train_local(_config(agents=2, episodes=4, grad=grad, **kw), runs[grad], resume=False,
                    tensorboard=False)
    # float32 autograd vs float64-accumulated shifts. The generated policies are
    # compared: the mapping's last bias has no effect (the weights are centred), and
    # Adam turns its round-off gradient into lr-sized steps either way.
    exact = load_checkpoint(runs["backprop"])[1]["policy"]
    shifted = load_checkpoint(runs["parameter-shift"])[1]["policy"]
    for key in exact:
        torch.testing.assert_close(shifted[key], exact[key], atol=2e-4, rtol=0, msg=key)
    header, *rows = (runs["parameter-shift"] / "progress.csv").read_text().splitlines()
    col = header.split(",").index
    return [(float(values[col("quantum/circuit_evals_per_update")]),
             float(values[col("quantum/circuit_evals_this_agent")]))
            for values in (row.split(",") for row in rows)]


@pytest.mark.slow
def test_two_agents_split_the_parameter_shift_circuits(tmp_path):
    """Each agent runs half of the shifted circuits; summed (``combine``), they give
    the gradient autograd gives, so the run follows the backprop run."""
    for counts in _backprop_vs_parameter_shift(tmp_path):
        assert counts == (1 + 700, 1 + 350)  # 1 forward circuit + its share of 700


def test_chunk_circuits_run_on_different_agents(tmp_path):
    """``--chunks 4 --agents 2``: each QPU runs its two chunk circuits and their
    shifted copies; the run follows the one where both agents run all four."""
    per_circuit = 14 * 8 * 5  # ring-U3 shifts per circuit: 14 per (wire, layer); 8 qubits
    for counts in _backprop_vs_parameter_shift(tmp_path, chunks=4):
        assert counts == (4 * (1 + per_circuit), 2 * (1 + per_circuit))


def test_killed_agent_ends_run_then_resume_completes(tmp_path):
    run = tmp_path / "run"
    cmd = QTRL + ["train", "--preset", "cartpole-paper", "--agents", "2", "--episodes", "4000",
                  "--checkpoint-every", "5", "--agent-timeout", "90", "--no-tensorboard",
                  "--out", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_checkpoint(run, 60)
        children = python_children(proc.pid)
        victim = max(children, key=lambda c: c.pid)  # the second agent spawned
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert time.monotonic() - killed_at < 30
    assert "killed by SIGKILL" in err and "agent" in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1
    time.sleep(1.0)
    left = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not left, [" ".join(c.cmdline()) for c in left]
    _, state = load_checkpoint(run)  # still loadable
    done = int(state["update"])
    resumed = subprocess.run(QTRL + ["train", "--resume", str(run), "--episodes",
                                     str(2 * done + 4), "--no-tensorboard"],
                             check=False, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert int(load_checkpoint(run)[1]["update"]) == done + 2


@pytest.mark.parametrize("bad", ["0", "-3", "100000"])
def test_bad_agent_counts_are_refused(bad, capsys, tmp_path):
    from qtrl.cli import main
    out = tmp_path / "run"
    assert main(["train", "--preset", "cartpole-paper", "--agents", bad, "--episodes", "2",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--agents" in err[0]
    assert not out.exists()  # refused before anything was written


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_nodes_on_one_machine(tmp_path):
    run = tmp_path / "run"
    port = _free_port()
    common = TORCHRUN + ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                         "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "qtrl-test",
                         "-m", "qtrl", "train", "--preset", "cartpole-paper", "--episodes", "8",
                         "--no-tensorboard", "--out", str(run)]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
    nodes = [subprocess.Popen(common, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [n.communicate(timeout=120) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], [o[1][-2000:] for o in outs]
    state = load_checkpoint(run)[1]
    assert int(state["update"]) == 4 and len(state["episode_returns"]) == 8


def test_torchrun_restart_resumes_from_checkpoint(tmp_path):
    """One worker killed: torchrun restarts the group, which resumes from the
    checkpoint. The restarted workers must not read the gloo addresses the dead
    attempt left in torchrun's store (qtrl.distributed.attempt); before that fix
    this failed or hung about one run in three, more under load."""
    run = tmp_path / "run"
    episodes = 160
    # A long agent timeout: on a loaded machine restarted workers can start seconds
    # apart, and the mesh connect waits at most that long.
    cmd = TORCHRUN + ["--standalone", "--nproc-per-node", "2", "--max-restarts", "3",
                      "-m", "qtrl", "train", "--preset", "cartpole-paper", "--episodes",
                      str(episodes), "--checkpoint-every", "5", "--no-tensorboard",
                      "--agent-timeout", "90", "--out", str(run)]
    # faulthandler: a worker that aborts shows where it was
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_for_checkpoint(run, 90)
        workers = [c for c in psutil.Process(proc.pid).children(recursive=True)
                   if "qtrl" in " ".join(c.cmdline())]
        assert workers
        workers[-1].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:   # timed out: its workers must not outlive the test
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "after restart 1" in err, err[-12000:]    # resumed by the restarted group
    assert time.monotonic() - killed_at < 90
    state = load_checkpoint(run)[1]
    assert len(state["episode_returns"]) == episodes
    assert int(state["update"]) == episodes // 2


def test_torchrun_async_takes_its_agents_from_the_world_size(tmp_path):
    """--mode async needs 2 or more agents: under torchrun the count is the world
    size, known before the flags are checked (it was refused as --agents 1)."""
    run = tmp_path / "run"
    cmd = TORCHRUN + ["--standalone", "--nproc-per-node", "2", "-m", "qtrl", "train",
                      "--preset", "cartpole-paper", "--mode", "async", "--episodes", "4",
                      "--no-tensorboard", "--out", str(run)]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    import json
    summary = json.loads((run / "summary.json").read_text())
    assert summary["agents"] == 2 and summary["dist_mode"] == "async"
    assert summary["episodes"] == 4

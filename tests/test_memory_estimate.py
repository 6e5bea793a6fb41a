"""The memory estimate and the closed-form parameter counts (issue 16, item 11):
counts equal the built model's, the estimate is within 2x of measured peaks at
three sizes, a run that cannot fit is refused before anything is written, and
``qtrl info`` answers at once for a network far too large to build."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qtrl.cli import main
from qtrl.config import TrainConfig
from qtrl.errors import UserError
from qtrl.rl.env import env_spec
from qtrl.rl.policy import build_model, counts_dict
from qtrl.run.memory_estimate import check_memory_fits, estimate_memory, model_counts

SRC = Path(__file__).resolve().parent.parent / "src"
QTRL = [sys.executable, "-m", "qtrl"]


@pytest.mark.parametrize("preset, kw", [
    ("cartpole", {}),
    ("cartpole-paper", {}),
    ("cartpole-paper", {"chunks": 4, "ansatz": "ry-cnot"}),
    ("cartpole", {"classical": True}),
    ("cartpole", {"critic": "classical", "critic_hidden": (16, 8)}),
    (None, {"env": "Pendulum-v1", "algo": "ppo"}),
])
def test_counts_from_sizes_equal_the_built_models(preset, kw):
    config = TrainConfig.from_preset(preset, **kw)
    spec = env_spec(config.env, config.n_actions)
    built = counts_dict(build_model(config, spec.obs_dim, spec.n_actions,
                                    continuous=spec.continuous))
    assert model_counts(config, spec.obs_dim, spec.n_actions, spec.continuous) == built


_MEASURE = """
import sys, tempfile, psutil
from qtrl.cli import main
from qtrl.config import TrainConfig
from qtrl.rl.env import env_spec
from qtrl.run.memory_estimate import estimate_memory
import qtrl.train
env_spec("CartPole-v1", None)
base = psutil.Process().memory_info().rss
out = tempfile.mkdtemp() + "/run"
assert main(["train", *sys.argv[1:], "--out", out]) == 0
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent
# (the test process, which may have grown), VmHWM is this process's own peak.
status = open("/proc/self/status").read()
peak = int(status.split("VmHWM:")[1].split()[0]) * 1024
config = TrainConfig.load(out + "/config.json")
spec = env_spec(config.env, config.n_actions)
print(peak - base, estimate_memory(config, spec.obs_dim, spec.n_actions).total)
"""


@pytest.mark.parametrize("hidden", [5_000, 25_000, 80_000])
def test_estimate_is_within_2x_of_the_measured_peak(tmp_path, hidden):
    """Peak RSS of a real run (less what the imports hold) against the estimate;
    Quantum-Train at 16, 18 and 20 qubits (k = 35 002 to 560 002 weights)."""
    argv = ["--preset", "cartpole-paper", "--episodes", "1", "--hidden", str(hidden),
            "--max-steps", "50", "--checkpoint-every", "1", "--no-tensorboard"]
    # Twice: the first run compiles whatever kernels this size needs and Numba
    # caches them on disk (compiling takes more memory than the run itself); the
    # second, measured, loads them as every later run does.
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", _MEASURE, *argv], capture_output=True,
                              text=True, timeout=240, cwd=tmp_path, check=False,
                              env={**os.environ, "PYTHONPATH": str(SRC)})
        assert proc.returncode == 0, proc.stderr[-2000:]
    measured, estimate = map(int, proc.stdout.split()[-2:])
    assert measured / 2 <= estimate <= 2 * measured, (measured, estimate)


def test_the_estimate_counts_both_networks_and_the_statevector():
    config = TrainConfig.from_preset(None, env="CartPole-v1", algo="ppo", hidden=(2000,))
    parts = estimate_memory(config, 4, 2).parts
    alone = estimate_memory(TrainConfig.from_preset(None, env="CartPole-v1", algo="ppo",
                                                    hidden=(2000,), critic="classical"),
                            4, 2).parts
    assert parts["statevector"] == 2 * alone["statevector"] > 0
    assert 1.5 * alone["mapping activations"] < parts["mapping activations"] \
        < 2 * alone["mapping activations"]
    assert {"runtime", "weights", "trainable + Adam", "loss activations",
            "roll-out buffers"} <= set(parts)


def test_a_run_that_does_not_fit_is_refused_naming_both_sizes():
    config = TrainConfig.from_preset("cartpole-paper", hidden=(100_000,))
    need = estimate_memory(config, 4, 2).total
    assert check_memory_fits(config, 4, 2, available=need).total == need
    with pytest.raises(UserError, match=r"needs about .* of memory .* but 1.0 MiB is "
                                        r"available"):
        check_memory_fits(config, 4, 2, available=2**20)
    with pytest.raises(UserError, match=r"\(4 agents\)"):
        check_memory_fits(config, 4, 2, processes=4, available=3 * need)


def test_train_refuses_a_huge_network_at_once_writing_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    start = time.monotonic()
    code = main(["train", "--env", "CartPole-v1", "--hidden", "1000000000", "--out", str(run)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("qtrl train: error: this run needs about ") and "available" in err
    assert not run.exists() and time.monotonic() - start < 30


def test_info_counts_a_huge_network_without_building_it(tmp_path):
    proc = subprocess.run(check=False, args=[*QTRL, "info", "--env", "CartPole-v1", "--hidden", "1000000000"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(SRC)})
    assert proc.returncode == 0, proc.stderr
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1)
                for line in proc.stdout.splitlines())
    assert rows["actor target weights k"] == "7000000002"
    assert rows["actor qubits n"] == "33"
    assert rows["training memory (one agent)"].startswith("about ")
    assert "TiB" in rows["training memory (one agent)"]

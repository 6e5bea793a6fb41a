"""``qtrl train`` / ``qtrl eval`` end to end on tiny runs, resume, and bad input."""

from __future__ import annotations

import csv
import gc
import hashlib
import json
from pathlib import Path

import pytest
import torch

from qtrl.cli import main
from qtrl.config import TrainConfig
from qtrl.run.callbacks import Callback
from qtrl.train import load_policy, train

# A few-second Quantum-Train run: small policy, one layer, tiny mapping.
TINY = ["--preset", "cartpole-paper", "--episodes", "4", "--hidden", "8", "--layers", "1",
        "--mapping-hidden", "4", "--checkpoint-every", "2"]


def _files(run: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.iterdir()) if p.is_file()}


def _metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    return run


def test_run_directory(tiny_run: Path) -> None:
    names = {p.name for p in tiny_run.iterdir()}
    assert {"config.json", "metrics.csv", "checkpoint.pt", "learning_curve.png",
            "summary.json", "progress.csv"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    assert not any(n.endswith(".tmp") or n.startswith(".") for n in names)
    config = TrainConfig.load(tiny_run / "config.json")
    assert config.episodes == 4 and config.hidden == (8,) and not config.classical
    rows = _metrics(tiny_run)
    assert list(rows[0]) == ["update", "episode", "return", "length", "wall_time", "agent"]
    assert [int(r["episode"]) for r in rows] == [1, 2, 3, 4]
    assert all(r["agent"] == "0" and float(r["return"]) == int(r["length"]) for r in rows)
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["episodes"] == 4 and summary["updates"] == 4
    assert summary["solved_at_episode"] is None and summary["solve_threshold"] == 475.0
    assert summary["parameter_counts"]["target_weights"] == 4 * 8 + 8 + 8 * 2 + 2
    assert summary["final_return_avg100"] == pytest.approx(
        sum(float(r["return"]) for r in rows) / 4)
    state = torch.load(tiny_run / "checkpoint.pt", weights_only=True)
    assert state["update"] == 4 and len(state["episode_returns"]) == 4


def test_eval_and_load_policy(tiny_run: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["eval", str(tiny_run), "--episodes", "3", "--greedy"]) == 0
    out = capsys.readouterr().out
    assert "±" in out and "3 episodes" in out
    policy, config = load_policy(tiny_run)
    assert isinstance(policy, torch.nn.Module) and config.env == "CartPole-v1"
    assert policy(torch.zeros(1, 4)).shape == (1, 2)
    state = torch.load(tiny_run / "checkpoint.pt", weights_only=True)
    for name, p in policy.state_dict().items():
        torch.testing.assert_close(p, state["policy"][name])


def test_classical_baseline_runs(tmp_path: Path) -> None:
    run = tmp_path / "classical"
    assert main(["train", *TINY, "--classical", "--no-tensorboard", "--out", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["mode"] == "classical"
    assert summary["parameter_counts"] == {"target_weights": 58, "total": 58}


def test_resume_with_other_sizes_in_fresh_processes(tmp_path: Path) -> None:
    """Non-preset sizes (policy 24 wide, a 3-layer mapping, 3 qubit layers), each
    run its own ``qtrl train`` process: the first compiles the kernels of these
    sizes, the others load them from Numba's cache; the resumed run still ends
    exactly where the uninterrupted one does."""
    import subprocess
    import sys
    flags = ["--preset", "cartpole-paper", "--hidden", "24", "--mapping-hidden", "6", "5",
             "--layers", "3", "--episodes-per-update", "2", "--checkpoint-every", "1",
             "--no-tensorboard"]
    full, cut = tmp_path / "full", tmp_path / "cut"

    def qtrl(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "qtrl", "train", *args],
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr

    qtrl(*flags, "--episodes", "12", "--out", str(full))
    qtrl(*flags, "--episodes", "6", "--out", str(cut))
    qtrl("--resume", str(cut), "--episodes", "12", "--no-tensorboard")
    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(cut / "checkpoint.pt", weights_only=True)
    assert len(b["episode_returns"]) == 12
    assert torch.equal(a["episode_returns"], b["episode_returns"])
    for key in ("model", "policy"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)


def _interrupt_at(episode: int) -> Callback:
    class Interrupting(Callback):
        def on_update(self, ep: int, values: dict) -> None:
            if ep >= episode:
                raise KeyboardInterrupt
    return Interrupting()


@pytest.mark.parametrize(("episodes_per_update", "quantum"), [
    (1, {}), (2, {}),
    (1, {"shots": 64, "grad": "parameter-shift"}),  # sampled: the streams must resume too
    (1, {"shots": 64, "grad": "spsa"}),
])
def test_resume_equals_uninterrupted(tmp_path: Path, episodes_per_update: int,
                                     quantum: dict) -> None:
    config = TrainConfig.from_preset("cartpole-paper", episodes=8, hidden=(8,), layers=1,
                                     mapping_hidden=(4,), checkpoint_every=2,
                                     episodes_per_update=episodes_per_update, **quantum)
    full, cut = tmp_path / "full", tmp_path / "cut"
    full.mkdir()
    cut.mkdir()
    train(config, full, tensorboard=False)
    with pytest.raises(KeyboardInterrupt):  # stops after update 3; checkpoint at 2
        train(config, cut, tensorboard=False, callbacks=[_interrupt_at(3 * episodes_per_update)])
    assert len(_metrics(cut)) == 3 * episodes_per_update
    assert main(["train", "--resume", str(cut), "--no-tensorboard"]) == 0
    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(cut / "checkpoint.pt", weights_only=True)
    for key in ("model", "policy"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    assert torch.equal(a["episode_returns"], b["episode_returns"])
    strip = [{k: v for k, v in r.items() if k != "wall_time"} for r in _metrics(full)]
    assert strip == [{k: v for k, v in r.items() if k != "wall_time"} for r in _metrics(cut)]


def test_resume_can_extend_a_finished_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", *TINY, "--no-tensorboard", "--out", str(run)]) == 0
    assert main(["train", "--resume", str(run), "--episodes", "6", "--no-tensorboard"]) == 0
    assert len(_metrics(run)) == 6
    assert TrainConfig.load(run / "config.json").episodes == 6


def test_same_seed_twice_is_identical(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert main(["train", *TINY, "--no-tensorboard", "--seed", "5",
                     "--out", str(tmp_path / name)]) == 0
    strip = [[r["return"] for r in _metrics(tmp_path / n)] for n in ("a", "b")]
    assert strip[0] == strip[1]


# -- bad input: one line on stderr, exit 2, nothing written ---------------------------

@pytest.mark.parametrize("argv,match", [
    (["--env", "NoSuchEnv-v9"], "unknown environment id 'NoSuchEnv-v9'"),
    (["--env", "Pendulum-v1", "--algo", "reinforce"],
     "has continuous actions; --algo reinforce takes Discrete ones only"),
    (["--episodes", "0"], "--episodes 0: must be a positive integer"),
    (["--layers", "0"], "--layers 0"),
    (["--lr", "0"], "--lr 0.0"),
    (["--lr", "-0.1"], "--lr -0.1"),
    (["--hidden", "0"], "--hidden 0"),
])
def test_bad_config(tmp_path: Path, capsys, argv: list[str], match: str) -> None:
    out = tmp_path / "run"
    assert main(["train", *TINY, *argv, "--out", str(out)]) == 2
    assert match in _one_error_line(capsys)
    assert not out.exists()


def test_the_garbage_collector_is_left_as_found(tmp_path: Path, capsys) -> None:
    """A run pauses the collector while it sets up and freezes what the set-up left;
    afterwards, and after a refused run, the collector is on and nothing frozen."""
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert main(["train", *TINY, "--out", str(tmp_path / "run")]) == 0
    assert gc.isenabled() and gc.get_freeze_count() == 0
    # refused by check_config, inside the pause
    assert main(["train", *TINY, "--env", "Pendulum-v1", "--algo", "reinforce",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "continuous actions" in _one_error_line(capsys)
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_unwritable_out(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["train", *TINY, "--out", str(blocker / "run")]) == 2
    assert "--out" in _one_error_line(capsys)
    assert main(["train", *TINY, "--out", str(blocker)]) == 2
    assert "not a directory" in _one_error_line(capsys)
    assert blocker.read_text() == "x"


def test_out_holding_a_run_is_refused_and_untouched(tiny_run: Path, capsys) -> None:
    before = _files(tiny_run)
    assert main(["train", *TINY, "--out", str(tiny_run)]) == 2
    assert "already holds a run" in _one_error_line(capsys)
    assert _files(tiny_run) == before


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    import shutil
    return Path(shutil.copytree(tiny_run, tmp_path / "copy"))


def test_resume_missing_dir(tmp_path: Path, capsys) -> None:
    assert main(["train", "--resume", str(tmp_path / "nope")]) == 2
    assert "does not exist" in _one_error_line(capsys)
    assert not (tmp_path / "nope").exists()


def test_resume_dir_without_a_run(tmp_path: Path, capsys) -> None:
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "holds no run" in _one_error_line(capsys)


def test_resume_truncated_checkpoint(run_copy: Path, capsys) -> None:
    ckpt = run_copy / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    before = _files(run_copy)
    assert main(["train", "--resume", str(run_copy)]) == 2
    assert "truncated or corrupt" in _one_error_line(capsys)
    assert _files(run_copy) == before
    assert main(["eval", str(run_copy)]) == 2
    assert "truncated or corrupt" in _one_error_line(capsys)


@pytest.mark.parametrize("argv,match", [
    (["--preset", "minigrid-paper"], "trained with --preset cartpole-paper, not minigrid-paper"),
    (["--env", "Acrobot-v1"], "trained with --env CartPole-v1, not Acrobot-v1"),
    (["--classical"], "trained with --classical false"),
])
def test_resume_from_another_configuration(run_copy: Path, capsys, argv, match) -> None:
    before = _files(run_copy)
    assert main(["train", "--resume", str(run_copy), *argv]) == 2
    assert match in _one_error_line(capsys)
    assert _files(run_copy) == before


def test_checkpoint_from_another_run_is_refused(run_copy: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "other"
    assert main(["train", *TINY, "--hidden", "4", "--no-tensorboard", "--out", str(other)]) == 0
    (run_copy / "checkpoint.pt").write_bytes((other / "checkpoint.pt").read_bytes())
    assert main(["train", "--resume", str(run_copy)]) == 2
    assert "different configuration" in _one_error_line(capsys)


def test_anneal_lr_decays_linearly(tmp_path: Path) -> None:
    run = tmp_path / "anneal"
    assert main(["train", *TINY, "--anneal-lr", "--lr", "0.004", "--no-tensorboard",
                 "--out", str(run)]) == 0
    with open(run / "progress.csv", newline="") as fh:
        lrs = [float(r["train/lr"]) for r in csv.DictReader(fh)]
    assert lrs == pytest.approx([0.004, 0.003, 0.002, 0.001])


def test_resumed_tensorboard_keeps_every_update_once(tmp_path: Path) -> None:
    """TensorBoard drops only what came after the checkpoint: every update's
    scalar is there once, the checkpointed update's included."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    config = TrainConfig.from_preset("cartpole-paper", episodes=5, hidden=(8,), layers=1,
                                     mapping_hidden=(4,), checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):   # after update 3; checkpoint at 2
        train(config, tmp_path, callbacks=[_interrupt_at(3)])
    train(config, tmp_path, resume=True)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    steps = [e.step for e in events.Scalars("rollout/return_mean")]
    assert sorted(steps) == [1, 2, 3, 4, 5]


def test_a_relaunched_torchrun_group_refuses_changed_flags(tmp_path: Path, monkeypatch,
                                                           capsys) -> None:
    """Under torchrun a run directory that holds a run is continued with its saved
    configuration; a flag given with another value is refused (as --resume
    does), not silently ignored. Refused before any process group is joined."""
    run = tmp_path / "run"
    assert main(["train", *TINY, "--no-tensorboard", "--out", str(run)]) == 0
    for key, value in {"TORCHELASTIC_RUN_ID": "t", "RANK": "0", "WORLD_SIZE": "1",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    assert main(["train", *TINY, "--lr", "0.5", "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--lr" in err[0] and "0.5" in err[0], err

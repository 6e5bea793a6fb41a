"""``qtrl train --algo ppo|a2c`` end to end on tiny runs: budgets, the actor's
and critic's parameter counts, continuous actions through export and eval, and
one-line refusals of flags that belong to another algorithm."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qtrl.cli import main
from qtrl.train import load_policy, load_trained_model

# A few-second PPO run: small networks, one ansatz layer, tiny mapping.
TINY = ["--hidden", "8", "--layers", "1", "--mapping-hidden", "4", "--num-envs", "2",
        "--num-steps", "16", "--num-minibatches", "2", "--update-epochs", "2",
        "--no-tensorboard"]


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def test_ppo_stops_at_the_step_budget_and_counts_actor_and_critic(tmp_path: Path) -> None:
    run = tmp_path / "ppo"
    assert main(["train", "--env", "CartPole-v1", *TINY, "--total-steps", "100",
                 "--out", str(run)]) == 0
    summary = _summary(run)
    assert summary["algo"] == "ppo" and summary["updates"] == 4      # 32 steps an update
    assert summary["steps_collected"] == 128
    counts = summary["parameter_counts"]
    actor, critic = counts["actor"], counts["critic"]
    assert actor["target_weights"] == 4 * 8 + 8 + 8 * 2 + 2
    assert critic["target_weights"] == 4 * 8 + 8 + 8 + 1
    assert counts["total"] == actor["total"] + critic["total"]
    assert actor["qubits"] == 6 and critic["qubits"] == 6
    policy, config = load_policy(run)
    assert config.algo == "ppo" and isinstance(policy[1], torch.nn.Tanh)


def test_ppo_stops_after_the_episode_budget(tmp_path: Path) -> None:
    run = tmp_path / "episodes"
    assert main(["train", "--env", "CartPole-v1", *TINY, "--episodes", "5",
                 "--out", str(run)]) == 0
    summary = _summary(run)
    # at the first update boundary after 5 finished episodes, not before
    assert summary["episodes"] >= 5
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    last_update = int(rows[-1].split(",")[0])
    before = [r for r in rows if int(r.split(",")[0]) < last_update]
    assert len(before) < 5


def test_ppo_resume_extends_the_step_budget(tmp_path: Path) -> None:
    run = tmp_path / "resumed"
    assert main(["train", "--env", "CartPole-v1", *TINY, "--total-steps", "64",
                 "--out", str(run)]) == 0
    assert _summary(run)["steps_collected"] == 64
    assert main(["train", "--resume", str(run), "--total-steps", "128"]) == 0
    summary = _summary(run)
    assert summary["steps_collected"] == 128 and summary["updates"] == 4


def test_classical_critic_and_a2c(tmp_path: Path) -> None:
    run = tmp_path / "a2c"
    assert main(["train", "--env", "CartPole-v1", "--algo", "a2c", "--hidden", "8",
                 "--layers", "1", "--mapping-hidden", "4", "--critic", "classical",
                 "--total-steps", "200", "--out", str(run), "--no-tensorboard"]) == 0
    counts = _summary(run)["parameter_counts"]
    assert "qubits" in counts["actor"] and "qubits" not in counts["critic"]
    assert counts["critic"]["total"] == 4 * 8 + 8 + 8 + 1


def test_continuous_actions_train_export_and_evaluate(tmp_path: Path, capsys) -> None:
    run = tmp_path / "pendulum"
    assert main(["train", "--env", "Pendulum-v1", *TINY, "--total-steps", "64",
                 "--log-std-init", "-0.5", "--out", str(run)]) == 0
    model, _ = load_trained_model(run)
    assert model.log_std is not None and model.log_std.shape == (1,)
    policy, _ = load_policy(run)
    obs = torch.zeros(3, 3)
    assert policy(obs).shape == (3, 1)                                 # the action's mean
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "2", "--greedy"]) == 0
    assert "greedy actions): return" in capsys.readouterr().out
    onnx = tmp_path / "policy.onnx"
    pytest.importorskip("onnxruntime")
    assert main(["export", str(run), "--output", str(onnx)]) == 0
    from qtrl.export import load_exported
    exported = load_exported(onnx)
    assert exported.meta.continuous and exported.meta.activation == "tanh"
    np.testing.assert_allclose(exported(np.zeros((2, 3), dtype=np.float32)),
                               policy(torch.zeros(2, 3)).detach().numpy(), atol=1e-5)
    assert main(["eval", str(onnx), "--episodes", "2", "--greedy"]) == 0


def test_two_agents_sync_ppo_and_async_a2c(tmp_path: Path) -> None:
    """Dist-QTRL for the actor-critics: sync PPO all-reduces every minibatch step
    (two agents' roll-outs per update), async A2C has one worker push gradients."""
    tiny = ["--env", "CartPole-v1", "--hidden", "8", "--layers", "1", "--mapping-hidden", "4",
            "--num-envs", "2", "--no-tensorboard", "--agent-timeout", "60"]
    sync = tmp_path / "sync"
    assert main(["train", *tiny, "--num-steps", "16", "--num-minibatches", "2",
                 "--total-steps", "128", "--agents", "2", "--out", str(sync)]) == 0
    summary = _summary(sync)
    assert summary["agents"] == 2 and summary["steps_collected"] == 128
    assert summary["updates"] == 2                          # 2 agents x 2 copies x 16 steps
    rows = (sync / "metrics.csv").read_text().splitlines()[1:]
    assert {r.split(",")[-1] for r in rows} <= {"0", "1"}
    run = tmp_path / "async"
    assert main(["train", *tiny, "--algo", "a2c", "--total-steps", "200", "--agents", "2",
                 "--mode", "async", "--out", str(run)]) == 0
    summary = _summary(run)
    assert summary["dist_mode"] == "async" and summary["updates_applied"] >= 20
    assert summary["steps_collected"] >= 200                # 10 steps a push


@pytest.mark.parametrize("argv, match", [
    (["--algo", "reinforce", "--critic", "classical"],
     "--critic classical: only used with --algo a2c or ppo"),
    (["--env", "Pendulum-v1", "--algo", "reinforce"],
     "--env Pendulum-v1 has continuous actions; --algo reinforce takes Discrete ones"),
    (["--env", "Pendulum-v1", "--n-actions", "1"], "--n-actions 1: Pendulum-v1 has continuous"),
    (["--env", "CartPole-v1", "--classical", "--critic", "quantum"],
     "--critic quantum with --classical"),
    (["--env", "CartPole-v1", "--algo", "a2c", "--update-epochs", "3"],
     "--update-epochs 3: only used with --algo ppo"),
    (["--env", "CartPole-v1", "--agents", "2", "--mode", "async"],
     "--mode async --algo ppo: an async worker pushes one gradient per roll-out"),
    (["--env", "CartPole-v1", "--episodes-per-update", "4"],
     "--episodes-per-update 4: --algo ppo rolls out --num-steps"),
    (["--env", "CartPole-v1", "--num-envs", "2", "--num-steps", "2", "--num-minibatches", "8"],
     "--num-minibatches 8: a roll-out of 2 copies x 2 steps has only 4 samples"),
    (["--env", "CartPole-v1", "--gae-lambda", "2"], "--gae-lambda 2.0: must be in [0, 1]"),
    (["--env", "CartPole-v1", "--total-steps", "0"], "--total-steps 0: must be a positive"),
])
def test_bad_flags_for_an_algorithm(tmp_path: Path, capsys, argv: list[str],
                                    match: str) -> None:
    out = tmp_path / "run"
    assert main(["train", *argv, "--out", str(out)]) == 2
    assert match in _one_error_line(capsys)
    assert not out.exists()

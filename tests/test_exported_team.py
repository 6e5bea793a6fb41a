"""A multi-agent run's exported files played as a team (:mod:`qtrl.exported_team`):
the same returns as the run's own evaluation, through the API and ``qtrl eval
FILE [FILE ...]``, the task kept in every format's metadata, and one clear line
for files that do not make a team."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qtrl.cli import main
from qtrl.export import load_exported
from qtrl.exported_team import evaluate_team
from qtrl.rl.multiagent import evaluate_players
from qtrl.rl.policy import make_actor
from qtrl.train import load_policy

SPREAD = "mpe2:simple_spread_v3"
KWARGS = ("N=2", "max_cycles=5")
TINY = ["--env", SPREAD, "--env-kwarg", KWARGS[0], "--env-kwarg", KWARGS[1], "--algo", "ppo",
        "--hidden", "4", "--layers", "1", "--mapping-hidden", "4", "--num-envs", "2",
        "--num-steps", "5", "--num-minibatches", "1", "--update-epochs", "1",
        "--total-steps", "20", "--no-tensorboard"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny simple_spread run (2 players) per policy layout, each exported to ONNX."""
    base = tmp_path_factory.mktemp("team")
    out = {}
    for layout in ("per-agent", "shared"):
        run = base / layout
        assert main(["train", *TINY, "--policy", layout, "--out", str(run)]) == 0
        assert main(["export", str(run), "-o", str(run / "team.onnx")]) == 0
        out[layout] = run
    return out


def _run_returns(run: Path, episodes: int, seed: int) -> np.ndarray:
    """Each player's greedy returns from the run itself (torch, its generated weights)."""
    policy, config = load_policy(run)
    actor = make_actor(policy, dict(policy.named_parameters()))
    return evaluate_players(actor, config.env, config.env_kwarg, config.max_steps, episodes,
                            seed, greedy=True)


def test_per_player_files_play_as_the_run_does(runs) -> None:
    run = runs["per-agent"]
    files = [run / "team_agent_0.onnx", run / "team_agent_1.onnx"]
    assert not (run / "team.onnx").exists()                  # one file per player
    metas = [load_exported(f).meta for f in files]
    assert [m.player for m in metas] == ["agent_0", "agent_1"]
    assert all(m.players == ("agent_0", "agent_1") and m.env_kwarg == KWARGS for m in metas)
    got, meta = evaluate_team(files[::-1], episodes=4, greedy=True, seed=5)   # any order
    assert got.shape == (4, 2) and meta.env_id == SPREAD
    np.testing.assert_array_equal(got, _run_returns(run, 4, 5))


def test_a_shared_file_plays_every_player(runs) -> None:
    run = runs["shared"]
    meta = load_exported(run / "team.onnx").meta
    assert meta.player is None and meta.players == ("agent_0", "agent_1")
    got, _ = evaluate_team([run / "team.onnx"], episodes=4, greedy=True, seed=5)
    np.testing.assert_array_equal(got, _run_returns(run, 4, 5))


@pytest.mark.parametrize("fmt", ["state_dict", "exported"])
def test_the_task_survives_every_format(runs, tmp_path, fmt) -> None:
    suffix = {"state_dict": ".pt", "exported": ".pt2"}[fmt]
    out = tmp_path / f"p{suffix}"
    assert main(["export", str(runs["per-agent"]), "--format", fmt, "-o", str(out)]) == 0
    meta = load_exported(tmp_path / f"p_agent_1{suffix}").meta
    assert (meta.env_id, meta.env_kwarg, meta.players, meta.player) == (
        SPREAD, KWARGS, ("agent_0", "agent_1"), "agent_1")


def test_qtrl_eval_prints_the_team_and_each_player(runs, capsys) -> None:
    run = runs["per-agent"]
    capsys.readouterr()
    assert main(["eval", str(run / "team_agent_0.onnx"), str(run / "team_agent_1.onnx"),
                 "--episodes", "3", "--greedy"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{SPREAD} (team_agent_0.onnx, team_agent_1.onnx, greedy "
                             f"actions): team return ")
    assert out[1].startswith("  agent_0: return ") and out[2].startswith("  agent_1: return ")


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_files_that_do_not_make_a_team_are_one_clear_line(runs, capsys) -> None:
    per, shared = runs["per-agent"], runs["shared"]
    a0, a1 = str(per / "team_agent_0.onnx"), str(per / "team_agent_1.onnx")
    cases = [([a0], "no file for agent_1; give one file per player (agent_0, agent_1)"),
             ([a0, a0], "agent_0 already played by"),
             ([a0, a1, "--env", "CartPole-v1"], "--env CartPole-v1: not for a multi-agent"),
             ([a0, str(per)], "not a policy file"),
             ([str(shared / "team.onnx"), a0], "plays every player of " + SPREAD),
             ([a0, a1, str(shared / "team.onnx")], "plays every player of " + SPREAD)]
    for argv, expected in cases:
        capsys.readouterr()
        assert main(["eval", *argv]) == 2, argv
        assert expected in _one_error_line(capsys), argv


def test_a_file_from_before_players_were_recorded_asks_for_a_new_export(runs, tmp_path,
                                                                         capsys) -> None:
    import torch

    out = tmp_path / "old.pt"
    assert main(["export", str(runs["shared"]), "-o", str(out)]) == 0
    payload = torch.load(out, weights_only=True)
    for key in ("players", "player", "env_kwarg"):   # what older files did not record
        payload["meta"].pop(key)
    torch.save(payload, out)
    capsys.readouterr()
    assert main(["eval", str(out)]) == 2
    assert "exported by an older qtrl" in _one_error_line(capsys)

"""``--norm-obs``: the running statistics against NumPy's over the same
observations, the all-agent merge, the fold into the policy's first layer, and
a run whose exported policy takes raw observations; where ``--norm-obs`` and
``--norm-value`` are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qtrl.cli import main
from qtrl.presets import build_policy
from qtrl.rl.normalize import EPS, ObsNormalizer
from qtrl.train import load_policy, load_trained_model

TINY = ["--hidden", "8", "--layers", "1", "--mapping-hidden", "4", "--num-envs", "2",
        "--num-steps", "16", "--num-minibatches", "2", "--update-epochs", "2",
        "--no-tensorboard"]


def _data(seed: int, rows: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal([3.0, -1.0, 50.0], [0.5, 2.0, 10.0], size=(rows, 3))


def test_statistics_match_numpy_over_every_committed_observation() -> None:
    norm = ObsNormalizer(3)
    a, b = _data(0, 40), _data(1, 25)
    for rows in (a[:16], a[16:]):
        norm.observe(rows)
    norm.commit()
    scaled = norm.observe(b)             # scaled by the statistics of ``a`` alone
    np.testing.assert_allclose(scaled, (b - a.mean(0)) / np.sqrt(a.var(0) + EPS), rtol=1e-5)
    norm.commit()
    both = np.concatenate([a, b])
    np.testing.assert_allclose(norm.mean.numpy(), both.mean(0), rtol=1e-12)
    np.testing.assert_allclose(norm.var.numpy(), both.var(0), rtol=1e-9)
    assert float(norm.count) == 65


def test_commit_merges_every_agents_observations() -> None:
    """Two agents' normalisers, each committing with a sum over both, end equal to
    one normaliser that saw all the observations."""
    mine, theirs, alone = ObsNormalizer(3), ObsNormalizer(3), ObsNormalizer(3)
    x, y = _data(2, 30), _data(3, 10)
    mine.observe(x)
    theirs.observe(y)
    alone.observe(np.concatenate([x, y]))
    # the all-reduce: each agent's (count, Σ o, Σ o²), summed over both
    both = sum(torch.from_numpy(np.concatenate([[n._seen], *n._pending]))
               for n in (mine, theirs))
    mine.commit(lambda m: both.clone())
    theirs.commit(lambda m: both.clone())
    alone.commit()
    for norm in (mine, theirs):
        np.testing.assert_allclose(norm.mean.numpy(), alone.mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(norm.var.numpy(), alone.var.numpy(), rtol=1e-9)


def test_fold_gives_the_network_of_raw_observations() -> None:
    torch.manual_seed(0)
    norm = ObsNormalizer(3)
    norm.observe(_data(4, 100))
    norm.commit()
    net = build_policy(3, (16,), 2, "tanh")
    raw = _data(5, 7)
    want = net(torch.from_numpy(norm.normalize(raw)))
    got = norm.fold(net)(torch.from_numpy(raw).float())
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    before = net[0].weight.clone()
    norm.fold(net)
    assert torch.equal(net[0].weight, before)        # a copy: the trained network unchanged


def test_a_run_saves_its_statistics_and_leaves_a_policy_of_raw_observations(
        tmp_path: Path) -> None:
    run = tmp_path / "norm"
    assert main(["train", "--env", "Pendulum-v1", *TINY, "--norm-obs", "--total-steps", "64",
                 "--out", str(run)]) == 0
    model, config = load_trained_model(run)
    assert config.norm_obs and float(model.obs_norm.count) == 64
    assert float(model.obs_norm.var.min()) < 0.99     # moved from its initial ones
    policy, _ = load_policy(run)
    raw = np.array([[0.5, -0.5, 3.0], [-1.0, 0.0, -7.0]], dtype=np.float32)
    with torch.no_grad():
        want = model.policy(torch.from_numpy(model.obs_norm.normalize(raw)))
        torch.testing.assert_close(policy(torch.from_numpy(raw)), want, rtol=1e-4, atol=1e-5)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps_collected"] == 64


@pytest.mark.parametrize("norm", ["--norm-obs", "--norm-value"])
@pytest.mark.parametrize("flags, words", [
    (["--algo", "reinforce"], "only used with --algo a2c or ppo"),
    (["--algo", "a2c", "--mode", "async", "--agents", "2"], "{norm} with --mode async"),
])
def test_normalisers_refused_where_they_cannot_apply(tmp_path: Path, capsys, norm: str,
                                                     flags: list[str], words: str) -> None:
    code = main(["train", "--env", "CartPole-v1", norm, *flags, "--episodes", "2",
                 "--out", str(tmp_path / "x"), "--no-tensorboard"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and words.format(norm=norm) in err, err
    assert not (tmp_path / "x").exists()


def test_two_agents_keep_one_normaliser_of_everyones_observations(tmp_path: Path) -> None:
    run = tmp_path / "two"
    assert main(["train", "--env", "CartPole-v1", *TINY, "--norm-obs", "--total-steps", "128",
                 "--agents", "2", "--agent-timeout", "60", "--out", str(run)]) == 0
    model, _ = load_trained_model(run)
    # 2 updates x 2 agents x 2 copies x 16 steps: agent 0 holds both agents' counts
    assert float(model.obs_norm.count) == 128

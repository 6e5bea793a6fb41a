"""``--norm-value``: the value targets' statistics against NumPy's, the critic's
values restored into returns for GAE, its loss taken on standardised targets
(against a direct computation) and the all-agent merge in a 2-agent run (its
refusals: tests/test_obs_norm.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from qtrl.cli import main
from qtrl.config import TrainConfig
from qtrl.loops.common import build
from qtrl.rl.env import EnvStreams, make_vector_env
from qtrl.rl.normalize import EPS, ValueNormalizer
from qtrl.rl.returns import gae
from qtrl.rl.steps import StepCollector
from qtrl.train import load_trained_model

TINY = ["--hidden", "8", "--layers", "1", "--mapping-hidden", "4", "--num-envs", "2",
        "--num-steps", "16", "--num-minibatches", "2", "--update-epochs", "2",
        "--no-tensorboard"]


def _config(**kw) -> TrainConfig:
    base = {"env": "CartPole-v1", "algo": "ppo", "hidden": (8,), "activation": "tanh",
            "layers": 2, "mapping_hidden": (4,), "num_envs": 2, "num_steps": 16,
            "num_minibatches": 2, "norm_value": True}
    return TrainConfig(**{**base, **kw})


def test_standardize_and_restore_use_the_targets_statistics() -> None:
    norm = ValueNormalizer()
    targets = np.random.default_rng(0).normal(-40.0, 7.0, size=50)
    norm.add(targets)
    norm.commit()
    assert float(norm.mean) == pytest.approx(targets.mean(), rel=1e-12)
    assert float(norm.var) == pytest.approx(targets.var(), rel=1e-9)
    x = torch.tensor([-50.0, -40.0, 0.0], dtype=torch.float32)
    want = (x.double().numpy() - targets.mean()) / np.sqrt(targets.var() + EPS)
    np.testing.assert_allclose(norm.standardize(x).numpy(), want, rtol=1e-6)
    assert norm.standardize(x).dtype == torch.float32
    torch.testing.assert_close(norm.restore(norm.standardize(x)), x)


def _batch(algo, config):
    envs = make_vector_env(config.env, 2)
    collector = StepCollector(envs, EnvStreams(0, 2).reset(envs, 0))
    batch = collector.collect(algo.actor(), config.num_steps, np.random.default_rng(0))
    envs.close()
    return batch


def test_critic_values_are_restored_and_its_targets_standardised() -> None:
    config = _config(clip_vloss=True)
    algo = build(config, 0)
    norm = algo.model.value_norm
    norm.mean.fill_(5.0)          # as if earlier updates had seen targets of mean 5, std 2
    norm.var.fill_(4.0)
    norm.count.fill_(10.0)
    batch = _batch(algo, config)
    steps, copies = batch.rewards.shape
    obs = torch.from_numpy(batch.obs.reshape(steps * copies, -1))
    critic = algo.model.critic
    with torch.no_grad():
        raw = critic(obs, weights=critic.generate()).squeeze(-1).double()
        tail = critic(torch.from_numpy(batch.next_obs), weights=critic.generate()).squeeze(-1)
    values = raw * np.sqrt(4.0 + EPS) + 5.0                      # in returns
    next_values = np.empty((steps, copies))
    next_values[:-1] = values.numpy().reshape(steps, copies)[1:]
    next_values[-1] = tail.double().numpy() * np.sqrt(4.0 + EPS) + 5.0
    assert len(batch.final_at) == 0        # CartPole's 16 steps: no time limit reached
    dones = batch.terminated | batch.truncated_steps
    returns = (gae(batch.rewards, values.numpy().reshape(steps, copies), next_values,
                   batch.terminated, dones, config.gamma, config.gae_lambda).reshape(-1)
               + values.numpy())
    samples, _ = algo.samples(batch)
    # the statistics took the update's targets in before its minibatch steps
    n = 10 + len(returns)
    mean = (10 * 5.0 + returns.sum()) / n
    assert float(norm.mean) == pytest.approx(mean, rel=1e-6)
    scale = np.sqrt(float(norm.var) + EPS)
    np.testing.assert_allclose(samples[5].double().numpy(), (returns - float(norm.mean)) / scale,
                               rtol=1e-4, atol=1e-4)
    # V_old: the critic's own output, the centre that --clip-vloss clips around
    np.testing.assert_allclose(samples[4].double().numpy(), raw.numpy(), rtol=1e-5, atol=1e-5)
    # the value loss compares the critic's own (standardised) output with those targets;
    # at the first minibatch step the clipped loss is the plain one
    _, stats = algo.loss(*samples)
    want = float(torch.mean((raw.float() - samples[5]) ** 2))
    assert float(stats["value_loss"].detach()) == pytest.approx(want, rel=1e-5)


def test_two_agents_keep_one_value_normaliser_of_everyones_targets(tmp_path: Path) -> None:
    run = tmp_path / "two"
    assert main(["train", "--env", "CartPole-v1", *TINY, "--norm-value", "--total-steps", "128",
                 "--agents", "2", "--agent-timeout", "60", "--out", str(run)]) == 0
    model, config = load_trained_model(run)
    assert config.norm_value
    # 2 updates x 2 agents x 2 copies x 16 steps: agent 0 holds both agents' targets
    assert float(model.value_norm.count) == 128
    assert float(model.value_norm.var) != 1.0

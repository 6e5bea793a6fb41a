"""PPO and A2C: GAE, the loss, truncation bootstrapping, the Gaussian head, and
the N-agent gradient, each against an independent computation."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from qtrl.algos.ppo import PPO, ppo_loss
from qtrl.config import TrainConfig
from qtrl.distributed import AgentContext, allreduce_gradients, launch_local
from qtrl.loops.common import build
from qtrl.rl.actor_critic import gaussian_log_prob
from qtrl.rl.env import EnvStreams, make_vector_env
from qtrl.rl.returns import gae
from qtrl.rl.steps import StepCollector


def _ppo_config(**kw) -> TrainConfig:
    base = {"env": "CartPole-v1", "algo": "ppo", "hidden": (8,), "activation": "tanh",
            "layers": 2, "mapping_hidden": (4,), "num_envs": 2, "num_steps": 16,
            "num_minibatches": 2}
    return TrainConfig(**{**base, **kw})


def test_gae_matches_a_hand_computation():
    # one copy, three steps; the episode is truncated after step 1 and the next
    # one terminates at step 2
    gamma, lam = 0.9, 0.5
    r = np.array([[1.0], [2.0], [3.0]])
    v = np.array([[0.5], [1.5], [2.5]])
    nv = np.array([[1.5], [4.0], [9.0]])         # step 1's s' is the truncated episode's last obs
    term = np.array([[False], [False], [True]])
    done = np.array([[False], [True], [True]])
    d2 = 3.0 + 0.0 - 2.5                          # terminated: no bootstrap
    d1 = 2.0 + 0.9 * 4.0 - 1.5                    # truncated: bootstrap V(final obs)
    d0 = 1.0 + 0.9 * 1.5 - 0.5
    a2 = d2
    a1 = d1                                       # episode boundary: no carry from step 2
    a0 = d0 + gamma * lam * a1
    got = gae(r, v, nv, term, done, gamma, lam)
    np.testing.assert_allclose(got[:, 0], [a0, a1, a2], rtol=0, atol=1e-12)


def test_gae_with_lambda_one_is_the_discounted_return_minus_the_value():
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    last = rng.normal(size=3)
    nv = np.vstack([v[1:], last])
    zeros = np.zeros((6, 3), dtype=bool)
    g, ret = last.copy(), np.empty((6, 3))
    for t in range(5, -1, -1):
        g = r[t] + 0.99 * g
        ret[t] = g
    np.testing.assert_allclose(gae(r, v, nv, zeros, zeros, 0.99, 1.0), ret - v, atol=1e-12)


def test_ppo_loss_matches_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    n = 32
    logp, old = torch.randn(n, generator=g) * 0.3, torch.randn(n, generator=g) * 0.3
    adv, ent = torch.randn(n, generator=g), torch.rand(n, generator=g)
    val, old_val, ret = (torch.randn(n, generator=g) for _ in range(3))
    loss, stats = ppo_loss(logp, old, adv, ent, val, old_val, ret, clip=0.2, vf_coef=0.5,
                           ent_coef=0.01, clip_vloss=True)
    pg = 0.0
    vl = 0.0
    for i in range(n):
        ratio = math.exp(logp[i] - old[i])
        pg += -min(ratio * adv[i], min(max(ratio, 0.8), 1.2) * adv[i])
        clipped = old_val[i] + min(max(val[i] - old_val[i], -0.2), 0.2)
        vl += max((val[i] - ret[i]) ** 2, (clipped - ret[i]) ** 2)
    pg, vl = pg / n, vl / n
    expected = pg - 0.01 * ent.mean() + 0.5 * vl
    assert float(stats["policy_loss"]) == pytest.approx(float(pg), abs=1e-6)
    assert float(stats["value_loss"]) == pytest.approx(float(vl), abs=1e-6)
    assert float(loss) == pytest.approx(float(expected), abs=1e-6)


def test_unclipped_loss_has_the_policy_gradient_at_ratio_one():
    logp = torch.tensor([-0.5, -1.0, -2.0], requires_grad=True)
    adv = torch.tensor([1.0, -2.0, 0.5])
    zeros = torch.zeros(3)
    loss, _ = ppo_loss(logp, logp.detach(), adv, zeros, zeros, zeros, zeros, clip=None,
                       vf_coef=0.5, ent_coef=0.0)
    loss.backward()
    torch.testing.assert_close(logp.grad, -adv / 3)


def test_gaussian_log_prob_matches_the_density():
    mean = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    log_std = torch.tensor([0.0, math.log(2.0)])
    a = torch.tensor([[0.5, 0.0], [2.0, 3.0]])
    std = log_std.exp()
    by_hand = [sum(-0.5 * ((a[i, j] - mean[i, j]) / std[j]) ** 2 - math.log(std[j])
                   - 0.5 * math.log(2 * math.pi) for j in range(2)) for i in range(2)]
    torch.testing.assert_close(gaussian_log_prob(mean, log_std, a),
                               torch.tensor(by_hand, dtype=torch.float32))


def test_truncated_episodes_bootstrap_from_their_final_observation():
    config = _ppo_config(max_steps=5, num_steps=12)
    algo = build(config, 0)
    envs = make_vector_env(config.env, 2, max_steps=5)
    obs = EnvStreams(0, 2).reset(envs, 0)
    collector = StepCollector(envs, obs)
    # a policy that keeps the pole up for 5 steps: episodes end by the time limit
    batch = collector.collect(algo.actor(), 12, np.random.default_rng(0))
    envs.close()
    assert batch.truncated_steps.any() and len(batch.final_at) > 0
    t, i = batch.final_at[0]
    assert batch.truncated_steps[t, i] and not batch.terminated[t, i]
    # the final observation is the episode's, not the next one's first
    assert not np.array_equal(batch.final_obs[0], batch.obs[t + 1, i])
    steps = batch.rewards.size
    flat = torch.from_numpy(batch.obs.reshape(steps, -1))
    _, values, next_values = algo._old(batch, flat, torch.from_numpy(batch.actions.reshape(-1)))
    critic = algo.model.critic
    with torch.no_grad():
        expected = critic(torch.from_numpy(batch.final_obs[:1]),
                          weights=critic.generate()).item()
    assert next_values[t, i] == pytest.approx(expected, abs=1e-6)
    # not truncated: the next step's value
    assert next_values[0, 0] == pytest.approx(values.reshape(12, 2)[1, 0].item(), abs=1e-6)
    assert batch.episode_lengths.max() <= 5 and batch.env_steps == 24


def _minibatch(seed: int, n: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 4, generator=g)
    actions = torch.randint(0, 2, (n,), generator=g)
    return (obs, actions, torch.randn(n, generator=g) * 0.1 - 0.7, torch.randn(n, generator=g),
            torch.randn(n, generator=g), torch.randn(n, generator=g))


def _entry_agent_step(ctx: AgentContext, out_dir: str) -> None:
    torch.set_num_threads(1)
    algo = build(_ppo_config(), ctx.rank)
    params = list(algo.model.parameters())
    data = _minibatch(0, 16)
    half = [x[ctx.rank * 8:(ctx.rank + 1) * 8] for x in data]
    algo.minibatch_step(*half, average=lambda: allreduce_gradients(params, ctx))
    torch.save([p.grad for p in params], os.path.join(out_dir, f"rank{ctx.rank}.pt"))


def test_two_agent_minibatch_step_equals_one_process_on_their_data(tmp_path):
    """Each agent's half of a minibatch, all-reduced, gives the gradient (as
    clipped and stepped with) of one process on the whole minibatch. Gradients
    are compared, not the stepped parameters: Adam turns a gradient that is 0
    up to rounding (the mapping's last bias, which cancels) into a full step."""
    launch_local(_entry_agent_step, 2, str(tmp_path), timeout_s=120)
    algo = build(_ppo_config(), 0)
    assert isinstance(algo, PPO)
    algo.minibatch_step(*_minibatch(0, 16))
    grads = [p.grad for p in algo.model.parameters()]
    assert sum(float(g.abs().sum()) for g in grads) > 0
    for r in range(2):
        got = torch.load(tmp_path / f"rank{r}.pt", weights_only=True)
        for g, want in zip(got, grads, strict=True):
            torch.testing.assert_close(g, want, rtol=1e-4, atol=1e-6)


def test_reward_scaler_divides_by_the_running_return_std():
    from qtrl.rl.returns import RewardScaler
    scaler = RewardScaler(copies=1, gamma=0.5)
    rewards = np.array([[2.0], [2.0], [2.0]])
    dones = np.array([[False], [True], [False]])
    returns = np.array([2.0, 3.0, 2.0])        # 2, 2 + 0.5·2, then reset: 2
    out = scaler(rewards, dones)
    # the prior (count 1e-4, var 1) merged with the batch's population variance
    n, prior = 3, 1e-4
    mean, var = returns.mean(), returns.var()
    merged = (1.0 * prior + var * n + mean ** 2 * prior * n / (prior + n)) / (prior + n)
    np.testing.assert_allclose(out, rewards / np.sqrt(merged + 1e-8), rtol=1e-12)

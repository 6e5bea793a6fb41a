"""Multi-agent PettingZoo tasks: the env adapter (rows, rewards, dones per
player, players that leave early), the centralised critic's input, the bad-input
lines, and the 2-process gradient of a simple_spread roll-out."""

from __future__ import annotations

import os
import sys
import types
from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch

from qtrl.config import TrainConfig
from qtrl.distributed import AgentContext, allreduce_gradients, launch_local
from qtrl.errors import UserError
from qtrl.loops.common import build
from qtrl.rl.env import EnvStreams
from qtrl.rl.multiagent import (
    PlayerVectorEnv,
    make_parallel_env,
    parse_env_kwargs,
    player_spec,
    views,
)
from qtrl.rl.steps import StepCollector

SPREAD = "mpe2:simple_spread_v3"


# ---- a tiny parallel env whose players leave at known steps ---------------------------

class Relay:
    """Two players, 3 actions. Player ``a`` observes ``[t, a_action_last]`` (2
    values), ``b`` observes ``[t]`` (1 value); reward ``a``: its action, ``b``:
    10 × its action. ``a`` terminates at step 2, ``b`` is truncated at step 4."""

    possible_agents: ClassVar[list[str]] = ["a", "b"]
    metadata: ClassVar[dict] = {}

    def __init__(self, leave_at: int = 2, horizon: int = 4) -> None:
        self.leave_at, self.horizon = leave_at, horizon

    def observation_space(self, p):
        return gym.spaces.Box(-np.inf, np.inf, (2 if p == "a" else 1,), np.float32)

    def action_space(self, p):
        return gym.spaces.Discrete(3)

    def reset(self, seed=None, options=None):
        self.t, self.agents = 0, list(self.possible_agents)
        return self._obs(0), {p: {} for p in self.agents}

    def _obs(self, last):
        return {p: np.array([self.t, last] if p == "a" else [self.t], np.float32)
                for p in self.agents}

    def step(self, actions):
        self.t += 1
        reward = {p: float(actions[p]) * (1 if p == "a" else 10) for p in self.agents}
        term = {p: p == "a" and self.t == self.leave_at for p in self.agents}
        trunc = {p: p == "b" and self.t == self.horizon for p in self.agents}
        obs = self._obs(actions.get("a", 0))
        self.agents = [p for p in self.agents if not (term[p] or trunc[p])]
        return obs, reward, term, trunc, {p: {} for p in obs}

    def close(self):
        pass


@pytest.fixture
def relay_module(monkeypatch):
    pkg = types.ModuleType("qtrl_testenvs")
    pkg.__path__ = []
    relay = types.ModuleType("qtrl_testenvs.relay_v0")
    relay.parallel_env = Relay
    aec = types.ModuleType("qtrl_testenvs.aec_only_v0")
    aec.env = lambda: None
    for mod in (pkg, relay, aec):
        monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return "qtrl_testenvs:relay_v0"


def test_rows_pad_observations_and_carry_the_one_hot_and_everyone(relay_module):
    envs = PlayerVectorEnv(relay_module, copies=2)
    obs, _ = envs.reset(seed=0)
    # L = 2, P = 2: [local (2) | one-hot (2) | a's local, b's local (4)]
    assert obs.shape == (4, 8)
    np.testing.assert_array_equal(obs[0], [0, 0, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(obs[1], [0, 0, 0, 1, 0, 0, 0, 0])
    obs, rewards, terms, truncs, infos = envs.step(np.array([2, 1, 0, 2]))
    np.testing.assert_array_equal(obs[0], [1, 2, 1, 0, 1, 2, 1, 0])   # a: t=1, last action 2
    np.testing.assert_array_equal(obs[1], [1, 0, 0, 1, 1, 2, 1, 0])   # b padded with 0
    np.testing.assert_array_equal(rewards, [2, 10, 0, 20])
    assert not terms.any() and not truncs.any() and infos["alive"].all()


def test_a_player_that_leaves_is_idle_until_its_world_resets(relay_module):
    envs = PlayerVectorEnv(relay_module, copies=1)
    collector = StepCollector(envs, envs.reset(seed=0)[0])

    def always_one(obs):   # logits: action 1 for every row
        return np.tile(np.array([[0.0, 50.0, 0.0]], np.float32), (len(obs), 1))
    batch = collector.collect(always_one, 6, np.random.default_rng(0))
    # a: plays steps 0, 1 (terminates at the 2nd), idle at 2, 3; the world resets
    # after step 3 (b truncated at t=4), then both play steps 4, 5
    np.testing.assert_array_equal(batch.alive[:, 0], [1, 1, 0, 0, 1, 1])
    np.testing.assert_array_equal(batch.alive[:, 1], [1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(batch.rewards[:, 0], [1, 1, 0, 0, 1, 1])
    np.testing.assert_array_equal(batch.rewards[:, 1], [10] * 6)
    np.testing.assert_array_equal(batch.terminated[:, 0], [0, 1, 0, 0, 0, 1])  # again at t=2
    np.testing.assert_array_equal(batch.truncated_steps[:, 1], [0, 0, 0, 1, 0, 0])
    assert not batch.terminated[:, 1].any() and not batch.truncated_steps[:, 0].any()
    assert (batch.obs[2:4, 0, :2] == 0).all()          # idle: no local observation
    # the world's one finished episode: a's return 2, b's 40, team 42, 4 steps
    np.testing.assert_array_equal(batch.player_returns, [[2, 40]])
    np.testing.assert_array_equal(batch.episode_returns, [42])
    np.testing.assert_array_equal(batch.episode_lengths, [4])
    assert batch.truncated.tolist() == [True]
    # b's last observation (t=4) for the bootstrap, and the next episode's first one
    assert batch.final_at.tolist() == [[3, 1]]
    assert batch.final_obs[0, 0] == 4 and batch.obs[4, 1, 0] == 0
    assert batch.env_steps == 6


def test_the_centralised_critic_reads_the_one_hot_and_every_observation():
    spec = player_spec(SPREAD, ("N=3", "max_cycles=25"))
    assert (spec.local_dim, len(spec.players), spec.obs_dim) == (18, 3, 18 + 3 + 54)
    own, critic = views(spec, "global")
    assert (own, views(spec, "local")[1]) == (slice(0, 21), slice(0, 21))
    envs = PlayerVectorEnv(SPREAD, 1, ("N=3", "max_cycles=25"))
    obs, _ = envs.reset(seed=3)
    raw = envs.envs[0].obs                          # what PettingZoo returned
    everyone = np.concatenate([raw[p] for p in spec.players])
    for p in range(3):
        np.testing.assert_array_equal(obs[p, own][:18], raw[spec.players[p]])
        np.testing.assert_array_equal(obs[p, critic], np.concatenate([np.eye(3)[p], everyone]))
    config = TrainConfig(env=SPREAD, env_kwarg=("N=3", "max_cycles=25"), algo="ppo",
                         hidden=(8,), layers=1, mapping_hidden=(4,), num_envs=1, num_steps=4,
                         num_minibatches=1)
    model = build(config, 0).model
    assert model.policy.target[0].in_features == 21
    assert model.critic.target[0].in_features == 57


def test_env_kwargs_parse_to_python_values():
    assert parse_env_kwargs(["N=3", "local_ratio=0.25", "continuous_actions=false",
                             "render_mode=none", "name=x"]) == {
        "N": 3, "local_ratio": 0.25, "continuous_actions": False, "render_mode": None,
        "name": "x"}
    assert parse_env_kwargs(["N=3", "N=3"]) == {"N": 3}


@pytest.mark.parametrize("env_id, kwargs, expected", [
    ("mpe2:no_such_env_v0", (), "no module mpe2.no_such_env_v0"),
    ("qtrl_testenvs:aec_only_v0", (), "AEC-only"),
    (SPREAD, ("continuous_actions=true",), "Discrete actions"),
    (SPREAD, ("colour=3",), "the env refused them"),
    (SPREAD, ("N=3", "N=4"), "one value per key"),
    (SPREAD, ("N3",), "KEY=VALUE"),
    ("mpe2:simple_speaker_listener_v4", (), "share one Discrete action count"),
])
def test_bad_multiagent_input_is_one_clear_line(relay_module, env_id, kwargs, expected):
    with pytest.raises(UserError, match=expected) as err:
        make_parallel_env(env_id, kwargs)
    assert "\n" not in str(err.value)


def test_multiagent_flags_are_refused_where_they_do_not_apply():
    with pytest.raises(UserError, match="only for a multi-agent task"):
        TrainConfig(env="CartPole-v1", algo="ppo", env_kwarg=("N=3",))
    with pytest.raises(UserError, match="use --algo ppo"):
        TrainConfig(env=SPREAD, algo="reinforce")
    with pytest.raises(UserError, match="--norm-obs"):
        TrainConfig(env=SPREAD, algo="ppo", norm_obs=True)


# ---- Dist-QTRL: 2 processes, each its own worlds, one all-reduced gradient -------------

def _spread_config() -> TrainConfig:
    return TrainConfig(env=SPREAD, env_kwarg=("N=3", "max_cycles=25"), algo="ppo",
                       hidden=(8,), activation="tanh", layers=1, mapping_hidden=(4,),
                       num_envs=1, num_steps=10, num_minibatches=1, update_epochs=1)


def _roll_out(rank: int):
    """Process ``rank``'s roll-out with the initial weights, and its samples."""
    config = _spread_config()
    algo = build(config, 0)
    envs = PlayerVectorEnv(config.env, 1, config.env_kwarg)
    obs = EnvStreams(config.seed, 1, agent=rank).reset(envs, 0)
    batch = StepCollector(envs, obs).collect(algo.actor(), 10, np.random.default_rng(rank))
    return algo, algo.samples(batch)[0]


def _entry_gradient(ctx: AgentContext, out_dir: str) -> None:
    torch.set_num_threads(1)
    algo, samples = _roll_out(ctx.rank)
    params = list(algo.model.parameters())
    loss, _ = algo.loss(*samples)
    loss.backward()
    allreduce_gradients(params, ctx)
    torch.save([p.grad for p in params], os.path.join(out_dir, f"rank{ctx.rank}.pt"))


def test_two_process_gradient_equals_one_process_on_both_roll_outs(tmp_path):
    """Each process rolls out its own simple_spread worlds; their all-reduced
    gradient equals, bit for bit, the mean of the two processes' gradients
    computed here in one process from the same two roll-outs (advantages
    normalised per process, as each process does)."""
    launch_local(_entry_gradient, 2, str(tmp_path), timeout_s=180)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as the agents: the same reductions, bit for bit
    try:
        grads = []
        for rank in range(2):
            algo, samples = _roll_out(rank)
            algo.optimizer.zero_grad()
            algo.loss(*samples)[0].backward()
            grads.append([p.grad.clone() for p in algo.model.parameters()])
    finally:
        torch.set_num_threads(threads)
    want = [(a + b) / 2 for a, b in zip(*grads, strict=True)]   # gloo's sum, then / 2
    assert sum(float(g.abs().sum()) for g in want) > 0
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for g, w in zip(got, want, strict=True):
            assert torch.equal(g, w)


# ---- policy layouts ---------------------------------------------------------------------

def _layout(policy: str, classical: bool = False):
    config = TrainConfig(env=SPREAD, env_kwarg=("N=3",), algo="ppo", hidden=(8,), layers=1,
                         mapping_hidden=(4,), policy=policy, classical=classical)
    return build(config, 0).model


def test_player_networks_answer_for_the_player_their_one_hot_names():
    model = _layout("per-agent")
    target, weights = model.policy.target, model.policy.generate()
    x = torch.randn(6, 21)
    x[:, 18:] = torch.eye(3).repeat(2, 1)
    with torch.no_grad():
        out = model.policy(x, weights=weights)
        for row in range(6):
            p = row % 3
            net = {k.split(".net.", 1)[1]: v for k, v in weights.items()
                   if k.startswith(f"blocks.{p}.net.")}
            want = torch.func.functional_call(target.blocks[p].net, net, (x[row:row + 1],))
            torch.testing.assert_close(out[row:row + 1], want)


def test_per_agent_has_one_generator_per_player_and_shared_bits_one_circuit():
    shared, per, bits = _layout("shared"), _layout("per-agent"), _layout("shared-bits")
    one = shared.policy.parameter_counts().as_dict()
    k = 21 * 8 + 8 + 8 * 5 + 5                     # one player's network: 221 weights
    assert one["target_weights"] == k
    each = per.policy.parameter_counts()["per_player"]
    assert len(each) == 3 and all(c["target_weights"] == k for c in each)
    assert per.policy.parameter_counts()["total"] == sum(c["total"] for c in each)
    qt = bits.policy
    m = 8                                           # 2^8 = 256 >= 221 basis states per player
    assert qt.k == 3 * 2**m and qt.n_qubits == m + 2
    # the top two index bits the mapping model reads are the player's, as ±1
    for p in range(3):
        block = qt.features[p * 2**m:p * 2**m + k, :2]
        want = torch.tensor([(p >> 1 & 1) * 2 - 1, (p & 1) * 2 - 1], dtype=block.dtype)
        assert (block == want).all()
    assert qt.parameter_counts().total < per.policy.parameter_counts()["total"]
    # classical: both layouts are the same three networks
    assert (_layout("per-agent", True).policy.parameter_counts()["total"]
            == _layout("shared-bits", True).policy.parameter_counts()["total"] == 3 * k)


def test_a_run_records_team_and_player_returns_and_evaluates(tmp_path):
    import csv

    from qtrl.train import create_run_dir, evaluate, load_policy, train
    config = TrainConfig(env=SPREAD, env_kwarg=("N=2", "max_cycles=5"), algo="ppo",
                         hidden=(4,), layers=1, mapping_hidden=(4,), num_envs=2, num_steps=5,
                         num_minibatches=1, update_epochs=1, total_steps=30, episodes=10**6)
    create_run_dir(tmp_path / "run", config)
    summary = train(config, tmp_path / "run", tensorboard=False)
    with open(tmp_path / "run" / "players.csv") as f:
        players = list(csv.DictReader(f))
    with open(tmp_path / "run" / "metrics.csv") as f:
        episodes = list(csv.DictReader(f))
    assert len(players) == len(episodes) == summary["episodes"] == 6   # 30 steps / 5 per world
    for row, ep in zip(players, episodes, strict=True):
        each = [float(row["return_agent_0"]), float(row["return_agent_1"])]
        assert float(row["team_return"]) == pytest.approx(sum(each))
        assert float(ep["return"]) == pytest.approx(sum(each))
        assert int(ep["length"]) == 5
    means = [np.mean([float(r[f"return_agent_{p}"]) for r in players]) for p in range(2)]
    assert summary["players"] == ["agent_0", "agent_1"]
    assert summary["final_mean_player_return_avg100"] == pytest.approx(np.mean(means))
    policy, loaded = load_policy(tmp_path / "run")
    assert policy[0].in_features == 12 + 2      # N=2: 12 local values + the one-hot
    returns = evaluate(policy, loaded, episodes=3, seed=1)
    assert returns.shape == (3,) and np.isfinite(returns).all()


def test_a_resumed_run_keeps_each_players_returns_up_to_its_checkpoint(tmp_path):
    import csv

    from qtrl.run.callbacks import Callback
    from qtrl.train import create_run_dir, train

    class StopAfterUpdate3(Callback):
        def on_update(self, episodes: int, values: dict) -> None:
            if episodes >= 6:            # 2 worlds, each ending once per update
                raise KeyboardInterrupt

    def rows(name: str) -> list[dict]:
        with open(run / name) as f:
            return list(csv.DictReader(f))

    config = TrainConfig(env=SPREAD, env_kwarg=("N=2", "max_cycles=5"), algo="ppo",
                         hidden=(4,), layers=1, mapping_hidden=(4,), num_envs=2, num_steps=5,
                         num_minibatches=1, update_epochs=1, total_steps=50, episodes=10**6,
                         checkpoint_every=2)
    run = tmp_path / "run"
    create_run_dir(run, config)
    with pytest.raises(KeyboardInterrupt):   # after update 3; the checkpoint is update 2's
        train(config, run, tensorboard=False, callbacks=[StopAfterUpdate3()])
    before = rows("players.csv")
    assert len(before) == 6
    summary = train(config, run, resume=True, tensorboard=False)
    players, episodes = rows("players.csv"), rows("metrics.csv")
    assert len(players) == len(episodes) == summary["episodes"] == 10
    assert players[:4] == before[:4]         # update 3's rows were played again, not kept
    assert [int(r["episode"]) for r in players] == list(range(1, 11))
    for row, ep in zip(players, episodes, strict=True):
        assert float(row["team_return"]) == float(ep["return"])
    every = np.array([[float(r[f"return_agent_{p}"]) for p in range(2)] for r in players])
    assert summary["final_mean_player_return_avg100"] == pytest.approx(every.mean())
    assert summary["final_player_return_avg100"]["agent_1"] == pytest.approx(every[:, 1].mean())

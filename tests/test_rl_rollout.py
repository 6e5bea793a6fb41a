"""Roll-outs: exact episode counts, autoreset modes, masking, the numpy actor."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from qtrl.errors import UserError
from qtrl.presets import build_policy
from qtrl.rl.env import MaskedSyncVectorEnv, make_env, make_vector_env
from qtrl.rl.policy import ActionSampler, CompiledActor, make_actor, sample_actions
from qtrl.rl.rollout import collect_episodes


def _actor(seed: int = 0, obs_dim: int = 4, n_actions: int = 2):
    torch.manual_seed(seed)
    net = build_policy(obs_dim, (32,), n_actions)
    return make_actor(net, dict(net.named_parameters()))


def _collect(mode: str, n_envs: int, episodes: int, masked: bool = True, seed: int = 0):
    envs = make_vector_env("CartPole-v1", n_envs, autoreset=mode)
    if not masked:
        envs.close()
        envs = gym.vector.SyncVectorEnv([lambda: make_env("CartPole-v1")] * n_envs, copy=False,
                                        autoreset_mode=envs.autoreset_mode)
    try:
        # One action stream per episode would be needed for mode-independence;
        # a deterministic (greedy) actor makes the comparison exact.
        return collect_episodes(envs, _actor(), episodes, np.random.default_rng(seed),
                                list(range(100, 100 + n_envs)), greedy=True)
    finally:
        envs.close()


def _single_episode(seed: int) -> tuple[list[float], int]:
    """The same greedy episode played by hand on one plain environment."""
    env = make_env("CartPole-v1")
    actor = _actor()
    obs, _ = env.reset(seed=seed)
    rewards = []
    while True:
        a = int(actor(obs[None].astype(np.float32)).argmax())
        obs, r, term, trunc, _ = env.step(a)
        rewards.append(r)
        if term or trunc:
            return rewards, len(rewards)


@pytest.mark.parametrize("mode", ["same-step", "next-step"])
@pytest.mark.parametrize("n_envs,episodes", [(1, 3), (4, 4), (3, 7)])
def test_exact_episode_count_and_lengths(mode: str, n_envs: int, episodes: int) -> None:
    batch = _collect(mode, n_envs, episodes)
    assert len(batch.episode_lengths) == episodes
    assert batch.episode_lengths.sum() == len(batch.actions) == len(batch.obs)
    np.testing.assert_array_equal(np.bincount(batch.episode, minlength=episodes),
                                  batch.episode_lengths)
    assert np.all(np.diff(batch.episode) >= 0)            # grouped by episode
    np.testing.assert_allclose(batch.episode_returns,
                               np.bincount(batch.episode, weights=batch.rewards))
    # CartPole pays 1 per step: every reward of a counted step is 1 (no masked
    # reset step of next-step mode slipped in, which would carry reward 0).
    assert np.all(batch.rewards == 1.0)


@pytest.mark.parametrize("n_envs,episodes", [(1, 2), (4, 6)])
def test_same_step_and_next_step_give_identical_batches(n_envs: int, episodes: int) -> None:
    a = _collect("same-step", n_envs, episodes)
    b = _collect("next-step", n_envs, episodes)
    for x, y in zip(a[:-1], b[:-1]):
        np.testing.assert_array_equal(x, y)


def test_masked_and_plain_vector_env_agree() -> None:
    a = _collect("same-step", 4, 6, masked=True)
    b = _collect("same-step", 4, 6, masked=False)
    for x, y in zip(a[:-1], b[:-1]):
        np.testing.assert_array_equal(x, y)
    assert a.env_steps == a.episode_lengths.sum()            # idle copies not stepped
    assert b.env_steps > b.episode_lengths.sum()             # idle copies stepped anyway


def test_first_episodes_match_a_hand_played_episode() -> None:
    batch = _collect("same-step", 2, 2)
    for e, seed in enumerate((100, 101)):
        rewards, length = _single_episode(seed)
        assert batch.episode_lengths[e] == length
        np.testing.assert_array_equal(batch.rewards[batch.episode == e], rewards)


def test_truncation_is_reported() -> None:
    envs = make_vector_env("CartPole-v1", 2, max_steps=5)
    try:
        batch = collect_episodes(envs, _actor(), 3, np.random.default_rng(0), [1, 2])
    finally:
        envs.close()
    assert batch.truncated.all() and (batch.episode_lengths == 5).all()


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("activation", [torch.nn.ReLU, torch.nn.Tanh])
def test_fast_actors_match_torch(monkeypatch: pytest.MonkeyPatch, compiled: bool,
                                 activation: type) -> None:
    """The compiled actor and its NumPy fallback against torch's forward."""
    from qtrl import jit
    if compiled and not jit.available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(jit, "available", lambda: compiled)
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(147, 32), activation(), torch.nn.Linear(32, 16),
                              activation(), torch.nn.Linear(16, 3, bias=False))
    weights = {k: v.detach() * 3 for k, v in net.named_parameters()}
    actor = make_actor(net, weights)
    assert isinstance(actor, CompiledActor) if compiled else actor.__name__ == "numpy_actor"
    x = np.random.default_rng(0).normal(size=(5, 147)).astype(np.float32)
    expected = torch.func.functional_call(net, weights, (torch.from_numpy(x),)).detach().numpy()
    np.testing.assert_allclose(actor(x), expected, rtol=1e-5, atol=1e-5)


def test_fused_sampling_follows_the_softmax() -> None:
    """``ActionSampler.act`` on a compiled actor (logits and arg-max in one call)
    samples from softmax(logits): observed frequencies against the probabilities
    (no bit-for-bit agreement with the NumPy path is promised), and greedy is
    the arg-max."""
    from qtrl import jit
    if not jit.available():
        pytest.skip("numba is not installed")
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    actor = make_actor(net, dict(net.named_parameters()))
    assert isinstance(actor, CompiledActor)
    obs = np.random.default_rng(1).normal(size=(2, 4)).astype(np.float32)
    draws = 20000
    sampler = ActionSampler(np.random.default_rng(5))
    got = np.stack([sampler.act(actor, obs) for _ in range(draws)])      # (draws, 2)
    logits = actor(obs).astype(np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    for row in range(2):
        freq = np.bincount(got[:, row], minlength=3) / draws
        np.testing.assert_allclose(freq, probs[row], atol=5 * np.sqrt(0.25 / draws))
    np.testing.assert_array_equal(sampler.act(actor, obs, greedy=True), logits.argmax(1))


def test_torch_fallback_actor_for_other_modules() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    actor = make_actor(net, dict(net.named_parameters()))
    x = np.ones((3, 4), np.float32)
    np.testing.assert_allclose(actor(x), net(torch.from_numpy(x)).detach().numpy(), rtol=1e-6)


def test_sampling_follows_the_softmax() -> None:
    logits = np.log(np.array([[0.2, 0.5, 0.3]] * 40000))
    counts = np.bincount(sample_actions(logits, np.random.default_rng(0)), minlength=3)
    np.testing.assert_allclose(counts / counts.sum(), [0.2, 0.5, 0.3], atol=0.01)
    assert (sample_actions(logits, None, greedy=True) == 1).all()


def test_minigrid_observation_is_flat_and_actions_restricted() -> None:
    envs = make_vector_env("MiniGrid-Empty-5x5-v0", 2, max_steps=10)
    try:
        assert envs.single_observation_space.shape == (147,)
        batch = collect_episodes(envs, _actor(obs_dim=147, n_actions=3), 2,
                                 np.random.default_rng(0), [0, 1])
    finally:
        envs.close()
    assert batch.obs.shape[1] == 147 and batch.actions.max() <= 2


def test_masked_env_is_a_vector_env() -> None:
    envs = make_vector_env("CartPole-v1", 2)
    assert isinstance(envs, MaskedSyncVectorEnv) and isinstance(envs, gym.vector.VectorEnv)
    assert envs.num_envs == 2 and len(envs.envs) == 2
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    assert envs.single_action_space == gym.spaces.Discrete(2)
    assert envs.action_space == gym.spaces.MultiDiscrete([2, 2])
    assert envs.observation_space.shape == (2, 4)
    envs.close()
    assert envs.closed
    with pytest.raises(UserError, match="autoreset"):
        make_vector_env("CartPole-v1", 2, autoreset="sometimes")
    with pytest.raises(ValueError, match="DISABLED"):
        MaskedSyncVectorEnv([lambda: make_env("CartPole-v1")],
                            autoreset_mode=gym.vector.AutoresetMode.DISABLED)


@pytest.mark.parametrize("env_id,max_steps", [("CartPole-v1", 12),
                                              ("MiniGrid-Empty-5x5-v0", 6)])
@pytest.mark.parametrize("mode", ["same-step", "next-step"])
def test_step_and_reset_agree_with_gymnasiums_sync_vector_env(env_id: str, max_steps: int,
                                                             mode: str) -> None:
    """The independent check: Gymnasium's own SyncVectorEnv over the same
    copies, seeds and actions gives the same observations, rewards, flags and
    same-step final observations, through many autoresets."""
    n = 3
    ours = make_vector_env(env_id, n, max_steps, autoreset=mode)
    theirs = gym.vector.SyncVectorEnv([lambda: make_env(env_id, max_steps)] * n,
                                      autoreset_mode=ours.autoreset_mode)
    n_actions = int(ours.single_action_space.n)
    actions = np.random.default_rng(3).integers(0, n_actions, (60, n))
    try:
        for seed in (11, [4, 5, 6]):
            a, _ = ours.reset(seed=seed)
            b, _ = theirs.reset(seed=seed)
            np.testing.assert_array_equal(a, b)
            ends = 0
            for act in actions:
                a_obs, a_rew, a_term, a_trunc, a_info = ours.step(act)
                b_obs, b_rew, b_term, b_trunc, b_info = theirs.step(act)
                np.testing.assert_array_equal(a_obs, b_obs)
                np.testing.assert_array_equal(a_rew, b_rew)
                np.testing.assert_array_equal(a_term, b_term)
                np.testing.assert_array_equal(a_trunc, b_trunc)
                assert a_info.keys() == b_info.keys()
                if "final_obs" in b_info:
                    np.testing.assert_array_equal(a_info["_final_obs"], b_info["_final_obs"])
                    for i in np.flatnonzero(b_info["_final_obs"]):
                        np.testing.assert_array_equal(a_info["final_obs"][i],
                                                      b_info["final_obs"][i])
                ends += int((a_term | a_trunc).sum())
            assert ends >= n        # the comparison went through autoresets
    finally:
        ours.close()
        theirs.close()


def test_masked_step_of_every_copy_is_the_plain_step() -> None:
    for mode in ("same-step", "next-step"):
        a = make_vector_env("CartPole-v1", 3, 8, autoreset=mode)
        b = make_vector_env("CartPole-v1", 3, 8, autoreset=mode)
        everyone = np.ones(3, dtype=bool)
        try:
            a.reset(seed=2)
            b.reset(seed=2)
            for act in np.random.default_rng(0).integers(0, 2, (30, 3)):
                for x, y in zip(a.step(act, mask=everyone)[:4], b.step(act)[:4]):
                    np.testing.assert_array_equal(x, y)
        finally:
            a.close()
            b.close()


def test_step_active_steps_only_the_active_copies_and_lists_the_ended() -> None:
    envs = make_vector_env("CartPole-v1", 3, max_steps=2)
    try:
        first, _ = envs.reset(seed=[1, 2, 3])
        first = first.copy()
        moves = np.array([1, 0, 1])
        obs, rewards, terms, truncs, ended = envs.step_active(moves, [0, 2])
        assert ended == [] and rewards.tolist() == [1.0, 0.0, 1.0]
        np.testing.assert_array_equal(obs[1], first[1])          # idle copy untouched
        assert not np.array_equal(obs[0], first[0])
        _, rewards, terms, truncs, ended = envs.step_active(moves, [0, 1, 2])
        # Copies 0 and 2 hit the 2-step limit; copy 1 has made only one step.
        assert ended == [0, 2] and truncs.tolist() == [True, False, True] and not terms.any()
    finally:
        envs.close()


def test_step_active_without_autoreset_leaves_ended_copies_until_reset() -> None:
    envs = make_vector_env("CartPole-v1", 2, max_steps=1)
    try:
        envs.reset(seed=[1, 2])
        obs, _, _, truncs, ended = envs.step_active(np.array([1, 0]), [0], autoreset=False)
        assert ended == [0] and truncs[0]
        last = obs[0].copy()
        # The copy kept its final observation (no reset drew a new start) ...
        np.testing.assert_array_equal(np.asarray(envs.envs[0].unwrapped.state, np.float32), last)
        with pytest.raises(RuntimeError, match=r"copies \[0\] ended without a reset"):
            envs.step_active(np.array([1, 0]), [0, 1])
        with pytest.raises(RuntimeError, match="ended without a reset"):
            envs.step(np.array([1, 0]))
        envs.step_active(np.array([1, 0]), [1], autoreset=False)   # others still step
        envs.reset(seed=[1, 2])                                     # ... until a reset
        envs.step(np.array([1, 0]))
    finally:
        envs.close()


def test_roll_outs_skip_the_resets_of_copies_going_idle() -> None:
    """With every episode started, a copy that ends is not reset (the next
    update's seeded reset would discard it): same batch, fewer resets."""
    counts = {"resets": 0}
    envs = make_vector_env("CartPole-v1", 4)
    for env in envs.envs:
        inner = env.unwrapped
        original = inner.reset

        def counting(*args, _original=original, **kwargs):
            counts["resets"] += 1
            return _original(*args, **kwargs)
        inner.reset = counting
    try:
        batch = collect_episodes(envs, _actor(), 4, np.random.default_rng(0), [5, 6, 7, 8])
        assert counts["resets"] == 4                   # the seeded ones only
        counts["resets"] = 0
        batch6 = collect_episodes(envs, _actor(), 6, np.random.default_rng(0), [5, 6, 7, 8])
        assert counts["resets"] == 4 + 2               # plus the two later episodes' starts
    finally:
        envs.close()
    assert len(batch.episode_lengths) == 4 and len(batch6.episode_lengths) == 6


def test_env_streams_reset_as_a_pure_function_of_the_update() -> None:
    from qtrl.rl.env import EnvStreams
    streams = EnvStreams(7, 3)
    envs = make_vector_env("CartPole-v1", 3)
    other = make_vector_env("CartPole-v1", 3)
    try:
        first = streams.reset(envs, 5).copy()
        for _ in range(4):                              # whatever happened before ...
            envs.step(np.array([0, 1, 0]))
        np.testing.assert_array_equal(streams.reset(envs, 5), first)      # ... same reset
        np.testing.assert_array_equal(streams.reset(other, 5), first)     # other copies too
        assert not np.array_equal(streams.reset(envs, 6), first)
        assert not np.array_equal(EnvStreams(7, 3, agent=1).reset(envs, 5), first)
        rows = {tuple(r) for r in first}
        assert len(rows) == 3                            # each copy its own stream
        # the update's later (unseeded) resets continue the same stream
        a = collect_episodes(envs, _actor(), 6, np.random.default_rng(0), streams.at(2))
        b = collect_episodes(other, _actor(), 6, np.random.default_rng(0), streams.at(2))
        np.testing.assert_array_equal(a.obs, b.obs)
    finally:
        envs.close()
        other.close()
    minigrid = make_vector_env("MiniGrid-Empty-5x5-v0", 2, max_steps=10)
    try:
        np.testing.assert_array_equal(EnvStreams(1, 2).reset(minigrid, 3),
                                      EnvStreams(1, 2).reset(minigrid, 3))
    finally:
        minigrid.close()

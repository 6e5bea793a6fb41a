"""Training speed: Quantum-Train vs classical vs the reference's per-step formulation.

Everything runs on the CartPole preset networks (policy 4-128-2; Quantum-Train
10 qubits × 5 layers, mapping 10-10-10) on one torch thread, with the same
seeds for every model. Four measurements:

1. **Update cost, QT vs classical.** The training loop's own update
   (:func:`qtrl.loops.common.play`, then the algorithm's ``update``) — for ``E`` episodes over ``N`` sync envs,
   in three regimes. *Untrained, own policy*: each model plays its own
   untrained policy, as a run starts; the two play different episodes (QT's
   near-uniform first policy falls sooner: ~179 against ~205 steps per update
   over seeds 0-7), so their cost per env step differs by episode length as
   well as by compute. *Untrained, same episodes*: both play uniformly random
   actions (episodes of the untrained length, identical for both models) and
   *500-step*: both play a fixed balancing controller that lasts CartPole's
   500 steps (the regime of a solved task). In these two the models do
   identical environment work, so the QT / classical ratio is one of compute;
   each update's own actor still runs at every step (a :class:`Behaviour`
   callback only replaces its actions), and the update itself (generation, batched
   log-probabilities, backward, Adam) is the real one. Cost does not depend on
   the weights' values.
2. **Our update vs the per-step formulation** of the reference notebook,
   implemented here: weights regenerated with autograd at every environment
   step, one environment, backward through all steps' graphs at the episode end.
   Its circuit runs as the reference's does (gate by gate under plain autograd,
   as TorchQuantum; the goal's baseline) and, beside it, by our compiled
   simulator (what batching the update alone buys).
3. **Whole training runs**: the tuned CartPole recipe (the one that reaches 475,
   ``docs/RESULTS_training.md``) trained end to end by :func:`qtrl.train.train`,
   QT and classical, same seed — time per env step over everything a run does
   (roll-outs, updates, logging, checkpoints) and env-steps/s against random
   actions on the same vector env.
4. **Training env-steps/s vs random-action stepping** of the same vector env
   through Gymnasium's ``step()`` (the goal's yardstick), measured alongside:
   for [1]'s regimes a twin env is stepped right after every timed update for
   as many env steps as it played; for the whole runs, right before and right
   after each run. This machine's speed drifts by up to 2x within minutes, and
   a yardstick measured at another time says more about the drift than about
   training. Beside it, stricter: the fastest random rate seen anywhere in the
   bench (long steady runs), and the leaner masked step our roll-outs use.
   The goal is checked on the regimes that train a policy's own roll-outs or a
   controller's; the same-episodes regime (random actions) is shown only.
5. **Memory**: peak RSS growth of one update with short vs long episodes, each
   measured in a fresh process, for our update and for the per-step formulation.
6. **PPO** (:mod:`qtrl.bench.actor_critic`): the cartpole preset's whole run,
   Quantum-Train actor and critic against ``--classical``, per env step.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..rl.policy import Actor
from ..run.callbacks import Callback
from .actor_critic import ppo_whole_runs
from .per_step import _controller_actor, per_step_formulation

__all__ = ["register_args", "run"]

GOAL_QT_VS_CLASSICAL = 1.3     # QT cost per env step ≤ 1.3× classical
GOAL_VS_PER_STEP = 100.0       # ≥ 100× faster per env step than the per-step formulation
GOAL_VS_RANDOM = 0.5           # training env-steps/s ≥ half of random-action stepping


def register_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="seeds (each model gets the same ones)")
    p.add_argument("--updates", type=int, default=10, help="timed updates per seed and regime")
    p.add_argument("--envs", type=int, default=8, help="sync vector-env copies")
    p.add_argument("--episodes-per-update", type=int, default=8, help="episodes per update")
    p.add_argument("--per-step-episodes", type=int, default=3,
                   help="episodes of the per-step formulation per seed")
    p.add_argument("--random-steps", type=int, default=4000,
                   help="vector steps of the random-action baseline")
    p.add_argument("--run-episodes", type=int, default=1000,
                   help="episodes of each whole training run")
    p.add_argument("--quick", action="store_true", help="one seed, fewer steps (smoke test)")


class _Played:
    """Plays ``logits_of``'s actions while ``actor`` still runs at every step
    (its cost is paid), by the roll-out's own call path: one fused call where
    the actor samples itself (:class:`~qtrl.rl.policy.CompiledActor`)."""

    def __init__(self, actor: Any, logits_of: Callable[[np.ndarray], np.ndarray]) -> None:
        self.actor, self.logits_of = actor, logits_of
        self.n_actions = actor.n_actions

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.actor(obs)
        return self.logits_of(obs)

    def actions(self, obs: np.ndarray, noise: np.ndarray) -> np.ndarray:
        self.actor.actions(obs, noise)
        if self.logits_of is _uniform:
            return noise.argmax(1)           # argmax(0 + noise), without the add
        return (self.logits_of(obs) + noise).argmax(1)


class Behaviour(Callback):
    """A run callback whose roll-outs play ``logits_of``'s actions while the
    update's own actor still runs at every step (its cost is paid)."""

    def __init__(self, logits_of: Callable[[np.ndarray], np.ndarray]) -> None:
        self.logits_of = logits_of

    def wrap_actor(self, actor: Actor) -> Actor:
        if hasattr(actor, "actions"):
            return _Played(actor, self.logits_of)

        def play(obs: np.ndarray) -> np.ndarray:
            actor(obs)
            return self.logits_of(obs)
        return play


controlled = Behaviour(_controller_actor)
"""The fixed balancing controller's actions (500-step episodes)."""


def _uniform(obs: np.ndarray) -> np.ndarray:
    return np.zeros((obs.shape[0], 2))


random_play = Behaviour(_uniform)
"""Uniformly random actions (episodes of the untrained length)."""


REGIMES: dict[str, Behaviour | None] = {
    "untrained, own policy": None,
    "untrained, same episodes": random_play,
    "500-step (controller)": controlled,
}
"""[1]'s regimes: what the roll-outs play (None: each model's own policy)."""
SAME_WORK = ("untrained, same episodes", "500-step (controller)")
"""[1]'s regimes whose QT / classical ratio is the goal's: identical environment work."""


def _build(classical: bool, seed: int) -> tuple[Any, Any, Any]:
    """``(config, model, algorithm)`` of the CartPole preset, as training builds them."""
    from ..config import TrainConfig
    from ..loops.common import build
    config = TrainConfig.from_preset("cartpole-paper", classical=classical, seed=seed)
    algo = build(config, rank=0)
    return config, algo.model, algo


def time_updates(classical: bool, seeds: list[int], updates: int, n_envs: int, episodes: int,
                 behaviour: Behaviour | None) -> dict[str, float]:
    """Sum of the timings of ``updates`` updates per seed (plus one warm-up each)."""
    return time_update_pairs(seeds, updates, n_envs, episodes, behaviour,
                             models=("classical",) if classical else ("QT",))[
        "classical" if classical else "QT"]


def time_update_pairs(seeds: list[int], updates: int, n_envs: int, episodes: int,
                      behaviour: Behaviour | None,
                      models: tuple[str, ...] = ("QT", "classical")) -> dict[str, dict]:
    """Timings summed over ``updates`` updates per seed (after one warm-up), the
    models' updates interleaved so that a slow spell of a shared machine hits
    both alike.

    Right after each timed update, a twin of its vector env is stepped with
    random actions through Gymnasium's ``step()`` for :data:`YARDSTICK_STEPS`
    vector steps (``random_time``, ``random_steps``): the goal's yardstick,
    measured beside the update it is compared with, in runs long enough to be
    steady (bursts as short as an update's roll-out measured 7-20% slower than
    steady stepping, which would flatter training).
    """
    from ..loops.common import play
    from ..rl.env import EnvStreams, make_vector_env
    from ..run.seeds import Stream, generator

    keys = ("generate", "rollout", "learn", "steps", "updates", "env_steps", "random_time",
            "random_steps")
    totals = {m: dict.fromkeys(keys, 0.0) for m in models}
    moves = np.random.default_rng(0).integers(0, 2, (1 << 16, n_envs))
    for seed in seeds:
        built = {m: _build(m == "classical", seed) for m in models}
        envs = {m: make_vector_env(built[m][0].env, n_envs) for m in models}
        twin = make_vector_env(built[models[0]][0].env, n_envs)
        resets = EnvStreams(seed, n_envs)
        twin.reset(seed=seed)
        done = 0                                   # random moves used so far
        try:
            for u in range(updates + 1):
                for m in models:
                    _, _, algo = built[m]
                    batch, t_generate, t_rollout = play(
                        algo, envs[m], episodes, generator(seed, Stream.ACTIONS, 0, u),
                        resets.at(u), behaviour)
                    t0 = time.perf_counter()
                    algo.update(batch)
                    t_learn = time.perf_counter() - t0
                    vector_steps = YARDSTICK_STEPS
                    t0 = time.perf_counter()
                    for a in moves[done % len(moves):][:vector_steps]:
                        twin.step(a)
                    random_time = time.perf_counter() - t0
                    done += vector_steps
                    if u == 0:
                        continue  # warm-up
                    t = totals[m]
                    t["generate"] += t_generate
                    t["rollout"] += t_rollout
                    t["learn"] += t_learn
                    t["steps"] += float(batch.episode_lengths.sum())
                    t["env_steps"] += batch.env_steps
                    t["updates"] += 1
                    t["random_time"] += random_time
                    t["random_steps"] += vector_steps * n_envs
        finally:
            twin.close()
            for e in envs.values():
                e.close()
    return totals


YARDSTICK_STEPS = 512
"""Vector steps of random actions after each timed update (~4000 env steps)."""

TUNED = {"mapping_activation": "relu", "qt_init_std": 0.1, "episodes_per_update": 4,
         "lr": 7e-3, "anneal_lr": True, "max_grad_norm": 1.0}


def whole_run(classical: bool, seed: int, episodes: int) -> dict[str, float]:
    """Train the tuned CartPole recipe end to end; wall time and env steps."""
    import tempfile
    from pathlib import Path

    from ..config import TrainConfig
    from ..train import train
    config = TrainConfig.from_preset("cartpole-paper", classical=classical, seed=seed,
                                     episodes=episodes, **TUNED)
    if classical:
        config = TrainConfig.from_dict({**config.to_dict(), "qt_init_std": None})
    with tempfile.TemporaryDirectory(prefix="qtrl-bench-") as tmp:
        t0 = time.perf_counter()
        summary = train(config, Path(tmp), tensorboard=False)
        wall = time.perf_counter() - t0
    return {"wall": wall, "steps": float(summary["env_steps"]),
            "avg100": summary["final_return_avg100"], "envs": config.vector_envs}


def random_stepping(n_envs: int, vector_steps: int, seed: int = 0, masked: bool = False) -> float:
    """Env steps/s of the training vector env driven by random actions.

    ``masked=False``: its standard Gymnasium ``step(actions)`` (what the issue's
    yardstick is). ``masked=True``: the leaner masked step the roll-outs use,
    every copy active — a stricter yardstick, shown beside it.
    """
    from ..rl.env import make_vector_env
    envs = make_vector_env("CartPole-v1", n_envs)
    actions = np.random.default_rng(seed).integers(0, 2, (vector_steps, n_envs))
    everyone = np.ones(n_envs, dtype=bool)
    try:
        envs.reset(seed=seed)
        t0 = time.perf_counter()
        if masked:
            for a in actions:
                envs.step(a, mask=everyone)
        else:
            for a in actions:
                envs.step(a)
        return vector_steps * n_envs / (time.perf_counter() - t0)
    finally:
        envs.close()


def _memory_child(kind: str, long: bool, queue: Any) -> None:
    import psutil
    import torch
    torch.set_num_threads(1)
    # Warm up (imports, allocator, one short update) before the baseline.
    if kind == "ours":
        time_updates(False, [0], 1, 8, 8, None)
        base = psutil.Process().memory_info().rss
        peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        time_updates(False, [1], 1, 8, 8, controlled if long else None)
    else:
        per_step_formulation(0, 1, max_steps=10, controller=True)
        base = psutil.Process().memory_info().rss
        peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        per_step_formulation(1, 1, max_steps=500 if long else 20, controller=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put(float(peak - max(base, peak0)) if peak > max(base, peak0) else 0.0)


def peak_memory_growth(kind: str, long: bool) -> float:
    """Peak-RSS growth (bytes) of one update in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(kind, long, queue))
    proc.start()
    value = queue.get(timeout=600)
    proc.join()
    return float(value)


def sample_random(best: dict[tuple[int, bool], float], vector_steps: int,
                  sizes: list[int]) -> dict[tuple[int, bool], float]:
    """``best`` updated with the fastest of 3 random-stepping runs per (envs,
    masked): the highest rate seen, the strictest yardstick."""
    return {(k, masked): max([best.get((k, masked), 0.0)]
                             + [random_stepping(k, vector_steps, masked=masked) for _ in range(3)])
            for k in sizes for masked in (False, True)}


def _goal(ok: bool) -> str:
    return "met" if ok else "MISSED"


def run(args: argparse.Namespace) -> int:
    import torch
    torch.set_num_threads(1)
    seeds = args.seeds[:1] if args.quick else args.seeds
    updates = 1 if args.quick else args.updates
    per_step_eps = 1 if args.quick else args.per_step_episodes
    n_envs, episodes = args.envs, args.episodes_per_update

    print("qtrl bench training — CartPole-v1 preset: policy 4-128-2 (898 weights); "
          "Quantum-Train 10 qubits x 5 layers + mapping 10-10-10 (651 trained)")
    print(f"machine: {_cpu_name()} ({platform.machine()}, {mp.cpu_count()} cores); "
          f"torch {torch.__version__}, 1 thread; seeds {' '.join(map(str, seeds))}; "
          f"{time.strftime('%Y-%m-%d')}")
    print()

    # The random-action yardstick of [4] is measured alongside each training
    # measurement (update by update in [1]; right before and after a whole run),
    # so that a slow spell of this shared machine hits both alike; its fastest
    # rate over the whole bench is kept as the strictest yardstick, printed beside.
    random_steps = 500 if args.quick else args.random_steps
    sizes = sorted({n_envs, 4})
    rand = sample_random({}, random_steps, sizes)
    adjacent: dict[tuple[str, str], float] = {}  # as steps_per_s: random steps/s beside it

    def around(k: int, measure: Callable[[], Any]) -> tuple[Any, float]:
        before = random_stepping(k, random_steps)
        result = measure()
        after = random_stepping(k, random_steps)
        rand[(k, False)] = max(rand[(k, False)], before, after)
        return result, (before + after) / 2

    # ---- 1. QT vs classical -------------------------------------------------------
    print(f"[1] time per update: {episodes} episodes over {n_envs} sync envs, "
          f"{updates} updates x {len(seeds)} seeds after a warm-up")
    header = (f"    {'regime':<26}{'model':<11}{'steps/upd':>10}{'generate':>11}{'roll-out':>11}"
              f"{'learn':>10}{'total':>11}{'per env step':>14}")
    print(header)
    per_step_us: dict[tuple[str, str], float] = {}
    steps_per_s: dict[tuple[str, str], float] = {}
    per_update: dict[tuple[str, str], float] = {}
    for regime, behaviour in REGIMES.items():
        pair = time_update_pairs(seeds, updates, n_envs, episodes, behaviour)
        for name in ("QT", "classical"):
            t = pair[name]
            adjacent[(regime, name)] = t["random_steps"] / t["random_time"]
            n = t["updates"]
            total = t["generate"] + t["rollout"] + t["learn"]
            per_step_us[(regime, name)] = total / t["steps"] * 1e6
            steps_per_s[(regime, name)] = t["steps"] / total
            per_update[(regime, name)] = total / n
            print(f"    {regime if name == 'QT' else '':<26}{name:<11}{t['steps'] / n:>10.0f}"
                  f"{_ms(t['generate'] / n):>11}{_ms(t['rollout'] / n):>11}"
                  f"{_ms(t['learn'] / n):>10}{_ms(total / n):>11}"
                  f"{per_step_us[(regime, name)]:>11.1f} µs")
    for regime in REGIMES:
        ratio = per_step_us[(regime, "QT")] / per_step_us[(regime, "classical")]
        if regime in SAME_WORK:
            verdict = f"goal <= {GOAL_QT_VS_CLASSICAL}x: {_goal(ratio <= GOAL_QT_VS_CLASSICAL)}"
        else:
            verdict = (f"(information: different episodes; per update "
                       f"{per_update[(regime, 'QT')] / per_update[(regime, 'classical')]:.2f}x)")
        print(f"    QT / classical per env step, {regime:<26}{ratio:6.2f}x   {verdict}")
    print()

    rand = sample_random(rand, random_steps, sizes)

    # ---- 2. per-step formulation ---------------------------------------------------
    print(f"[2] the reference's per-step formulation (weights regenerated with autograd at "
          f"every step, 1 env, 1 episode per update), {per_step_eps} episode(s) x "
          f"{len(seeds)} seeds, untrained policy; its circuit run two ways")
    ps_us: dict[str, float] = {}
    for label, reference in (("gate by gate, plain autograd (as the reference)", True),
                             ("our compiled simulator", False)):
        per_step_formulation(seeds[0], 1, max_steps=5, reference_simulator=reference)  # warm-up
        ps = {"time": 0.0, "steps": 0.0}
        for seed in seeds:
            r = per_step_formulation(seed, per_step_eps, reference_simulator=reference)
            ps["time"] += r["time"]
            ps["steps"] += r["steps"]
        ps_us[label] = ps["time"] / ps["steps"] * 1e6
        print(f"    per-step formulation, {label:<48}{ps_us[label] / 1000:6.2f} ms per env step "
              f"({ps['steps'] / (per_step_eps * len(seeds)):.0f} steps per episode)")
    ref_us, own_us = ps_us.values()
    for regime in REGIMES:
        ours = per_step_us[(regime, "QT")]
        print(f"    our QT update, {regime:<26}{ours:8.1f} µs per step  "
              f"{ref_us / ours:7.0f}x faster   goal >= {GOAL_VS_PER_STEP:.0f}x: "
              f"{_goal(ref_us / ours >= GOAL_VS_PER_STEP)}   "
              f"(same simulator: {own_us / ours:.0f}x)")
    print()

    # ---- 3. whole training runs -----------------------------------------------------
    run_eps = 200 if args.quick else args.run_episodes
    print(f"[3] whole training runs: tuned CartPole recipe ({run_eps} episodes, 4 episodes per "
          f"update over 4 envs, seed {seeds[0]}), roll-outs + updates + logging + checkpoints; "
          f"the faster of {1 if args.quick else 2} interleaved runs each")
    repeats = 1 if args.quick else 2
    trials = []
    for _ in range(repeats):
        for classical in (False, True):  # interleaved
            trial, trial["random"] = around(4, lambda c=classical: whole_run(c, seeds[0], run_eps))
            trials.append(trial)
    runs = {name: min(trials[i::2], key=lambda r: r["wall"])
            for i, name in enumerate(("QT", "classical"))}
    for name, r in runs.items():
        adjacent[("whole run", name)] = r["random"]
        per_step_us[("whole run", name)] = r["wall"] / r["steps"] * 1e6
        steps_per_s[("whole run", name)] = r["steps"] / r["wall"]
        print(f"    {name:<11}{r['steps']:>9,.0f} env steps in {r['wall']:6.1f} s   "
              f"{per_step_us[('whole run', name)]:6.1f} µs per env step   final avg100 "
              f"{r['avg100']:.0f}")
    ratio = per_step_us[("whole run", "QT")] / per_step_us[("whole run", "classical")]
    print(f"    QT / classical per env step, whole run{'':<10}{ratio:6.2f}x   "
          f"goal <= {GOAL_QT_VS_CLASSICAL}x: {_goal(ratio <= GOAL_QT_VS_CLASSICAL)}")
    # Same number of updates either way: the per-step ratio also carries how long
    # each policy's episodes were (fixed costs per update spread over fewer steps).
    updates = run_eps // TUNED["episodes_per_update"]
    print(f"    QT / classical per update (same {updates} updates), whole run   "
          f"{runs['QT']['wall'] / runs['classical']['wall']:6.2f}x   (information: the runs "
          f"played {runs['QT']['steps'] / runs['classical']['steps']:.2f}x as many steps)")
    speedup = ref_us / per_step_us[("whole run", "QT")]
    print(f"    vs the per-step formulation{'':<19}{speedup:6.0f}x faster   goal >= "
          f"{GOAL_VS_PER_STEP:.0f}x: {_goal(speedup >= GOAL_VS_PER_STEP)}   "
          f"(same simulator: {own_us / per_step_us[('whole run', 'QT')]:.0f}x)")
    print()

    # ---- 4. training steps/s vs random-action stepping -------------------------------
    rand = sample_random(rand, random_steps, sizes)
    print("[4] env steps/s vs random actions on the same sync envs (Gymnasium step()), "
          "measured alongside ('adjacent', the goal's yardstick: update by update for [1]'s "
          "regimes, right before and after for whole runs); beside it the fastest of all "
          "samples of this bench (Gymnasium step() "
          + ", ".join(f"{k} envs {rand[(k, False)]:,.0f}/s" for k in sizes)
          + ") and of our masked step ("
          + ", ".join(f"{k} envs {rand[(k, True)]:,.0f}/s" for k in sizes) + ")")
    for (regime, name), sps in steps_per_s.items():
        k = 4 if regime == "whole run" else n_envs
        near = adjacent[(regime, name)]
        frac = sps / near
        # The same-episodes regime is there for [1]'s ratio: its roll-outs play
        # random actions, not a policy's, so it is not a training rate.
        verdict = ("(information: random-action roll-outs)" if regime == SAME_WORK[0]
                   else f"goal >= {GOAL_VS_RANDOM}: {_goal(frac >= GOAL_VS_RANDOM)}")
        print(f"    training {name:<10}{regime:<26}{sps:>10,.0f}/s  {frac:5.2f} of random "
              f"({k} envs, adjacent {near:,.0f}/s)   {verdict}   (fastest: "
              f"{sps / rand[(k, False)]:.2f}, masked step: {sps / rand[(k, True)]:.2f})")
    print()

    # ---- 4. memory -------------------------------------------------------------------
    print("[5] peak RSS growth of one update (fresh process each)")
    for kind, label, lengths in (("ours", "our update (8 episodes)", ("~20", "500")),
                                 ("per-step", "per-step formulation (1 episode)", ("20", "500"))):
        short = peak_memory_growth(kind, False)
        long_ = peak_memory_growth(kind, True)
        print(f"    {label:<34} {lengths[0]:>4}-step episodes {short / 2**20:7.1f} MiB   "
              f"{lengths[1]}-step episodes {long_ / 2**20:7.1f} MiB")
    print()
    for line in ppo_whole_runs(seeds[0], 4096 if args.quick else 50_000):
        print(line)
    return 0


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"

"""Weak scaling of Dist-QTRL: time per update with N agents doing the same work each.

Every agent collects the same number of fixed-length episodes per update, so
with perfect scaling the time per update does not grow with N. The workload
is Acrobot-v1 capped at ``--max-steps`` steps: an untrained policy never
reaches the goal, so every episode is exactly ``--max-steps`` long and the work
per agent is identical. Each N runs as real agent processes (a group of one
for N = 1) through the same code as ``qtrl train --agents N``; the time per
update (roll-out + generation + backward + all-reduce + Adam, as agent 0 sees
it) is the median over the updates after a warm-up.

The goal (issue 4): N = 2 within 1.15× of N = 1. On a machine with fewer free
cores than agents the agents share cores and the ratio says so. To separate
what Dist-QTRL costs from what the machine gives, the same N runs are also
timed as N *independent* single-agent trainings side by side (no process
group, no all-reduce, no waiting for each other): their ratio to N = 1 is what
N busy processes cost on this machine, and Dist-QTRL over independent is the
price of synchronising.

Reproduce: ``qtrl bench scaling`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..train import train_local

GOAL = 1.15


def register_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agents", type=int, nargs="+", default=[1, 2], help="agent counts N")
    p.add_argument("--updates", type=int, default=30, help="updates per N")
    p.add_argument("--warmup", type=int, default=5, help="updates left out of the median")
    p.add_argument("--episodes-per-update", type=int, default=2, help="episodes per agent")
    p.add_argument("--max-steps", type=int, default=200, help="steps of every episode")
    p.add_argument("--classical", action="store_true", help="classical policy instead of QT")
    p.add_argument("--repeats", type=int, default=3, help="interleaved runs of each N")
    p.add_argument("--quick", action="store_true", help="smoke run: few, short updates")


def measure(agents: int, updates: int, warmup: int, episodes_per_update: int,
            max_steps: int, classical: bool = False) -> dict[str, Any]:
    """Median time per update (s) of ``agents`` agents; see the module docstring."""
    config = TrainConfig.from_preset(
        None, env="Acrobot-v1", hidden=(64,), max_steps=max_steps, classical=classical,
        episodes_per_update=episodes_per_update, agents=agents, seed=0,
        episodes=episodes_per_update * agents * updates, checkpoint_every=10**6)
    with tempfile.TemporaryDirectory(prefix="qtrl-scaling-") as tmp:
        train_local(config, Path(tmp), resume=False, tensorboard=False)
        with open(Path(tmp) / "progress.csv") as fh:
            rows = list(csv.DictReader(fh))
    times = [float(r["time/update_s"]) for r in rows[warmup:]]
    steps = [float(r["rollout/env_steps"]) for r in rows]
    return {"agents": agents, "updates": len(rows), "update_s": statistics.median(times),
            "steps_per_update": (steps[-1] - steps[0]) / max(len(steps) - 1, 1)}


def _independent_entry(config_dict: dict[str, Any], out: str, start: Any) -> None:
    import torch

    from ..train import train
    torch.set_num_threads(1)
    start.wait()  # imports done everywhere: the trainings overlap, as agents do
    train(TrainConfig.from_dict(config_dict), Path(out), tensorboard=False)


def measure_independent(agents: int, updates: int, warmup: int, episodes_per_update: int,
                        max_steps: int, classical: bool = False) -> dict[str, Any]:
    """The same per-agent work as :func:`measure`, as ``agents`` unconnected
    single-agent trainings running at once; the mean of their median update times."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="qtrl-scaling-") as tmp:
        outs = [Path(tmp) / f"agent{r}" for r in range(agents)]
        start = ctx.Barrier(agents)
        procs = []
        for r, out in enumerate(outs):
            out.mkdir()
            config = TrainConfig.from_preset(
                None, env="Acrobot-v1", hidden=(64,), max_steps=max_steps, classical=classical,
                episodes_per_update=episodes_per_update, seed=r,
                episodes=episodes_per_update * updates, checkpoint_every=10**6)
            procs.append(ctx.Process(target=_independent_entry, args=(config.to_dict(), str(out), start)))
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        if any(proc.exitcode != 0 for proc in procs):
            raise RuntimeError("an independent training process failed")
        medians = []
        for out in outs:
            with open(out / "progress.csv") as fh:
                rows = list(csv.DictReader(fh))
            medians.append(statistics.median(float(r["time/update_s"]) for r in rows[warmup:]))
    return {"agents": agents, "update_s": statistics.fmean(medians)}


def run(args: argparse.Namespace) -> int:
    if args.quick:
        args.updates, args.warmup, args.max_steps, args.repeats = 6, 2, 50, 1
    work = (args.updates, args.warmup, args.episodes_per_update, args.max_steps, args.classical)
    # This shared machine's speed drifts from minute to minute: interleave every
    # configuration in each repeat and take the median over repeats.
    synced: dict[int, list[float]] = {n: [] for n in args.agents}
    alone: dict[int, list[float]] = {n: [] for n in args.agents}
    steps: dict[int, float] = {}
    for _ in range(args.repeats):
        for n in args.agents:
            row = measure(n, *work)
            synced[n].append(row["update_s"])
            steps[n] = row["steps_per_update"]
            alone[n].append(measure_independent(n, *work)["update_s"])
    med = {n: statistics.median(v) for n, v in synced.items()}
    base = med[args.agents[0]]
    cores = os.cpu_count()
    print(f"Weak scaling, {'classical' if args.classical else 'Quantum-Train'} policy 6-64-3 on "
          f"Acrobot-v1, {args.episodes_per_update} episodes x {args.max_steps} steps per agent "
          f"per update; {cores} cores; median of {args.updates - args.warmup} updates per run, "
          f"median of {args.repeats} interleaved runs")
    print("independent: the same work per agent as N unconnected single-agent trainings side "
          "by side (no process group): its ratio to its N=1 is what N busy processes cost on "
          "this machine; Dist-QTRL / independent is the price of the process group and "
          "synchronising")
    print(f"{'agents':>6}  {'env steps/update':>16}  {'ms/update':>10}  {'vs N=1':>7}  "
          f"{'independent ms':>14}  {'vs N=1':>7}  {'Dist-QTRL / independent':>23}")
    ind = {n: statistics.median(v) for n, v in alone.items()}
    for n in args.agents:
        print(f"{n:>6}  {steps[n]:>16.0f}  {1e3 * med[n]:>10.2f}  {med[n] / base:>6.2f}x  "
              f"{1e3 * ind[n]:>14.2f}  {ind[n] / ind[args.agents[0]]:>6.2f}x  "
              f"{med[n] / ind[n]:>22.2f}x")
    if 2 in med and args.agents[0] == 1:
        ratio = med[2] / base
        verdict = "met" if ratio <= GOAL else "missed"
        print(f"goal: N=2 within {GOAL:.2f}x of N=1 -> {ratio:.2f}x ({verdict})")
    return 0

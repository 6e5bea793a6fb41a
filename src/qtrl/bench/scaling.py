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
cores than agents the agents share cores and the ratio says so.

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
from ..distributed.run import train_local

GOAL = 1.15


def register_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agents", type=int, nargs="+", default=[1, 2], help="agent counts N")
    p.add_argument("--updates", type=int, default=30, help="updates per N")
    p.add_argument("--warmup", type=int, default=5, help="updates left out of the median")
    p.add_argument("--episodes-per-update", type=int, default=2, help="episodes per agent")
    p.add_argument("--max-steps", type=int, default=200, help="steps of every episode")
    p.add_argument("--classical", action="store_true", help="classical policy instead of QT")
    p.add_argument("--quick", action="store_true", help="smoke run: few, short updates")


def measure(agents: int, updates: int, warmup: int, episodes_per_update: int,
            max_steps: int, classical: bool = False) -> dict[str, Any]:
    """Median time per update (s) of ``agents`` agents; see the module docstring."""
    config = TrainConfig.from_preset(
        None, env="Acrobot-v1", hidden=(64,), max_steps=max_steps, classical=classical,
        episodes_per_update=episodes_per_update, agents=agents, seed=0,
        episodes=episodes_per_update * agents * updates, checkpoint_every=10**6)
    with tempfile.TemporaryDirectory(prefix="qtrl-scaling-") as tmp:
        train_local(config, Path(tmp), resume=False, tensorboard=False, display=None)
        with open(Path(tmp) / "progress.csv") as fh:
            rows = list(csv.DictReader(fh))
    times = [float(r["time/update_s"]) for r in rows[warmup:]]
    steps = [float(r["rollout/env_steps"]) for r in rows]
    return {"agents": agents, "updates": len(rows), "update_s": statistics.median(times),
            "steps_per_update": (steps[-1] - steps[0]) / max(len(steps) - 1, 1)}


def run(args: argparse.Namespace) -> int:
    if args.quick:
        args.updates, args.warmup, args.max_steps = 6, 2, 50
    rows = [measure(n, args.updates, args.warmup, args.episodes_per_update, args.max_steps,
                    args.classical) for n in args.agents]
    base = rows[0]["update_s"]
    cores = os.cpu_count()
    print(f"Weak scaling, {'classical' if args.classical else 'Quantum-Train'} policy 6-64-3 on "
          f"Acrobot-v1, {args.episodes_per_update} episodes x {args.max_steps} steps per agent "
          f"per update; {cores} cores; median of {args.updates - args.warmup} updates")
    print(f"{'agents':>6}  {'env steps/update':>16}  {'ms/update':>10}  {'vs N=1':>7}")
    for r in rows:
        ratio = r["update_s"] / base
        print(f"{r['agents']:>6}  {r['steps_per_update']:>16.0f}  {1e3 * r['update_s']:>10.2f}  "
              f"{ratio:>6.2f}x")
    if len(rows) > 1 and rows[1]["agents"] == 2:
        ratio = rows[1]["update_s"] / base
        verdict = "met" if ratio <= GOAL else "missed"
        print(f"goal: N=2 within {GOAL:.2f}x of N=1 -> {ratio:.2f}x ({verdict})")
    return 0

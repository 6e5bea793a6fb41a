"""Hosts and latency: sync and async Dist-QTRL across network namespaces.

Each configuration makes ``H`` hosts (:mod:`qtrl.bench.netns`: namespaces on
10.77.0.x; one-way delay added to every frame) and starts one torchrun per
host, one agent each, training ``--preset cartpole-paper`` (REINFORCE, one
episode per agent per update) for ``--updates`` updates. From the run's
``progress.csv``: seconds per applied update (wall clock between the first and
the last update, after ``--warmup``) and episodes per second; for sync, the
median all-reduce transfer (``time/communicate_s``). Async: agent 0 is the
learner, the ``H - 1`` others work.

With ``--solve-seeds``, each mode also trains the recipe of
:data:`SOLVE_FLAGS` on the largest host count at each ``--solve-delays`` delay
until the 100-episode average reaches 475 (or ``--solve-episodes`` run out):
the episodes and seconds of training to get there, per seed. Both modes play
one episode per agent per update, so async's updates are single episodes.

Needs root. Reproduce: ``qtrl bench hosts`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .netns import Hosts, missing_privilege, netem_available

__all__ = ["SOLVE_FLAGS", "measure", "register_args", "run", "time_to_solve"]

SOLVE_FLAGS = ("--mapping-activation", "relu", "--lr", "3e-3", "--qt-init-std", "0.1",
               "--anneal-lr")
"""The recipe that solves with averaged gradients (docs/RESULTS_distributed.md)."""


def register_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hosts", type=int, nargs="+", default=[2, 4], help="host counts H")
    p.add_argument("--delays", type=float, nargs="+", default=[0.0, 1.0, 20.0],
                   help="one-way delays (ms)")
    p.add_argument("--modes", nargs="+", default=["sync", "async"], choices=["sync", "async"])
    p.add_argument("--updates", type=int, default=40, help="updates per configuration")
    p.add_argument("--warmup", type=int, default=5, help="updates left out of the rates")
    p.add_argument("--quick", action="store_true", help="2 hosts, 0 and 20 ms, 12 updates")
    p.add_argument("--solve-seeds", type=int, nargs="*", default=[],
                   help="also train to the target on these seeds (largest host count): "
                        "seconds and episodes to solve, sync beside async")
    p.add_argument("--solve-delays", type=float, nargs="+", default=[20.0],
                   help="one-way delays (ms) of the runs to the target")
    p.add_argument("--solve-episodes", type=int, default=3200,
                   help="episode budget of a run to the target")


def _train(hosts: int, delay_ms: float, mode: str, episodes: int, flags: list[str],
           read: Callable[[Path], Any]) -> Any:
    """Train ``--preset cartpole-paper`` with ``flags`` on ``hosts`` namespaced hosts
    (one torchrun, one agent each) for ``episodes`` episodes; ``read(run_dir)``."""
    with tempfile.TemporaryDirectory(prefix="qtrl-hosts-") as tmp, \
            Hosts(hosts, delay_ms, prefix=f"qb{uuid.uuid4().hex[:6]}") as net:
        run = Path(tmp) / "run"
        procs = []
        for i in range(hosts):
            cmd = net.command(i, [
                sys.executable, "-m", "torch.distributed.run", "--nnodes", str(hosts),
                "--nproc-per-node", "1", "--node-rank", str(i), "--rdzv-backend", "c10d",
                "--rdzv-endpoint", f"{net.address(0)}:29500", "--rdzv-id", "bench-hosts",
                "--rdzv-conf", f"is_host={int(i == 0)}", "--local-addr", net.address(i),
                "-m", "qtrl", "train", "--preset", "cartpole-paper", "--mode", mode,
                "--episodes", str(episodes), "--checkpoint-every", "1000",
                "--agent-timeout", "300", "--no-tensorboard", *flags, "--out", str(run)])
            procs.append(subprocess.Popen(cmd, env={**os.environ, "GLOO_SOCKET_IFNAME": "eth0"},
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          text=True))
        errors = [p.communicate(timeout=3600)[1] for p in procs]
        if any(p.returncode != 0 for p in procs):
            raise RuntimeError(f"{hosts} hosts, {delay_ms} ms, {mode}: a host failed: "
                               + errors[0][-1500:])
        return read(run)


def measure(hosts: int, delay_ms: float, mode: str, updates: int, warmup: int) -> dict[str, Any]:
    """One configuration's rates (see the module docstring)."""
    workers = hosts - 1 if mode == "async" else hosts

    def read(run: Path) -> list[dict[str, str]]:
        with open(run / "progress.csv", newline="") as fh:
            return list(csv.DictReader(fh))[warmup:]

    rows = _train(hosts, delay_ms, mode, workers * updates, [], read)
    wall = [float(r["time/wall_s"]) for r in rows]
    episodes = [float(r["rollout/episodes"]) for r in rows]
    per_update = (wall[-1] - wall[0]) / (len(rows) - 1)
    out = {"update_s": per_update,
           "episodes_per_s": (episodes[-1] - episodes[0]) / (wall[-1] - wall[0])}
    if mode == "sync":
        out["communicate_s"] = statistics.median(float(r["time/communicate_s"]) for r in rows)
    return out


def time_to_solve(hosts: int, delay_ms: float, mode: str, episodes: int,
                  seed: int) -> dict[str, Any]:
    """Train :data:`SOLVE_FLAGS` for at most ``episodes`` episodes: the episodes and
    seconds of training (``metrics.csv``'s clock) until the 100-episode average
    first reaches the preset's threshold (None each if it does not), and the final
    100-episode average."""
    def read(run: Path) -> dict[str, Any]:
        summary = json.loads((run / "summary.json").read_text())
        solved = summary["solved_at_episode"]
        wall = None
        if solved is not None:
            with open(run / "metrics.csv", newline="") as fh:
                wall = float(list(csv.DictReader(fh))[solved - 1]["wall_time"])
        return {"episodes": solved, "wall_s": wall, "final": summary["final_return_avg100"]}

    return _train(hosts, delay_ms, mode, episodes, [*SOLVE_FLAGS, "--seed", str(seed)], read)


def run(args: argparse.Namespace) -> int:
    reason = missing_privilege()
    if reason is not None:
        print(f"qtrl bench hosts: {reason}", file=sys.stderr)
        return 2
    if args.quick:
        args.hosts, args.delays, args.updates, args.warmup = [2], [0.0, 20.0], 12, 2
    if args.updates - args.warmup < 2:
        print("qtrl bench hosts: --updates must exceed --warmup by 2 or more", file=sys.stderr)
        return 2
    how = "tc netem" if netem_available() else "a delaying TAP switch (no netem in this kernel)"
    print(f"Dist-QTRL across H hosts (network namespaces, one agent each) with a one-way "
          f"delay on every frame ({how}); CartPole REINFORCE, 1 episode per agent per update, "
          f"{args.updates} updates (first {args.warmup} left out); {os.cpu_count()} cores "
          f"shared by all hosts")
    print(f"{'hosts':>5}  {'delay ms':>8}  {'mode':>5}  {'s/update':>9}  {'episodes/s':>10}  "
          f"{'all-reduce transfer ms':>22}")
    for hosts in args.hosts:
        for delay in args.delays:
            for mode in args.modes:
                r = measure(hosts, delay, mode, args.updates, args.warmup)
                comm = f"{1e3 * r['communicate_s']:.1f}" if "communicate_s" in r else "—"
                print(f"{hosts:>5}  {delay:>8g}  {mode:>5}  {r['update_s']:>9.3f}  "
                      f"{r['episodes_per_s']:>10.1f}  {comm:>22}", flush=True)
    if args.solve_seeds:
        _solve_table(max(args.hosts), args)
    return 0


def _solve_table(hosts: int, args: argparse.Namespace) -> None:
    """Seconds and episodes to the target per seed, sync beside async, and their means."""
    print(f"\nTime to solve (100-episode average >= 475) on {hosts} hosts: flags "
          f"{' '.join(SOLVE_FLAGS)}, at most {args.solve_episodes} episodes; seconds of "
          "training, start-up left out")
    print(f"{'delay ms':>8}  {'mode':>5}  {'seed':>4}  {'episodes to solve':>17}  "
          f"{'seconds to solve':>16}  {'final 100-ep avg':>16}")
    for delay in args.solve_delays:
        solved: dict[str, list[float]] = {}
        for mode in args.modes:
            solved[mode] = []
            for seed in args.solve_seeds:
                r = time_to_solve(hosts, delay, mode, args.solve_episodes, seed)
                if r["wall_s"] is not None:
                    solved[mode].append(r["wall_s"])
                shown = [("not reached" if r[k] is None else f"{r[k]:.{d}f}")
                         for k, d in (("episodes", 0), ("wall_s", 1))]
                print(f"{delay:>8g}  {mode:>5}  {seed:>4}  {shown[0]:>17}  {shown[1]:>16}  "
                      f"{r['final']:>16.1f}", flush=True)
        print(f"at {delay:g} ms: " + "; ".join(
            f"{mode} solved {len(s)} of {len(args.solve_seeds)}"
            + (f" in {statistics.mean(s):.1f} s on average" if s else "")
            for mode, s in solved.items()), flush=True)

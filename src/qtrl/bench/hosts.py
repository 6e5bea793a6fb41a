"""Hosts and latency: sync and async Dist-QTRL across network namespaces.

Each configuration makes ``H`` hosts (:mod:`qtrl.bench.netns`: namespaces on
10.77.0.x; one-way delay added to every frame) and starts one torchrun per
host, one agent each, training ``--preset cartpole-paper`` (REINFORCE, one
episode per agent per update) for ``--updates`` updates. From the run's
``progress.csv``: seconds per applied update (wall clock between the first and
the last update, after ``--warmup``) and episodes per second; for sync, the
median all-reduce transfer (``time/communicate_s``). Async: agent 0 is the
learner, the ``H - 1`` others work.

Needs root. Reproduce: ``qtrl bench hosts`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from .netns import Hosts, missing_privilege, netem_available

__all__ = ["measure", "register_args", "run"]


def register_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hosts", type=int, nargs="+", default=[2, 4], help="host counts H")
    p.add_argument("--delays", type=float, nargs="+", default=[0.0, 1.0, 20.0],
                   help="one-way delays (ms)")
    p.add_argument("--modes", nargs="+", default=["sync", "async"], choices=["sync", "async"])
    p.add_argument("--updates", type=int, default=40, help="updates per configuration")
    p.add_argument("--warmup", type=int, default=5, help="updates left out of the rates")
    p.add_argument("--quick", action="store_true", help="2 hosts, 0 and 20 ms, 12 updates")


def measure(hosts: int, delay_ms: float, mode: str, updates: int, warmup: int) -> dict[str, Any]:
    """One configuration's rates (see the module docstring)."""
    workers = hosts - 1 if mode == "async" else hosts
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
                "--episodes", str(workers * updates), "--checkpoint-every", "1000",
                "--agent-timeout", "300", "--no-tensorboard", "--out", str(run)])
            procs.append(subprocess.Popen(cmd, env={**os.environ, "GLOO_SOCKET_IFNAME": "eth0"},
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          text=True))
        errors = [p.communicate(timeout=1800)[1] for p in procs]
        if any(p.returncode != 0 for p in procs):
            raise RuntimeError(f"{hosts} hosts, {delay_ms} ms, {mode}: a host failed: "
                               + errors[0][-1500:])
        with open(run / "progress.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))[warmup:]
    wall = [float(r["time/wall_s"]) for r in rows]
    episodes = [float(r["rollout/episodes"]) for r in rows]
    per_update = (wall[-1] - wall[0]) / (len(rows) - 1)
    out = {"update_s": per_update,
           "episodes_per_s": (episodes[-1] - episodes[0]) / (wall[-1] - wall[0])}
    if mode == "sync":
        out["communicate_s"] = statistics.median(float(r["time/communicate_s"]) for r in rows)
    return out


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
    return 0

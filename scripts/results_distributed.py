"""Dist-QTRL results (issues 4 and 18): CartPole preset with N = 1, 2, 4, 8 agents
over several seeds, the bytes that cross the network per update, the time to
solve against N (scripts/time_to_solve.py) and sync/async across namespaced
hosts with latency (``qtrl bench hosts``, root only).

    .venv/bin/python scripts/results_distributed.py           # full (long on 2 cores)
    .venv/bin/python scripts/results_distributed.py --quick   # smoke run of the pipeline

Writes docs/RESULTS_distributed.md and docs/distributed_cartpole.png. Runs are
ordinary ``qtrl train --agents N`` runs under ``runs/results-dist/``; a finished
run with the same configuration is reused, so re-running only redoes what is
missing. ``--episodes`` counts all agents' episodes, so every N gets the same
number of *updates* here (``--updates``): the comparison is per update.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# The recipe of docs/RESULTS_distributed.md (the CartPole tuning of RESULTS_training
# at a learning rate that suits averaged gradients).
PUBLISHED_FLAGS = "--mapping-activation relu --lr 3e-3 --qt-init-std 0.1 --anneal-lr"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

import time_to_solve

from qtrl.bench.machine import machine_line
from qtrl.bench.netns import missing_privilege
from qtrl.generator import QuantumTrain
from qtrl.presets import PRESETS, build_policy

WINDOW = 100
# The hosts section: rates at three delays, and both modes trained to the target at 20 ms.
HOSTS_ARGS = "--hosts 4 --delays 0 1 20 --updates 30 --solve-seeds 0 1 2"


def run_dir(n: int, seed: int, updates: int, tag: str) -> Path:
    return ROOT / "runs" / "results-dist" / f"cartpole-{tag}-u{updates}-agents{n}-seed{seed}"


def train(n: int, seed: int, updates: int, flags: list[str], tag: str) -> Path:
    out = run_dir(n, seed, updates, tag)
    if time_to_solve.finished(out):
        return out
    cmd = [sys.executable, "-m", "qtrl", "train", "--preset", "cartpole-paper", "--seed", str(seed),
           "--agents", str(n), "--episodes", str(n * updates), "--checkpoint-every", "50",
           "--no-tensorboard", *flags, "--out", str(out)]
    with open(out.with_suffix(".log"), "w") as log:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed; see {out.with_suffix('.log')}")
    return out


def solve_stats(out: Path, threshold: float) -> dict:
    """Updates, episodes and wall time until the 100-episode average (all agents'
    episodes in update order) first reaches ``threshold``; and the final average."""
    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    returns = np.array([float(r["return"]) for r in rows])
    csum = np.concatenate(([0.0], np.cumsum(returns)))
    solved = None
    for i in range(WINDOW, len(returns) + 1):
        if (csum[i] - csum[i - WINDOW]) / WINDOW >= threshold:
            solved = i - 1
            break
    per_update: dict[int, list[float]] = {}
    for r in rows:
        per_update.setdefault(int(r["update"]), []).append(float(r["return"]))
    curve = np.array([np.mean(v) for _, v in sorted(per_update.items())])
    summary = json.loads((out / "summary.json").read_text())
    return {"updates": int(rows[solved]["update"]) if solved is not None else None,
            "episodes": solved + 1 if solved is not None else None,
            "wall": float(rows[solved]["wall_time"]) if solved is not None else None,
            "final": float(returns[-WINDOW:].mean()), "curve": curve,
            "total_wall": summary["wall_time_s"],
            "bytes": summary["bytes_allreduced_per_update"]}


def communication_rows() -> list[tuple[str, int, int, int]]:
    """(policy, k, QT trainable, classical data-parallel) parameter counts."""
    cases = [("cartpole 4-128-2", 4, (128,), 2, PRESETS["cartpole-paper"].layers,
              PRESETS["cartpole-paper"].mapping_hidden, 1),
             ("minigrid 147-32-3", 147, (32,), 3, PRESETS["minigrid-paper"].layers,
              PRESETS["minigrid-paper"].mapping_hidden, 1),
             ("147-512-256-3 (2.1e5 weights)", 147, (512, 256), 3, 13, (10, 64, 10), 1),
             ("147-1024-512-3 (6.8e5 weights), 16 chunks", 147, (1024, 512), 3, 13,
              (10, 64, 10), 16)]
    out = []
    for name, obs, hidden, act, layers, mapping, chunks in cases:
        qt = QuantumTrain(build_policy(obs, hidden, act), layers, mapping, chunks=chunks)
        c = qt.parameter_counts()
        out.append((name, c.target_weights, c.total, c.qubits))
    return out


def plot(curves: dict[int, list[np.ndarray]], path: Path, threshold: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    colors = dict(zip(sorted(curves), ("tab:gray", "tab:blue", "tab:orange", "tab:green",
                                       "tab:red", "tab:purple")))
    for n, runs in sorted(curves.items()):
        m = min(len(c) for c in runs)
        smooth = [np.convolve(c[:m], np.ones(10) / 10, mode="valid") for c in runs]
        mean = np.mean(smooth, 0)
        ax.plot(np.arange(10, m + 1), mean, color=colors[n], lw=2,
                label=f"N = {n} (mean of {len(runs)} seeds)")
    ax.axhline(threshold, color="gray", ls="--", lw=1, label=f"target {threshold:g}")
    ax.set_xlabel("update")
    ax.set_ylabel("mean episode return in the update (10-update average)")
    ax.set_title("Dist-QTRL on CartPole-v1: return per update for N agents")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _median(runs: list[dict], key: str) -> str:
    return f"{np.median([s[key] for s in runs]):.0f}" if runs else "—"


NEW_MARK = "<!-- issue 18: time to solve and hosts -->"
HOSTS_TITLE = "## Sync and async across hosts with latency (issue 18)"


def hosts_section(flags: str) -> list[str]:
    """``qtrl bench hosts`` (root only) as a section; without root, why not."""
    lines = [HOSTS_TITLE, ""]
    reason = missing_privilege()
    if reason is not None:
        return lines + [f"Not measured here: {reason}. Run as root to fill this table.", ""]
    cmd = [sys.executable, "-m", "qtrl", "bench", "hosts", *flags.split()]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, timeout=7200)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return lines + [f"Command: `qtrl bench hosts {flags}` — measured {machine_line()}", "",
                    "```", out.stdout.rstrip(), "```", ""]


def kept_hosts_section(docs: Path) -> list[str]:
    """The hosts section of the existing docs/RESULTS_distributed.md, as it is."""
    path = docs / "RESULTS_distributed.md"
    text = path.read_text() if path.exists() else ""
    if HOSTS_TITLE not in text:
        raise SystemExit(f"--keep-hosts: {path} has no hosts section to keep")
    return text[text.index(HOSTS_TITLE):].rstrip().splitlines() + [""]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="N = 1, 2; one seed; 20 updates")
    p.add_argument("--agents", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--updates", type=int, default=800, help="updates per run (every N)")
    p.add_argument("--flags", default=PUBLISHED_FLAGS,
                   help="extra qtrl train flags (default: the recipe of the published table)")
    p.add_argument("--docs", type=Path, default=ROOT / "docs")
    p.add_argument("--tts-agents", type=int, nargs="+", default=[1, 2, 4, 8, 16],
                   help="time to solve: agent counts")
    p.add_argument("--tts-seeds", type=time_to_solve.seed_list,
                   default=time_to_solve.seed_list("0-9"), help="time to solve: seeds, e.g. 0-9")
    p.add_argument("--tts-algos", nargs="+", default=list(time_to_solve.RECIPES))
    p.add_argument("--tts-reinforce-agents", type=int, nargs="+",
                   help="time to solve: REINFORCE's agent counts, when not --tts-agents")
    p.add_argument("--ppo-updates", type=int, default=200, help="time to solve: PPO updates")
    p.add_argument("--hosts-args", default=HOSTS_ARGS,
                   help="flags for `qtrl bench hosts` (quick: --quick)")
    p.add_argument("--keep-hosts", action="store_true",
                   help="keep the file's hosts section as it is (measured by `qtrl bench hosts` "
                        "on a quiet machine) instead of measuring it again")
    p.add_argument("--only-new", action="store_true",
                   help="keep the file's N-agents and bytes sections as they are; regenerate "
                        "the time-to-solve and hosts sections (issue 18)")
    args = p.parse_args()
    if args.quick:  # a smoke run of the pipeline; the published docs/ stay untouched
        args.agents, args.seeds, args.updates = [1, 2], [0], 20
        args.tts_agents, args.tts_seeds, args.ppo_updates = [1, 2], [0, 1], 20
        args.tts_reinforce_agents = None
        args.hosts_args = "--quick"
        args.docs = ROOT / "runs" / "results-quick"
    command = " ".join(["python scripts/results_distributed.py",
                        *(shlex.quote(a) for a in sys.argv[1:])])
    agents = time_to_solve.by_algo(args.tts_agents, args.tts_reinforce_agents or args.tts_agents)
    kept = kept_hosts_section(args.docs) if args.keep_hosts else None   # before any training
    new = time_to_solve.section(args.tts_algos, agents, args.tts_seeds,
                                time_to_solve.by_algo(args.ppo_updates, args.updates), args.docs)
    new += kept if kept is not None else hosts_section(args.hosts_args)
    if args.only_new:
        old = (args.docs / "RESULTS_distributed.md").read_text().split(NEW_MARK)[0].rstrip()
        kept_note = ("; the hosts section is kept as an earlier run measured it"
                     if args.keep_hosts else "")
        text = old + "\n\n" + NEW_MARK + f"\n\nRegenerated by `{command}`; measured: " \
            f"{machine_line()}{kept_note}.\n\n" + "\n".join(new) + "\n"
        (args.docs / "RESULTS_distributed.md").write_text(text)
        print(text)
        return 0
    flags = args.flags.split()
    tag = "quick" if args.quick else "full"
    if flags:  # runs with other settings must not be reused
        import hashlib
        tag += "-" + hashlib.sha1(" ".join(flags).encode()).hexdigest()[:8]
    threshold = PRESETS["cartpole-paper"].solve_threshold
    stats: dict[int, list[dict]] = {}
    for n in args.agents:
        for seed in args.seeds:
            print(f"N={n} seed={seed} ...", flush=True)
            stats.setdefault(n, []).append(solve_stats(train(n, seed, args.updates, flags, tag),
                                                        threshold))
    lines = ["# Dist-QTRL results (issues 4 and 18)", "",
             "Generated by `scripts/results_distributed.py`; do not edit by hand.", "",
             f"- command: `{command}`", f"- measured: {machine_line()}",
             (f"- CartPole preset, {args.updates} updates per run, "
             f"{len(args.seeds)} seed(s), extra flags: `{args.flags or 'none'}`"), "",
             "## Agents vs updates to solve (100-episode average ≥ 475)", "",
             ("| N agents | seed | updates to solve | episodes to solve | wall-clock to solve (s) "
             "| final 100-ep avg | run wall time (s) |"), "|---|---|---|---|---|---|---|"]
    for n, runs in sorted(stats.items()):
        for seed, s in zip(args.seeds, runs):
            fmt = lambda v, d=0: "not reached" if v is None else f"{v:.{d}f}"
            lines.append(f"| {n} | {seed} | {fmt(s['updates'])} | {fmt(s['episodes'])} | "
                         f"{fmt(s['wall'], 1)} | {s['final']:.1f} | {s['total_wall']:.1f} |")
    lines += ["", ("| N agents | seeds solved | median updates to solve | median episodes to "
              "solve |"), "|---|---|---|---|"]
    for n, runs in sorted(stats.items()):
        solved = [s for s in runs if s["updates"] is not None]
        lines.append(f"| {n} | {len(solved)} of {len(runs)} | {_median(solved, 'updates')} | "
                     f"{_median(solved, 'episodes')} |")
    lines += ["", "Figure: `docs/distributed_cartpole.png` (return per update, every N).", "",
              ("This machine has 2 cores: beyond 2 agents the agents share cores, so wall-clock "
              "per update grows with N; the update counts do not depend on it."), "",
              "## Bytes all-reduced per update", "",
              ("Dist-QTRL all-reduces the gradient of the trainable parameters; classical "
              "data-parallel training of the same policy all-reduces all k weights (float32)."),
              "", ("| policy | k weights | qubits | QT trainable | Dist-QTRL bytes | classical DP "
              "bytes | ratio |"), "|---|---|---|---|---|---|---|"]
    for name, k, total, qubits in communication_rows():
        lines.append(f"| {name} | {k} | {qubits} | {total} | {4 * total} | {4 * k} | "
                     f"{k / total:.1f}x |")
    measured = {n: runs[0]["bytes"] for n, runs in stats.items() if n > 1}
    if measured:
        lines += ["", "Measured in the runs above (summary.json): "
                  + ", ".join(f"N={n}: {b} bytes" for n, b in sorted(measured.items())) + "."]
    lines += ["", NEW_MARK, "", *new]
    args.docs.mkdir(parents=True, exist_ok=True)
    plot({n: [s["curve"] for s in runs] for n, runs in stats.items()},
         args.docs / "distributed_cartpole.png", threshold)
    (args.docs / "RESULTS_distributed.md").write_text("\n".join(lines) + "\n")
    print((args.docs / "RESULTS_distributed.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time to solve CartPole-v1 with N agents (issue 18): the measure Dist-QTRL's
claim is about.

    .venv/bin/python scripts/time_to_solve.py --agents 1 2 4 8 16 --seeds 0-9
    .venv/bin/python scripts/time_to_solve.py --quick      # smoke run of the pipeline

For each algorithm (sync REINFORCE on the ``cartpole-paper`` recipe, sync PPO on
the ``cartpole`` preset with each agent playing the preset's roll-out, and
``ppo-split``: that roll-out split over the N agents), each N and each seed,
one ordinary ``qtrl train --agents N`` run of a fixed number of *updates* (every N the same), then from
its files: the updates, env steps and seconds until the 100-episode average
first reaches 475, and the final 100-episode average.

Two clocks. **Wall clock** is the run's own (``metrics.csv``), measured on this
machine, where N agents share its cores. **Critical path** is what the run
would take with a core per agent: per update, the slowest agent's measured
compute plus the transfer of the all-reduce (the last-arriving agent's), both
in CPU seconds, summed
(``time/critical_path_total_s`` of ``progress.csv``, :mod:`qtrl.run.timing`);
its compute alone, without the all-reduce, is a lower bound of it. Intervals: 95% percentile bootstrap over the seeds that reached the target
(10 000 resamples); a ratio's interval resamples both Ns' seeds.

Runs go under ``runs/time-to-solve/`` and a finished run is reused, so more
seeds can be added later. Imported by scripts/results_distributed.py, which
puts :func:`section` into docs/RESULTS_distributed.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from qtrl.presets import PRESETS

ROOT = Path(__file__).resolve().parent.parent
WINDOW, TARGET = 100, 475.0
# Per algorithm: the qtrl train flags. "ppo": each agent plays the preset's whole
# roll-out (N agents, N times the samples per update: weak scaling). "ppo-split":
# the preset's roll-out split over the agents, each playing num_steps / N steps in
# its envs, so every N learns from the same number of samples per update (strong
# scaling); one agent of it is the preset itself.
RECIPES = {
    "reinforce": ["--preset", "cartpole-paper", "--mapping-activation", "relu", "--lr", "3e-3",
                  "--qt-init-std", "0.1", "--anneal-lr"],
    "ppo": ["--preset", "cartpole"],
    "ppo-split": ["--preset", "cartpole"],
}
PPO_ENVS = PRESETS["cartpole"].settings["num_envs"]
PPO_STEPS = PRESETS["cartpole"].settings["num_steps"]
GOALS = {("ppo", 4): 0.5, ("ppo", 8): 0.35,   # critical path vs N = 1 (issue 18)
         ("ppo-split", 4): 0.5, ("ppo-split", 8): 0.35}


def by_algo(ppo: Any, reinforce: Any) -> dict[str, Any]:
    """A setting per recipe: ``ppo``'s for both PPO recipes, ``reinforce``'s for REINFORCE."""
    return {algo: reinforce if algo == "reinforce" else ppo for algo in RECIPES}


def steps_per_agent(algo: str, n: int) -> int:
    """Env steps one agent plays per update (PPO): its envs times its roll-out's length."""
    if algo == "ppo-split":
        if PPO_STEPS % n:
            raise SystemExit(f"ppo-split: N={n} does not divide the preset's {PPO_STEPS} steps")
        return PPO_ENVS * (PPO_STEPS // n)
    return PPO_ENVS * PPO_STEPS


def recipe(algo: str, n: int) -> list[str]:
    """The qtrl train flags of ``algo`` with ``n`` agents."""
    if algo == "ppo-split" and n > 1:
        return [*RECIPES[algo], "--num-steps", str(PPO_STEPS // n)]
    return RECIPES[algo]


def run_dir(algo: str, n: int, seed: int, updates: int) -> Path:
    if algo == "ppo-split" and n == 1:
        algo = "ppo"   # the same run
    return ROOT / "runs" / "time-to-solve" / f"{algo}-u{updates}-agents{n}-seed{seed}"


def finished(out: Path) -> bool:
    """Whether the run ``out`` finished (reuse it); an unfinished one of ours
    is removed, to be started again."""
    if (out / "summary.json").exists():
        return True
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return False


def train(algo: str, n: int, seed: int, updates: int) -> Path:
    """The run (reused when finished), trained for ``updates`` updates of ``n`` agents."""
    out = run_dir(algo, n, seed, updates)
    if finished(out):
        return out
    budget = (["--episodes", str(n * updates)] if algo == "reinforce"
              else ["--total-steps", str(n * updates * steps_per_agent(algo, n))])
    cmd = [sys.executable, "-m", "qtrl", "train", *recipe(algo, n), "--seed", str(seed),
           "--agents", str(n), *budget, "--checkpoint-every", "1000", "--no-tensorboard",
           "--out", str(out)]
    with open(out.with_suffix(".log"), "w") as log:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed; see {out.with_suffix('.log')}")
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def solve_stats(out: Path) -> dict[str, float | None]:
    """Updates, env steps, wall-clock and critical-path seconds until the target
    (None each when not reached), the critical path's compute alone
    (``compute_path``: a lower bound of the time with a core per agent), the
    update whose own episodes first average the target (``learned``: the rest is
    the 100-episode window catching up), and the final 100-episode average."""
    episodes = _rows(out / "metrics.csv")
    returns = np.array([float(r["return"]) for r in episodes])
    summary = json.loads((out / "summary.json").read_text())
    config = json.loads((out / "config.json").read_text())
    stats: dict[str, float | None] = {"final": float(returns[-WINDOW:].mean()),
                                      "updates": None, "steps": None, "wall": None,
                                      "critical": None, "learned": None, "compute": None,
                                      "allreduce": None, "compute_path": None,
                                      "rollout": None, "learn": None,
                                      "total_wall": summary["wall_time_s"],
                                      "total_critical": summary.get("critical_path_s")}
    if len(returns) < WINDOW:
        return stats
    csum = np.concatenate(([0.0], np.cumsum(returns)))
    hits = np.flatnonzero((csum[WINDOW:] - csum[:-WINDOW]) / WINDOW >= TARGET)
    if not len(hits):
        return stats
    row = episodes[hits[0] + WINDOW - 1]
    update = int(row["update"])
    progress = {int(r["update"]): r for r in _rows(out / "progress.csv")}
    if config["algo"] == "ppo":    # fixed-length roll-outs: every agent's steps so far
        steps = update * config["num_envs"] * config["num_steps"] * config["agents"]
    else:                          # every episode of the updates so far
        steps = sum(int(r["length"]) for r in episodes if int(r["update"]) <= update)
    by_update: dict[int, list[float]] = {}
    for r, ret in zip(episodes, returns, strict=True):
        by_update.setdefault(int(r["update"]), []).append(ret)
    learned = min((u for u, rets in by_update.items() if np.mean(rets) >= TARGET and u <= update),
                  default=update)   # a window can reach it with no whole update there yet
    upto = [progress[u] for u in range(1, update + 1)]
    stats.update(updates=update, steps=steps, wall=float(row["wall_time"]),
                 critical=float(progress[update]["time/critical_path_total_s"]),
                 learned=learned, learned_episodes=len(by_update.get(learned, ())),
                 compute=float(np.mean([float(r["time/compute_max_s"]) for r in upto])),
                 compute_path=float(sum(float(r["time/compute_max_s"]) for r in upto)),
                 rollout=float(np.mean([float(r["time/rollout_s"]) for r in upto])),
                 learn=float(np.mean([float(r["time/learn_s"]) for r in upto])),
                 allreduce=float(np.mean([float(r["time/communicate_cpu_s"]) for r in upto])))
    return stats


def bootstrap(values: list[float], resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of ``values`` over resampled seeds."""
    rng = np.random.default_rng(seed)
    v = np.asarray(values, dtype=np.float64)
    means = v[rng.integers(0, len(v), (resamples, len(v)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def ratio_interval(a: list[float], b: list[float], resamples: int = 10_000,
                   seed: int = 0) -> tuple[float, float]:
    """95% interval of mean(a) / mean(b), each resampled over its own seeds."""
    rng = np.random.default_rng(seed)
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ma = va[rng.integers(0, len(va), (resamples, len(va)))].mean(axis=1)
    mb = vb[rng.integers(0, len(vb), (resamples, len(vb)))].mean(axis=1)
    return float(np.percentile(ma / mb, 2.5)), float(np.percentile(ma / mb, 97.5))


def _cell(values: list[float], digits: int) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (1 seed)"
    lo, hi = bootstrap(values)
    return f"{np.mean(values):.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def reading(stats: dict[tuple[str, int], list[dict]]) -> list[str]:
    """What the PPO rows say, in numbers: where the updates and the time per update go."""
    got = {n: [s for s in runs if s["updates"] is not None]
           for (algo, n), runs in stats.items() if algo == "ppo"}
    ns = sorted(n for n, runs in got.items() if runs)
    if len(ns) < 2 or ns[0] != 1:
        return []

    def mean(n: int, key: str) -> float:
        return float(np.mean([s[key] for s in got[n]]))

    def ms(n: int) -> float:   # critical path per update
        return 1e3 * float(np.mean([s["critical"] / s["updates"] for s in got[n]]))

    top = ns[-1]
    fewer = mean(top, "learned") < 0.8 * mean(1, "learned")
    return ["", (f"Reading (PPO). More agents {'learn' if fewer else 'do not learn'} in fewer "
                 f"updates here: the learning updates are {mean(1, 'learned'):.0f} at N=1 and "
                 + ", ".join(f"{mean(n, 'learned'):.0f} at N={n}" for n in ns[1:])
                 + f" (that update's own episodes: {mean(1, 'learned_episodes'):.0f} at N=1, "
                 f"{mean(top, 'learned_episodes'):.0f} at N={top}, so one lucky update counts "
                 f"for more at small N). The wait for the 100-episode average after it: "
                 f"{mean(1, 'updates') - mean(1, 'learned'):.0f} updates at N=1, "
                 f"{mean(top, 'updates') - mean(top, 'learned'):.0f} at N={top}. An update's "
                 f"critical path {'grows' if ms(top) > ms(1) else 'shrinks'} from {ms(1):.1f} "
                 f"ms at N=1 to {ms(top):.1f} ms at N={top}: the slowest of N agents' compute "
                 f"(from "
                 f"{1e3 * mean(1, 'compute'):.1f} to {1e3 * mean(top, 'compute'):.1f} ms) and "
                 f"the all-reduce's CPU time (to {1e3 * mean(top, 'allreduce'):.1f} ms), both "
                 f"measured with {_cores()} cores shared by the N agents, where an agent's "
                 "compute slows beside the others and gloo's all-reduce spends CPU while its "
                 "peers wait to be scheduled. The compute-alone column leaves the all-reduce "
                 "out; how much of the compute's growth a core per agent removes only a run on "
                 "such a machine can say.")]


def split_reading(stats: dict[tuple[str, int], list[dict]]) -> list[str]:
    """What the ppo-split rows say: how many runs reach the target as the same
    batch is split further, and what splits in an update's compute and what not."""
    runs = {n: r for (algo, n), r in stats.items() if algo == "ppo-split"}
    got = {n: [s for s in r if s["updates"] is not None] for n, r in runs.items()}
    ns = sorted(n for n, g in got.items() if g)
    if len(ns) < 2 or ns[0] != 1:
        return []

    def ms(n: int, key: str) -> float:   # per update, mean over the seeds
        return 1e3 * float(np.mean([s[key] for s in got[n]]))

    # Roll-out and learning are wall-clock parts: read them where each agent has a core.
    clean = max(n for n in ns if n <= _cores())
    per_update = {n: 1e3 * float(np.mean([s["compute_path"] / s["updates"] for s in got[n]]))
                  for n in ns}
    return ["", (f"Reading (ppo-split). Every N learns from the same {PPO_ENVS * PPO_STEPS} "
                 "samples per update; the runs that reach the target are "
                 + ", ".join(f"{len(got[n])} of {len(runs[n])} at N={n}" for n in sorted(runs))
                 + " (final 100-episode averages "
                 + ", ".join(f"{np.mean([s['final'] for s in runs[n]]):.1f}"
                             for n in sorted(runs))
                 + f"). What differs from one agent's update: each agent normalises the "
                 f"advantages of its own {PPO_ENVS * PPO_STEPS}/N samples and bootstraps its "
                 f"returns after {PPO_STEPS}/N steps. Per update, the slowest agent's compute "
                 f"goes from {per_update[1]:.1f} ms at N=1 to "
                 + ", ".join(f"{per_update[n]:.1f} ms at N={n}" for n in ns[1:])
                 + f". At N={clean}, where each agent has a core of its own, agent 0's "
                 f"roll-out takes {ms(clean, 'rollout'):.1f} ms against {ms(1, 'rollout'):.1f} "
                 f"at N=1, its learning step {ms(clean, 'learn'):.1f} ms against "
                 f"{ms(1, 'learn'):.1f}: the roll-out splits, the learning step much less, "
                 "because each of its minibatch steps generates both networks' weights and "
                 "back-propagates through the generators however few its samples. That part, "
                 "the same on every agent, bounds the compute-alone ratio.")]


def _ratio(got: list[dict], base: list[dict], key: str, n: int) -> str:
    """mean(got's ``key``) / mean(base's), with its 95% interval when both have seeds."""
    if n == 1 or not got or not base:
        return "—"
    a, b = [s[key] for s in got], [s[key] for s in base]
    text = f"{np.mean(a) / np.mean(b):.2f}"
    if len(a) > 1 and len(b) > 1:
        lo, hi = ratio_interval(a, b)
        text += f" [{lo:.2f}, {hi:.2f}]"
    return text


def _split(got: list[dict]) -> str:
    """Mean per-update compute + all-reduce CPU milliseconds over ``got``'s seeds."""
    if not got:
        return "—"
    compute, allreduce = (1e3 * np.mean([s[k] for s in got]) for k in ("compute", "allreduce"))
    return f"{compute:.1f} + {allreduce:.1f}"


def plot(stats: dict[tuple[str, int], list[dict]], path: Path) -> None:
    """Critical-path and wall-clock seconds to the target against N, ideal line T(1)/N."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for algo, color in (("reinforce", "tab:blue"), ("ppo", "tab:orange"),
                        ("ppo-split", "tab:green")):
        ns = sorted(n for a, n in stats if a == algo)
        points = [(n, [s["critical"] for s in stats[algo, n] if s["critical"] is not None],
                   [s["wall"] for s in stats[algo, n] if s["wall"] is not None]) for n in ns]
        points = [p for p in points if p[1]]
        if not points:
            continue
        x = np.array([n for n, _, _ in points])
        mean = np.array([np.mean(c) for _, c, _ in points])
        ci = np.array([bootstrap(c) if len(c) > 1 else (np.mean(c),) * 2 for _, c, _ in points])
        ax.errorbar(x, mean, yerr=[mean - ci[:, 0], ci[:, 1] - mean], color=color, marker="o",
                    capsize=3, lw=2, label=f"{algo}: critical path (mean, 95% CI)")
        ax.plot(x, [np.mean(w) for _, _, w in points], color=color, marker="s", ls=":",
                mfc="none", label=f"{algo}: wall clock on this machine")
        if x[0] == 1:
            ax.plot(x, mean[0] / x, color=color, ls="--", lw=1, alpha=0.7,
                    label=f"{algo}: ideal T(1)/N")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("agents N")
    ax.set_ylabel("seconds to a 100-episode average of 475")
    ax.set_title("Dist-QTRL on CartPole-v1: time to solve against N")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def section(algos: list[str], agents: dict[str, list[int]], seeds: list[int],
            updates: dict[str, int], docs: Path) -> list[str]:
    """Train what is missing; the markdown of the time-to-solve section (the plot
    written to ``docs/time_to_solve.png``). ``agents``: the Ns of each algorithm."""
    stats: dict[tuple[str, int], list[dict]] = {}
    for algo in algos:
        for n in agents[algo]:
            for seed in seeds:
                print(f"{algo} N={n} seed={seed} ...", flush=True)
                stats.setdefault((algo, n), []).append(
                    solve_stats(train(algo, n, seed, updates[algo])))
    lines = ["## Time to solve against N (issue 18)", "",
             (f"Seeds {', '.join(map(str, seeds))}; every N trains the same number of updates "
              f"({', '.join(f'{a}: {updates[a]}' for a in algos)}); target: 100-episode "
              f"average ≥ {TARGET:g}. Mean [95% bootstrap interval] over the seeds that reached "
              "it. **Critical path**: per update the slowest agent's compute (CPU seconds) plus "
              "the all-reduce's transfer (CPU seconds too), summed: the run's time with a core "
              "per agent, the wire's latency left out. **Compute alone**: the same without the "
              "all-reduce, a lower bound of that time; where N agents share fewer cores the "
              "all-reduce's CPU time is inflated by peers waiting to be scheduled, so the truth "
              "lies between the two ratios. **ppo** gives each agent the preset's whole roll-out "
              f"({PPO_ENVS} envs x {PPO_STEPS} steps: N times the samples per update); "
              f"**ppo-split** splits that roll-out over the agents ({PPO_STEPS}/N steps each, "
              "the same samples per update at every N; its N=1 row is ppo's). "
              f"**Wall clock**: measured on this machine ({_cores()} cores shared by all N agents "
              "and other work). Neither counts process start-up."), "",
             ("**Learning**: the update whose own episodes first average the target; the "
              "updates after it are the 100-episode average catching up, which takes fewer "
              "updates the more agents finish episodes in each. **Per update**: critical "
              "path over updates, in milliseconds, and its two parts, the slowest agent's "
              "compute and the all-reduce's CPU time (means over updates and seeds)."), "",
             ("| algo | N | reached | updates | of which learning | env steps | critical path "
              "(s) | per update (ms) | compute + all-reduce (ms) | wall clock (s) | final "
              "100-ep avg | critical path vs N=1 | compute alone vs N=1 |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (algo, n), runs in stats.items():
        got = [s for s in runs if s["updates"] is not None]
        base = [s for s in stats.get((algo, 1), []) if s["updates"] is not None]
        goal = f" (goal ≤ {GOALS[algo, n]})" if (algo, n) in GOALS else ""
        ratio = _ratio(got, base, "critical", n) + goal
        alone = _ratio(got, base, "compute_path", n) + goal
        lines.append(f"| {algo} | {n} | {len(got)} of {len(runs)} | "
                     f"{_cell([s['updates'] for s in got], 0)} | "
                     f"{_cell([s['learned'] for s in got], 0)} | "
                     f"{_cell([s['steps'] for s in got], 0)} | "
                     f"{_cell([s['critical'] for s in got], 1)} | "
                     f"{_cell([1e3 * s['critical'] / s['updates'] for s in got], 1)} | "
                     f"{_split(got)} | "
                     f"{_cell([s['wall'] for s in got], 1)} | "
                     f"{_cell([s['final'] for s in runs], 1)} | {ratio} | {alone} |")
    lines += reading(stats) + split_reading(stats)
    docs.mkdir(parents=True, exist_ok=True)
    plot(stats, docs / "time_to_solve.png")
    lines += ["", ("Figure: `time_to_solve.png` (critical path with its interval, the wall "
                   "clock of this machine, and the ideal line T(1)/N)."), ""]
    return lines


def _cores() -> int:
    import os
    return os.cpu_count() or 1


def seed_list(text: str) -> list[int]:
    """``"0-9"`` or ``"0,3,5"`` -> seeds."""
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--reinforce-agents", type=int, nargs="+",
                   help="REINFORCE's Ns when they differ from --agents")
    p.add_argument("--algos", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--seeds", type=seed_list, default=seed_list("0-9"),
                   help="e.g. 0-9 (the issue asks for at least 10) or 0,1,2")
    p.add_argument("--reinforce-updates", type=int, default=800)
    p.add_argument("--ppo-updates", type=int, default=200, help="PPO's and ppo-split's")
    p.add_argument("--quick", action="store_true", help="N = 1, 2; seeds 0, 1; short runs")
    p.add_argument("--docs", type=Path, default=ROOT / "runs" / "time-to-solve")
    args = p.parse_args()
    updates = by_algo(args.ppo_updates, args.reinforce_updates)
    if args.quick:
        args.agents, args.seeds = [1, 2], [0, 1]
        updates = by_algo(20, 100)
        args.reinforce_agents = None
    agents = by_algo(args.agents, args.reinforce_agents or args.agents)
    lines = section(args.algos, agents, args.seeds, updates, args.docs)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

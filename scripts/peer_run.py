"""Peer run: Stable-Baselines3 PPO (rl-baselines3-zoo settings) beside qtrl, same tasks and seeds.

    .venv/bin/python scripts/peer_run.py --tasks cartpole --seeds 0-2 --trainers qtrl sb3

Every training (one trainer, task and seed) runs in its own subprocess, so the wall
clock counts from process start (imports included). Both trainers' env steps to
target come from their episode lists in the same way (:func:`steps_to_target`).
Prints a markdown table on stdout; writes ``OUT/peer.json`` (every episode of every
run) and, with ``--plot``, the learning curves. SB3 is the optional ``[compare]`` extra.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

WINDOW = 100  # episodes of the moving average that must reach the target
TRAINERS = ("qtrl", "sb3", "qtrl-classical")
Episode = tuple[float, int, float]  # (return, length, seconds since process start)


@dataclass(frozen=True)
class Task:
    """One benchmark task: the env, its target and budget, and each trainer's settings."""

    env_id: str
    target: float             # 100-episode average return that counts as reached
    budget: int               # env steps (qtrl: its preset's own, unless --budget-scale)
    sb3: dict[str, Any]       # zoo PPO hyper-parameters (``lin_X``: linear schedule from X)
    qtrl_args: tuple[str, ...]
    max_steps: int | None = None   # episode cap given to SB3 (as qtrl's preset has)
    n_actions: int | None = None   # SB3 sees only the first n actions (as qtrl does)
    image_obs: bool = False        # SB3 sees obs["image"] flattened (as qtrl does)


TASKS: dict[str, Task] = {
    # rl-baselines3-zoo hyperparams/ppo.yml, entry "CartPole-v1" (tuned).
    "cartpole": Task("CartPole-v1", 475.0, 100_000, {
        "n_envs": 8, "n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98,
        "n_epochs": 20, "ent_coef": 0.0, "learning_rate": "lin_0.001", "clip_range": "lin_0.2"},
        ("--preset", "cartpole")),
    # zoo entry "MiniGrid-Empty-Random-5x5-v0" (&minigrid-defaults, also used for DoorKey),
    # adapted: its FlatObsWrapper is replaced by qtrl's view (image only, 3 actions, cap 100).
    "minigrid": Task("MiniGrid-Empty-5x5-v0", 0.9, 100_000, {
        "normalize": True, "n_envs": 8, "n_steps": 128, "batch_size": 64, "gae_lambda": 0.95,
        "gamma": 0.99, "n_epochs": 10, "ent_coef": 0.0, "learning_rate": 2.5e-4,
        "clip_range": 0.2}, ("--preset", "minigrid"), max_steps=100, n_actions=3, image_obs=True),
    # zoo entry "LunarLander-v2" (the same settings serve -v3); needs Box2D.
    "lunarlander": Task("LunarLander-v3", 200.0, 1_000_000, {
        "n_envs": 16, "n_steps": 1024, "batch_size": 64, "gae_lambda": 0.98, "gamma": 0.999,
        "n_epochs": 4, "ent_coef": 0.01}, ("--preset", "lunarlander")),
    # zoo entry "Pendulum-v1" (tuned, gSDE).
    "pendulum": Task("Pendulum-v1", -250.0, 200_000, {
        "n_envs": 4, "n_steps": 1024, "gae_lambda": 0.95, "gamma": 0.9, "n_epochs": 10,
        "ent_coef": 0.0, "learning_rate": 1e-3, "clip_range": 0.2, "use_sde": True,
        "sde_sample_freq": 4}, ("--preset", "pendulum")),
}


class UsageError(ValueError):
    """Bad command-line input: reported on one line, exit status 2."""


def parse_seeds(tokens: list[str]) -> list[int]:
    """``["0-2", "5"]`` → ``[0, 1, 2, 5]``: integers or inclusive ``A-B`` ranges."""
    seeds: list[int] = []
    for tok in tokens:
        lo, sep, hi = tok.partition("-")
        try:
            first, last = (int(lo), int(hi)) if sep else (int(tok), int(tok))
        except ValueError:
            first, last = 0, -1
        if first < 0 or last < first:
            raise UsageError(f"bad seeds {tok!r}: give integers (0 1 2) or ranges (0-9)")
        seeds += [s for s in range(first, last + 1) if s not in seeds]
    return seeds


def check_names(kind: str, names: list[str], accepted: tuple[str, ...]) -> list[str]:
    """``names`` unchanged if each is one of ``accepted``; else a :class:`UsageError`."""
    for name in names:
        if name not in accepted:
            raise UsageError(f"unknown {kind} {name!r}; accepted: {', '.join(accepted)}")
    return names


def steps_to_target(episodes: list[Episode], target: float) -> tuple[int, float] | None:
    """(env steps, seconds since process start) at the first episode i ≥ 100 whose trailing
    100-episode mean return reaches ``target``; steps = lengths of episodes 1..i summed."""
    returns = np.array([e[0] for e in episodes], dtype=float)
    if len(returns) < WINDOW:
        return None
    means = np.convolve(returns, np.ones(WINDOW) / WINDOW, mode="valid")
    hits = np.flatnonzero(means >= target)
    if not len(hits):
        return None
    i = int(hits[0]) + WINDOW  # 1-based index of the episode that reached it
    return sum(e[1] for e in episodes[:i]), episodes[i - 1][2]


# ----------------------------------------------------------------------------- SB3 worker

def make_sb3_env(task: Task) -> Any:
    """The task's env as SB3 sees it: the same observations, actions and cap as qtrl's."""
    import gymnasium as gym
    if task.image_obs:
        import minigrid  # noqa: F401  (registers the MiniGrid envs)
    env = gym.make(task.env_id, max_episode_steps=task.max_steps)
    if task.image_obs:
        image = env.observation_space["image"]
        env = gym.wrappers.TransformObservation(
            env, lambda o: np.asarray(o["image"], dtype=np.float32).reshape(-1),
            gym.spaces.Box(0.0, float(image.high.max()), (int(np.prod(image.shape)),),
                           np.float32))
    if task.n_actions is not None:
        env = gym.wrappers.TransformAction(env, int, gym.spaces.Discrete(task.n_actions))
    return env


def _linear(start: float) -> Callable[[float], float]:
    """The zoo's ``lin_X``: X times SB3's progress remaining (1 at the start, 0 at the end)."""
    return lambda progress_remaining: progress_remaining * start


def sb3_worker(task_name: str, seed: int, out: Path, t0: float, scale: float) -> None:
    """Train SB3 PPO for the task's budget; write episodes, parameter count and settings."""
    import torch
    torch.set_num_threads(1)
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    task, episodes = TASKS[task_name], []

    class EpisodeLog(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:  # the Monitor wrapper's record of a finished episode
                    ep = info["episode"]
                    episodes.append((float(ep["r"]), int(ep["l"]), time.time() - t0))
            return True

    hp = dict(task.sb3)
    n_envs, normalize = hp.pop("n_envs"), hp.pop("normalize", False)
    for key, value in hp.items():
        if isinstance(value, str) and value.startswith("lin_"):
            hp[key] = _linear(float(value[4:]))
    env = make_vec_env(lambda: make_sb3_env(task), n_envs=n_envs, seed=seed)
    if normalize:
        env = VecNormalize(env, gamma=hp.get("gamma", 0.99))
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **hp)
    model.learn(total_timesteps=round(task.budget * scale), callback=EpisodeLog())
    params = sum(p.numel() for p in model.policy.parameters() if p.requires_grad)
    out.write_text(json.dumps({"episodes": episodes, "params": params,
                               "env_steps": int(model.num_timesteps), "hyperparams": task.sb3}))


# ----------------------------------------------------------------------------- runs

def qtrl_args(task: Task, trainer: str, extra: list[str], scale: float) -> list[str]:
    """The ``qtrl train`` arguments of a task; with ``scale`` ≠ 1, ``--total-steps`` of the
    scaled budget too (unless the arguments bound the run already)."""
    args = [*task.qtrl_args, *(["--classical"] if trainer == "qtrl-classical" else []), *extra]
    if scale != 1 and not {"--episodes", "--total-steps"} & set(args):
        args += ["--total-steps", str(round(task.budget * scale))]
    return args


def run_one(task_name: str, trainer: str, seed: int, out: Path, extra: list[str],
            scale: float) -> dict[str, Any]:
    """Train one (task, trainer, seed) in a subprocess; its episodes and figures, or its error."""
    task = TASKS[task_name]
    run_dir = out / task_name / trainer / f"seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    if trainer == "sb3":
        cmd = [sys.executable, str(Path(__file__).resolve()), "--sb3-worker", task_name,
               str(seed), str(run_dir / "episodes.json")]
    else:
        cmd = [sys.executable, "-m", "qtrl", "train", *qtrl_args(task, trainer, extra, scale),
               "--seed", str(seed), "--out", str(run_dir / "qtrl"), "--no-tensorboard"]
    rec: dict[str, Any] = {"task": task_name, "trainer": trainer, "seed": seed, "cmd": cmd,
                           "ok": False, "error": None}
    t0 = time.time()
    if trainer == "sb3":
        cmd += [repr(t0), repr(scale)]
    with open(run_dir / "stdout.log", "w") as so, open(run_dir / "stderr.log", "w") as se:
        code = subprocess.run(cmd, cwd=ROOT, stdout=so, stderr=se, check=False).returncode
    rec["wall_total_s"] = time.time() - t0
    try:
        if code != 0:
            raise RuntimeError(f"exit {code}")
        if trainer == "sb3":
            data = json.loads((run_dir / "episodes.json").read_text())
            episodes = [tuple(e) for e in data["episodes"]]
            rec.update(params=data["params"], hyperparams=data["hyperparams"])
        else:
            summary = json.loads((run_dir / "qtrl" / "summary.json").read_text())
            start = summary["train_started_unix"] - t0
            rows = (line.split(",") for line in
                    (run_dir / "qtrl" / "metrics.csv").read_text().splitlines()[1:])
            episodes = [(float(r[2]), int(r[3]), start + float(r[4])) for r in rows]
            rec["params"] = summary["parameter_counts"]["total"]
    except Exception as exc:  # noqa: BLE001  (reported, the other runs go on)
        tail = (run_dir / "stderr.log").read_text().strip().splitlines()[-8:]
        rec["error"] = f"{exc}\n" + "\n".join(tail)
        return rec
    hit = steps_to_target(episodes, task.target)
    rec.update(ok=True, episodes=episodes, env_steps=sum(e[1] for e in episodes),
               steps_to_target=hit[0] if hit else None, wall_to_target_s=hit[1] if hit else None,
               final_avg100=float(np.mean([e[0] for e in episodes[-WINDOW:]])))
    return rec


# ----------------------------------------------------------------------------- report

def _median(values: list[float | None]) -> float | None:
    """Median with unreached (None) counted as +inf; None if that median is infinite."""
    m = float(np.median([np.inf if v is None else v for v in values])) if values else np.inf
    return m if np.isfinite(m) else None


def _mean_spread(values: list[float]) -> str:
    """``mean (95% CI a–b)`` by bootstrap from 5 values on, else ``mean (range a–b)``."""
    m = float(np.mean(values))
    if len(values) >= 5:
        rng = np.random.default_rng(0)
        boot = rng.choice(values, (10_000, len(values))).mean(axis=1)
        return f"{m:.3g} (95% CI {np.percentile(boot, 2.5):.3g}–{np.percentile(boot, 97.5):.3g})"
    return f"{m:.3g} (range {min(values):.3g}–{max(values):.3g})"


def summarize(runs: list[dict[str, Any]], tasks: list[str], trainers: list[str]) -> list[dict]:
    """One row per (task, trainer): figures over the seeds, and the ratios to SB3's medians."""
    rows = []
    for task in tasks:
        for trainer in trainers:
            mine = [r for r in runs if r["task"] == task and r["trainer"] == trainer]
            ok = [r for r in mine if r["ok"]]
            reached = [r["steps_to_target"] for r in ok if r["steps_to_target"] is not None]
            rows.append({
                "task": task, "trainer": trainer, "seeds": len(mine), "ok": len(ok),
                "failed": [r["seed"] for r in mine if not r["ok"]], "reached": len(reached),
                "steps_median": _median([r["steps_to_target"] for r in ok]),
                "steps_range": [min(reached), max(reached)] if reached else None,
                "wall_median": _median([r["wall_to_target_s"] for r in ok]),
                "final_avg100": [r["final_avg100"] for r in ok],
                "params": sorted({r["params"] for r in ok}),
                "env_steps_median": _median([r["env_steps"] for r in ok])})
        base = next((r for r in rows if r["task"] == task and r["trainer"] == "sb3"), None)
        for row in (r for r in rows if r["task"] == task):
            for key in ("steps", "wall"):
                a, b = row[f"{key}_median"], base and base[f"{key}_median"]
                row[f"{key}_ratio"] = a / b if a and b else None
    return rows


def table(rows: list[dict], command: str) -> str:
    """The markdown table of :func:`summarize`'s rows, under the machine and date."""
    try:
        from qtrl.bench.machine import machine_line
        machine = machine_line()
    except Exception as exc:  # noqa: BLE001  (qtrl broken: still print the figures)
        machine = f"{time.strftime('%Y-%m-%d')}; machine unknown ({exc!r})"

    def fmt(value: float | None, spec: str, unit: str = "") -> str:
        return "—" if value is None else format(value, spec) + unit

    out = [f"Peer run, {machine}", "", f"Command: `{command}`", "",
           ("| task | trainer | reached | steps to target: median (range) | wall to target: "
            "median | final avg100 | params | env steps run | steps ×SB3 | wall ×SB3 |"),
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        failed = f", {len(r['failed'])} failed" if r["failed"] else ""
        task = f"{r['task']} (≥ {TASKS[r['task']].target:g})"
        if not r["ok"]:
            out.append(f"| {task} | {r['trainer']} | FAILED (seeds {r['failed']}) |" + " |" * 7)
            continue
        rng = " ({:,}–{:,})".format(*r["steps_range"]) if r["steps_range"] else ""
        out.append(
            f"| {task} | {r['trainer']} | "
            f"{r['reached']}/{r['seeds']}{failed} | {fmt(r['steps_median'], ',.0f')}{rng} | "
            f"{fmt(r['wall_median'], '.1f', ' s')} | {_mean_spread(r['final_avg100'])} | "
            f"{', '.join(f'{p:,}' for p in r['params'])} | {fmt(r['env_steps_median'], ',.0f')} | "
            f"{fmt(r['steps_ratio'], '.2f')} | {fmt(r['wall_ratio'], '.2f')} |")
    return "\n".join(out)


def plot(runs: list[dict[str, Any]], tasks: list[str], path: Path) -> None:
    """100-episode moving average against env steps: median over seeds, 25–75 % band
    (min–max under 4 seeds); one panel per task, one line per trainer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        ok = [r for r in runs if r["task"] == task and r["ok"] and r["episodes"]]
        for trainer in dict.fromkeys(r["trainer"] for r in ok):
            curves = []
            for r in (r for r in ok if r["trainer"] == trainer):
                ret = np.array([e[0] for e in r["episodes"]])
                csum = np.cumsum(ret)
                avg = (csum - np.concatenate([np.zeros(WINDOW), csum[:-WINDOW]])[:len(csum)]) \
                    / np.minimum(np.arange(1, len(ret) + 1), WINDOW)
                curves.append((np.cumsum([e[1] for e in r["episodes"]]), avg))
            # up to where every seed has data: a median over fewer seeds jumps
            grid = np.linspace(0, min(c[0][-1] for c in curves), 300)
            ys = np.array([np.where(grid <= x[-1], np.interp(grid, x, y), np.nan)
                           for x, y in curves])
            lo, hi = ((np.nanpercentile(ys, 25, 0), np.nanpercentile(ys, 75, 0))
                      if len(curves) >= 4 else (np.nanmin(ys, 0), np.nanmax(ys, 0)))
            ax.plot(grid, np.nanmedian(ys, 0), label=f"{trainer} ({len(curves)} seeds)")
            ax.fill_between(grid, lo, hi, alpha=0.25)
        ax.axhline(TASKS[task].target, color="grey", ls="--", lw=0.8)
        ax.set(title=TASKS[task].env_id, xlabel="env steps", ylabel="return (100-ep. avg)")
        ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter())
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["cartpole"], help=f"of {', '.join(TASKS)}")
    p.add_argument("--seeds", nargs="+", default=["0-2"], help="e.g. 0-9 or 0 1 2")
    p.add_argument("--trainers", nargs="+", default=["qtrl", "sb3"], help=", ".join(TRAINERS))
    p.add_argument("--jobs", type=int, default=1, help="parallel training subprocesses")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "peer")
    p.add_argument("--plot", type=Path, metavar="PATH", help="PNG of the learning curves")
    p.add_argument("--budget-scale", type=float, default=1.0, help="multiply every budget")
    p.add_argument("--extra-qtrl-args", default="", help="appended to the qtrl args")
    p.add_argument("--replot", action="store_true",
                   help="train nothing: draw --plot from the runs saved in OUT/peer.json")
    args = p.parse_args(argv)
    if args.replot:
        if args.plot is None or not (args.out / "peer.json").is_file():
            print(f"peer_run: --replot needs --plot and {args.out / 'peer.json'}",
                  file=sys.stderr)
            return 2
        saved = json.loads((args.out / "peer.json").read_text())
        plot(saved["runs"], list(saved["tasks"]), args.plot)
        return 0
    try:
        tasks = check_names("task", args.tasks, tuple(TASKS))
        trainers = check_names("trainer", args.trainers, TRAINERS)
        seeds = parse_seeds(args.seeds)
        if args.jobs < 1 or args.budget_scale <= 0:
            raise UsageError("--jobs must be ≥ 1 and --budget-scale > 0")
        if "sb3" in trainers and importlib.util.find_spec("stable_baselines3") is None:
            raise UsageError("stable_baselines3 is not importable; install the [compare] "
                             "extra: pip install -e .[compare]")
    except UsageError as exc:
        print(f"peer_run: {exc}", file=sys.stderr)
        return 2
    extra = shlex.split(args.extra_qtrl_args)
    jobs = [(t, tr, s) for t in tasks for tr in trainers for s in seeds]
    runs: list[dict[str, Any]] = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_one, t, tr, s, args.out, extra, args.budget_scale)
                   for t, tr, s in jobs]
        for fut in concurrent.futures.as_completed(futures):
            rec = fut.result()
            runs.append(rec)
            what = f"[{len(runs)}/{len(jobs)}] {rec['task']} {rec['trainer']} seed {rec['seed']}"
            if rec["ok"]:
                print(f"{what}: {rec['wall_total_s']:.0f} s, target at "
                      f"{rec['steps_to_target']} steps", file=sys.stderr, flush=True)
            else:
                print(f"{what}: FAILED ({' '.join(rec['cmd'])})\n{rec['error']}",
                      file=sys.stderr, flush=True)
    runs.sort(key=lambda r: (tasks.index(r["task"]), trainers.index(r["trainer"]), r["seed"]))
    rows = summarize(runs, tasks, trainers)
    command = "python scripts/peer_run.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = table(rows, command)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "peer.json", "w") as fh:
        json.dump({"command": command, "table": text, "window": WINDOW, "summary": rows,
                   "tasks": {t: asdict(TASKS[t]) for t in tasks}, "runs": runs}, fh, indent=1)
    if args.plot:
        plot(runs, tasks, args.plot)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--sb3-worker":
        if importlib.util.find_spec("stable_baselines3") is None:
            sys.exit("peer_run: install the [compare] extra: pip install -e .[compare]")
        sb3_worker(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), float(sys.argv[5]),
                   float(sys.argv[6]))
    else:
        sys.exit(main())

"""Learning results of issue 3: train the presets (Quantum-Train and classical)
over several seeds and write docs/RESULTS_training.md with its figures.

    .venv/bin/python scripts/results_training.py            # full: ~1-2 h on 2 cores
    .venv/bin/python scripts/results_training.py --quick    # a smoke run of the pipeline

Runs are ordinary ``qtrl train`` runs under ``runs/results/`` (``--jobs`` at a
time, one torch thread each). A finished run whose configuration matches is
reused; an unfinished one is resumed — so re-running the script only trains
what is missing and regenerates the tables and figures.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from qtrl.bench.machine import machine_line
from qtrl.config import TrainConfig
from qtrl.run.recorder import first_solved, moving_average

# Settings per experiment: label -> (flags on top of the preset, seeds or None for all).
# "QT reference" is the preset as published (qtrl.presets: linear mapping, generated
# weights as built, one episode per update, the preset's lr and entropy). "QT tuned"
# is what we changed to reach the targets — see the notes in RESULTS_training.md.
REFERENCE_QT = ["--mapping-activation", "none", "--qt-init-std", "none"]
TUNED = ["--mapping-activation", "relu", "--qt-init-std", "0.1", "--episodes-per-update", "4",
         "--lr", "7e-3", "--anneal-lr", "--max-grad-norm", "1"]
MINIGRID_TUNED = ["--mapping-activation", "relu", "--entropy", "0.01", "--episodes-per-update",
                  "4", "--lr", "1e-3", "--anneal-lr", "--max-grad-norm", "1"]
EXPERIMENTS: dict[str, dict[str, tuple[list[str], list[int] | None]]] = {
    "cartpole": {
        "QT reference": (REFERENCE_QT, None),
        "QT tuned": (TUNED, None),
        "classical": (["--classical"], None),
        "classical tuned": (["--classical", *TUNED[4:]], None),
    },
    "minigrid": {
        "QT reference": (REFERENCE_QT, [0]),
        "QT tuned": (MINIGRID_TUNED, None),
        "classical": (["--classical"], None),
    },
}

def notes(preset: str, jobs: list[Job]) -> list[str]:
    """Why the tuned settings differ from the reference, with the numbers measured here."""
    if preset == "cartpole":
        ref, classical = init_scales()
        return [
            ("With the reference settings Quantum-Train REINFORCE learns too slowly and too "
            "unstably for the target. Three causes, three changes (all flags of `qtrl train`):"),
            (f"1. The reference's linear mapping with PyTorch's default init generates weights "
            f"with std {ref[0]:.2f}–{ref[1]:.2f} (seeds 0–4), against {classical:.2f} for the "
            f"default init of the same network: the policy starts near a zero-weight saddle "
            f"and stays uniform for hundreds of episodes. `--qt-init-std 0.1` rescales the "
            f"mapping's output layer once at init (the generated weights are linear in it); "
            f"`--mapping-activation relu` (now the default of `qtrl train`) makes the "
            f"mapping non-linear in the index bits."),
            ("2. Adam moves every mapping parameter by about lr per step, and each of them "
            "moves *all* generated weights at once, so one noisy one-episode gradient swings "
            "the whole policy and often collapses it onto one action (an absorbing state for "
            "REINFORCE). Four episodes per update (`--episodes-per-update 4`) and a gradient "
            "norm clipped to 1 (`--max-grad-norm 1`) make the steps steadier."),
            ("3. With steadier steps a larger, linearly decaying rate (`--lr 7e-3 --anneal-lr`) "
            "learns within the budget."),
            "\"classical tuned\" applies the same training changes to the classical network.",
        ]
    if preset == "minigrid":
        ref = [j for j in jobs if j.label.startswith("QT reference")]
        if not ref:
            return []
        ent, ret = plateau(ref[0].run_dir)
        return [
            (f"With the reference's entropy bonus (0.05) the Quantum-Train policy stays near "
            f"uniform — mean policy entropy {ent:.2f} over the last 500 updates (at most "
            f"ln 3 = 1.10) — and its 100-episode average ends at {ret:.2f} (uniformly random "
            f"actions score {random_return():.2f}). The tuned runs use a five times smaller bonus (`--entropy "
            f"0.01`) with the CartPole recipe's steadier steps (`--episodes-per-update 4 "
            f"--max-grad-norm 1 --anneal-lr`, relu mapping) at `--lr 1e-3`. Without any bonus "
            f"a seed can collapse onto a policy that never reaches the goal: every return is "
            f"zero and REINFORCE has no gradient left. The CartPole recipe's init rescale does "
            f"not carry over either: one std for every generated weight is too large for 147 "
            f"inputs of up to 10, and the first policy is already deterministic. The reference "
            f"row is one seed: a 4000-episode run of it is the most expensive of the table."),
        ]
    return []


def init_scales(seeds: range = range(5)) -> tuple[tuple[float, float], float]:
    """Std of the reference's generated CartPole weights (min, max over ``seeds``) and
    of the same network's default init."""
    import torch

    from qtrl.rl.policy import build_model
    stds = []
    for seed in seeds:
        torch.manual_seed(seed)
        cfg = TrainConfig.from_preset("cartpole-paper", mapping_activation="none", qt_init_std=None)
        stds.append(float(build_model(cfg, 4, 2).generate_flat().detach().std()))
    torch.manual_seed(0)
    net = build_model(TrainConfig.from_preset("cartpole-paper", classical=True), 4, 2)
    classical = float(torch.cat([p.detach().flatten() for p in net.parameters()]).std())
    return (min(stds), max(stds)), classical


def random_return(episodes: int = 300) -> float:
    """Mean return of uniformly random actions (left/right/forward) on MiniGrid-Empty-5x5."""
    from qtrl.rl.env import make_env
    cfg = TrainConfig.from_preset("minigrid-paper")
    env = make_env(cfg.env, cfg.max_steps)
    rng = np.random.default_rng(0)
    total = 0.0
    for e in range(episodes):
        env.reset(seed=e)
        while True:
            _, r, terminated, truncated, _ = env.step(int(rng.integers(cfg.n_actions)))
            total += float(r)
            if terminated or truncated:
                break
    env.close()
    return total / episodes


def plateau(run_dir: Path, last: int = 500) -> tuple[float, float]:
    """Mean policy entropy over the last ``last`` updates and the final 100-ep average."""
    with open(run_dir / "progress.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[-last:]
    summary = json.loads((run_dir / "summary.json").read_text())
    return (float(np.mean([float(r["train/entropy"]) for r in rows])),
            summary["final_return_avg100"])


@dataclass(frozen=True)
class Job:
    preset: str
    label: str
    seed: int
    flags: tuple[str, ...]
    episodes: int

    @property
    def run_dir(self) -> Path:
        """Named by label, seed and a digest of the settings, so that a changed
        experiment never meets the runs of an old one."""
        slug = self.label.lower().replace(" ", "-")
        digest = hashlib.sha1(" ".join(self.argv()).encode()).hexdigest()[:6]
        return ROOT / "runs" / "results" / f"{self.preset}-{slug}-seed{self.seed}-{digest}"

    def argv(self) -> list[str]:
        return ["--preset", self.preset, "--seed", str(self.seed), "--episodes",
                str(self.episodes), *self.flags]


def _config_of(job: Job) -> TrainConfig:
    from qtrl.cli import build_parser
    from qtrl.flags import config_from_flags
    return config_from_flags(build_parser().parse_args(["train", *job.argv()]))


def run_job(job: Job) -> str:
    """Train (or reuse / resume) one run; returns a status word."""
    want = _config_of(job)
    log = job.run_dir.with_suffix(".log")
    cmd = [sys.executable, "-m", "qtrl", "train", "--threads", "1"]
    if (job.run_dir / "summary.json").exists():
        have = TrainConfig.load(job.run_dir / "config.json")
        if have == want:
            return "reused"
        raise SystemExit(f"{job.run_dir} holds a different run; move it away first")
    if (job.run_dir / "checkpoint.pt").exists():
        cmd += ["--resume", str(job.run_dir)]
        status = "resumed"
    else:
        cmd += [*job.argv(), "--out", str(job.run_dir)]
        status = "trained"
    job.run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed; see {log}")
    return status


def _returns(run_dir: Path) -> np.ndarray:
    with open(run_dir / "metrics.csv", newline="") as fh:
        return np.array([float(r["return"]) for r in csv.DictReader(fh)])


def plot(preset: str, jobs: list[Job], path: Path, threshold: float | None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(j.label for j in jobs))
    colors = dict(zip(labels, ("tab:purple", "tab:blue", "tab:orange", "tab:green")))
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for label in labels:
        curves = [moving_average(_returns(j.run_dir)) for j in jobs if j.label == label]
        for i, c in enumerate(curves):
            ax.plot(np.arange(1, len(c) + 1), c, color=colors[label], lw=1, alpha=0.45,
                    label=f"{label} (each seed)" if i == 0 else None)
        n = min(len(c) for c in curves)
        ax.plot(np.arange(1, n + 1), np.mean([c[:n] for c in curves], 0), color=colors[label],
                lw=2.4, label=f"{label} (mean of {len(curves)} seeds)")
    if threshold is not None:
        ax.axhline(threshold, color="gray", ls="--", lw=1, label=f"target {threshold:g}")
    ax.set_xlabel("episode")
    ax.set_ylabel("100-episode average return")
    ax.set_title(f"{TrainConfig.from_preset(preset).env}: Quantum-Train vs classical REINFORCE")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def write_results(jobs: list[Job], docs: Path, command: str, jobs_at_once: int = 2) -> str:
    lines = ["# Learning results — QTRL training (issue 3)", "",
             "Generated by `scripts/results_training.py`; do not edit by hand.", "",
             f"- command: `{command}`",
             (f"- measured: {machine_line()}; one torch thread per run, up to {jobs_at_once} runs "
              f"side by side (wall times include that sharing)"), ""]
    for preset in dict.fromkeys(j.preset for j in jobs):
        pj = [j for j in jobs if j.preset == preset]
        base = _config_of(pj[0])
        threshold = base.solve_threshold
        lines += [f"## {preset}: {base.env}, {pj[0].episodes} episodes", "",
                  (f"Target: 100-episode average return ≥ {threshold:g} within "
                  f"{pj[0].episodes} episodes. Figure: `docs/training_{preset}.png`."), "",
                  ("| model | seed | final 100-ep avg | best 100-ep avg | first episode ≥ "
                  "target | env steps | wall time (s) | trained parameters |"),
                  "|---|---|---|---|---|---|---|---|"]
        verdicts = []
        for label in dict.fromkeys(j.label for j in pj):
            solved = 0
            runs = [j for j in pj if j.label == label]
            for j in runs:
                s = json.loads((j.run_dir / "summary.json").read_text())
                at = first_solved(_returns(j.run_dir), threshold)
                solved += at is not None
                lines.append(f"| {label} | {j.seed} | {_fmt(s['final_return_avg100'])} | "
                             f"{_fmt(s['best_return_avg100'])} | {at or 'not reached'} | "
                             f"{s['env_steps']} | {s['wall_time_s']:.0f} | "
                             f"{s['parameter_counts']['total']} |")
            cfg = _config_of(runs[0])
            verdicts.append(f"- **{label}** ({_settings(cfg)}): {solved} of {len(runs)} seeds "
                            f"reach the target.")
        lines += ["", *verdicts, ""]
        for note in notes(preset, pj):
            lines += [note, ""]
        plot(preset, pj, docs / f"training_{preset}.png", threshold)
    return "\n".join(lines) + "\n"


def _settings(c: TrainConfig) -> str:
    parts = [f"lr {c.lr:g}" + (" annealed" if c.anneal_lr else ""),
             f"{c.episodes_per_update} episode(s)/update"]
    if not c.classical:
        parts[:0] = [f"mapping {c.mapping_activation}",
                     f"init std {c.qt_init_std if c.qt_init_std is not None else 'as built'}"]
    if c.max_grad_norm is not None:
        parts.append(f"grad-norm clip {c.max_grad_norm:g}")
    parts.append(f"entropy {c.entropy:g}")
    return ", ".join(parts)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="1 seed, 60 CartPole / 60 MiniGrid episodes, written to runs/ only")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cartpole-episodes", type=int, default=1000)
    p.add_argument("--minigrid-episodes", type=int, default=4000)
    p.add_argument("--presets", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    p.add_argument("--jobs", type=int, default=2, help="runs side by side")
    p.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = p.parse_args()
    episodes = {"cartpole": args.cartpole_episodes, "minigrid": args.minigrid_episodes}
    seeds = args.seeds
    docs = args.docs
    if args.quick:
        episodes = {"cartpole": 60, "minigrid": 60}
        seeds = seeds[:1]
        docs = ROOT / "runs" / "results-quick"
    jobs = [Job(preset, label, seed, tuple(flags), episodes[preset])
            for preset in args.presets for label, (flags, only) in EXPERIMENTS[preset].items()
            for seed in (seeds if only is None else [s for s in seeds if s in only] or seeds[:1])]
    if args.quick:
        jobs = [Job(j.preset, j.label + " quick", j.seed, j.flags, j.episodes) for j in jobs]
    # Longest first, so that the two workers finish together.
    order = sorted(jobs, key=lambda j: -j.episodes * (3 if j.preset == "minigrid" else 1))
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for job, status in zip(order, pool.map(run_job, order)):
            print(f"{status:>8}  {job.run_dir.relative_to(ROOT)}", flush=True)
    docs.mkdir(parents=True, exist_ok=True)
    command = "python scripts/results_training.py " + " ".join(sys.argv[1:])
    text = write_results(jobs, docs, command.strip(), args.jobs)
    (docs / "RESULTS_training.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``qtrl train``: train a Quantum-Train (or ``--classical``) policy with ``--algo``.

The flags are generated from :class:`qtrl.config.TrainConfig`'s fields; the
preset (``--preset``, default ``cartpole`` unless ``--env`` is given) fills in
every flag that is not given.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from ..config import RESUMABLE_FIELDS, TrainConfig
from ..distributed import check_agent_count, exit_soon_after_sigterm, under_torchrun
from ..flags import add_dataclass_flags, config_from_flags, given_flags
from ..limits import shown_int
from ..run.callbacks import Callback

__all__ = ["PlainDisplay", "RichDisplay", "register", "run"]

# Flags that may differ from the saved run when resuming: its budget and its
# run-time-only settings.
RESUMABLE = set(RESUMABLE_FIELDS)
MAX_THREADS = 1024
SIGTERM_GRACE_S = 5.0   # a torchrun worker's time to close its files after SIGTERM


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a Quantum-Train policy",
        description="Train a Quantum-Train-generated policy (or, with --classical, the same "
                    "network directly) with --algo (PPO, A2C or REINFORCE). Flags not given "
                    "come from --preset (cartpole unless --env is given: then the defaults "
                    "of --algo, PPO's unless given); the defaults shown are the cartpole "
                    "preset's.")
    add_dataclass_flags(p, TrainConfig, shown=TrainConfig.from_preset("cartpole"))
    p.add_argument("--out", type=Path, metavar="RUN_DIR",
                   help="new run directory (default: runs/<name>-<date>-<time>)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last checkpoint "
                        "(--episodes or --total-steps may raise its length; "
                        "--agent-timeout, --checkpoint-every, --sync-check-every and "
                        "--solve-threshold may change)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard events")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..errors import UserError
    from ..run.directory import new_run
    from ..run.lock import RunDirBusy, RunDirLock, lock_holder
    from ..train import check_config, load_checkpoint

    if not 1 <= args.threads <= MAX_THREADS:
        raise UserError(f"--threads {shown_int(args.threads)}: must be an integer from 1 to "
                        f"{MAX_THREADS}")
    torch.set_num_threads(args.threads)
    if under_torchrun():
        return _run_torchrun(args)
    if args.resume is None:
        config = config_from_flags(args)
        with _collector_quiet_in_set_up() as set_up_done:
            check_config(config)                 # everything checked before anything is written
            if not args.no_tensorboard:   # the run's event writer, imported inside the pause too
                import torch.utils.tensorboard
            set_up_done()
            warning = check_agent_count(config.agents)      # refuses absurd counts
            with new_run(args.out, config) as run_dir:      # this process its only writer
                return _train(args, config, run_dir, warning)
    if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
        raise UserError("give either --out (a new run) or --resume RUN_DIR, not both")
    run_dir = Path(args.resume)
    where = f"--resume {run_dir}"
    holder = lock_holder(run_dir)
    if holder:
        raise RunDirBusy(f"{where}: in use by another qtrl process ({holder})")
    config, state = load_checkpoint(run_dir)      # validates the directory and checkpoint
    config = _continued(args, config, where)
    _check_budget_left(args, state, where)
    warning = check_agent_count(config.agents)
    with RunDirLock(run_dir):
        return _train(args, config, run_dir, warning)


@contextlib.contextmanager
def _collector_quiet_in_set_up() -> Iterator[Callable[[], None]]:
    """Python's cyclic garbage collector paused until the run is set up (the
    ``set_up_done()`` this yields), then on again with what the set-up left alive
    frozen (out of its passes) until the block ends.

    Why: building the model loads the compiled kernels, and Numba's first load sets
    up its compiler, creating many long-lived objects and little garbage; the
    collector's passes over them, and over everything imported before, would
    otherwise delay the first update. The freeze ends with the block, so a caller
    that trains in-process again gets back whatever garbage it held."""
    collecting = gc.isenabled()
    gc.disable()

    def set_up_done() -> None:
        gc.freeze()
        if collecting:
            gc.enable()

    try:
        yield set_up_done
    finally:
        gc.unfreeze()
        if collecting:
            gc.enable()


def _train(args: argparse.Namespace, config: TrainConfig, run_dir: Path,
           warning: str | None) -> int:
    """Train ``config`` into ``run_dir`` (held by this process) and print the outcome."""
    from ..train import train, train_local

    if warning:
        print(f"qtrl train: warning: {warning}", file=sys.stderr)
    display = (RichDisplay(config.total_steps) if sys.stdout.isatty()
               else PlainDisplay(total_steps=config.total_steps))
    agents = f", {config.agents} agents" if config.agents > 1 else ""
    if config.dist_mode == "async":
        agents += f", async: a learner and {config.agents - 1} worker(s)"
    print(f"{'resuming' if args.resume else 'training'} {config.mode} on {config.env} "
          f"(seed {config.seed}{agents}) -> {run_dir}", flush=True)
    if config.agents > 1:
        train_local(config, run_dir, resume=args.resume is not None,
                    tensorboard=not args.no_tensorboard, callbacks=[display],
                    threads=args.threads)
        summary = json.loads((run_dir / "summary.json").read_text())
    else:
        summary = train(config, run_dir, resume=args.resume is not None, callbacks=[display],
                        tensorboard=not args.no_tensorboard)
    solved = summary["solved_at_episode"]
    final = summary["final_return_avg100"]
    steps = summary.get("steps_collected") or summary["env_steps"]
    print(f"done: {summary['episodes']} episodes finished, {steps} env steps in "
          f"{summary['wall_time_s']:.1f} s; final 100-episode average "
          + (f"{final:.2f}" if final is not None else "n/a (no episode finished)")
          + (f"; solved at episode {solved}" if solved else "")
          + f"\nrun directory: {run_dir}")
    return 0


def _check_budget_left(args: argparse.Namespace, state: Mapping[str, object],
                       where: str) -> None:
    """Refuse ``--episodes`` or ``--total-steps`` below what the run has already done:
    it would train nothing and rewrite its config.json to a budget it overran."""
    from ..errors import UserError
    given = given_flags(args)
    done = {"episodes": len(state["episode_returns"]),
            "total_steps": max(int(state.get("steps_collected", 0)), int(state["env_steps"]))}
    for key, value in given.items():
        if key in done and value is not None and value < done[key]:
            raise UserError(f"{where}: {_flag_of(key)} {value} is below the {done[key]} "
                            f"{'episodes' if key == 'episodes' else 'env steps'} the run has "
                            f"already done (in {state['update']} updates); give more to "
                            f"continue it")


def _run_torchrun(args: argparse.Namespace) -> int:
    """One agent of a torchrun group: ``--agents`` is the world size, ``--out`` (or
    ``--resume``) the shared run directory; a restarted group resumes from it."""
    import os
    from dataclasses import replace

    from ..errors import RunStopped, UserError
    from ..train import check_config, load_checkpoint, train_torchrun

    run_dir = args.resume or args.out
    if run_dir is None:
        raise UserError("under torchrun give --out RUN_DIR (a directory every agent sees)")
    run_dir = Path(run_dir)
    world = int(os.environ["WORLD_SIZE"])
    agents = given_flags(args).get("agents")
    if agents is not None and agents != world:
        raise UserError(f"--agents {agents}: under torchrun the agents are its processes "
                        f"(WORLD_SIZE={world}); leave --agents out, or unset the launcher "
                        f"variables for a local run")
    args.agents = world   # before the config is checked: --mode async needs 2 or more
    if (run_dir / "config.json").exists():   # a restarted or re-launched group
        config, _ = load_checkpoint(run_dir) if (run_dir / "checkpoint.pt").exists() else (
            TrainConfig.load(run_dir / "config.json"), None)
        config = _continued(args, replace(config, agents=world), f"--out {run_dir}")
    else:
        config = config_from_flags(args)
    check_config(config, processes=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    display = PlainDisplay(total_steps=config.total_steps)
    # torchrun ends a failed group's workers with SIGTERM and waits 30 s before
    # SIGKILL; one blocked in a store or mesh wait must not hold the restart up.
    exit_soon_after_sigterm(SIGTERM_GRACE_S)
    try:
        train_torchrun(config, run_dir, tensorboard=not args.no_tensorboard, callbacks=[display])
    except RunStopped:
        if int(os.environ["RANK"]) != 0:
            return 1        # every agent stopped alike; agent 0 says why, once
        raise
    if int(os.environ.get("RANK", "0")) == 0:
        summary = json.loads((run_dir / "summary.json").read_text())
        print(f"done: {summary['episodes']} episodes by {summary['agents']} agents in "
              f"{summary['wall_time_s']:.1f} s; final 100-episode average "
              f"{summary['final_return_avg100']:.2f}\nrun directory: {run_dir}", flush=True)
    return 0


def _continued(args: argparse.Namespace, config: TrainConfig, where: str) -> TrainConfig:
    """The saved ``config`` of a run being continued, checked against the flags
    given: a changed flag is refused naming both values, except those that may
    change (:data:`RESUMABLE`), which are applied."""
    from ..errors import UserError
    given = given_flags(args)
    for key, value in given.items():
        if key not in RESUMABLE and value != getattr(config, key):
            raise UserError(f"{where}: the run was trained with {_flag_of(key)} "
                            f"{_show(getattr(config, key))}, not {_show(value)}")
    changed = {k: v for k, v in given.items() if k in RESUMABLE}
    if changed:
        config = TrainConfig.from_dict({**config.to_dict(), **changed})
    return config


def _flag_of(key: str) -> str:
    """The command-line flag of config field ``key``."""
    from dataclasses import fields
    meta = next(f.metadata for f in fields(TrainConfig) if f.name == key)
    return meta.get("flag", "--" + key.replace("_", "-"))


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


class PlainDisplay(Callback):
    """One line every ``interval`` seconds (and at the end) for logs and pipes.
    ``total_steps``: the run is bounded by env steps; count those, not episodes."""

    def __init__(self, interval: float = 10.0, total_steps: int | None = None) -> None:
        self.interval, self.total_steps = interval, total_steps

    def on_start(self, total_episodes: int, done_episodes: int) -> None:
        self.total = self.total_steps or total_episodes
        self.unit = "env steps" if self.total_steps else "episode"
        self._last = time.monotonic()

    def on_update(self, episode: int, values: Mapping[str, float]) -> None:
        now = time.monotonic()
        done = int(values.get("rollout/env_steps", 0)) if self.total_steps else episode
        if now - self._last >= self.interval or done >= self.total:
            self._last = now
            print(f"{self.unit} {done}/{self.total}  avg100 "
                  f"{values.get('rollout/return_avg100', float('nan')):.2f}  "
                  f"{values.get('time/episodes_per_s', float('nan')):.1f} episodes/s",
                  flush=True)

class RichDisplay(Callback):
    """A rich progress bar: episodes (or env steps, with ``total_steps``),
    100-episode average return, episodes/s."""

    progress = None   # until on_start: a run may end (an error) before it starts

    def __init__(self, total_steps: int | None = None) -> None:
        self.total_steps = total_steps

    def on_start(self, total_episodes: int, done_episodes: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        self.progress = Progress(
            TextColumn("env steps" if self.total_steps else "episode"), MofNCompleteColumn(),
            BarColumn(),
            TextColumn("avg100 {task.fields[avg]:>8.2f}"),
            TextColumn("{task.fields[eps]:>6.1f} ep/s"),
            TimeElapsedColumn(), TimeRemainingColumn())
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=self.total_steps or total_episodes,
            completed=0 if self.total_steps else done_episodes, avg=float("nan"), eps=0.0)

    def on_update(self, episode: int, values: Mapping[str, float]) -> None:
        done = int(values.get("rollout/env_steps", 0)) if self.total_steps else episode
        self.progress.update(self.task, completed=done,
                             avg=values.get("rollout/return_avg100", float("nan")),
                             eps=values.get("time/episodes_per_s", 0.0))

    def on_end(self) -> None:
        if self.progress is not None:
            self.progress.stop()

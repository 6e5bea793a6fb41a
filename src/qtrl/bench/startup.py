"""Start-up: seconds from launching ``qtrl train`` to its first update.

Each N launches ``qtrl train --preset cartpole --agents N`` as a new process
(two updates, no TensorBoard) and reads from the run's files when its training
loop started (``summary.json``: ``train_started_unix``) and when the first
update was recorded (that plus ``progress.csv``'s first ``time/wall_s``), both
against the moment of the launch. The median of ``--repeats`` launches is shown.
Then one launch with ``python -X importtime`` says which imports the time goes to.

What keeps it short: qtrl's own Adam (:mod:`qtrl.adam`; building a
``torch.optim`` optimizer imports ``torch._dynamo``, about as long as torch's
own import); local agents forked from the launcher rather than spawned
(:mod:`qtrl.distributed.launch`), so that they do not import torch again;
the cyclic garbage collector paused during qtrl's imports and the run's
set-up, with what they leave frozen; and byte-compiled modules.

Goals (issue 18): one agent's first update within 1.5 s of the launch, N local
agents within 1.5 s + 0.3 s per agent. The rows run without TensorBoard events,
and one more launch of one agent with them (the command's default).

Reproduce: ``qtrl bench startup`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..presets import PRESETS

__all__ = ["launch", "register_args", "run"]

_SETTINGS = PRESETS["cartpole"].settings
STEPS_PER_AGENT_UPDATE = _SETTINGS["num_envs"] * _SETTINGS["num_steps"]   # one roll-out
# Top-level imports worth naming (cumulative microseconds of -X importtime).
# scipy.linalg: imported by Numba's CPU target on the first kernel call (its BLAS check).
_NAMED = ("torch", "torch._dynamo", "numba", "gymnasium", "scipy.linalg", "qtrl")


def register_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agents", type=int, nargs="+", default=[1, 2, 4], help="agent counts N")
    p.add_argument("--repeats", type=int, default=7, help="launches per N (median shown)")
    p.add_argument("--quick", action="store_true",
                   help="N = 1 only: one launch, and one with TensorBoard")


def launch(agents: int, extra: tuple[str, ...] = (), tensorboard: bool = False
           ) -> dict[str, float]:
    """One ``qtrl train`` launch of ``agents`` agents (TensorBoard events off unless
    ``tensorboard``): seconds to its training loop (``loop``) and to the end of
    its first update (``first_update``)."""
    with tempfile.TemporaryDirectory(prefix="qtrl-startup-") as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, *extra, "-m", "qtrl", "train", "--preset", "cartpole",
               "--agents", str(agents), "--total-steps", str(2 * agents * STEPS_PER_AGENT_UPDATE),
               *([] if tensorboard else ["--no-tensorboard"]), "--out", str(out)]
        launched = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
        started = json.loads((out / "summary.json").read_text())["train_started_unix"]
        with open(out / "progress.csv", newline="") as fh:
            first = next(csv.DictReader(fh))
        return {"loop": started - launched,
                "first_update": started + float(first["time/wall_s"]) - launched,
                "stderr": proc.stderr}


def bare_torch() -> float:
    """Seconds from launching ``python -c "import torch"`` to the end of its import
    (the interpreter's exit left out): the floor under any launch."""
    launched = time.time()
    done = subprocess.run([sys.executable, "-c", "import torch, time; print(time.time())"],
                          check=True, capture_output=True, text=True).stdout
    return float(done) - launched


def byte_compiled() -> bool:
    """Whether qtrl's modules have current byte-code (else each launch compiles them)."""
    from .. import train
    source = Path(train.__file__)
    cached = Path(importlib.util.cache_from_source(str(source)))
    return cached.exists() and cached.stat().st_mtime >= source.stat().st_mtime


def imports(text: str) -> dict[str, float]:
    """Seconds of the named imports (cumulative) in ``-X importtime`` output."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        name = name.strip()
        if name in _NAMED and cumulative.strip().isdigit():
            found[name] = max(found.get(name, 0.0), int(cumulative) / 1e6)
    return found


def run(args: argparse.Namespace) -> int:
    if args.quick:
        args.agents, args.repeats = [1], 1
    if any(n < 1 for n in args.agents) or args.repeats < 1:
        print("qtrl bench startup: --agents and --repeats must be positive", file=sys.stderr)
        return 2
    print(f"Start-up of `qtrl train --preset cartpole`, launch to first update; "
          f"{os.cpu_count()} cores; median of {args.repeats} launch(es) per N")
    print(f"{'agents':>6}  {'to training loop (s)':>20}  {'to first update (s)':>19}  "
          f"{'goal (s)':>8}  verdict")
    firsts = {}
    for n, tensorboard in [(n, False) for n in args.agents] + [(1, True)]:
        runs = [launch(n, tensorboard=tensorboard) for _ in range(args.repeats)]
        loop = statistics.median(r["loop"] for r in runs)
        first = firsts[n, tensorboard] = statistics.median(r["first_update"] for r in runs)
        goal = 1.5 if n == 1 else 1.5 + 0.3 * n
        label = f"{n}, TB" if tensorboard else str(n)
        print(f"{label:>6}  {loop:>20.2f}  {first:>19.2f}  {goal:>8.2f}  "
              f"{'met' if first <= goal else 'NOT met'}")
    print("TB: TensorBoard events on (the command's default; the other rows pass "
          "--no-tensorboard)")
    floor = statistics.median(bare_torch() for _ in range(args.repeats))
    one = firsts.get((1, False), firsts[1, True])   # without TensorBoard where measured
    print(f"baseline: `python -c 'import torch'` imports torch {floor:.2f} s after launch "
          f"(median); one "
          f"agent's first update comes {one - floor:.2f} s after that ({one / floor:.2f}x). "
          f"qtrl's own modules {'are' if byte_compiled() else 'are NOT'} byte-compiled "
          "(scripts/setup.sh compiles them)")
    named = imports(launch(1, ("-X", "importtime"))["stderr"])
    print("imports of one launch (cumulative s, under -X importtime, which slows them): "
          + ", ".join(f"{k} {v:.2f}" for k, v in sorted(named.items(), key=lambda kv: -kv[1])))
    print("local agents are forked from the launcher (its imports inherited) when they "
          "run on one torch thread; torch._dynamo, which any torch.optim optimizer imports, "
          f"is {'imported' if 'torch._dynamo' in named else 'not imported'} (qtrl.adam)")
    return 0

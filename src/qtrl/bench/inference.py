"""Inference throughput: the exported classical policy on CPU, torch eager vs torch.export vs ONNX Runtime.

What is measured, per preset policy (cartpole 4-128-2, minigrid 147-32-3) and
batch size (1, 64, 4096): the wall time of one call ``logits = policy(obs)``
with ``obs`` a ``(batch, obs_dim)`` float32 numpy array and the logits returned
as numpy — what a deployment that gets its observations from Gymnasium runs.
The conversions are inside the timed call for every backend (for torch a
zero-copy ``torch.from_numpy`` and ``.numpy()``).

Backends, each on the file that ``qtrl export`` writes:

* torch eager: the :func:`~qtrl.presets.build_policy` network rebuilt from the
  ``state_dict`` export, under ``torch.inference_mode``;
* torch.export: ``torch.export.load(FILE.pt2).module()``, under ``torch.inference_mode``;
* ONNX Runtime: an ``InferenceSession`` on ``FILE.onnx``, CPU provider,
  sequential execution.

The weights are generated once by :class:`~qtrl.generator.QuantumTrain` with
the preset's circuit (fresh parameters: inference cost does not depend on their
values). Threads: torch pinned to 1, ORT ``intra_op_num_threads = 1``.
Per (preset, batch, backend): calls are grouped so that one timed group lasts at
least ``--min-time``; the figure is the median over ``--repeats`` groups after a
warm-up group.

Reproduce: ``qtrl bench inference`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError

__all__ = [
    "BACKENDS",
    "BATCHES",
    "PRESET_NAMES",
    "format_table",
    "measure",
    "register_args",
    "run",
    "time_call",
]

log = logging.getLogger(__name__)

BATCHES: list[int] = [1, 64, 4096]
PRESET_NAMES: list[str] = ["cartpole-paper", "minigrid-paper"]
BACKENDS: list[tuple[str, str]] = [("torch eager", "state_dict"),
                                   ("torch.export", "exported"),
                                   ("ONNX Runtime", "onnx")]
"""(column name, export format it runs)."""


def register_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 repeats of >= 2 ms each (numbers are noisy)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed groups per cell (default 7, --quick 2); the median is shown")
    p.add_argument("--min-time", type=float, default=None, metavar="S",
                   help="seconds one timed group lasts at least (default 0.05, --quick 0.002)")
    p.add_argument("--batches", type=int, nargs="+", default=None, metavar="B",
                   help=f"batch sizes (default: {' '.join(map(str, BATCHES))})")
    p.add_argument("--presets", nargs="+", choices=PRESET_NAMES, default=PRESET_NAMES,
                   help="preset policies (default: both)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="also write the rows as JSON to FILE")


# ---------------------------------------------------------------- measurement


def time_call(call: Callable[[], Any], repeats: int, min_time: float) -> float:
    """Median seconds of one ``call()``: groups of ``n`` calls lasting >= ``min_time``
    (``n`` found by doubling during the warm-up), median over ``repeats`` groups."""
    n = 1
    while True:                                   # warm-up and calibration
        start = time.perf_counter()
        for _ in range(n):
            call()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            break
        n = n * 2 if elapsed < min_time / 8 else max(n + 1, int(n * min_time / elapsed * 1.1))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            call()
        times.append((time.perf_counter() - start) / n)
    return statistics.median(times)


def _preset_policy(name: str, seed: int = 0) -> tuple[torch.nn.Module, Any]:
    """The preset's policy with Quantum-Train-generated weights, and its metadata."""
    from ..export import PolicyMeta
    from ..generator import QuantumTrain
    from ..presets import PRESETS, build_policy
    from ..rl.env import env_dims

    preset = PRESETS[name]
    obs_dim, n_actions = env_dims(preset.env_id, preset.n_actions)
    torch.manual_seed(seed)
    qt = QuantumTrain(build_policy(obs_dim, preset.hidden, n_actions), preset.layers,
                      preset.mapping_hidden, gamma=preset.qt_gamma, beta=preset.qt_beta,
                      alpha=preset.qt_alpha)
    policy = qt.materialize()
    return policy, PolicyMeta.from_policy(policy, preset.env_id, preset.max_steps,
                                          "quantum-train")


def measure(presets: list[str], batches: list[int], repeats: int,
            min_time: float) -> list[dict[str, Any]]:
    """One row per (preset, batch): ``us_<format>`` (µs per call) and
    ``obs_per_s_<format>`` for each backend of :data:`BACKENDS`, torch at 1 thread,
    ORT at 1 intra-op thread."""
    from ..export import FORMATS, export_policy, load_exported

    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="qtrl-bench-inference-") as tmp:
            for name in presets:
                policy, meta = _preset_policy(name)
                runners = {}
                for _, fmt in BACKENDS:
                    path = export_policy(policy, Path(tmp) / f"{name}{FORMATS[fmt]}", fmt, meta)
                    runners[fmt] = load_exported(path, threads=1)
                rng = np.random.default_rng(0)
                for batch in batches:
                    obs = rng.standard_normal((batch, meta.obs_dim), dtype=np.float32)
                    row: dict[str, Any] = {"preset": name, "policy": meta.architecture,
                                           "batch": batch}
                    for _, fmt in BACKENDS:
                        run_policy = runners[fmt]._run     # skip the wrapper's input checks

                        def call(run_policy: Callable = run_policy,
                                 obs: np.ndarray = obs) -> None:
                            run_policy(obs)
                        seconds = time_call(call, repeats, min_time)
                        row[f"us_{fmt}"] = seconds * 1e6
                        row[f"obs_per_s_{fmt}"] = batch / seconds
                        log.info("%s batch %d %s: %.1f us", name, batch, fmt, seconds * 1e6)
                    rows.append(row)
    finally:
        torch.set_num_threads(old_threads)
    return rows


# ---------------------------------------------------------------- printing


def _rate(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.0f}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as one text table: per backend µs per batch and observations/s."""
    head1 = f"{'':<9} {'':<9} {'':>5}"
    head2 = f"{'preset':<9} {'policy':<9} {'batch':>5}"
    for title, _ in BACKENDS:
        head1 += f" | {title:^19}"
        head2 += f" | {'µs/batch':>9} {'obs/s':>9}"
    lines = [head1, head2, "-" * len(head2)]
    for r in rows:
        line = f"{r['preset']:<9} {r['policy']:<9} {r['batch']:>5}"
        for _, fmt in BACKENDS:
            line += f" | {r[f'us_{fmt}']:>9.1f} {_rate(r[f'obs_per_s_{fmt}']):>9}"
        lines.append(line)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    repeats = args.repeats or (2 if args.quick else 7)
    min_time = args.min_time if args.min_time is not None else (0.002 if args.quick else 0.05)
    batches = args.batches or BATCHES
    if repeats < 1 or min_time <= 0 or any(b < 1 for b in batches):
        raise UserError("--repeats and --batches must be positive integers, --min-time a "
                        "positive number of seconds")
    rows = measure(list(args.presets), batches, repeats, min_time)
    import onnxruntime

    print(f"Inference: exported policy, obs (batch, obs_dim) float32 numpy -> logits numpy; "
          f"CPU, torch {torch.__version__} at 1 thread, ONNX Runtime {onnxruntime.__version__} "
          f"at intra_op_num_threads=1;\nmedian of {repeats} timed groups of >= "
          f"{min_time * 1e3:g} ms after a warm-up. obs/s = batch / time per batch.")
    print(format_table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps({"repeats": repeats, "min_time_s": min_time,
                                         "torch": torch.__version__,
                                         "onnxruntime": onnxruntime.__version__,
                                         "rows": rows}, indent=2) + "\n")
    return 0

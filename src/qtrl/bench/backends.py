"""Backends and gradient methods: wall time and circuit evaluations of one update.

For the CartPole preset's generator (policy 4-128-2, k = 898, n = 10 qubits,
L = 5 ring-U3 layers, mapping [10, 10, 10]) and each (backend, shots, noise,
gradient method): the wall time of one ``QuantumTrain.generate_flat()`` (forward)
and of the backward pass of a weighted sum of the weights (what one training
update pays for the generator), median over repeats after a warm-up, and the
circuit evaluations it costs: forward circuits, shifted circuits of the backward
pass (all agents), and the largest share of one agent when ``--agents N`` split
the backward pass (see :mod:`qtrl.quantum.estimators`). ``shots/update`` is
the number of circuit executions a QPU would run (evaluations × shots).

``backprop`` (autograd through the exact torch simulator) is the baseline.
With ``--noise``, torch ``backprop`` through our exact density-matrix simulator
(:mod:`qtrl.quantum.density`) is measured next to the noisy Aer rows, the same
noise model. A backend whose SDK is missing is listed as such and skipped.

Reproduce: ``qtrl bench backends`` (add ``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

from ..generator import QuantumTrain
from ..presets import PRESETS, build_policy
from ..quantum.backends import MissingExtraError

__all__ = ["Case", "cases", "format_table", "measure_case", "register_args", "run"]

ALL_BACKENDS = ["torch", "pennylane", "pennylane:lightning.qubit", "qiskit"]


@dataclass(frozen=True)
class Case:
    """One measured configuration."""

    backend: str
    shots: int | None
    noise: str | None
    grad: str


def cases(backends: list[str], shots: list[int | None], grads: list[str],
          noise: str | None, noise_grads: list[str]) -> list[Case]:
    """The backprop baseline, then every (backend, shots, grad); noise rows on qiskit
    for the methods in ``noise_grads``, preceded by torch backprop with that noise
    (exact density matrices; at the end if qiskit is not measured)."""
    out = [Case("torch", None, None, "backprop")]
    noisy_torch = [Case("torch", None, noise, "backprop")] if noise else []
    for backend in backends:
        if backend == "qiskit":
            out += noisy_torch
            noisy_torch = []
        for s in shots:
            for grad in grads:
                out.append(Case(backend, s, None, grad))
                if noise and backend == "qiskit" and grad in noise_grads:
                    out.append(Case(backend, s, noise, grad))
    return out + noisy_torch


def _generator(case: Case, spsa_samples: int, seed: int) -> QuantumTrain:
    preset = PRESETS["cartpole-paper"]
    torch.manual_seed(seed)
    policy = build_policy(4, preset.hidden, 2)
    options = {"samples": spsa_samples} if case.grad == "spsa" else None
    return QuantumTrain(policy, preset.layers, preset.mapping_hidden, gamma=preset.qt_gamma,
                        beta=preset.qt_beta, alpha=preset.qt_alpha, backend=case.backend,
                        shots=case.shots, noise=case.noise, grad=case.grad, seed=seed,
                        grad_options=options)


def measure_case(case: Case, repeats: int, agents: int = 1, spsa_samples: int = 1,
                 seed: int = 0) -> dict[str, Any]:
    """Forward and backward milliseconds (medians) and circuit evaluations of one update."""
    qt = _generator(case, spsa_samples, seed)
    w = torch.randn(qt.k, generator=torch.Generator().manual_seed(seed))
    fwd, bwd = [], []
    for i in range(repeats + 1):  # the first is a warm-up
        qt.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        out = qt.generate_flat()
        t1 = time.perf_counter()
        (out * w).sum().backward()
        t2 = time.perf_counter()
        if i:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
    est = qt.estimator
    circuits = qt.chunks
    backward = est.counts.last_backward_total if est is not None else 0
    per_agent = -(-backward // agents)  # the largest contiguous share
    evaluations = circuits + backward
    return {"case": case, "n": qt.n_qubits, "layers": qt.qnn.layers,
            "forward_ms": statistics.median(fwd) * 1e3,
            "backward_ms": statistics.median(bwd) * 1e3,
            "forward_circuits": circuits, "backward_circuits": backward,
            "per_agent": circuits + per_agent,
            "shots_per_update": evaluations * case.shots if case.shots else None}


def format_table(rows: list[dict[str, Any]], agents: int) -> str:
    head = (f"{'backend':<26} {'shots':>6} {'noise':<18} {'grad':<16} {'fwd ms':>9} "
            f"{'bwd ms':>10} {'total ms':>10} {'circ fwd':>8} {'circ bwd':>8} "
            f"{f'per agent (N={agents})':>20} {'shots/update':>13}")
    lines = [head]
    for r in rows:
        c = r["case"]
        if "missing" in r:
            lines.append(f"{c.backend:<26} {'-':>6} {'-':<18} {'-':<16} not installed: "
                         f"{r['missing']}")
            continue
        shots = str(c.shots) if c.shots else "exact"
        spu = f"{r['shots_per_update']:,}" if r["shots_per_update"] else "-"
        lines.append(
            f"{c.backend:<26} {shots:>6} {c.noise or '-':<18} {c.grad:<16} "
            f"{r['forward_ms']:9.1f} {r['backward_ms']:10.1f} "
            f"{r['forward_ms'] + r['backward_ms']:10.1f} {r['forward_circuits']:>8} "
            f"{r['backward_circuits']:>8} {r['per_agent']:>20} {spu:>13}")
    return "\n".join(lines)


def register_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="torch and qiskit only, 1024 shots only")
    p.add_argument("--backends", nargs="+", default=ALL_BACKENDS, metavar="B",
                   help=f"backends to measure (default: {' '.join(ALL_BACKENDS)})")
    p.add_argument("--shots", nargs="+", default=["exact", "1024"], metavar="S",
                   help="shots per circuit, 'exact' for none (default: exact 1024)")
    p.add_argument("--grads", nargs="+", default=["parameter-shift", "spsa"], metavar="G",
                   help="gradient methods besides the backprop baseline "
                        "(default: parameter-shift spsa)")
    p.add_argument("--noise", default="depolarizing:0.01",
                   help="extra rows with this noise: torch backprop (exact density "
                        "matrices) and qiskit (Aer) ('none' to skip; default "
                        "depolarizing:0.01)")
    p.add_argument("--noise-grads", nargs="+", default=["spsa"], metavar="G",
                   help="gradient methods measured with noise (default spsa: a noisy Aer "
                        "circuit of 10 qubits costs seconds, parameter-shift runs 700 of them)")
    p.add_argument("--spsa-samples", type=int, default=1, metavar="K",
                   help="SPSA directions per update (default 1)")
    p.add_argument("--agents", type=int, default=1, metavar="N",
                   help="report each agent's share of circuits when N agents split the "
                        "backward pass (default 1)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats after one warm-up (default 1); the median is shown")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: reproducible figures)")


def _parse_shots(values: list[str]) -> list[int | None]:
    from ..errors import UserError

    out: list[int | None] = []
    for v in values:
        if v.lower() in ("exact", "none"):
            out.append(None)
            continue
        try:
            s = int(v)
        except ValueError:
            s = 0
        if s < 1:
            raise UserError(f"--shots takes positive integers or 'exact', got {v!r}")
        out.append(s)
    return out


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError

    repeats = args.repeats if args.repeats is not None else 1
    if repeats < 1 or args.threads < 1 or args.agents < 1 or args.spsa_samples < 1:
        raise UserError("--repeats, --threads, --agents and --spsa-samples must be positive")
    unknown = [b for b in args.backends if b not in ALL_BACKENDS]
    if unknown:
        raise UserError(f"unknown backend(s) {', '.join(unknown)}; choose from "
                        f"{', '.join(ALL_BACKENDS)}")
    bad = [g for g in args.grads + args.noise_grads if g not in ("parameter-shift", "spsa")]
    if bad:
        raise UserError(f"unknown gradient method(s) {', '.join(bad)}; choose from "
                        f"parameter-shift, spsa (backprop is always the baseline)")
    backends = [b for b in args.backends if b in ("torch", "qiskit")] if args.quick \
        else args.backends
    shots = [1024] if args.quick else _parse_shots(args.shots)
    noise = None if args.noise.lower() in ("", "none") else args.noise
    old_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    missing: set[str] = set()
    try:
        for case in cases(backends, shots, args.grads, noise, args.noise_grads):
            if case.backend in missing:
                continue
            try:
                rows.append(measure_case(case, repeats, args.agents, args.spsa_samples))
            except MissingExtraError as err:
                missing.add(case.backend)
                rows.append({"case": case, "missing": str(err).rsplit(": ", 1)[-1]})
    finally:
        torch.set_num_threads(old_threads)
    first = next((r for r in rows if "missing" not in r), None)
    size = f"n = {first['n']}, L = {first['layers']}" if first else ""
    print(f"Backends: CartPole preset generator ({size}, ring-u3, float32), "
          f"generate_flat() + backward of a weighted sum; {args.threads} torch thread(s); "
          f"median of {repeats} after 1 warm-up; SPSA with {args.spsa_samples} direction(s).")
    print("circ fwd / circ bwd: circuits evaluated by the forward / backward pass of one "
          "update; per agent: forward + the largest share of the backward pass.")
    print(format_table(rows, args.agents))
    return 0

"""``qtrl circuit RUN_DIR --qasm FILE [--probs FILE.npy]``: a trained run's circuit,
for another quantum stack or a real device.

``--qasm`` writes the circuit with its trained angles as OpenQASM 2.0 (our wire
``j`` is ``q[n-1-j]``, so Qiskit's little-endian basis index is our weight
index; see :mod:`qtrl.quantum.qasm`). ``--probs`` writes the exact, noiseless
probabilities of the trained circuits in weight order: a float64 ``.npy`` of
shape ``(k,)``, entry ``i`` feeding generated weight ``i`` (with ``--chunks Q``,
chunk ``c``'s circuit gives entries ``c·ceil(k/Q)`` onwards). Whatever backend the
run trained on, the probabilities come from our exact simulator in float64.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from ..errors import UserError

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "circuit", help="write a run's trained circuit as OpenQASM 2.0 (and its probabilities)",
        description="Write RUN_DIR's trained Quantum-Train circuit with its angles as "
                    "OpenQASM 2.0 (our wire j is q[n-1-j], so a basis index read in Qiskit's "
                    "order is the weight index), and optionally the exact probabilities "
                    "of the weights' basis states as a float64 .npy of shape (k,).")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a qtrl train run directory")
    p.add_argument("--qasm", type=Path, metavar="FILE", help="OpenQASM 2.0 file to write")
    p.add_argument("--probs", type=Path, metavar="FILE.npy",
                   help="probabilities in weight order, float64 (k,), to write")
    p.add_argument("--chunk", type=int, default=0, metavar="I",
                   help="which circuit to write with --chunks Q: 0..Q-1 (default: 0)")
    p.add_argument("--force", action="store_true", help="overwrite files that exist")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..run.directory import atomic_write_bytes
    from ..train import load_trained_model

    if args.qasm is None and args.probs is None:
        raise UserError("nothing to write: give --qasm FILE and/or --probs FILE.npy")
    for path in (args.qasm, args.probs):
        if path is not None and path.exists() and not args.force:
            raise UserError(f"{path} already exists; choose another name or add --force")
    model, config = load_trained_model(args.run_dir)
    if config.classical:
        raise UserError(f"{args.run_dir}: run was trained with --classical: it has no circuit")
    if not 0 <= args.chunk < model.chunks:
        raise UserError(f"--chunk {args.chunk}: the run has {model.chunks} circuit(s); choose "
                        f"0..{model.chunks - 1}")
    outputs: list[tuple[Path, bytes, str]] = []
    if args.qasm is not None:
        what = f"OpenQASM 2.0, circuit {args.chunk} of {model.chunks}, {model.n_qubits} qubits"
        outputs.append((args.qasm, model.to_qasm(args.chunk).encode(), what))
    if args.probs is not None:
        with torch.no_grad():
            probs = model.double().probabilities().numpy().astype(np.float64)
        buffer = io.BytesIO()
        np.save(buffer, probs)
        outputs.append((args.probs, buffer.getvalue(),
                        f"probabilities of the {model.k} weights, float64"))
    for path, data, what in outputs:
        try:
            atomic_write_bytes(path, data)
        except OSError as err:
            raise UserError(f"cannot write {path}: {err.strerror or err}") from None
        print(f"wrote {path} ({what})")
    return 0

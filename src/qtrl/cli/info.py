"""``qtrl info``: the parameter table of a preset or of any environment's policy."""

from __future__ import annotations

import argparse

from ..errors import UserError
from ..generator import QuantumTrain
from ..presets import PRESETS, build_policy


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="parameter counts of a Quantum-Train policy",
                       description="Print target weights k, qubits n, layers, QNN, mapping "
                                   "and total trainable parameters, and the compression.")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a reference preset")
    p.add_argument("--env", metavar="ENV_ID", help="any Gymnasium environment id")
    p.add_argument("--hidden", type=int, nargs="+", metavar="H", help="policy hidden sizes")
    p.add_argument("--layers", type=int, help="ansatz layers (default: preset's, else 5)")
    p.add_argument("--mapping-hidden", type=int, nargs="+", metavar="H",
                   help="mapping-model hidden sizes (default: preset's, else 10 10 10)")
    p.add_argument("--chunks", type=int, default=1, help="circuits (chunks) Q")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..rl.env import env_dims  # imports gymnasium only when needed

    if args.preset is None and args.env is None:
        raise UserError("give --preset (one of: " + ", ".join(sorted(PRESETS)) + ") or --env ENV_ID")
    preset = PRESETS[args.preset] if args.preset else None
    env_id = args.env or preset.env_id
    hidden = tuple(args.hidden) if args.hidden else (preset.hidden if preset else (64,))
    layers = args.layers or (preset.layers if preset else 5)
    mapping = tuple(args.mapping_hidden) if args.mapping_hidden else (
        preset.mapping_hidden if preset else (10, 10, 10))
    for name, values in (("--hidden", hidden), ("--mapping-hidden", mapping),
                         ("--layers", (layers,)), ("--chunks", (args.chunks,))):
        if any(v < 1 for v in values):
            raise UserError(f"{name} {' '.join(map(str, values))}: sizes must be positive integers")
    obs_dim, n_actions = env_dims(env_id, preset.n_actions if preset else None)
    qt = QuantumTrain(build_policy(obs_dim, hidden, n_actions), layers, mapping,
                      chunks=args.chunks)
    counts = qt.parameter_counts()
    policy = "-".join(map(str, (obs_dim, *hidden, n_actions)))
    rows = [("environment", env_id), ("policy", policy),
            ("target weights k", counts.target_weights), ("qubits n", counts.qubits),
            ("chunks Q", counts.chunks), ("layers L", counts.layers),
            ("mapping hidden", list(mapping)), ("QNN parameters", counts.qnn),
            ("mapping parameters", counts.mapping), ("total trainable", counts.total),
            ("compression k/total", f"{counts.compression:.2f}x")]
    width = max(len(r[0]) for r in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0

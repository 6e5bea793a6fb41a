"""``qtrl info``: the parameter table of a preset or of any environment's policy, and
the memory its training needs, computed from the sizes without building anything."""

from __future__ import annotations

import argparse

from ..errors import UserError
from ..presets import PRESETS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="parameter counts of a Quantum-Train policy",
                       description="Print target weights k, qubits n, layers, QNN, mapping "
                                   "and total trainable parameters, and the compression.")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a preset")
    p.add_argument("--env", metavar="ENV_ID", help="any Gymnasium environment id")
    p.add_argument("--hidden", type=int, nargs="+", metavar="H", help="policy hidden sizes")
    p.add_argument("--layers", type=int, help="ansatz layers (default: preset's, else 5)")
    p.add_argument("--mapping-hidden", type=int, nargs="+", metavar="H",
                   help="mapping-model hidden sizes (default: preset's, else 10 10 10)")
    p.add_argument("--chunks", type=int, default=1, help="circuits (chunks) Q")
    p.add_argument("--env-kwarg", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="a multi-agent task's parallel_env() arguments")
    p.add_argument("--policy", choices=("shared", "per-agent", "shared-bits"),
                   default=None, help="a multi-agent task's policy layout (default: the "
                   "preset's, else shared)")
    p.add_argument("--critic-input", choices=("global", "local"), default=None,
                   help="a multi-agent task's critic input (default: global)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import TrainConfig, is_multiagent
    from ..presets import ALGO_DEFAULTS
    from ..quantum.memory import human_bytes
    from ..rl.env import env_spec  # imports gymnasium only when needed
    from ..run.memory_estimate import estimate_memory, model_counts

    if args.preset is None and args.env is None:
        raise UserError("give --preset (one of: " + ", ".join(sorted(PRESETS)) + ") or --env ENV_ID")
    given = {k: v for k, v in (("hidden", args.hidden), ("layers", args.layers),
                               ("mapping_hidden", args.mapping_hidden)) if v is not None}
    for name, values in (*given.items(), ("chunks", (args.chunks,))):
        values = values if isinstance(values, list | tuple) else (values,)
        if any(v < 1 for v in values):
            raise UserError(f"--{name.replace('_', '-')} {' '.join(map(str, values))}: sizes "
                            f"must be positive integers")
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    if args.preset is None:
        given = {**ALGO_DEFAULTS["ppo"], "env": args.env, **given}
    elif args.env is not None:
        given["env"] = args.env
    if is_multiagent(args.env if args.env is not None else PRESETS[args.preset].env_id):
        if args.env_kwarg or args.preset is None:   # else the preset's
            given["env_kwarg"] = tuple(args.env_kwarg)
        if args.policy is not None:
            given["policy"] = args.policy
        given["critic_input"] = args.critic_input
        return _players_table(TrainConfig.from_preset(args.preset, chunks=args.chunks,
                                                      **given))
    config = TrainConfig.from_preset(args.preset, chunks=args.chunks, **given)
    spec = env_spec(config.env, config.n_actions)
    # From the sizes alone: nothing is built, so any size answers at once.
    counts = model_counts(config, spec.obs_dim, spec.n_actions, spec.continuous)
    rows: list[tuple[str, object]] = [("environment", config.env), ("algorithm", config.algo)]
    parts = ([("actor", counts["actor"], spec.n_actions), ("critic", counts["critic"], 1)]
             if "actor" in counts else [("policy", counts, spec.n_actions)])
    for name, part, outputs in parts:
        hidden = config.hidden if name != "critic" else (config.critic_hidden or config.hidden)
        rows.append((name, "-".join(map(str, (spec.obs_dim, *hidden, outputs)))))
        if "qubits" not in part:       # trained directly (a classical critic)
            rows.append((f"{name} trainable (classical)", part["total"]))
            continue
        prefix = "" if name == "policy" else f"{name} "
        rows += [(f"{prefix}target weights k", part["target_weights"]),
                 (f"{prefix}qubits n", part["qubits"]), (f"{prefix}chunks Q", part["chunks"]),
                 (f"{prefix}layers L", part["layers"]),
                 (f"{prefix}mapping hidden", list(config.mapping_hidden)),
                 (f"{prefix}QNN parameters", part["qnn"]),
                 (f"{prefix}mapping parameters", part["mapping"]),
                 (f"{prefix}total trainable", part["total"])]
    if "actor" in counts:
        if counts["log_std"]:
            rows.append(("Gaussian log-std (classical)", counts["log_std"]))
        rows += [("classical actor-critic weights", counts["target_weights"]),
                 ("total trainable", counts["total"])]
    rows.append(("compression k/total", f"{counts['compression']:.2f}x"))
    memory = estimate_memory(config, spec.obs_dim, spec.n_actions, spec.continuous)
    rows.append(("training memory (one agent)",
                 f"about {human_bytes(memory.total)} ({memory.describe()})"))
    width = max(len(r[0]) for r in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _players_table(config) -> int:
    """A multi-agent task: the model is built (small) and its counts printed, the
    Quantum-Train model's beside the classical networks of the same layout."""
    from dataclasses import replace

    from ..loops.common import build
    from ..rl.multiagent import player_spec

    spec = player_spec(config.env, config.env_kwarg)
    counts = build(config, 0).model.parameter_counts()
    classical = build(replace(config, classical=True), 0).model.parameter_counts()
    rows: list[tuple[str, object]] = [
        ("environment", f"{config.env} {' '.join(config.env_kwarg)}".strip()),
        ("task agents (players)", ", ".join(spec.players)),
        ("algorithm", (f"{config.algo}, critic input {config.critic_input or 'global'} "
                       f"({'IPPO' if config.critic_input == 'local' else 'MAPPO'})")),
        ("policy layout", config.policy),
        ("actor trainable", counts["actor"]["total"]),
        ("actor generated values", counts["actor"]["target_weights"]),
        ("actor classical weights", classical["actor"]["total"]),
        ("critic trainable", counts["critic"]["total"]),
        ("critic classical weights", classical["critic"]["total"]),
        ("total trainable", counts["total"]),
        ("classical actor-critic weights", classical["total"]),
        ("compression classical/total", f"{classical['total'] / counts['total']:.2f}x")]
    width = max(len(r[0]) for r in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0

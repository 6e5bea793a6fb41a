"""``qtrl export RUN_DIR``: the trained run's classical policy as a deployable file
(``state_dict`` ``.pt``, ``torch.export`` ``.pt2`` or ONNX ``.onnx``), no quantum part.

Also home of :func:`run_eval_file`, the ``qtrl eval FILE.onnx|FILE.pt2|FILE.pt``
branch of ``qtrl eval``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError

__all__ = ["is_policy_file", "print_players", "register", "run", "run_eval_file"]

FORMAT_CHOICES = ("state_dict", "exported", "onnx")   # = qtrl.export.FORMATS (no torch import)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a run's classical policy as state_dict, torch.export or ONNX",
        description="Write RUN_DIR's generated classical policy (no quantum part) as a "
                    "state_dict (.pt, loads with torch.load(weights_only=True)), a "
                    "torch.export program (.pt2) or a single-file ONNX model (.onnx); all "
                    "take observations (batch, obs_dim) float32 with any batch size and "
                    "return logits (batch, n_actions).")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a qtrl train run directory")
    p.add_argument("--format", dest="fmt", metavar="{" + ",".join(FORMAT_CHOICES) + "}",
                   default=None, help="file format (default: from the suffix of -o, else onnx)")
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="file to write (default: RUN_DIR/policy.onnx|.pt2|.pt)")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.set_defaults(func=run)


def _choose_format(fmt: str | None, output: Path | None) -> str:
    from ..export import FORMATS, SUFFIXES

    if fmt is not None and fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    if output is None:
        return fmt or "onnx"
    suffix = output.suffix.lower()
    implied = SUFFIXES.get(suffix)
    if fmt is None:
        if implied is None:
            raise UserError(f"-o {output}: cannot tell the format from {suffix or 'no suffix'!r}; "
                            f"give --format ({', '.join(FORMATS)}) or a "
                            f"{'/'.join(FORMATS.values())} file name")
        return implied
    if implied is not None and implied != fmt:
        raise UserError(f"-o {output}: a {suffix} file would be read back as {implied}, "
                        f"not {fmt}; name it *{FORMATS[fmt]}")
    if implied is None:
        raise UserError(f"-o {output}: --format {fmt} files must end in {FORMATS[fmt]} "
                        f"(so that qtrl eval and load_exported recognise them)")
    return fmt


def run(args: argparse.Namespace) -> int:
    from ..config import is_multiagent
    from ..export import FORMATS, PolicyMeta, export_policy
    from ..rl.env import env_spec
    from ..train import load_policy

    fmt = _choose_format(args.fmt, args.output)
    output = args.output or Path(args.run_dir) / f"policy{FORMATS[fmt]}"
    policy, config = load_policy(args.run_dir)
    if is_multiagent(config.env):
        return _export_players(policy, config, output, fmt, args.force)
    meta = PolicyMeta.from_policy(policy, config.env, config.max_steps, config.mode,
                                  continuous=env_spec(config.env, config.n_actions).continuous)
    path = export_policy(policy, output, fmt, meta, overwrite=args.force)
    print(f"wrote {path} ({fmt}, policy {meta.architecture} for {meta.env_id}, "
          f"{path.stat().st_size} bytes)")
    return 0


def _export_players(policy, config, output: Path, fmt: str, force: bool) -> int:
    """A multi-agent run: one file per distinct policy network. Shared: one, taking
    ``[local observation | player one-hot]``; per-agent and shared-bits: one per
    player (task agent), ``<name>_<player><suffix>``, each taking the same row."""
    from dataclasses import replace

    from ..export import PolicyMeta, export_policy
    from ..rl.multiagent import player_spec

    names = player_spec(config.env, config.env_kwarg).players
    blocks = getattr(policy, "blocks", None)
    if blocks is None:
        nets = [(output, policy, None)]
    else:
        nets = [(output.with_name(f"{output.stem}_{name}{output.suffix}"), block.net, name)
                for name, block in zip(names, blocks, strict=True)]
    for path, net, player in nets:
        meta = replace(PolicyMeta.from_policy(net, config.env, config.max_steps, config.mode),
                       env_kwarg=tuple(config.env_kwarg), players=names, player=player)
        written = export_policy(net, path, fmt, meta, overwrite=force)
        print(f"wrote {written} ({fmt}, {config.policy} policy {meta.architecture} for "
              f"{meta.env_id}, input [local observation | player one-hot], "
              f"{written.stat().st_size} bytes)")
    return 0


# ------------------------------------------------------------------------------------
# qtrl eval FILE
# ------------------------------------------------------------------------------------

def is_policy_file(path: Path | str) -> bool:
    """Whether ``qtrl eval PATH`` means an exported policy file rather than a run
    directory: a path that is not a directory and ends in .onnx, .pt2, .pt or .pth."""
    path = Path(path)
    return not path.is_dir() and path.suffix.lower() in (".onnx", ".pt2", ".pt", ".pth")


def run_eval_file(args: argparse.Namespace) -> int:
    """``qtrl eval FILE [FILE ...]``: play episodes with exported policy files (ONNX
    on ONNX Runtime): one file of a single-agent task, or a multi-agent task's
    files (:mod:`qtrl.exported_team`).

    Reads ``args.paths`` (the files), ``args.episodes``, ``args.greedy``,
    ``args.seed`` and, when present, ``args.env`` (default: the file's).
    """
    import torch

    from ..config import is_multiagent
    from ..export import evaluate_exported, load_exported

    torch.set_num_threads(1)
    how = "greedy" if args.greedy else "sampled"
    env = getattr(args, "env", None)
    files = [load_exported(path, threads=1) for path in args.paths]
    if len(files) > 1 or is_multiagent(files[0].meta.env_id):   # a team's file(s)
        if env is not None:
            raise UserError(f"--env {env}: not for a multi-agent task's files (they name "
                            f"their task)")
        from ..exported_team import evaluate_team

        per_player, meta = evaluate_team(files, args.episodes, greedy=args.greedy,
                                         seed=args.seed)
        names = ", ".join(Path(p).name for p in args.paths)
        print_players(f"{meta.env_id} ({names}, {how} actions)", per_player, meta.players)
        return 0
    returns, meta = evaluate_exported(files[0], env, args.episodes, greedy=args.greedy,
                                      seed=args.seed)
    std = returns.std(ddof=1) if len(returns) > 1 else 0.0
    print(f"{env or meta.env_id} ({Path(args.paths[0]).name}, {meta.architecture}, {how} actions): "
          f"return {returns.mean():.2f} ± {std:.2f} over {len(returns)} episodes "
          f"(min {returns.min():.2f}, max {returns.max():.2f})")
    return 0


def print_players(title: str, per_player: Any, players: Sequence[str]) -> None:
    """The team's return and each player's, ``per_player (episodes, P)``."""
    team = per_player.sum(1)
    std = team.std(ddof=1) if len(team) > 1 else 0.0
    print(f"{title}: team return {team.mean():.2f} ± {std:.2f} over {len(team)} episodes; "
          f"mean per player {per_player.mean():.2f}")
    for name, returns in zip(players, per_player.T, strict=True):
        print(f"  {name}: return {returns.mean():.2f} ± "
              f"{returns.std(ddof=1) if len(returns) > 1 else 0.0:.2f}")

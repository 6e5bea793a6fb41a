"""``qtrl eval RUN_DIR``: run a trained policy — the generated classical network,
no quantum computation — and print its mean ± std return."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a trained run's classical policy",
                       description="Load RUN_DIR's generated weights into the plain policy "
                                   "network (no circuit is simulated) and play episodes.")
    p.add_argument("paths", type=Path, nargs="+", metavar="RUN_DIR|FILE",
                   help="a qtrl train run directory, or the policy file(s) written by qtrl "
                        "export (.onnx runs on ONNX Runtime, .pt2, .pt): a multi-agent run's "
                        "shared file, or every player's file")
    p.add_argument("--env", metavar="ENV_ID",
                   help="environment for a single-agent policy file (default: the one "
                        "stored in it)")
    p.add_argument("--episodes", type=int, default=100, help="episodes to play (default: 100)")
    p.add_argument("--greedy", action="store_true",
                   help="take the most probable action instead of sampling")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (default: 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..config import is_multiagent
    from ..limits import INT_MAX, check_seed, shown_int
    from ..train import evaluate, load_policy
    from .export import is_policy_file, run_eval_file

    check_seed("--seed", args.seed)
    if not 1 <= args.episodes <= INT_MAX:
        raise UserError(f"--episodes {shown_int(args.episodes)}: must be a positive integer "
                        f"(at most 2**63-1)")
    if len(args.paths) > 1 or is_policy_file(args.paths[0]):
        for path in args.paths:
            if not is_policy_file(path):
                raise UserError(f"{path}: not a policy file (.onnx, .pt2, .pt, .pth); evaluate "
                                f"a run directory alone")
        return run_eval_file(args)
    if args.env is not None:
        raise UserError(f"--env {args.env}: only for an exported policy file; a run is "
                        f"evaluated on the environment it was trained on")
    torch.set_num_threads(1)
    policy, config = load_policy(args.paths[0])
    how = "greedy" if args.greedy else "sampled"
    if is_multiagent(config.env):
        return _eval_players(policy, config, args, how)
    returns = evaluate(policy, config, args.episodes, greedy=args.greedy, seed=args.seed)
    std = returns.std(ddof=1) if len(returns) > 1 else 0.0
    print(f"{config.env} ({config.mode}, {how} actions): return {returns.mean():.2f} ± "
          f"{std:.2f} over {len(returns)} episodes (min {returns.min():.2f}, "
          f"max {returns.max():.2f})")
    return 0


def _eval_players(policy, config, args: argparse.Namespace, how: str) -> int:
    """A multi-agent run: the team's return and each player's (task agent's)."""
    from ..rl.multiagent import evaluate_players, player_spec
    from ..rl.policy import make_actor
    from .export import print_players

    actor = make_actor(policy, dict(policy.named_parameters()))
    per_player = evaluate_players(actor, config.env, config.env_kwarg, config.max_steps,
                                  args.episodes, args.seed, args.greedy)
    print_players(f"{config.env} ({config.mode}, {config.policy} policy, {how} actions)",
                  per_player, player_spec(config.env, config.env_kwarg).players)
    return 0

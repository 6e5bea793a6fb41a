"""A multi-agent task's exported policy files, played together as a team.

``qtrl export`` writes one file per distinct policy network of a multi-agent
run (:mod:`qtrl.cli.export`): the shared layout one file for every player,
per-agent and shared-bits one file per player. Each file takes rows
``[local observation | player one-hot]`` and stores, besides the network's
metadata, the task's id, its ``KEY=VALUE`` arguments, its players and the
player it plays (:class:`~qtrl.export.PolicyMeta`). :func:`evaluate_team`
rebuilds the world from that and plays it with the files alone: no run
directory, no quantum part (ONNX files run on ONNX Runtime).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .config import is_multiagent
from .errors import UserError
from .export import ExportedPolicy, PolicyMeta, load_exported
from .rl.multiagent import evaluate_players

__all__ = ["ExportedTeam", "evaluate_team", "team_of"]

log = logging.getLogger(__name__)


class ExportedTeam:
    """One exported network per player as one actor: a row's logits are those of
    the network its one-hot names (as :class:`~qtrl.rl.players.PlayerNets` in
    training).

    Args:
        policies: the players' files, in one-hot order, each ``(batch, L + P) ->
            (batch, n_actions)``.
    """

    def __init__(self, policies: Sequence[ExportedPolicy]) -> None:
        self.policies = tuple(policies)
        self.local_dim = policies[0].meta.obs_dim - len(self.policies)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """``obs (batch, L + P)`` -> logits ``(batch, n_actions)`` float32."""
        onehot = np.asarray(obs)[:, self.local_dim:self.local_dim + len(self.policies)]
        outs = np.stack([policy(obs) for policy in self.policies])   # (P, batch, actions)
        return (onehot.T[:, :, None].astype(outs.dtype) * outs).sum(0)


def team_of(policies: Sequence[ExportedPolicy]) -> ExportedPolicy | ExportedTeam:
    """The actor of a multi-agent task's exported files: the one shared file, or
    the files of every player (any order). A file of another task, a missing or
    repeated player, or a single-agent file is a :class:`UserError`."""
    if not policies:
        raise UserError("no policy file given")
    first = policies[0].meta
    for policy in policies:
        meta = policy.meta
        _check_players_recorded(policy)
        if not meta.players:
            raise UserError(f"{policy.path}: a single-agent policy ({meta.env_id}); give it "
                            f"alone")
        if _task(meta) != _task(first):
            raise UserError(f"{policy.path}: a policy of {_shown(meta)}, not of "
                            f"{_shown(first)} as {policies[0].path} is")
        if meta.player is None and len(policies) > 1:
            raise UserError(f"{policy.path}: plays every player of {meta.env_id}; give it "
                            f"alone")
        if meta.player is not None and meta.player not in meta.players:
            raise UserError(f"{policy.path}: plays {meta.player}, not one of the task's "
                            f"players ({', '.join(meta.players)})")
    if first.player is None:
        return policies[0]
    by_player: dict[str, ExportedPolicy] = {}
    for policy in policies:
        if policy.meta.player in by_player:
            raise UserError(f"{policy.path}: {policy.meta.player} already played by "
                            f"{by_player[policy.meta.player].path}")
        by_player[str(policy.meta.player)] = policy
    missing = [p for p in first.players if p not in by_player]
    if missing:
        raise UserError(f"{first.env_id}: no file for {', '.join(missing)}; give one file per "
                        f"player ({', '.join(first.players)}), as qtrl export wrote them")
    return ExportedTeam([by_player[p] for p in first.players])


def evaluate_team(files: Sequence[Path | str | ExportedPolicy], episodes: int = 100,
                  greedy: bool = False, seed: int = 0) -> tuple[np.ndarray, PolicyMeta]:
    """Play ``episodes`` episodes of a multi-agent task with its exported files
    (paths, or files :func:`~qtrl.export.load_exported` opened; :func:`team_of`),
    on the task the files name, with the episodes, seeds and action draws of
    ``qtrl eval RUN_DIR`` for the same ``seed``.

    Returns each player's undiscounted return per episode, ``(episodes, P)``
    float64 in the task's player order, and the metadata of the file that plays
    the first player.
    """
    if episodes < 1:
        raise UserError(f"--episodes {episodes}: must be a positive integer")
    team = team_of([f if isinstance(f, ExportedPolicy) else load_exported(f, threads=1)
                    for f in files])
    meta = (team.policies[0] if isinstance(team, ExportedTeam) else team).meta
    returns = evaluate_players(team, meta.env_id, meta.env_kwarg, meta.max_steps, episodes,
                               seed, greedy)
    log.info("evaluated %d file(s) on %s: %d episodes, mean team return %.2f", len(files),
             meta.env_id, episodes, float(returns.sum(1).mean()))
    return returns, meta


def _check_players_recorded(policy: ExportedPolicy) -> None:
    """Refuse a multi-agent task's file written before exported files recorded
    their task's players: it does not say whom it plays."""
    if not policy.meta.players and is_multiagent(policy.meta.env_id):
        raise UserError(f"{policy.path}: a policy of the multi-agent task "
                        f"{policy.meta.env_id} exported by an older qtrl, which did not "
                        f"record its players; export the run again (qtrl export RUN_DIR)")


def _task(meta: PolicyMeta) -> tuple:
    return meta.env_id, meta.env_kwarg, meta.players, meta.obs_dim, meta.n_actions


def _shown(meta: PolicyMeta) -> str:
    kwargs = f" {' '.join(meta.env_kwarg)}" if meta.env_kwarg else ""
    return f"{meta.env_id}{kwargs} ({meta.architecture})"

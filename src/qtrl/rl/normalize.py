"""Observation and value normalisation for the actor-critics (``--norm-obs``,
``--norm-value``).

Observations are standardised by running statistics, ``(o − μ) / sqrt(σ² + ε)``,
as Stable-Baselines3's ``VecNormalize`` does, with two differences that keep a
run reproducible, distributed and deployable:

- The statistics are frozen for a roll-out and merged at its end
  (:meth:`RunningMoments.commit`), so every observation of a batch, the critic's
  bootstrap observations included, is scaled alike, and ``--agents N`` merges
  every agent's moments (one all-reduce) so that all agents keep one normaliser.
- Nothing is clipped: the standardisation is then affine, and the policy that
  leaves a run is the plain network with it folded into its first layer
  (:meth:`ObsNormalizer.fold`), exported and evaluated like any other.

The value targets' statistics (:class:`ValueNormalizer`) are the same running
moments (:class:`RunningMoments`), merged before the update that uses them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["ObsNormalizer", "RunningMoments", "ValueNormalizer"]

EPS = 1e-8


class RunningMoments(nn.Module):
    """Running mean and variance of a vector, kept as buffers (so the checkpoint
    holds them) in float64: what :meth:`add` saw merges in at :meth:`commit`.

    Args:
        dim: the vector's size.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self._pending = np.zeros((2, dim))   # Σ x and Σ x² seen since the last commit
        self._seen = 0

    def add(self, x: np.ndarray) -> None:
        """Keep ``x`` (``(N, dim)``, or anything of ``N·dim`` values) for the next commit."""
        raw = np.asarray(x, dtype=np.float64).reshape(-1, self.mean.numel())
        self._pending[0] += raw.sum(0)
        self._pending[1] += np.square(raw).sum(0)
        self._seen += len(raw)

    @torch.no_grad()
    def commit(self, total: Callable[[Tensor], Tensor] | None = None) -> None:
        """Merge what was added since the last commit into the statistics.

        ``total``: sums a tensor over the agents (an all-reduce) so that every
        agent merges everyone's data and their statistics stay equal."""
        moments = torch.from_numpy(np.concatenate([[self._seen], *self._pending]))
        if total is not None:
            moments = total(moments)
        self._pending[:] = 0.0
        self._seen = 0
        n = float(moments[0])
        if n == 0:
            return
        dim = self.mean.numel()
        mean = moments[1:1 + dim] / n
        var = (moments[1 + dim:] / n - mean ** 2).clamp(min=0.0)
        count = float(self.count)
        new = count + n
        delta = mean - self.mean
        # Chan et al.'s merge of two (count, mean, variance) summaries.
        self.var.copy_((self.var * count + var * n + delta ** 2 * count * n / new) / new)
        self.mean.add_(delta * n / new)
        self.count.fill_(new)


class ObsNormalizer(RunningMoments):
    """The observations' running statistics (``--norm-obs``).

    Args:
        obs_dim: the flattened observation's size.
    """

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """``obs (..., obs_dim)`` scaled by the frozen statistics, float32."""
        scale = 1.0 / np.sqrt(self.var.numpy() + EPS)
        return ((obs - self.mean.numpy()) * scale).astype(np.float32)

    def observe(self, obs: np.ndarray) -> np.ndarray:
        """:meth:`normalize`, and keep ``obs`` (raw, ``(N, obs_dim)``) for the next commit."""
        self.add(obs)
        return self.normalize(obs)

    @torch.no_grad()
    def fold(self, net: nn.Sequential) -> nn.Sequential:
        """A copy of ``net`` (an MLP of :func:`~qtrl.presets.build_policy` taking
        normalised observations) that takes raw ones: its first layer's
        ``W, b`` become ``W / s`` and ``b − (W / s) μ``, ``s = sqrt(σ² + ε)``."""
        out = copy.deepcopy(net)
        first = next(m for m in out if isinstance(m, nn.Linear))
        scale = torch.sqrt(self.var + EPS)
        weight = first.weight.double() / scale
        first.bias.copy_((first.bias.double() - weight @ self.mean).to(first.bias.dtype))
        first.weight.copy_(weight.to(first.weight.dtype))
        return out


class ValueNormalizer(RunningMoments):
    """Running mean and variance of the critic's value targets (``--norm-value``,
    MAPPO's value normalisation): the critic learns ``(V − μ) / σ``, of order one
    whatever the returns' scale, and :meth:`restore` gives it back in returns.

    PPO adds an update's targets and commits them before its minibatch
    steps, so that the targets and the critic's outputs share the statistics
    for the whole update.
    """

    def __init__(self) -> None:
        super().__init__(1)

    def standardize(self, values: Tensor) -> Tensor:
        """``(values − μ) / σ``, in ``values``' dtype (any shape)."""
        return ((values.double() - self.mean) / torch.sqrt(self.var + EPS)).to(values.dtype)

    def restore(self, values: Tensor) -> Tensor:
        """``values · σ + μ``: the inverse of :meth:`standardize`."""
        return (values.double() * torch.sqrt(self.var + EPS) + self.mean).to(values.dtype)

"""Circuits of one batch spread over several QPUs (agents), gathered back.

The chunked generator runs ``Q`` independent circuits. With ``N`` agents each
agent (QPU) evaluates only its contiguous share of them, and an all-gather
assembles the ``(Q, 2**n)`` probabilities every agent needs for the mapping
model. :class:`RowShards` is that split; :func:`gather_shards` is the
differentiable all-gather.

The backward pass of an all-gather is a reduce-scatter with SUM. Each agent
``a`` back-propagates its own loss ``L_a`` into ``dL_a/dp`` for all ``Q``
circuits; the owner of circuit ``c`` receives ``Σ_a dL_a/dp_c`` and
back-propagates it into circuit ``c``'s angles, whose gradient is zero on every
other agent. The usual MEAN all-reduce of all gradients before the optimizer
step then yields ``(1/N) Σ_a dL_a/dθ_c`` for every circuit: the gradient of
the agents' mean loss, as without sharding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["Combine", "Gather", "RowShards", "gather_shards"]

Gather = Callable[[Tensor], Tensor]
"""``(m, d) -> (N, m, d)``: every agent's equally shaped tensor, in rank order."""
Combine = Callable[[Tensor], Tensor]
"""Sums a tensor over all agents and returns the sum (e.g. a SUM all-reduce)."""


@dataclass(frozen=True)
class RowShards:
    """A contiguous split of ``rows`` circuits over ``world_size`` agents.

    Agent ``r`` owns rows ``[r·Q//N, (r+1)·Q//N)``; shares differ by at most one
    row (and are empty for some agents when ``Q < N``).
    """

    rows: int
    rank: int
    world_size: int
    gather: Gather
    combine: Combine

    def bounds(self, rank: int) -> tuple[int, int]:
        """Rows ``[lo, hi)`` owned by ``rank``."""
        return (rank * self.rows // self.world_size, (rank + 1) * self.rows // self.world_size)

    @property
    def mine(self) -> slice:
        """This agent's rows."""
        return slice(*self.bounds(self.rank))

    @property
    def widest(self) -> int:
        """Rows of the largest share (the padded size of the all-gather)."""
        return -(-self.rows // self.world_size)


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, local: Tensor, shards: RowShards, *anchors: Tensor) -> Tensor:
        ctx.shards = shards
        pad = local.new_zeros(shards.widest, *local.shape[1:])
        pad[: local.shape[0]] = local
        every = shards.gather(pad)                        # (N, widest, d)
        sizes = [hi - lo for lo, hi in map(shards.bounds, range(shards.world_size))]
        parts = [every[r, :size] for r, size in enumerate(sizes)]
        return torch.cat(parts, 0)                        # (Q, d)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        shards: RowShards = ctx.shards
        total = shards.combine(grad.contiguous().clone())  # Σ over agents of dL_a/dp
        return (total[shards.mine], None, *(None,) * (len(ctx.needs_input_grad) - 2))


def gather_shards(local: Tensor, shards: RowShards, *anchors: Tensor) -> Tensor:
    """All agents' shares of the rows, in order: ``(q_r, d)`` -> ``(Q, d)``.

    ``local`` holds this agent's rows :attr:`RowShards.mine`. Differentiable:
    see the module docstring for what the backward pass sums. Every agent must
    call it at the same point, forward and backward (it is a collective).

    ``anchors`` (e.g. the circuit's parameters) only make the result require
    grad when they do: an agent that owns no row has a ``local`` outside the
    graph, yet must still join the backward pass's all-reduce. They get no
    gradient.
    """
    if local.shape[0] != len(range(shards.rows)[shards.mine]):
        raise ValueError(f"local rows {local.shape[0]} != this agent's share {shards.mine}")
    return _GatherRows.apply(local, shards, *anchors)

"""What crosses the network each update: one flat all-reduce of the gradients
of the *trainable* parameters (polylog(k) floats for Quantum-Train), plus a
periodic checksum that all agents still hold the same parameters."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from .context import AgentContext

__all__ = [
    "DesyncError",
    "allreduce_gradients",
    "broadcast_parameters",
    "check_agreement",
    "flat_gradients",
    "flat_parameters",
    "gather_objects",
    "gather_over_agents",
    "load_flat_parameters",
    "parameter_checksum",
    "set_flat_gradients",
    "sum_over_agents",
]

log = logging.getLogger(__name__)


class DesyncError(RuntimeError):
    """Agents no longer hold identical parameters."""


def allreduce_gradients(params: Sequence[Tensor], ctx: AgentContext) -> int:
    """Replace every ``p.grad`` by its mean over the agents; return bytes all-reduced.

    One flat buffer, one all-reduce (as CleanRL's multi-GPU PPO). A parameter
    without a gradient contributes zeros, so every agent sends the same layout.
    """
    params = list(params)
    flat = flat_gradients(params)
    if ctx.distributed:
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= ctx.world_size
    set_flat_gradients(params, flat)
    return flat.numel() * flat.element_size()


def _dtype(params: Sequence[Tensor]) -> torch.dtype:
    return functools.reduce(torch.promote_types, [p.dtype for p in params])


def flat_parameters(params: Sequence[Tensor]) -> Tensor:
    """All parameters in one flat tensor (the widest dtype among them)."""
    dtype = _dtype(params)
    return torch.cat([p.detach().reshape(-1).to(dtype) for p in params])


def load_flat_parameters(params: Sequence[Tensor], flat: Tensor) -> None:
    """Inverse of :func:`flat_parameters`: copy ``flat`` into the parameters."""
    offset = 0
    with torch.no_grad():
        for p in params:
            p.copy_(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()


def flat_gradients(params: Sequence[Tensor]) -> Tensor:
    """All gradients in one flat tensor; a parameter without one gives zeros."""
    dtype = _dtype(params)
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p))
                      .reshape(-1).to(dtype) for p in params])


def set_flat_gradients(params: Sequence[Tensor], flat: Tensor) -> None:
    """Set every ``p.grad`` from ``flat`` (the layout of :func:`flat_gradients`)."""
    offset = 0
    for p in params:
        p.grad = flat[offset:offset + p.numel()].view_as(p).to(p.dtype).clone()
        offset += p.numel()


def sum_over_agents(ctx: AgentContext) -> Callable[[Tensor], Tensor]:
    """``t -> Σ over agents of t``: a SUM all-reduce, in place, returning ``t``.

    The ``combine`` of a partitioned gradient estimator
    (:meth:`qtrl.quantum.estimators.GradientEstimator.set_partition`): each agent
    holds a share of the circuit gradient, and the shares must add up.
    """
    def combine(tensor: Tensor) -> Tensor:
        if ctx.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor
    return combine


def gather_over_agents(ctx: AgentContext) -> Callable[[Tensor], Tensor]:
    """``t -> (N, *t.shape)``: every agent's ``t`` (same shape everywhere), in rank order.

    The ``gather`` of chunk circuits spread over agents
    (:class:`qtrl.quantum.sharding.RowShards`).
    """
    def gather(tensor: Tensor) -> Tensor:
        if not ctx.distributed:
            return tensor.unsqueeze(0)
        out = [torch.empty_like(tensor) for _ in range(ctx.world_size)]
        dist.all_gather(out, tensor.contiguous())
        return torch.stack(out)
    return gather


def broadcast_parameters(params: Sequence[Tensor], ctx: AgentContext) -> None:
    """Copy rank 0's parameters to every agent (start from identical parameters)."""
    if not ctx.distributed:
        return
    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=0)


def parameter_checksum(params: Sequence[Tensor]) -> Tensor:
    """Order-sensitive float64 fingerprint of the parameters, shape ``(2,)``."""
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1).double() for p in params])
        weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64)
        return torch.stack((flat.sum(), (flat * weights).sum()))


def check_agreement(params: Sequence[Tensor], ctx: AgentContext, update: int) -> None:
    """Raise :class:`DesyncError` (on every agent) unless all hold identical parameters."""
    if not ctx.distributed:
        return
    mine = parameter_checksum(params)
    every = [torch.empty_like(mine) for _ in range(ctx.world_size)]
    dist.all_gather(every, mine)
    bad = [r for r, c in enumerate(every) if not torch.equal(c, every[0])]
    if bad:
        raise DesyncError(f"update {update}: agent(s) {bad} hold parameters different from "
                          f"agent 0 (checksums {[c.tolist() for c in every]})")
    log.debug("update %d: parameters agree on all %d agents", update, ctx.world_size)


def gather_objects(obj: Any, ctx: AgentContext) -> list[Any]:
    """Every agent's ``obj``, in rank order (only meaningful on rank 0)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out

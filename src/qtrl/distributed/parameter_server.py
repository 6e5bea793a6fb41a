"""Asynchronous Dist-QTRL on the wire: workers push gradients to agent 0 and pull
its parameters, with torch.distributed point-to-point messages (gloo ``send`` /
``recv``) over the same process group as the synchronous mode.

A *push* (worker → agent 0) is three messages: an int64 header
``(version used, episodes, update, info length)``, the flat gradient of the
trainable parameters, and a float64 ``info`` vector (the update's episodes and
statistics, packed by the caller). A *reply* (agent 0 → worker) is an int64
header ``(version, episodes to collect next, update index)`` and the flat
parameters; ``episodes == 0`` tells the worker to stop. Each kind of message has
its own tag, so agent 0 can take the next push header from whichever worker
sends first (``recv(src=None)``) and then the rest of that push from that worker.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "Push",
    "Reply",
    "recv_push",
    "recv_reply",
    "send_push",
    "send_reply",
]

LEARNER = 0
_PUSH_HEADER, _PUSH_GRAD, _PUSH_INFO, _REPLY_HEADER, _REPLY_PARAMS = 11, 12, 13, 14, 15


class Push(NamedTuple):
    """A worker's gradient as agent 0 received it."""

    source: int     # the worker's rank
    version: int    # parameter version the gradient was computed at
    episodes: int   # episodes it was computed from
    update: int     # the worker's own update index (its seeds)
    grad: Tensor    # (P,) flat gradient
    info: Tensor    # float64, caller-defined
    nbytes: int     # bytes received


class Reply(NamedTuple):
    """Agent 0's answer to a push (or its first message to a worker)."""

    version: int    # parameter version of ``params``
    episodes: int   # episodes to collect next; 0: stop
    update: int     # update index the worker's seeds come from
    params: Tensor  # (P,) flat parameters


def send_push(version: int, episodes: int, update: int, grad: Tensor, info: Tensor) -> int:
    """Worker → agent 0. Returns the bytes sent."""
    header = torch.tensor([version, episodes, update, info.numel()], dtype=torch.int64)
    info = info.to(torch.float64).contiguous()
    for tensor, tag in ((header, _PUSH_HEADER), (grad.contiguous(), _PUSH_GRAD),
                        (info, _PUSH_INFO)):
        dist.send(tensor, dst=LEARNER, tag=tag)
    return sum(t.numel() * t.element_size() for t in (header, grad, info))


def recv_push(grad_like: Tensor) -> Push:
    """Agent 0: the next push from whichever worker sends first.

    ``grad_like``: a tensor of the flat gradient's shape and dtype.
    """
    header = torch.empty(4, dtype=torch.int64)
    source = dist.recv(header, src=None, tag=_PUSH_HEADER)
    version, episodes, update, n_info = (int(v) for v in header)
    grad = torch.empty_like(grad_like)
    info = torch.empty(n_info, dtype=torch.float64)
    dist.recv(grad, src=source, tag=_PUSH_GRAD)
    dist.recv(info, src=source, tag=_PUSH_INFO)
    nbytes = sum(t.numel() * t.element_size() for t in (header, grad, info))
    return Push(source, version, episodes, update, grad, info, nbytes)


def send_reply(worker: int, version: int, episodes: int, update: int, params: Tensor) -> int:
    """Agent 0 → ``worker``. Returns the bytes sent."""
    header = torch.tensor([version, episodes, update], dtype=torch.int64)
    dist.send(header, dst=worker, tag=_REPLY_HEADER)
    dist.send(params.contiguous(), dst=worker, tag=_REPLY_PARAMS)
    return header.numel() * header.element_size() + params.numel() * params.element_size()


def recv_reply(params_like: Tensor) -> Reply:
    """Worker: agent 0's next reply (``params_like``: the flat parameters' shape and dtype)."""
    header = torch.empty(3, dtype=torch.int64)
    dist.recv(header, src=LEARNER, tag=_REPLY_HEADER)
    params = torch.empty_like(params_like)
    dist.recv(params, src=LEARNER, tag=_REPLY_PARAMS)
    version, episodes, update = (int(v) for v in header)
    return Reply(version, episodes, update, params)

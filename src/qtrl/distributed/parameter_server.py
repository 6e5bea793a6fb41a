"""Asynchronous Dist-QTRL on the wire: workers push gradients to agent 0 and pull
its parameters, with torch.distributed point-to-point messages (gloo ``send`` /
``recv``) over the same process group as the synchronous mode.

Each exchange is as few messages as it can be, because on a slow link every
message of an exchange costs about a round trip more (a ``send`` completes once
its receiver takes it). A *push* (worker → agent 0) is one message of
:func:`push_size` bytes: an int64 header ``(version used, episodes, update,
info length)``, the flat gradient of the trainable parameters, and the first
:data:`INFO_INLINE` values of a float64 ``info`` vector (the update's episodes
and statistics, packed by the caller), zero padded; a longer ``info`` sends its
rest as a second message. A *reply* (agent 0 → worker) is one message: an int64
header ``(version, episodes to collect next, update index)`` and the flat
parameters; ``episodes == 0`` tells the worker to stop. Each part starts at a
multiple of 8 bytes of the message, so it is read back as its own dtype,
exactly. Agent 0 takes the next push from whichever worker sends first
(``recv(src=None)``), then the rest of its ``info``, if any, from that worker.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "INFO_INLINE",
    "Push",
    "Reply",
    "push_size",
    "recv_push",
    "recv_reply",
    "send_push",
    "send_reply",
]

LEARNER = 0
_PUSH, _PUSH_REST, _REPLY = 11, 12, 13
INFO_INLINE = 64
"""``info`` values carried in the push message itself (a worker's statistics and
about 18 episodes); the rest, if any, follow in a second message."""


def _aligned(nbytes: int) -> int:
    return -(-nbytes // 8) * 8


Layout = list[tuple[int, torch.dtype]]
"""A message's parts in order, each ``(numel, dtype)``."""


def _size(layout: Layout) -> int:
    """Bytes of a message of ``layout``, each part from a multiple of 8."""
    return sum(_aligned(numel * dtype.itemsize) for numel, dtype in layout)


def _pack(parts: list[Tensor], size: int) -> Tensor:
    """``parts``' bytes in one ``uint8`` tensor of ``size`` bytes, each part from
    a multiple of 8, zero padded."""
    buf = torch.zeros(size, dtype=torch.uint8)
    at = 0
    for part in parts:
        raw = part.detach().contiguous().reshape(-1).view(torch.uint8)
        buf[at:at + raw.numel()] = raw
        at += _aligned(raw.numel())
    return buf


def _unpack(buf: Tensor, layout: Layout) -> list[Tensor]:
    """Inverse of :func:`_pack`: the parts of ``layout``, in order."""
    parts, at = [], 0
    for numel, dtype in layout:
        nbytes = numel * dtype.itemsize
        parts.append(buf[at:at + nbytes].view(dtype).clone())
        at += _aligned(nbytes)
    return parts


def _push_layout(grad_like: Tensor, info: int) -> Layout:
    """Header, gradient and ``info`` inline values of a push."""
    return [(4, torch.int64), (grad_like.numel(), grad_like.dtype), (info, torch.float64)]


def _reply_layout(params_like: Tensor) -> Layout:
    """Header and parameters of a reply."""
    return [(3, torch.int64), (params_like.numel(), params_like.dtype)]


def push_size(grad_like: Tensor) -> int:
    """Bytes of a push message for gradients shaped like ``grad_like``."""
    return _size(_push_layout(grad_like, INFO_INLINE))


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
    info = info.to(torch.float64).reshape(-1)
    header = torch.tensor([version, episodes, update, info.numel()], dtype=torch.int64)
    message = _pack([header, grad, info[:INFO_INLINE]], push_size(grad))
    dist.send(message, dst=LEARNER, tag=_PUSH)
    sent = message.numel()
    if info.numel() > INFO_INLINE:
        rest = info[INFO_INLINE:].contiguous()
        dist.send(rest, dst=LEARNER, tag=_PUSH_REST)
        sent += rest.numel() * rest.dtype.itemsize
    return sent


def recv_push(grad_like: Tensor) -> Push:
    """Agent 0: the next push from whichever worker sends first.

    ``grad_like``: a tensor of the flat gradient's shape and dtype.
    """
    message = torch.empty(push_size(grad_like), dtype=torch.uint8)
    source = dist.recv(message, src=None, tag=_PUSH)
    n_info = int(message[24:32].view(torch.int64))   # the header's last value
    inline = min(n_info, INFO_INLINE)
    header, grad, info = _unpack(message, _push_layout(grad_like, inline))
    version, episodes, update, _ = header.tolist()
    nbytes = message.numel()
    if n_info > inline:
        rest = torch.empty(n_info - inline, dtype=torch.float64)
        dist.recv(rest, src=source, tag=_PUSH_REST)
        info = torch.cat([info, rest])
        nbytes += rest.numel() * rest.dtype.itemsize
    return Push(source, version, episodes, update, grad.view_as(grad_like), info, nbytes)


def send_reply(worker: int, version: int, episodes: int, update: int, params: Tensor) -> int:
    """Agent 0 → ``worker``. Returns the bytes sent."""
    header = torch.tensor([version, episodes, update], dtype=torch.int64)
    message = _pack([header, params], _size(_reply_layout(params)))
    dist.send(message, dst=worker, tag=_REPLY)
    return message.numel()


def recv_reply(params_like: Tensor) -> Reply:
    """Worker: agent 0's next reply (``params_like``: the flat parameters' shape and dtype)."""
    layout = _reply_layout(params_like)
    message = torch.empty(_size(layout), dtype=torch.uint8)
    dist.recv(message, src=LEARNER, tag=_REPLY)
    header, params = _unpack(message, layout)
    version, episodes, update = header.tolist()
    return Reply(version, episodes, update, params.view_as(params_like))


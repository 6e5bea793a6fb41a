"""The async wire format (qtrl.distributed.parameter_server) between two real
gloo processes: every part arrives exactly, in its own dtype, whether the
push's info fits in its one message or needs the second."""

from __future__ import annotations

import os

import torch

from qtrl.distributed import AgentContext, launch_local
from qtrl.distributed.parameter_server import (
    INFO_INLINE,
    push_size,
    recv_push,
    recv_reply,
    send_push,
    send_reply,
)

GRAD = torch.linspace(-1, 1, 651, dtype=torch.float32) * torch.pi     # odd count: padding
PARAMS = torch.arange(13, dtype=torch.float64) / 7
INFOS = [torch.arange(9, dtype=torch.float64) + 0.5,                   # one message
         torch.arange(INFO_INLINE + 40, dtype=torch.float64) / 3]      # two


def _entry(ctx: AgentContext, out_dir: str) -> None:
    got = []
    for round_, info in enumerate(INFOS):
        if ctx.rank == 1:   # the worker: push, then read the reply
            sent = send_push(version=5 + round_, episodes=3, update=2**40, grad=GRAD, info=info)
            reply = recv_reply(PARAMS)
            got.append({"sent": sent, "reply": tuple(reply[:3]), "params": reply.params})
        else:               # the learner
            push = recv_push(GRAD)
            sent = send_reply(1, version=7, episodes=0, update=round_, params=PARAMS * round_)
            got.append({"push": push, "sent": sent})
    torch.save(got, os.path.join(out_dir, f"rank{ctx.rank}.pt"))


def test_push_and_reply_arrive_exactly(tmp_path):
    launch_local(_entry, 2, str(tmp_path), timeout_s=120)
    learner = torch.load(tmp_path / "rank0.pt", weights_only=False)
    worker = torch.load(tmp_path / "rank1.pt", weights_only=False)
    for round_, info in enumerate(INFOS):
        push = learner[round_]["push"]
        assert (push.source, push.version, push.episodes, push.update) == (1, 5 + round_, 3,
                                                                            2**40)
        assert push.grad.dtype == torch.float32 and torch.equal(push.grad, GRAD)
        assert push.info.dtype == torch.float64 and torch.equal(push.info, info)
        extra = 8 * max(0, len(info) - INFO_INLINE)
        assert push.nbytes == worker[round_]["sent"] == push_size(GRAD) + extra
        assert worker[round_]["reply"] == (7, 0, round_)
        assert torch.equal(worker[round_]["params"], PARAMS * round_)
        assert learner[round_]["sent"] == 8 * 3 + 8 * len(PARAMS)   # header, parameters

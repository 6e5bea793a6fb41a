"""Chunk circuits spread over agents (QPUs): same probabilities, same gradients.

Each agent process builds the same chunked generator, evaluates only its share
of the chunk circuits, all-gathers the rest, and back-propagates its own loss.
After the usual mean all-reduce every agent must hold the gradient that one
process computes for the agents' mean loss with all circuits evaluated locally.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from qtrl.distributed import (
    AgentContext,
    allreduce_gradients,
    gather_over_agents,
    launch_local,
    sum_over_agents,
)
from qtrl.generator import QuantumTrain
from qtrl.quantum.sharding import RowShards, gather_shards


def _model(chunks: int, grad: str = "backprop") -> QuantumTrain:
    torch.manual_seed(0)
    target = nn.Sequential(nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 3))  # k = 93
    return QuantumTrain(target, layers=2, mapping_hidden=(6,), chunks=chunks,
                        mapping_activation="relu", dtype=torch.float64, grad=grad)


def _loss(model: QuantumTrain, rank: int) -> torch.Tensor:
    """A different loss on every agent, as their roll-outs differ."""
    g = torch.Generator().manual_seed(100 + rank)
    w = model.generate_flat()
    return (torch.randn(w.shape, generator=g, dtype=w.dtype) * w).sum() + (w**2).sum() * rank


def _entry(ctx: AgentContext, job: tuple[str, int, str]) -> None:
    out_dir, chunks, grad = job
    model = _model(chunks, grad)
    model.spread_chunks(RowShards(chunks, ctx.rank, ctx.world_size,
                                  gather=gather_over_agents(ctx), combine=sum_over_agents(ctx)))
    probs = model.probabilities().detach()
    _loss(model, ctx.rank).backward()
    allreduce_gradients(list(model.parameters()), ctx)
    torch.save({"probs": probs, "grads": {n: p.grad for n, p in model.named_parameters()},
                "policy": model.materialize().state_dict()},
               os.path.join(out_dir, f"rank{ctx.rank}.pt"))


@pytest.mark.parametrize(("chunks", "agents", "grad"), [
    (4, 2, "backprop"),         # two chunks each
    (3, 2, "backprop"),         # uneven shares (1 and 2)
    (2, 3, "backprop"),         # one agent owns no chunk
    (4, 2, "parameter-shift"),  # each QPU's shifted circuits of its own chunks
])
def test_spread_chunks_give_the_unspread_gradient(tmp_path, chunks, agents, grad):
    launch_local(_entry, agents, (str(tmp_path), chunks, grad), timeout_s=120)
    model = _model(chunks)  # one process, every circuit here, backprop
    expected_probs = model.probabilities().detach()
    (sum(_loss(model, r) for r in range(agents)) / agents).backward()
    expected = {n: p.grad for n, p in model.named_parameters()}
    policy = model.materialize().state_dict()
    for r in range(agents):
        got = torch.load(tmp_path / f"rank{r}.pt", weights_only=True)
        torch.testing.assert_close(got["probs"], expected_probs, rtol=0, atol=1e-12)
        for name, grad_ in expected.items():
            # the mapping model is float32: its sums in another order differ by ~1e-7
            torch.testing.assert_close(got["grads"][name], grad_, rtol=1e-5, atol=1e-6,
                                       msg=f"rank {r}: {name}")
        for name, w in policy.items():
            torch.testing.assert_close(got["policy"][name], w, rtol=0, atol=1e-12)


def test_shares_cover_every_row_once():
    for rows in range(1, 9):
        for world in range(1, 6):
            shards = [RowShards(rows, r, world, gather=None, combine=None)  # type: ignore[arg-type]
                      for r in range(world)]
            covered = [i for s in shards for i in range(rows)[s.mine]]
            assert covered == list(range(rows))
            assert max(len(range(rows)[s.mine]) for s in shards) == shards[0].widest


def test_gather_refuses_a_share_of_the_wrong_size():
    single = RowShards(4, 0, 2, gather=lambda t: t[None], combine=lambda t: t)
    with pytest.raises(ValueError, match="share"):
        gather_shards(torch.zeros(3, 8), single)


def test_spread_chunks_refuses_shards_of_another_size():
    with pytest.raises(ValueError, match="4 chunk circuits"):
        _model(4).spread_chunks(RowShards(3, 0, 1, gather=None, combine=None))  # type: ignore[arg-type]

"""Every code path of the gate kernels against an einsum reference.

The kernels pick their path by state size and wire position (one GEMM on the
fastest axes, a batched GEMM, the gate widened to M ⊗ I, or a move of the wires
to the end); n = 15 is large enough to reach all of them.
"""

from __future__ import annotations

import pytest
import torch

from qtrl.quantum.kernels import SMALL_STATE, apply_flat, outer_sum

N = 15
assert 2**N >= SMALL_STATE


def _moved(x: torch.Tensor, wires: tuple[int, ...]) -> torch.Tensor:
    """(B, 2**N) -> (B, rest, d) with ``wires`` last, in order (reference layout)."""
    b = x.shape[0]
    k = len(wires)
    return x.reshape(b, *[2] * N).movedim([1 + w for w in wires],
                                          list(range(N + 1 - k, N + 1))).reshape(b, -1, 2**k)


def _unmoved(y: torch.Tensor, wires: tuple[int, ...]) -> torch.Tensor:
    b, k = y.shape[0], len(wires)
    return y.reshape(b, *[2] * N).movedim(list(range(N + 1 - k, N + 1)),
                                          [1 + w for w in wires]).reshape(b, -1)


WIRES = [(0, 1, 2), (5, 6, 7), (9, 10, 11), (10, 11, 12), (11, 12, 13), (12, 13, 14),
         (13, 14), (14,), (0,), (14, 0), (13, 14, 0), (3, 9), (7, 2, 11)]


@pytest.mark.parametrize("wires", WIRES)
@pytest.mark.parametrize("batch,per_circuit", [(1, False), (2, False), (2, True)])
def test_apply_and_outer_match_reference(wires, batch, per_circuit):
    gen = torch.Generator().manual_seed(len(wires) * 100 + wires[0])
    d = 2 ** len(wires)
    x = torch.randn(batch, 2**N, dtype=torch.complex128, generator=gen)
    a = torch.randn(batch, 2**N, dtype=torch.complex128, generator=gen)
    shape = (batch, d, d) if per_circuit else (d, d)
    m = torch.randn(*shape, dtype=torch.complex128, generator=gen)

    ref = _unmoved(_moved(x, wires) @ m.mT, wires)
    assert torch.allclose(apply_flat(x, m, wires, N), ref, atol=1e-10)
    stacked = apply_flat(torch.stack((x, x)), m, wires, N)  # (2, batch) lead, as backward
    assert torch.allclose(stacked, torch.stack((ref, ref)), atol=1e-10)

    outer = torch.einsum("brd,bre->bde", _moved(a, wires), _moved(x, wires).conj())
    if not per_circuit:
        outer = outer.sum(0)
    assert torch.allclose(outer_sum(a, x, wires, N, per_circuit), outer, atol=1e-8)

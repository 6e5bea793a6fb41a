"""The vectorised split-complex ring-U3 kernels (``qtrl.quantum.wide``) against
two independent paths: the complex128 whole-circuit kernels (scalar complex
loops, ``qtrl.quantum.compiled``) and the torch simulator (fused GEMM windows),
plus finite differences."""

from __future__ import annotations

import pytest
import torch

from qtrl.quantum import compiled, wide
from qtrl.quantum.ansatz import COMPILED_MAX_QUBITS, RingU3Ansatz, ring_probabilities

F64 = torch.float64
pytestmark = pytest.mark.skipif(not wide.available(), reason="numba is not installed")


def _angles(n: int, layers: int, circuits: int, dtype: torch.dtype, seed: int):
    g = torch.Generator().manual_seed(seed)
    u3 = (torch.rand(circuits, layers, n, 3, generator=g, dtype=F64) * 6.3).to(dtype)
    cu3 = (torch.rand(circuits, layers, n, 3, generator=g, dtype=F64) * 6.3).to(dtype)
    return u3.requires_grad_(), cu3.requires_grad_()


def _loss_and_grads(fn, u3, cu3, w):
    p = fn(u3, cu3)
    (p * w).sum().backward()
    return p.detach(), u3.grad, cu3.grad


# Sizes cover every pair layout: bits below 5 (unrolled periods), from 5 on
# (contiguous runs), the closing gate (strided), and n = 2 where it is the only CU3 bit.
@pytest.mark.parametrize("n, layers, circuits", [(2, 2, 1), (3, 1, 2), (5, 2, 1), (6, 2, 2),
                                                 (7, 3, 1), (9, 2, 1)])
def test_float64_matches_complex128_kernels(n: int, layers: int, circuits: int) -> None:
    a = _angles(n, layers, circuits, F64, n)
    b = tuple(x.detach().clone().requires_grad_() for x in a)
    w = torch.randn(circuits, 2**n, dtype=F64, generator=torch.Generator().manual_seed(1))
    p, gu, gc = _loss_and_grads(wide.ring_u3_probabilities, *a, w)
    q, hu, hc = _loss_and_grads(compiled.ring_u3_probabilities, *b, w)
    torch.testing.assert_close(p, q, atol=1e-13, rtol=0)
    torch.testing.assert_close(gu, hu, atol=1e-11, rtol=0)
    torch.testing.assert_close(gc, hc, atol=1e-11, rtol=0)


def test_float32_runs_complex64_close_to_exact() -> None:
    a = _angles(8, 3, 2, torch.float32, 3)
    b = tuple(x.detach().double().requires_grad_() for x in a)
    w = torch.randn(2, 256, dtype=F64, generator=torch.Generator().manual_seed(2))
    p, gu, gc = _loss_and_grads(wide.ring_u3_probabilities, *a, w.float())
    q, hu, hc = _loss_and_grads(compiled.ring_u3_probabilities, *b, w)
    assert p.dtype == gu.dtype == torch.float32
    torch.testing.assert_close(p.double(), q, atol=1e-6, rtol=0)
    torch.testing.assert_close(gu.double(), hu, atol=2e-5, rtol=0)
    torch.testing.assert_close(gc.double(), hc, atol=2e-5, rtol=0)


def test_gradient_matches_finite_differences() -> None:
    u3, cu3 = _angles(6, 2, 1, F64, 5)
    w = torch.randn(1, 64, dtype=F64, generator=torch.Generator().manual_seed(3))
    _, gu, gc = _loss_and_grads(wide.ring_u3_probabilities, u3, cu3, w)
    eps = 1e-6
    for grads, which in ((gu, 0), (gc, 1)):
        for idx in ((0, 0, 0, 0), (0, 1, 5, 2), (0, 1, 3, 1), (0, 0, 5, 0)):
            plus = [u3.detach().clone(), cu3.detach().clone()]
            minus = [u3.detach().clone(), cu3.detach().clone()]
            plus[which][idx] += eps
            minus[which][idx] -= eps
            fd = ((wide.ring_u3_probabilities(*plus) - wide.ring_u3_probabilities(*minus)) * w
                  ).sum() / (2 * eps)
            assert abs(fd.item() - grads[idx].item()) < 1e-7


def test_ansatz_above_the_small_kernels_matches_torch() -> None:
    # n = 13 (the MiniGrid preset's circuit) runs the wide kernels; the torch
    # path is the fused-window sweep.
    n, layers = COMPILED_MAX_QUBITS + 1, 2
    torch.manual_seed(7)
    ref = RingU3Ansatz(n, layers, 2, dtype=F64, compiled=False)
    fast = RingU3Ansatz(n, layers, 2, dtype=F64)
    fast.load_state_dict(ref.state_dict())
    assert fast.compiled and not ref.compiled
    w = torch.randn(2, 2**n, dtype=F64, generator=torch.Generator().manual_seed(4))
    p_ref, p_fast = ref(), fast()
    torch.testing.assert_close(p_fast, p_ref, atol=1e-12, rtol=0)
    (p_ref * w).sum().backward()
    (p_fast * w).sum().backward()
    torch.testing.assert_close(fast.u3_angles.grad, ref.u3_angles.grad, atol=1e-9, rtol=0)
    torch.testing.assert_close(fast.cu3_angles.grad, ref.cu3_angles.grad, atol=1e-9, rtol=0)


def test_dispatch_by_size_and_empty_batches() -> None:
    small = _angles(4, 1, 1, F64, 0)
    assert ring_probabilities(*small).dtype == F64
    empty = (torch.zeros(0, 1, 13, 3), torch.zeros(0, 1, 13, 3))
    assert ring_probabilities(*empty).shape == (0, 2**13)
    with pytest.raises(ValueError, match="float32 or float64"):
        wide.ring_u3_probabilities(torch.zeros(1, 1, 13, 3, dtype=torch.float16),
                                   torch.zeros(1, 1, 13, 3, dtype=torch.float16))


@pytest.mark.skipif(not wide.available() or __import__("numba").config.NUMBA_NUM_THREADS < 2,
                    reason="needs Numba with at least 2 threads")
def test_threads_split_the_gates_without_changing_the_result() -> None:
    """At 2^17 amplitudes and up each gate is shared out over torch's thread count:
    every pair layout (round-robin blocks, cut runs, low-bit pieces, the strided
    closing gate) against the one-thread kernels."""
    n = 17
    a = _angles(n, 2, 1, F64, 11)
    w = torch.randn(1, 2**n, dtype=F64, generator=torch.Generator().manual_seed(6))
    old = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            b = tuple(x.detach().clone().requires_grad_() for x in a)
            results.append(_loss_and_grads(wide.ring_u3_probabilities, *b, w))
    finally:
        torch.set_num_threads(old)
    (p1, u1, c1), (p2, u2, c2) = results
    torch.testing.assert_close(p2, p1, atol=1e-14, rtol=0)
    torch.testing.assert_close(u2, u1, atol=1e-12, rtol=0)
    torch.testing.assert_close(c2, c1, atol=1e-12, rtol=0)

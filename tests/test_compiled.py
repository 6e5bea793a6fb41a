"""The compiled ring-U3 kernels against the torch simulator (another code path:
fused GEMM windows, autograd / hand-written adjoint) and PennyLane (test_ansatz)."""

from __future__ import annotations

import pytest
import torch

from qtrl.quantum import compiled
from qtrl.quantum.ansatz import COMPILED_MAX_QUBITS, RingU3Ansatz

F64 = torch.float64
pytestmark = pytest.mark.skipif(not compiled.available(), reason="numba is not installed")


def _pair(n: int, layers: int, circuits: int, dtype: torch.dtype = F64):
    torch.manual_seed(100 * n + 10 * layers + circuits)
    ref = RingU3Ansatz(n, layers, circuits, dtype=dtype, compiled=False)
    fast = RingU3Ansatz(n, layers, circuits, dtype=dtype)
    fast.load_state_dict(ref.state_dict())
    assert fast.compiled and not ref.compiled
    return ref, fast


@pytest.mark.parametrize("n, layers, circuits", [(2, 1, 1), (3, 2, 2), (5, 3, 1), (7, 2, 3),
                                                 (10, 5, 1), (COMPILED_MAX_QUBITS, 1, 1)])
def test_probabilities_and_gradients_match_torch(n: int, layers: int, circuits: int) -> None:
    ref, fast = _pair(n, layers, circuits)
    w = torch.randn(circuits, 2**n, dtype=F64, generator=torch.Generator().manual_seed(n))
    p_ref, p_fast = ref(), fast()
    torch.testing.assert_close(p_fast, p_ref, atol=1e-12, rtol=0)
    (p_ref * w).sum().backward()
    (p_fast * w).sum().backward()
    torch.testing.assert_close(fast.u3_angles.grad, ref.u3_angles.grad, atol=1e-10, rtol=0)
    torch.testing.assert_close(fast.cu3_angles.grad, ref.cu3_angles.grad, atol=1e-10, rtol=0)


def test_circuit_slices_and_float32() -> None:
    ref, fast = _pair(6, 2, 4, dtype=torch.float32)
    part = fast(slice(1, 3))
    assert part.dtype == torch.float32 and part.shape == (2, 64)
    torch.testing.assert_close(part, ref(slice(1, 3)), atol=1e-6, rtol=0)
    part.sum().backward()  # probabilities sum to 1: the angles get (numerically) no gradient
    assert fast.u3_angles.grad.dtype == torch.float32
    assert fast.u3_angles.grad.abs().max() < 1e-5
    assert fast(slice(2, 2)).shape == (0, 64)


def test_compiled_unless_asked_not_to() -> None:
    # Above COMPILED_MAX_QUBITS the wide kernels take over (tests/test_wide.py).
    assert RingU3Ansatz(COMPILED_MAX_QUBITS + 1, 1).compiled
    assert not RingU3Ansatz(4, 1, compiled=False).compiled


def test_states_are_normalised_and_match_probabilities() -> None:
    _, fast = _pair(5, 2, 2)
    states = compiled.ring_u3_states(fast.u3_angles, fast.cu3_angles)
    assert states.dtype == torch.complex128 and states.shape == (2, 32)
    torch.testing.assert_close(states.abs().square().sum(1), torch.ones(2, dtype=F64))
    torch.testing.assert_close(states.abs().square(), fast().detach(), atol=1e-14, rtol=0)

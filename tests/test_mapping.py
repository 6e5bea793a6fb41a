"""The fused mapping pass against the same computation in torch ops, and
against finite differences."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qtrl import mapping
from qtrl.mapping import ACTIVATIONS, fused_available, generate_weights, mlp

pytestmark = pytest.mark.skipif(not mapping.jit.available(), reason="needs Numba")


def _case(activation: str, k: int, chunks: int, dtype: torch.dtype, seed: int = 0):
    """A mapping model, index bits and chunk probabilities ``(Q, D)``."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = mlp([6, 7, 5, 1], activation).to(dtype)
    bits = (torch.randint(0, 2, (k, 5), generator=gen) * 2 - 1).to(dtype)
    chunk = -(-k // chunks)
    probs = torch.rand(chunks, chunk + 3, generator=gen, dtype=dtype) / chunk
    return net, bits, probs.requires_grad_(True), chunk


def _reference(probs, bits, net, scale, beta, alpha, chunk):
    """Slice as :meth:`QuantumTrain.probabilities` does, then the torch ops."""
    flat = probs[:, :chunk].reshape(-1)[: bits.shape[0]]
    return mapping._torch_weights(flat, bits, net, scale, beta, alpha)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize(("k", "chunks", "beta", "alpha"),
                         [(300, 1, 1.0, 1.0), (700, 3, 0.7, 1.5), (257, 2, 1.3, 0.8)])
def test_fused_matches_torch_ops(activation: str, k: int, chunks: int, beta: float,
                                 alpha: float) -> None:
    net, bits, probs, chunk = _case(activation, k, chunks, torch.float64)
    assert fused_available(net, bits)
    weights = torch.linspace(-1, 1, k, dtype=torch.float64) ** 3
    outs = []
    for fn in (generate_weights, _reference):
        w = fn(probs, bits, net, 30.0, beta, alpha, chunk)
        grads = torch.autograd.grad((w * weights).sum(), [probs, *net.parameters()])
        outs.append((w.detach(), *grads))
    for ours, theirs in zip(*outs, strict=True):
        scale = float(theirs.abs().max()) + 1.0
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu", "silu"])
def test_gradients_match_finite_differences(activation: str) -> None:
    net, bits, probs, chunk = _case(activation, 40, 2, torch.float64, seed=1)
    params = list(net.parameters())

    constants = (chunk, mapping._CODES[type(net[1])], 30.0, 0.9, 1.2)

    def loss(p: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        w = mapping._FusedGenerate.apply(p, bits, constants, *_ordered(ps))
        return w * torch.arange(w.numel(), dtype=w.dtype)

    inputs = (probs.detach().clone().requires_grad_(True),
              *(p.detach().clone().requires_grad_(True) for p in params))
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def _ordered(ps: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """``net.parameters()`` order (w0, b0, w1, b1, …) to the fused pass's order
    (weights, then biases)."""
    return list(ps[0::2]) + list(ps[1::2])


def test_float32_stays_near_float64() -> None:
    net, bits, probs, chunk = _case("relu", 898, 1, torch.float64)
    exact = generate_weights(probs, bits, net, 51.2, 1.0, 1.0, chunk).detach()
    single = generate_weights(probs.float(), bits.float(), net.float(), 51.2, 1.0, 1.0, chunk)
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.detach().double(), exact, rtol=0,
                               atol=1e-5 * float(exact.abs().max()))


def test_threads_split_large_mappings_without_changing_the_result() -> None:
    k = mapping._PARALLEL_MIN + 1000
    net, bits, probs, chunk = _case("tanh", k, 1, torch.float32)
    weights = torch.randn(k, generator=torch.Generator().manual_seed(3))
    results = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            w = generate_weights(probs, bits, net, 51.2, 1.0, 1.0, chunk)
            results.append((w.detach(), *torch.autograd.grad((w * weights).sum(),
                                                    [probs, *net.parameters()])))
    finally:
        torch.set_num_threads(threads)
    for one, two in zip(*results, strict=True):
        torch.testing.assert_close(one, two, rtol=1e-5, atol=1e-5 * float(one.abs().max()))


def test_other_mapping_models_run_the_torch_ops() -> None:
    net = nn.Sequential(nn.Linear(6, 4), nn.LayerNorm(4), nn.Linear(4, 1))
    bits = torch.ones(10, 5)
    assert not fused_available(net, bits)
    probs = torch.rand(10, requires_grad=True)
    w = generate_weights(probs, bits, net, 2.0, 1.0, 1.0)
    torch.testing.assert_close(w, mapping._torch_weights(probs, bits, net, 2.0, 1.0, 1.0))
    assert w.grad_fn is not None and abs(float(w.detach().sum())) < 1e-5


@pytest.mark.parametrize(("dtype", "chunks"), [(torch.float32, 1), (torch.float32, 3),
                                               (torch.float64, 1), (torch.float64, 2)])
def test_one_node_ring_generation_equals_circuit_then_mapping(dtype: torch.dtype,
                                                              chunks: int) -> None:
    """The fused circuit + mapping node (float32: split-complex kernels;
    float64: complex128 ones) gives the two-node path's numbers (to rounding:
    the two are not required to agree bit for bit)."""
    from qtrl.generator import QuantumTrain
    from qtrl.presets import build_policy
    torch.manual_seed(3)
    qt = QuantumTrain(build_policy(4, [24], 2), layers=2, mapping_hidden=[6, 6],
                      chunks=chunks, mapping_activation="relu", alpha=1.3).to(dtype)
    assert qt._ring_stage() is not None
    g = torch.randn(qt.k, dtype=dtype, generator=torch.Generator().manual_seed(0))

    def run(fused: bool) -> list[torch.Tensor]:
        qt.zero_grad()
        if fused:
            w = qt.generate_flat()
        else:
            scale = qt.gamma * 2 ** (qt.n_qubits - 1)
            w = generate_weights(qt.circuit_probabilities(), qt.features, qt.mapping, scale,
                                 qt.beta, qt.alpha, qt.chunk_size)
        (w * g).sum().backward()
        return [w.detach(), *(p.grad.clone() for p in qt.parameters())]

    tol = {"rtol": 1e-5, "atol": 1e-7} if dtype == torch.float32 else {"rtol": 1e-12,
                                                                      "atol": 1e-14}
    for a, b in zip(run(True), run(False), strict=True):
        assert a.dtype == dtype
        torch.testing.assert_close(a, b, **tol)

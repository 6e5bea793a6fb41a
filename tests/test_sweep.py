"""The ring sweep: run_sweep against run_circuit, the chain build and the U3 VJP by hand."""

from __future__ import annotations

import itertools

import pytest
import torch

from qtrl.quantum import gates
from qtrl.quantum.fusion import chain_matrix, chain_matrix_vjp
from qtrl.quantum.statevector import Operation, probabilities, run_circuit, run_sweep

C128 = torch.complex128



def _unitaries(*shape: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(*shape, dtype=C128, generator=gen))[0]


@pytest.mark.parametrize("n, g, windows, batch, shared",
                         [(5, 3, 4, 1, True), (5, 3, 4, 2, False), (4, 4, 3, 2, True),
                          (6, 2, 7, 3, False), (7, 5, 5, 1, False), (3, 3, 1, 2, True)])
def test_sweep_equals_circuit(n: int, g: int, windows: int, batch: int, shared: bool,
                              adjoint_mode: str) -> None:
    d = 2**g
    shape = (windows, d, d) if shared else (windows, batch, d, d)
    mats = _unitaries(*shape, seed=n + g).requires_grad_()
    gen = torch.Generator().manual_seed(1)
    init = torch.randn(batch, 2**n, dtype=C128, generator=gen)
    init = (init / init.norm(dim=1, keepdim=True)).reshape(batch, *[2] * n).requires_grad_()
    w = torch.randn(batch, 2**n, dtype=torch.float64, generator=gen)
    ops = [Operation(mats[k], tuple((k * (g - 1) + i) % n for i in range(g)))
           for k in range(windows)]
    ours = run_sweep(mats, n, batch, C128, init)
    ref = run_circuit(ops, n, batch, C128, init)
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)
    grads = torch.autograd.grad((probabilities(ours) * w).sum(), (mats, init))
    expected = torch.autograd.grad((probabilities(ref) * w).sum(), (mats, init))
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_sweep_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="sweep matrices"):
        run_sweep(torch.eye(8, dtype=C128).expand(2, 8, 8), 2)          # g = 3 > n = 2
    with pytest.raises(ValueError, match="sweep matrices"):
        run_sweep(torch.eye(4, dtype=C128).expand(2, 3, 4, 4), 3, batch=2)


@pytest.mark.parametrize("batch, m", [(3, 1), (2, 3)])
def test_chain_matrix_by_hand(batch: int, m: int) -> None:
    gen = torch.Generator().manual_seed(m)
    first = torch.randn(batch, 2, 2, dtype=C128, generator=gen, requires_grad=True)
    sites = torch.randn(batch, m, 2, 2, 2, dtype=C128, generator=gen, requires_grad=True)
    d = 2 ** (m + 1)
    entries = {}
    for cs in itertools.product((0, 1), repeat=m + 1):
        for js in itertools.product((0, 1), repeat=m + 1):
            v = first[:, cs[0], js[0]]
            for i in range(m):
                v = v * sites[:, i, cs[i], cs[i + 1], js[i + 1]]
            entries[int("".join(map(str, cs)), 2), int("".join(map(str, js)), 2)] = v
    ref = torch.stack([torch.stack([entries[r, c] for c in range(d)], -1)
                       for r in range(d)], -2)
    mat, partial = chain_matrix(first, sites)
    torch.testing.assert_close(mat, ref, atol=1e-12, rtol=0)
    grad = torch.randn(batch, d, d, dtype=C128, generator=gen)
    g_first, g_sites = torch.autograd.grad(ref, (first, sites), grad)
    ours = chain_matrix_vjp(grad, sites.detach(), [p.detach() for p in partial])
    torch.testing.assert_close(ours[0], g_first, atol=1e-12, rtol=0)
    torch.testing.assert_close(ours[1], g_sites, atol=1e-12, rtol=0)


def test_u3_polar_and_vjp_match_autograd() -> None:
    gen = torch.Generator().manual_seed(0)
    angles = torch.rand(4, 5, 3, dtype=torch.float64, generator=gen) * 8 - 1
    mats, saved = gates.u3_polar(angles)
    torch.testing.assert_close(mats, gates.u3_from_angles(angles), atol=1e-14, rtol=0)
    grad = torch.randn(4, 5, 2, 2, dtype=C128, generator=gen)
    leaf = angles.clone().requires_grad_()
    (expected,) = torch.autograd.grad(gates.u3_from_angles(leaf), leaf, grad)
    torch.testing.assert_close(gates.u3_vjp(grad, saved), expected, atol=1e-13, rtol=0)

"""The rotating-frame simulator (n > 14 on the CPU) against the plain adjoint path.

``qtrl.quantum.frames.FramedCircuit`` keeps the state in rotated wire orders, applies
windows block-diagonal in their first wire as two half-size blocks, and walks the
conjugated adjoint back; every result must equal ``AdjointCircuit``'s (which
the rest of the suite checks against PennyLane, Qiskit and finite differences).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from qtrl.quantum import simulate
from qtrl.quantum.ansatz import RingU3Ansatz
from qtrl.quantum.frames import MIN_BELOW_BITS, diagonal_blocks, frame_plan
from qtrl.quantum.statevector import Operation, probabilities, run_layers


def _plain(monkeypatch) -> None:
    monkeypatch.setattr(simulate, "FRAMES_MIN_STATE", 2**62)


def _ansatz_run(n: int, layers: int, circuits: int):
    torch.manual_seed(n)
    ansatz = RingU3Ansatz(n, layers, circuits)
    w = torch.randn(2**n, generator=torch.Generator().manual_seed(1))
    probs = ansatz()
    (probs * w).sum().backward()
    return probs.detach(), ansatz.u3_angles.grad, ansatz.cu3_angles.grad


@pytest.mark.parametrize("n,layers,circuits", [(15, 2, 1), (16, 2, 2), (17, 1, 1)])
def test_ring_ansatz_matches_plain_path(n, layers, circuits, adjoint_mode, monkeypatch):
    framed = _ansatz_run(n, layers, circuits)
    _plain(monkeypatch)
    plain = _ansatz_run(n, layers, circuits)
    for got, want in zip(framed, plain):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5 * want.abs().max().item())


def _random_unitary(*shape: int, gen: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(*shape, dtype=torch.complex128, generator=gen))
    return q


def _template(n: int, layers: int, batch: int, gen: torch.Generator) -> list[Operation]:
    """Dense windows, one block-diagonal in its first wire, one across the ring's end,
    shared and per-circuit matrices."""
    lead = (layers, batch) if batch > 1 else (layers,)
    blocks = _random_unitary(*lead, 2, 4, 4, gen=gen)
    bd = torch.zeros(*lead, 8, 8, dtype=torch.complex128)
    bd[..., :4, :4], bd[..., 4:, 4:] = blocks[..., 0, :, :], blocks[..., 1, :, :]
    return [Operation(_random_unitary(layers, 8, 8, gen=gen), (0, 1, 2)),
            Operation(bd, (2, 3, 4)),
            Operation(_random_unitary(*lead, 4, 4, gen=gen), (5, 6)),
            Operation(_random_unitary(layers, 8, 8, gen=gen), (n - 2, n - 1, 0)),
            Operation(_random_unitary(*lead, 2, 2, gen=gen), (n // 2,))]


@pytest.mark.parametrize("batch", [1, 2])
def test_run_layers_matches_plain_path(batch, adjoint_mode, monkeypatch):
    n, layers = 15, 2
    gen = torch.Generator().manual_seed(batch)
    template = _template(n, layers, batch, gen)
    assert frame_plan(tuple(op.wires for op in template), n, layers, MIN_BELOW_BITS) is not None
    initial = torch.randn(batch, *[2] * n, dtype=torch.complex128, generator=gen)
    initial = initial / initial.flatten(1).norm(dim=1).view(-1, *[1] * n)
    w = torch.randn(2**n, dtype=torch.float64, generator=gen)

    def run():
        mats = [op.matrix.clone().requires_grad_() for op in template]
        x0 = initial.clone().requires_grad_()
        ops = [Operation(m, op.wires) for m, op in zip(mats, template)]
        state = run_layers(ops, n, layers, batch, torch.complex128, x0)
        (probabilities(state) * w).sum().backward()
        return [state.detach(), x0.grad, *(m.grad for m in mats)]

    framed = run()
    _plain(monkeypatch)
    plain = run()
    for got, want in zip(framed, plain):
        assert torch.allclose(got, want, atol=1e-10)
    # The block-diagonal window's gradient is the full one, off-diagonal blocks too.
    assert framed[3][..., :4, 4:].abs().max() > 1e-3


def test_frame_plan_fits_every_window():
    n, layers = 20, 3
    wires = tuple(tuple(op.wires) for op in RingU3Ansatz(n, layers).layered_operations())
    bits = MIN_BELOW_BITS
    frames = frame_plan(wires, n, layers, bits)
    assert len(frames) == layers * len(wires)
    for step, f in enumerate(frames):
        w = wires[step % len(wires)]
        assert (w[0] - f) % n + len(w) + bits <= n
    changes = sum(a != b for a, b in itertools.pairwise(frames))
    assert changes <= len(frames) // 4                       # several windows per frame
    assert frame_plan(((3, 1),), n, 1, bits) is None         # not consecutive on the ring
    assert frame_plan(((0, 5),), n, 1, bits) is None


def test_ring_windows_after_the_first_are_block_diagonal():
    ops = RingU3Ansatz(16, 2).layered_operations()
    found = [diagonal_blocks(op.matrix.detach()) is not None for op in ops]
    assert found == [False] + [True] * (len(ops) - 1)

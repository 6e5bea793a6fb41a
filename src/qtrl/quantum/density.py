"""Exact noisy simulation: density matrices under Qiskit Aer's depolarizing model.

The noise model is the one :class:`~qtrl.quantum.aer.QiskitBackend` gives
Aer: the circuit is written in the ``u3``/``cx`` basis (Qiskit's transpile at
``optimization_level=0``) and every basis gate is followed by a depolarizing
channel of parameter ``λ`` on its wires (Aer's ``depolarizing_error(λ, m)``)::

    ρ → (1 − λ) ρ + λ · Tr_wires(ρ) ⊗ I / 2^m

Basis of the ``u3``/``cx`` decomposition (global phases dropped: a density
matrix does not see them). ``rx(θ) = u3(θ, −π/2, π/2)``, ``ry(θ) = u3(θ, 0, 0)``,
``rz(θ) = u3(0, 0, θ)``, ``h = u3(π/2, 0, π)``, ``x = u3(π, 0, π)``; and
Qiskit's ``CU3Gate`` definition, control ``c``, target ``t``::

    u3(0, 0, (λ−φ)/2) on t;  u3(0, 0, (λ+φ)/2) on c;  cx c,t;
    u3(−θ/2, 0, −(λ+φ)/2) on t;  cx c,t;  u3(θ/2, φ, 0) on t

so a CU3 costs 4 one-qubit and 2 two-qubit channels.

Representation (Pauli transfer matrices). A Hermitian ``ρ`` on ``n`` qubits is
``ρ = 2^-n Σ_P r_P P`` over Pauli strings ``P ∈ {I, X, Y, Z}^n`` with *real*
``r_P = Tr(P ρ)``; we keep ``r`` as a real ``(batch, 4^n)`` tensor, one base-4
digit per wire (wire 0 the most significant). A channel ``E`` acts on ``r`` by
its real transfer matrix ``R[P', P] = 2^-m Tr(P' E(P))``: for a unitary,
``R = 2^-m Re Tr(P' U P U†)``; depolarizing ``λ`` is ``diag(1, 1−λ, …, 1−λ)``
(all but the identity string shrink). This is the same exact arithmetic as
``(batch, 2^(2n))`` complex row/column vectorisation with superoperators
``U ⊗ Ū``, but real and half the size: a fused two-qubit channel is a real
16×16 matrix (a quarter of the complex one's multiply-adds), applied to two
base-4 axes of ``r``.

Fusion. One-qubit channels wait on their wire and join the next two-qubit
channel touching it; two-qubit channels on the same pair merge. A ring-U3 layer
(U3 on every wire, then CU3 on the ring pairs) becomes ``n`` 16×16 matrices,
each "the U3 before it + the CU3's 6 gates + 6 channels", so ``n · L``
applications in all. The matrices of all rows and all blocks with the same
gate pattern are built at once (batched matmuls of 4×4 and 16×16).

Start ``|0…0⟩``: ``r_P = 1`` for ``P ∈ {I, Z}^n``, else 0. End:
``p(x) = 2^-n Σ_{P ∈ {I,Z}^n} r_P Π_{q: P_q = Z} (−1)^{x_q}``.

Differentiation is plain autograd through these real matmuls: channels are not
unitary, so the adjoint trick of :mod:`qtrl.quantum.adjoint` does not
apply; the graph keeps one ``r`` per fused block.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import psutil
import torch
from torch import Tensor

from ..errors import UserError
from . import gates as G
from .kernels import apply_flat
from .memory import human_bytes

if TYPE_CHECKING:
    from .template import CircuitTemplate

__all__ = [
    "DensityMatrixTooLarge",
    "check_density_fits",
    "density_bytes",
    "noisy_probabilities",
]

# Largest r (elements, all rows of one pass) built at once; more rows run in passes.
_PASS_ELEMENTS = 2**22


class DensityMatrixTooLarge(MemoryError, UserError):
    """The requested circuit's density matrix would not fit in memory."""


# ---------------------------------------------------------------- the u3/cx basis


class _Op(NamedTuple):
    """A basis gate: ``u3`` (index ``k`` into the stacked one-qubit gates) or ``cx``."""

    kind: str
    wires: tuple[int, ...]
    k: int = -1


class _Plan(NamedTuple):
    """A template compiled for :func:`noisy_probabilities` (cached per template).

    ``u3_map``, ``u3_offset``: the ``K`` basis u3s' angles as an affine map of
    the template's, ``angles @ u3_map.T + u3_offset`` -> ``(batch, 3K)``.
    ``groups``: per gate pattern ``(width, steps, k)``: ``steps`` of
    ``("u", position)`` / ``("cx", control position)``, ``k`` ``(G, u-steps)``
    the u3 of each block's u-steps. ``blocks``: in circuit order,
    ``(wires, group, index in group)``.
    """

    u3_map: Tensor
    u3_offset: Tensor
    groups: tuple[tuple[int, tuple[tuple[str, int], ...], Tensor], ...]
    blocks: tuple[tuple[tuple[int, ...], int, int], ...]


_HALF_PI = math.pi / 2
# Gate name -> its one-qubit u3: per angle, (template angle index or None, factor, constant).
_AS_U3: dict[str, tuple[tuple[int | None, float, float], ...]] = {
    "u3": ((0, 1.0, 0.0), (1, 1.0, 0.0), (2, 1.0, 0.0)),
    "rx": ((0, 1.0, 0.0), (None, 0.0, -_HALF_PI), (None, 0.0, _HALF_PI)),
    "ry": ((0, 1.0, 0.0), (None, 0.0, 0.0), (None, 0.0, 0.0)),
    "rz": ((None, 0.0, 0.0), (None, 0.0, 0.0), (0, 1.0, 0.0)),
    "h": ((None, 0.0, _HALF_PI), (None, 0.0, 0.0), (None, 0.0, math.pi)),
    "x": ((None, 0.0, math.pi), (None, 0.0, 0.0), (None, 0.0, math.pi)),
}


def _basis(template: CircuitTemplate) -> tuple[list[_Op], list[list[dict[int, float]]],
                                                 list[list[float]]]:
    """The template in the u3/cx basis: ops, and each u3's angles as
    ``{template column: factor}`` plus a constant."""
    ops: list[_Op] = []
    coef: list[list[dict[int, float]]] = []
    const: list[list[float]] = []

    def u3(wire: int, angles: Sequence[tuple[dict[int, float], float]]) -> None:
        ops.append(_Op("u3", (wire,), len(coef)))
        coef.append([a for a, _ in angles])
        const.append([c for _, c in angles])

    for g in template.gates:
        k = g.offset
        if g.name in _AS_U3:
            u3(g.wires[0], [({k + i: f} if i is not None else {}, c)
                            for i, f, c in _AS_U3[g.name]])
        elif g.name in ("cx", "cnot"):
            ops.append(_Op("cx", g.wires))
        else:  # cu3: Qiskit's CU3Gate definition (module docstring)
            c, t = g.wires
            th, ph, la = k, k + 1, k + 2
            u3(t, [({}, 0.0), ({}, 0.0), ({la: 0.5, ph: -0.5}, 0.0)])
            u3(c, [({}, 0.0), ({}, 0.0), ({la: 0.5, ph: 0.5}, 0.0)])
            ops.append(_Op("cx", (c, t)))
            u3(t, [({th: -0.5}, 0.0), ({}, 0.0), ({la: -0.5, ph: -0.5}, 0.0)])
            ops.append(_Op("cx", (c, t)))
            u3(t, [({th: 0.5}, 0.0), ({ph: 1.0}, 0.0), ({}, 0.0)])
    return ops, coef, const


def _fuse(ops: list[_Op], n: int) -> list[tuple[tuple[int, ...], list[_Op]]]:
    """Blocks ``(wires, ops)`` in circuit order, on one or two wires each.

    One-qubit ops wait on their wire and join the next block touching it (they
    commute with every block in between, which touches other wires); a
    two-qubit op joins the last block if that block is on the same pair. What
    still waits at the end joins the last block on its wire (nothing after that
    block touches the wire), or becomes a block of its own.
    """
    blocks: list[tuple[tuple[int, ...], list[_Op]]] = []
    waiting: list[list[_Op]] = [[] for _ in range(n)]
    last_on: dict[int, int] = {}
    for op in ops:
        if op.kind == "u3":
            waiting[op.wires[0]].append(op)
            continue
        a, b = op.wires
        steps = waiting[a] + waiting[b] + [op]
        waiting[a], waiting[b] = [], []
        if blocks and set(blocks[-1][0]) == {a, b}:
            blocks[-1][1].extend(steps)
        else:
            blocks.append(((a, b), steps))
        last_on[a] = last_on[b] = len(blocks) - 1
    for w in range(n):
        if waiting[w]:
            if w in last_on:
                blocks[last_on[w]][1].extend(waiting[w])
            else:
                blocks.append(((w,), waiting[w]))
    return blocks


@functools.lru_cache(maxsize=64)
def _plan(template: CircuitTemplate) -> _Plan:
    ops, coef, const = _basis(template)
    K, P = len(coef), template.n_angles
    u3_map = torch.zeros(3 * K, P, dtype=torch.float64)
    for j, angles in enumerate(coef):
        for i, terms in enumerate(angles):
            for col, f in terms.items():
                u3_map[3 * j + i, col] += f
    u3_offset = torch.tensor([c for row in const for c in row], dtype=torch.float64)

    patterns: dict[tuple[int, tuple[tuple[str, int], ...]], list[list[int]]] = {}
    placed: list[tuple[tuple[int, ...], tuple[int, tuple[tuple[str, int], ...]], int]] = []
    for wires, block_ops in _fuse(ops, template.n_qubits):
        steps = tuple(("u", wires.index(op.wires[0])) if op.kind == "u3"
                      else ("cx", wires.index(op.wires[0])) for op in block_ops)
        key = (len(wires), steps)
        members = patterns.setdefault(key, [])
        placed.append((wires, key, len(members)))
        members.append([op.k for op in block_ops if op.kind == "u3"])
    keys = list(patterns)
    groups = tuple((width, steps, torch.tensor(patterns[(width, steps)], dtype=torch.long)
                    .reshape(len(patterns[(width, steps)]), -1))
                   for width, steps in keys)
    blocks = tuple((wires, keys.index(key), i) for wires, key, i in placed)
    return _Plan(u3_map, u3_offset, groups, blocks)


# ---------------------------------------------------------------- transfer matrices


def _paulis(m: int, dtype: torch.dtype) -> Tensor:
    """The ``4^m`` Pauli strings on ``m`` qubits, ``(4^m, 2^m, 2^m)``, first qubit MSB."""
    one = torch.tensor([[[1, 0], [0, 1]], [[0, 1], [1, 0]], [[0, -1j], [1j, 0]],
                        [[1, 0], [0, -1]]], dtype=dtype)
    out = one
    for _ in range(m - 1):
        d = out.shape[-1]
        out = (out[:, None, :, None, :, None] * one[None, :, None, :, None, :]).reshape(
            -1, 2 * d, 2 * d)
    return out


def _transfer(u: Tensor) -> Tensor:
    """Real transfer matrix of ``ρ → U ρ U†``: ``(..., d, d)`` complex -> ``(..., d², d²)``,
    ``R[i, j] = Re Tr(P_i U P_j U†) / d``."""
    d = u.shape[-1]
    paulis = _paulis(int(math.log2(d)), u.dtype).to(u.device)     # (d², d, d)
    conj = u.unsqueeze(-3) @ paulis @ u.mH.unsqueeze(-3)            # U P_j U†: (..., d², d, d)
    # Tr(P_i M_j) = Σ_ab P_i[b, a] M_j[a, b]: one matmul of the flattened matrices.
    r = conj.reshape(*u.shape[:-2], d * d, d * d) @ paulis.transpose(-1, -2).reshape(d * d, -1).T
    return r.real.transpose(-1, -2) / d


@functools.lru_cache(maxsize=8)
def _cx_transfer(dtype: torch.dtype, control: int) -> Tensor:
    """Transfer matrix of CX with the control on block position ``control`` (float64)."""
    cx = G.cnot(torch.complex128)
    if control == 1:
        swap = torch.eye(4, dtype=torch.complex128)[[0, 2, 1, 3]]
        cx = swap @ cx @ swap
    return _transfer(cx).to(dtype)


def _depolarize(r: Tensor, lam: float) -> Tensor:
    """``diag(1, 1−λ, …) · R``: a gate's transfer matrix followed by depolarizing ``λ``."""
    if lam == 0:
        return r
    scale = torch.full((r.shape[-2], 1), 1.0 - lam, dtype=r.dtype, device=r.device)
    scale[0] = 1.0
    return r * scale


def _block_matrices(plan: _Plan, angles: Tensor, lam: float) -> list[Tensor]:
    """Each pattern group's fused transfer matrices ``(batch, G, 4^w, 4^w)``."""
    dt = angles.dtype
    batch = angles.shape[0]
    k = plan.u3_offset.numel() // 3
    u3_angles = (angles @ plan.u3_map.to(angles.device, dt).T
                 + plan.u3_offset.to(angles.device, dt)).reshape(batch, k, 3)
    one = _depolarize(_transfer(G.u3_from_angles(u3_angles)), lam)  # (batch, K, 4, 4)
    cx = [_depolarize(_cx_transfer(dt, c).to(angles.device), lam) for c in (0, 1)]
    out = []
    for width, steps, ks in plan.groups:
        d = 4**width
        acc = torch.eye(d, dtype=dt, device=angles.device).expand(batch, ks.shape[0], d, d)
        u = 0
        for kind, pos in steps:
            if kind == "cx":
                acc = cx[pos] @ acc
                continue
            r = one[:, ks[:, u].to(angles.device)]                  # (batch, G, 4, 4)
            u += 1
            if width == 1:
                acc = r @ acc
            elif pos == 0:  # R ⊗ I on rows (P_a, P_b): contract P_a
                acc = (r @ acc.reshape(batch, -1, 4, 4 * d)).reshape(acc.shape)
            else:           # I ⊗ R: contract P_b
                acc = (r.unsqueeze(2) @ acc.reshape(batch, -1, 4, 4, d)).reshape(acc.shape)
        out.append(acc)
    return out


# ---------------------------------------------------------------- simulation


def _run(plan: _Plan, n: int, angles: Tensor, lam: float) -> Tensor:
    batch, dt = angles.shape[0], angles.dtype
    matrices = _block_matrices(plan, angles, lam)
    # |0…0><0…0|: r = 1 on every string of I (digit 0) and Z (digit 3).
    iz = _iz_index(n).to(angles.device)
    r = torch.zeros(batch, 4**n, dtype=dt, device=angles.device)
    r[:, iz] = 1
    for wires, group, i in plan.blocks:
        m = matrices[group][:, i]
        # A base-4 wire q is the two bits (2q, 2q+1) of a 2n-bit index.
        bits = tuple(b for w in wires for b in (2 * w, 2 * w + 1))
        r = apply_flat(r, m[0] if batch == 1 else m, bits, 2 * n)
    x = r[:, iz]                                                     # (batch, 2^n), I/Z strings
    for q in range(n):  # per wire: p(0) = (r_I + r_Z)/2, p(1) = (r_I − r_Z)/2
        v = x.reshape(batch, 2**q, 2, -1)
        x = torch.stack((v[:, :, 0] + v[:, :, 1], v[:, :, 0] - v[:, :, 1]), 2) * 0.5
    return x.reshape(batch, 2**n)


@functools.lru_cache(maxsize=32)
def _iz_index(n: int) -> Tensor:
    """Flat index of the string with Z where bit ``x`` has a 1, I elsewhere, for every
    ``x`` in ``0 .. 2^n − 1`` (wire 0 the MSB)."""
    idx = torch.zeros(1, dtype=torch.long)
    for _ in range(n):
        idx = (idx[:, None] * 4 + torch.tensor([0, 3])).reshape(-1)
    return idx


def noisy_probabilities(template: CircuitTemplate, angles: Tensor,
                        depolarizing: float) -> Tensor:
    """Exact probabilities of every row's circuit under depolarizing noise.

    Args:
        template: the circuit; its gates are decomposed to u3/cx as Qiskit does.
        angles: ``(batch, P)`` real angles; float64 runs in float64.
        depolarizing: ``λ`` of the channel after every basis gate (0: noise-free).
    Returns:
        ``(batch, 2**n)`` probabilities, dtype of ``angles``, wire 0 the MSB;
        differentiable with respect to ``angles``.
    Raises:
        DensityMatrixTooLarge: the rows' density matrices would not fit in memory.
    """
    if not 0.0 <= depolarizing <= 1.0:
        raise UserError(f"depolarizing probability must be in [0, 1], got {depolarizing!r}")
    G.complex_dtype_for(angles.dtype)  # a real floating dtype, or TypeError
    n, batch = template.n_qubits, angles.shape[0]
    plan = _plan(template)
    grad = torch.is_grad_enabled() and angles.requires_grad
    check_density_fits(n, batch if grad else min(batch, _rows_per_pass(n)), angles.dtype,
                       blocks=len(plan.blocks) if grad else 0)
    if batch == 0:
        return angles.new_zeros(0, 2**n)
    step = _rows_per_pass(n)
    outs = [_run(plan, n, angles[lo:lo + step], float(depolarizing))
            for lo in range(0, batch, step)]
    return outs[0] if len(outs) == 1 else torch.cat(outs)


def _rows_per_pass(n: int) -> int:
    return max(1, _PASS_ELEMENTS // 4**n)


# ---------------------------------------------------------------- memory


# Live r tensors at the peak of a pass, on top of one saved per block when
# autograd records: the current r, a moved copy, a matmul output, a gradient.
_PEAK_EXTRA = 4


def density_bytes(n_qubits: int, circuits: int = 1, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of the real ``4^n`` Pauli vectors of ``circuits`` density matrices."""
    return circuits * 4**n_qubits * torch.empty(0, dtype=dtype).element_size()


def check_density_fits(n_qubits: int, circuits: int = 1, dtype: torch.dtype = torch.float32,
                       blocks: int = 0, available: int | None = None) -> int:
    """Raise :class:`DensityMatrixTooLarge` unless the simulation fits; return the estimate.

    Args:
        n_qubits: qubits per circuit.
        circuits: circuits simulated side by side.
        dtype: real dtype of the angles (the Pauli vectors have it).
        blocks: fused blocks whose input autograd keeps (0: no gradient).
        available: bytes available (default: what the OS reports now).
    """
    one = density_bytes(n_qubits, circuits, dtype)
    need = (blocks + _PEAK_EXTRA) * one
    have = psutil.virtual_memory().available if available is None else available
    if need > have:
        raise DensityMatrixTooLarge(
            f"{circuits} noisy circuit(s) of {n_qubits} qubits need about {human_bytes(need)} "
            f"({blocks + _PEAK_EXTRA} density matrices of {human_bytes(one)}) but only "
            f"{human_bytes(have)} is available; use fewer qubits (more chunks), fewer circuits "
            f"at once, or no noise (statevector simulation)")
    return need

"""The mapping model of Quantum-Train and its fused, compiled forward/backward pass.

The mapping model ``f`` turns each weight's row ``[bits(i) as ±1, x_i]`` into
the weight (see :mod:`qtrl.generator`). It is a small MLP (CartPole: 11 → 10 →
10 → 10 → 1) applied to ``k`` rows: in torch that is a dozen ops forward and
as many backward on tall, thin matrices, each costing more in dispatch than in
arithmetic (BLAS calls for 898 × 11 @ 11 × 10), about 1 ms of a CartPole update.
:func:`generate_weights` runs the whole step from the probabilities to the
centred weights as one compiled pass each way:

    x = (β tanh(s p))^α,  x ← x − mean(x);   w = f([bits, x]),  w ← w − mean(w)

Layout: activations are held feature-major, ``(width, k)``, and walked in
blocks of :data:`_BLOCK` weights, so every layer is a loop of ``W[j, i] *
row_i`` updates over a block that stays in L1 cache and vectorises. The
backward pass re-reads the stored activations; the parameter gradients are
summed per block in float64. The torch modules stay the parameters' owner (and
the path used without Numba or off the CPU); results agree with them to float
rounding (``tests/test_mapping.py``).
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from . import jit
from .jit import prange
from .quantum.ansatz import RingStage, ring_probabilities

__all__ = ["ACTIVATIONS", "fused_available", "generate_from_ring", "generate_weights", "mlp"]

ACTIVATIONS: dict[str, type[nn.Module] | None] = {
    "none": None, "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU,
}
_CODES = {None: 0, nn.ReLU: 1, nn.Tanh: 2, nn.GELU: 3, nn.SiLU: 4}
_BLOCK = 256
"""Weights per block: a block's activations (width × 256 floats) stay in L1."""
_FLOATS = (torch.float32, torch.float64)
_PARALLEL_MIN = 2**16
"""From this many weights the blocks are shared out over torch's thread count."""

_njit = jit.njit(fastmath=True)
_njit_parallel = jit.njit(fastmath=True, parallel=True)


def mlp(sizes: Sequence[int], activation: str) -> nn.Sequential:
    """``Linear`` layers of ``sizes`` with ``activation`` between them (none after the last)."""
    act = ACTIVATIONS[activation]
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        mods.append(nn.Linear(a, b))
        if act is not None and i < len(sizes) - 2:
            mods.append(act())
    return nn.Sequential(*mods)


def _layers(mapping: nn.Sequential) -> tuple[list[nn.Linear], int] | None:
    """The linear layers and activation code of an :func:`mlp`, or None when
    ``mapping`` is not one (the torch path then runs it)."""
    linears = [m for m in mapping if isinstance(m, nn.Linear)]
    acts = {type(m) for m in mapping if not isinstance(m, nn.Linear)}
    if len(acts) > 1 or not linears or any(m.bias is None for m in linears):
        return None
    act = acts.pop() if acts else None
    if act not in _CODES or (act is nn.GELU and any(m.approximate != "none" for m in mapping
                                                      if isinstance(m, nn.GELU))):
        return None
    expected = len(linears) - 1 if act is not None else 0
    if len(mapping) != len(linears) + expected:
        return None
    return linears, _CODES[act]


def fused_available(mapping: nn.Sequential, features: Tensor) -> bool:
    """Whether :func:`generate_weights` runs compiled for this mapping model."""
    plan = _plan(mapping)
    return plan is not None and _fusable(features, plan[0])


# --- kernels ---------------------------------------------------------------------

@_njit
def _pre(p, chunk: int, scale, beta, alpha, x) -> None:
    """x_r = (β tanh(s p_r))^α, centred (the mean taken in float64); weight ``r``
    reads ``p[r // chunk, r % chunk]``."""
    total = 0.0
    for r in range(x.size):
        v = beta * math.tanh(scale * p[r // chunk, r % chunk])
        if alpha != 1.0:
            v = v ** alpha
        x[r] = v
        total += v
    mean = total / x.size
    for r in range(x.size):
        x[r] -= mean


@_njit
def _activate(z, h, code: int) -> None:
    if code == 1:
        for c in range(z.size):
            h[c] = max(0, z[c])
    elif code == 2:
        for c in range(z.size):
            h[c] = math.tanh(z[c])
    elif code == 3:
        for c in range(z.size):
            h[c] = 0.5 * z[c] * (1.0 + math.erf(z[c] * 0.7071067811865476))
    elif code == 4:
        for c in range(z.size):
            h[c] = z[c] / (1.0 + math.exp(-z[c]))
    else:
        h[:] = z


@_njit
def _derivative(g, z, h, code: int) -> None:
    """g ← g · act'(z) (``h`` = act(z))."""
    if code == 1:
        for c in range(g.size):
            if z[c] <= 0:
                g[c] = 0
    elif code == 2:
        for c in range(g.size):
            g[c] *= 1 - h[c] * h[c]
    elif code == 3:
        for c in range(g.size):
            cdf = 0.5 * (1.0 + math.erf(z[c] * 0.7071067811865476))
            g[c] *= cdf + z[c] * math.exp(-0.5 * z[c] * z[c]) * 0.3989422804014327
    elif code == 4:
        for c in range(g.size):
            s = 1.0 / (1.0 + math.exp(-z[c]))
            g[c] *= s * (1.0 + z[c] * (1.0 - s))


@_njit
def _forward_block(ws, bs, code: int, features, hs, zs, lo: int, hi: int) -> None:
    """Every layer on weights ``lo..hi-1``. ``hs`` holds each layer's input
    (the first one's ``x`` row is given; its bit rows are copied from
    ``features``), ``zs`` each layer's pre-activation."""
    f = features.shape[1]
    for i in range(f):
        row = hs[i]
        for c in range(lo, hi):
            row[c] = features[c, i]
    hin = zo = 0
    for layer in range(len(ws)):
        w, b = ws[layer], bs[layer]
        n_out, n_in = w.shape
        for j in range(n_out):
            z = zs[zo + j, lo:hi]
            z[:] = b[j]
            for i in range(n_in):
                wji = w[j, i]
                h = hs[hin + i, lo:hi]
                for c in range(z.size):
                    z[c] += wji * h[c]
            if layer < len(ws) - 1:
                _activate(z, hs[hin + n_in + j, lo:hi], code)
        hin += n_in
        zo += n_out


@_njit
def _backward_block(ws, code: int, hs, zs, g_out, lo: int, hi: int, ga, gb,
                    acc, gx) -> None:
    """Back through every layer on weights ``lo..hi-1`` from ``g_out`` (the
    output's gradient): the parameter gradients are added to ``acc`` (float64,
    every layer's weights then its biases, layer after layer), the gradient of
    the ``x`` input row written to ``gx``. ``ga``, ``gb``: scratch
    ``(max width, block)``."""
    width = hi - lo
    hin = hs.shape[0] - ws[-1].shape[1]     # the last layer's input rows
    zo = zs.shape[0] - 1                    # and its pre-activation row
    ga[0, :width] = g_out[lo:hi]
    po = acc.size
    for layer in range(len(ws) - 1, -1, -1):
        w = ws[layer]
        n_out, n_in = w.shape
        po -= n_out * n_in + n_out
        for j in range(n_out):                   # dW = g ⊗ input, db = Σ g
            g = ga[j, :width]
            total = g[0] * 0                     # in the block's dtype: vectorises
            for c in range(width):
                total += g[c]
            acc[po + n_out * n_in + j] += total
            for i in range(n_in):
                h = hs[hin + i, lo:hi]
                total = g[0] * 0
                for c in range(width):
                    total += g[c] * h[c]
                acc[po + j * n_in + i] += total
        first = 0 if layer > 0 else n_in - 1     # layer 0: only the x row's gradient
        for i in range(first, n_in):             # gradient of the layer's input
            out = gb[i, :width]
            out[:] = 0
            for j in range(n_out):
                wji = w[j, i]
                g = ga[j, :width]
                for c in range(width):
                    out[c] += wji * g[c]
        if layer == 0:
            gx[lo:hi] = gb[n_in - 1, :width]
            break
        zo -= n_in
        for i in range(n_in):
            _derivative(gb[i, :width], zs[zo + i, lo:hi], hs[hin + i, lo:hi], code)
        hin -= ws[layer - 1].shape[1]
        ga, gb = gb, ga


@_njit
def _cut(blocks: int, parts: int, part: int) -> tuple[int, int]:
    return blocks * part // parts, blocks * (part + 1) // parts


@_njit
def _forward_part(ws, bs, code: int, features, hs, zs, parts: int, part: int) -> None:
    """Every layer on share ``part`` of ``parts`` of the weights' blocks."""
    k = hs.shape[1]
    first, last = _cut((k + _BLOCK - 1) // _BLOCK, parts, part)
    for b in range(first, last):
        _forward_block(ws, bs, code, features, hs, zs, b * _BLOCK, min(k, (b + 1) * _BLOCK))


@_njit
def _backward_part(ws, code: int, hs, zs, g_out, gx, acc, parts: int, part: int) -> None:
    """Back through share ``part`` of ``parts``: parameter gradients added to
    ``acc`` (float64), the ``x`` row's gradient written to ``gx``."""
    k, width = hs.shape[1], hs.shape[0]
    ga = np.empty((width, _BLOCK), hs.dtype)
    gb = np.empty((width, _BLOCK), hs.dtype)
    first, last = _cut((k + _BLOCK - 1) // _BLOCK, parts, part)
    for b in range(first, last):
        _backward_block(ws, code, hs, zs, g_out, b * _BLOCK, min(k, (b + 1) * _BLOCK),
                        ga, gb, acc, gx)


@_njit
def _accumulators(ws, parts: int):
    """Zeroed float64 sums ``(parts, every layer's weights then biases)``."""
    size = 0
    for w in ws:
        size += w.size + w.shape[0]
    return np.zeros((parts, size))


@_njit
def _store_gradients(acc, gws, gbs) -> None:
    """The parts' sums of ``acc`` into ``gws``, ``gbs`` (the parameters' shapes and dtype)."""
    total = acc.sum(0) if acc.shape[0] > 1 else acc[0]
    po = 0
    for layer in range(len(gws)):
        gw, gbias = gws[layer], gbs[layer]
        n_out, n_in = gw.shape
        for j in range(n_out):
            for i in range(n_in):
                gw[j, i] = total[po + j * n_in + i]
            gbias[j] = total[po + n_out * n_in + j]
        po += n_out * n_in + n_out


# Each pass in two versions (distinct functions, so each has its own entry in
# Numba's cache, which does not key on ``parallel``): a parallel region, even
# of one part, wakes Numba's thread pool, which costs more than the whole pass
# on a small network.

@_njit
def _forward_serial(ws, bs, code: int, features, hs, zs, parts: int) -> None:
    for part in range(parts):
        _forward_part(ws, bs, code, features, hs, zs, parts, part)


@_njit_parallel
def _forward_parallel(ws, bs, code: int, features, hs, zs, parts: int) -> None:
    for part in prange(parts):
        _forward_part(ws, bs, code, features, hs, zs, parts, part)


@_njit
def _backward_serial(ws, code: int, hs, zs, g_out, gws, gbs, gx, parts: int) -> None:
    """Parameter gradients into ``gws``, ``gbs`` (summed per part in float64),
    the ``x`` row's gradient into ``gx``."""
    acc = _accumulators(ws, parts)
    for part in range(parts):
        _backward_part(ws, code, hs, zs, g_out, gx, acc[part], parts, part)
    _store_gradients(acc, gws, gbs)


@_njit_parallel
def _backward_parallel(ws, code: int, hs, zs, g_out, gws, gbs, gx, parts: int) -> None:
    """:func:`_backward_serial` with the parts on Numba's threads."""
    acc = _accumulators(ws, parts)
    for part in prange(parts):
        _backward_part(ws, code, hs, zs, g_out, gx, acc[part], parts, part)
    _store_gradients(acc, gws, gbs)


@_njit
def _centre(values, out) -> None:
    """out = values − mean(values) (the mean in float64)."""
    mean = np.sum(values.astype(np.float64)) / values.size
    for c in range(values.size):
        out[c] = values[c] - mean


@_njit
def _pre_backward(p, chunk: int, gx, scale, beta, alpha, gp) -> None:
    """gp (``p``'s shape, zero where no weight reads) = d/dp of Σ gx · centred x
    (the centring's gradient is centring gx)."""
    mean = np.sum(gx.astype(np.float64)) / gx.size
    gp[:] = 0
    for r in range(gx.size):
        q, i = r // chunk, r % chunk
        t = math.tanh(scale * p[q, i])
        d = beta * scale * (1 - t * t)
        if alpha != 1.0:
            d *= alpha * (beta * t) ** (alpha - 1)
        gp[q, i] = (gx[r] - mean) * d


# --- autograd --------------------------------------------------------------------

def _map_forward(p_np: np.ndarray, features: Tensor, constants: tuple,
                 params: Sequence[Tensor]) -> tuple[np.ndarray, tuple]:
    """The compiled forward pass from probabilities ``p_np`` ``(Q, D)`` (the
    features' dtype) to the centred weights ``(k,)``, and what
    :func:`_map_backward` needs."""
    chunk, code, scale, beta, alpha = constants
    half = len(params) // 2
    # Copies: the backward pass must see these values even if the
    # parameters are stepped in place before it (autograd would refuse).
    ws = tuple(t.detach().numpy().copy() for t in params[:half])
    bs = tuple(t.detach().numpy().copy() for t in params[half:])
    feats = np.ascontiguousarray(features.numpy())
    k, f = feats.shape
    hs = np.empty((f + 1 + sum(w.shape[0] for w in ws[:-1]), k), feats.dtype)
    zs = np.empty((sum(w.shape[0] for w in ws), k), feats.dtype)
    _pre(p_np, chunk, scale, beta, alpha, hs[f])
    parts = jit.parts_for(k, _PARALLEL_MIN)  # sums' order: fixed below it
    (_forward_parallel if parts > 1 else _forward_serial)(ws, bs, code, feats, hs, zs, parts)
    w = np.empty(k, feats.dtype)
    _centre(zs[-1], w)
    return w, (p_np, ws, hs, zs, parts, constants, features.dtype)


def _map_backward(saved: tuple, grad: Tensor) -> tuple[np.ndarray, list[Tensor]]:
    """The probabilities' gradient ``(Q, D)`` (the features' dtype) and the
    mapping parameters' gradients (weights, then biases) from ``grad`` ``(k,)``."""
    p_np, ws, hs, zs, parts, (chunk, code, scale, beta, alpha), dtype = saved
    g = grad.to(dtype).contiguous().numpy()
    g_out = np.empty_like(g)
    _centre(g, g_out)
    gws = tuple(np.empty_like(w) for w in ws)
    gbs = tuple(np.empty(w.shape[0], w.dtype) for w in ws)
    gx = np.empty_like(g)
    (_backward_parallel if parts > 1 else _backward_serial)(ws, code, hs, zs, g_out, gws, gbs,
                                                             gx, parts)
    gp = np.empty_like(p_np)
    _pre_backward(p_np, chunk, gx, scale, beta, alpha, gp)
    return gp, [torch.from_numpy(a) for a in (*gws, *gbs)]


class _FusedGenerate(torch.autograd.Function):
    """``(p, features, constants, *weights, *biases)`` → centred weights ``(k,)``
    (``p`` ``(Q, D)``, see :func:`generate_weights`)."""

    @staticmethod
    def forward(ctx, p: Tensor, features: Tensor, constants: tuple, *params: Tensor) -> Tensor:
        p_np = p.detach().to(features.dtype).numpy()
        w, ctx.arrays = _map_forward(p_np, features, constants, params)
        ctx.p_dtype = p.dtype
        return torch.from_numpy(w)

    @staticmethod
    def backward(ctx, grad: Tensor):
        gp, grads = _map_backward(ctx.arrays, grad)
        return torch.from_numpy(gp).to(ctx.p_dtype), None, None, *grads


def ring_forward(stage: RingStage, u3: Tensor, cu3: Tensor, features: Tensor,
                 constants: tuple, params: Sequence[Tensor]) -> tuple[np.ndarray, tuple]:
    """Ring circuits (``stage``) then the compiled mapping pass: the centred
    weights ``(k,)`` and what :func:`ring_backward` needs."""
    p, circuit = stage.forward(stage.arrays(u3), stage.arrays(cu3))
    w, mapped = _map_forward(p.astype(_NUMPY[features.dtype], copy=False), features,
                             constants, params)
    return w, (stage, circuit, mapped, p.dtype)


def ring_backward(saved: tuple, grad: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
    """From the weights' gradient ``(k,)``: the ``u3``, ``cu3`` angle gradients
    and the mapping parameters' (weights, then biases)."""
    stage, circuit, mapped, p_dtype = saved
    gp, grads = _map_backward(mapped, grad)
    g_u3, g_cu3 = stage.vjp(circuit, gp.astype(p_dtype, copy=False))
    return (torch.from_numpy(g_u3.astype(p_dtype)), torch.from_numpy(g_cu3.astype(p_dtype)),
            grads)


class _FusedRingGenerate(torch.autograd.Function):
    """``(u3, cu3, stage, features, constants, *weights, *biases)`` → centred
    weights ``(k,)``: the ring circuit's kernels (``stage``) and the mapping
    pass in one autograd node. The same kernels on the same arrays as
    ``_FusedGenerate`` after the circuit's own Function, so the same numbers;
    one node and no tensor round trips between them (measured ~70 µs of the
    ~0.8 ms that a CartPole generation takes forward and backward)."""

    @staticmethod
    def forward(ctx, u3: Tensor, cu3: Tensor, stage: RingStage, features: Tensor,
                constants: tuple, *params: Tensor) -> Tensor:
        w, ctx.arrays = ring_forward(stage, u3, cu3, features, constants, params)
        return torch.from_numpy(w)

    @staticmethod
    def backward(ctx, grad: Tensor):
        g_u3, g_cu3, grads = ring_backward(ctx.arrays, grad)
        return (g_u3, g_cu3, None, None, None, *grads)


_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


_PLANS: weakref.WeakKeyDictionary[nn.Sequential, tuple] = weakref.WeakKeyDictionary()


def _plan(mapping: nn.Sequential) -> tuple[list[nn.Linear], int] | None:
    """:func:`_layers` of ``mapping``, looked up once per module."""
    if mapping not in _PLANS:
        _PLANS[mapping] = (_layers(mapping),)
    return _PLANS[mapping][0]


def generate_weights(p: Tensor, features: Tensor, mapping: nn.Sequential, scale: float,
                     beta: float, alpha: float, chunk: int | None = None) -> Tensor:
    """Centred weights ``(k,)`` from circuit probabilities, differentiable in ``p``
    and in ``mapping``'s parameters.

    Args:
        p: probabilities ``(Q, D)`` of ``Q`` chunk circuits (or ``(k,)``);
            weight ``r`` reads ``p[r // chunk, r % chunk]``.
        features: ±1 index bits of each weight, ``(k, f)``, the mapping's input
            without its last column (``x``).
        mapping: an :func:`mlp` of input width ``f + 1`` and output width 1.
        scale, beta, alpha: ``s = γ 2^(n-1)``, β, α of the post-processing.
        chunk: weights per circuit (default ``k``: one circuit).
    """
    k = features.shape[0]
    chunk = chunk or k
    if p.dim() == 1:
        p = p.unsqueeze(0)
    plan = _plan(mapping)
    if plan is None or not _fusable(features, plan[0]):
        flat = p[:, :chunk].reshape(-1)[:k]
        return _torch_weights(flat, features, mapping, scale, beta, alpha)
    linears, code = plan
    params = [m.weight for m in linears] + [m.bias for m in linears]
    constants = (chunk, code, float(scale), float(beta), float(alpha))
    return _FusedGenerate.apply(p, features, constants, *params)


def generate_from_ring(stage: RingStage, u3: Tensor, cu3: Tensor, features: Tensor,
                       mapping: nn.Sequential, scale: float, beta: float, alpha: float,
                       chunk: int | None = None) -> Tensor:
    """:func:`generate_weights` of the probabilities of ring-U3 circuits with
    angles ``u3``, ``cu3`` ``(Q, L, n, 3)``, run by ``stage``
    (:meth:`~qtrl.quantum.ansatz.RingU3Ansatz.stage`): circuit and mapping pass
    in one autograd node where the mapping pass is compiled, else the circuit's
    probabilities through :func:`generate_weights`."""
    k = features.shape[0]
    plan = _plan(mapping)
    if plan is None or not _fusable(features, plan[0]):
        return generate_weights(ring_probabilities(u3, cu3), features, mapping, scale, beta,
                                alpha, chunk)
    linears, code = plan
    params = [m.weight for m in linears] + [m.bias for m in linears]
    constants = (chunk or k, code, float(scale), float(beta), float(alpha))
    return _FusedRingGenerate.apply(u3, cu3, stage, features, constants, *params)


def _fusable(features: Tensor, linears: list[nn.Linear]) -> bool:
    """The compiled pass runs: Numba, CPU, float32/64 throughout."""
    dtype = features.dtype
    return (jit.available() and features.is_cpu and dtype in _FLOATS
            and all(m.weight.dtype == dtype and m.weight.is_cpu for m in linears))


def _torch_weights(p: Tensor, features: Tensor, mapping: nn.Sequential, scale: float,
                   beta: float, alpha: float) -> Tensor:
    """The same computation as torch ops (no Numba, or off the CPU)."""
    x = torch.tanh(p * scale)
    if beta != 1:  # skipped when they are the identity: fewer autograd nodes
        x = x * beta
    if alpha != 1:
        x = x ** alpha
    x = (x - x.mean()).to(features.dtype)
    w = mapping(torch.cat((features, x.unsqueeze(1)), 1)).squeeze(1)
    return w - w.mean()


@jit.warmup
def _warm() -> None:
    """Compile the fused pass for float32 and three hidden layers, the presets'
    (the number of layers is part of its signature, their widths are not)."""
    probs = torch.full((1, 4), 0.25, requires_grad=True)
    weights = generate_weights(probs, torch.ones(4, 2), mlp([3, 2, 2, 2, 1], "relu"),
                               1.0, 1.0, 1.0)
    (weights * torch.arange(4.0)).sum().backward()

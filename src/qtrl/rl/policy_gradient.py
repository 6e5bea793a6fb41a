"""The REINFORCE loss of a dense policy and its gradient, as one compiled pass.

Step 3 of an update (DESIGN §4) evaluates the policy on the whole batch and
backpropagates the loss into the policy's weights. In torch that is ~15 ops
forward and as many backward on ``(B, 4) → (B, 128) → (B, 2)`` arrays, each
costing more in dispatch than in arithmetic: ~0.6–0.8 ms of a CartPole update
whose roll-out of ~200 steps takes ~4 ms. For the policies
:func:`qtrl.presets.build_policy` makes (an ``nn.Sequential`` of ``Linear``
layers with ReLU or tanh between them) :func:`dense_reinforce_loss` does it in
one Numba call: per step, forward through the layers, log-softmax, the loss
terms of :func:`qtrl.rl.reinforce.reinforce_loss`, and back through the
layers, the weight gradients summed over the batch in float64. Wrapped as an
autograd Function, so the gradient reaches whatever made the weights (the
Quantum-Train generator, or the classical policy's own parameters).

The loss (see :mod:`qtrl.rl.reinforce`), with ``w_t = Ĝ_t / E`` and
``c = c_ent / E``::

    loss = Σ_t [ −w_t log π(a_t|s_t) − c H(π(·|s_t)) ]
    ∂loss/∂z_tk = w_t (π_k − 1[k = a_t]) + c π_k (log π_k + H_t)     (z: logits)

Agreement with the torch ops, ``gradcheck`` and the per-step formulation:
``tests/test_policy_gradient.py``.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import jit
from .reinforce import EPS, LossTerms

__all__ = ["dense_pass", "dense_plan", "dense_reinforce_loss"]

_ACTS = {nn.ReLU: 1, nn.Tanh: 2}
_EPS = EPS
_FLOATS = (torch.float32, torch.float64)
_njit = jit.njit(fastmath=True)


# --- kernel ----------------------------------------------------------------------

@_njit
def _loss_pass(obs, actions, returns, episodes, c_ent, params, layout,
               grads):  # pragma: no cover - compiled
    """Loss, policy loss and summed entropy of the batch; gradients added to
    ``grads`` (float64, laid out as ``params``). ``returns`` are the raw
    returns-to-go, normalised here (unbiased std, as
    :func:`qtrl.rl.reinforce.normalise_returns`) and divided by ``episodes``;
    ``c_ent`` is the entropy coefficient divided by ``episodes``.

    ``params``: every layer's matrix then bias, flat; ``layout`` rows: offset
    of the matrix, offset of the bias, in, out, activation after the layer (0
    none, 1 ReLU, 2 tanh), orientation. Orientation 1: the matrix is ``W^T``
    ``(in, out)`` and the loops run over outputs innermost; 0: ``W`` ``(out,
    in)``, inputs innermost. Whichever side is wider is innermost, so the
    inner loops vectorise (4 → 128 and 128 → 2 alike).
    """
    b = returns.size
    mean = 0.0
    for r in range(b):
        mean += returns[r]
    mean /= b
    scale = 1.0 / episodes
    if b > 1:
        var = 0.0
        for r in range(b):
            var += (returns[r] - mean) ** 2
        scale /= math.sqrt(var / (b - 1)) + _EPS
    n_layers = layout.shape[0]
    width = obs.shape[1]
    total = obs.shape[1]
    for l in range(n_layers):
        width = max(width, layout[l, 3])
        total += layout[l, 3]
    a = np.empty(total, params.dtype)          # every layer's input, then the logits
    delta = np.empty(width, np.float64)
    back = np.empty(width, np.float64)
    policy = 0.0
    entropy = 0.0
    n_out = layout[n_layers - 1, 3]
    logp = np.empty(n_out, np.float64)
    for r in range(obs.shape[0]):
        a[:obs.shape[1]] = obs[r]
        at = 0
        for l in range(n_layers):              # forward
            w_at, b_at, n_i, n_o, act, wide = layout[l]
            x = a[at:at + n_i]
            z = a[at + n_i:at + n_i + n_o]
            if wide:                           # z = b + Σ_i x_i W^T[i, :]
                z[:] = params[b_at:b_at + n_o]
                for i in range(n_i):
                    xi = x[i]
                    row = params[w_at + i * n_o:w_at + (i + 1) * n_o]
                    for k in range(n_o):
                        z[k] += xi * row[k]
            else:                              # z_k = b_k + W[k, :] · x
                for k in range(n_o):
                    row = params[w_at + k * n_i:w_at + (k + 1) * n_i]
                    t = params[b_at + k] * 0
                    for i in range(n_i):
                        t += row[i] * x[i]
                    z[k] = params[b_at + k] + t
            if act == 1:
                zero = z[0] * 0                # in z's dtype: the loop vectorises
                for k in range(n_o):
                    z[k] = max(z[k], zero)
            elif act == 2:
                for k in range(n_o):
                    z[k] = math.tanh(z[k])
            at += n_i
        logits = a[at:at + n_out]
        top = logits[0]
        for k in range(1, n_out):
            top = max(top, logits[k])
        s = 0.0
        for k in range(n_out):
            s += math.exp(logits[k] - top)
        lse = top + math.log(s)
        h = 0.0
        for k in range(n_out):
            logp[k] = logits[k] - lse
            h -= math.exp(logp[k]) * logp[k]
        chosen = actions[r]
        wr = (returns[r] - mean) * scale
        policy -= wr * logp[chosen]
        entropy += h
        for k in range(n_out):                 # ∂loss/∂logits
            p = math.exp(logp[k])
            delta[k] = wr * (p - (1.0 if k == chosen else 0.0)) + c_ent * p * (logp[k] + h)
        for l in range(n_layers - 1, -1, -1):  # backward
            w_at, b_at, n_i, n_o, act, wide = layout[l]
            at -= n_i
            x = a[at:at + n_i]
            for k in range(n_o):
                grads[b_at + k] += delta[k]
            into = l > 0
            if wide:
                for i in range(n_i):
                    xi = np.float64(x[i])
                    g = grads[w_at + i * n_o:w_at + (i + 1) * n_o]
                    for k in range(n_o):
                        g[k] += xi * delta[k]
                if into:                       # back_i = W^T[i, :] · δ
                    for i in range(n_i):
                        row = params[w_at + i * n_o:w_at + (i + 1) * n_o]
                        t = 0.0
                        for k in range(n_o):
                            t += row[k] * delta[k]
                        back[i] = t
            else:
                if into:
                    back[:n_i] = 0.0
                for k in range(n_o):
                    dk = delta[k]
                    g = grads[w_at + k * n_i:w_at + (k + 1) * n_i]
                    for i in range(n_i):
                        g[i] += dk * x[i]
                    if into:                   # back += δ_k W[k, :]
                        row = params[w_at + k * n_i:w_at + (k + 1) * n_i]
                        for i in range(n_i):
                            back[i] += dk * row[i]
            if not into:
                break
            prev_act = layout[l - 1, 4]        # through the input's activation
            if prev_act == 1:
                for i in range(n_i):
                    delta[i] = back[i] * (x[i] > 0)
            elif prev_act == 2:
                for i in range(n_i):
                    delta[i] = back[i] * (1.0 - np.float64(x[i]) * x[i])
            else:
                delta[:n_i] = back[:n_i]
    return policy - c_ent * entropy, policy, entropy


# --- plan and autograd ---------------------------------------------------------------

_PLANS: weakref.WeakKeyDictionary[nn.Module, tuple] = weakref.WeakKeyDictionary()


def dense_plan(target: nn.Module) -> tuple[tuple[tuple[str, str, int], ...], int] | None:
    """``((weight name, bias name, activation code), …)`` and the output width of
    an ``nn.Sequential`` of biased ``Linear`` layers each followed by at most one
    ReLU/tanh, none after the last; None for any other module. Looked up once
    per module and layer count."""
    size = len(target) if isinstance(target, nn.Sequential) else -1
    known = _PLANS.get(target)
    if known is None or known[0] != size:
        known = _PLANS[target] = (size, _make_plan(target) if size > 0 else None)
    return known[1]


def _make_plan(target: nn.Sequential) -> tuple[tuple[tuple[str, str, int], ...], int] | None:
    layers: list[list[Any]] = []
    out = 0
    for idx, m in enumerate(target):
        if type(m) is nn.Linear and m.bias is not None:
            layers.append([f"{idx}.weight", f"{idx}.bias", 0])
            out = m.out_features
        elif type(m) in _ACTS and layers and layers[-1][2] == 0:
            layers[-1][2] = _ACTS[type(m)]
        else:
            return None
    if not layers or layers[-1][2] != 0:
        return None
    return tuple((w, b, act) for w, b, act in layers), out


def dense_pass(arrays: list[np.ndarray], acts: tuple[int, ...], obs: np.ndarray,
               actions: np.ndarray, returns: np.ndarray, episodes: int, c_ent: float
               ) -> tuple[float, float, float, list[np.ndarray]]:
    """The compiled pass on NumPy weights ``arrays`` (per layer ``W (out, in)``,
    then ``b``): loss, policy loss, summed entropy and the gradients (same
    shapes and dtype). ``c_ent``: the entropy coefficient over ``episodes``."""
    np_dtype = arrays[0].dtype
    chunks, rows, at = [], [], 0
    for layer, act in enumerate(acts):
        weight, bias = arrays[2 * layer], arrays[2 * layer + 1]
        n_out, n_in = weight.shape
        wide = int(n_out >= n_in)              # see _loss_pass: the wider side innermost
        rows.append((at, at + weight.size, n_in, n_out, act, wide))
        chunks += [weight.T.ravel() if wide else weight.ravel(), bias]
        at += weight.size + bias.size
    params = np.concatenate(chunks)
    grads = np.zeros(params.size)
    loss, policy, entropy = _loss_pass(np.ascontiguousarray(obs, dtype=np_dtype),
                                       np.ascontiguousarray(actions, dtype=np.int64),
                                       np.ascontiguousarray(returns, dtype=np.float64),
                                       episodes, c_ent, params, np.array(rows, dtype=np.int64),
                                       grads)
    grads = grads.astype(np_dtype)
    out = []
    for w_at, b_at, n_in, n_out, _, wide in rows:
        g_w = grads[w_at:w_at + n_in * n_out]
        out += [g_w.reshape(n_in, n_out).T if wide else g_w.reshape(n_out, n_in),
                grads[b_at:b_at + n_out]]
    return loss, policy, entropy, out


class _DenseLoss(torch.autograd.Function):
    """``(obs, actions, returns, episodes, c_ent, acts, parts, *weights_and_biases)``
    → the loss; the gradients are computed with it and handed back, the policy
    loss and summed entropy are written to ``parts`` (logged only)."""

    @staticmethod
    def forward(ctx, obs: np.ndarray, actions: np.ndarray, returns: np.ndarray,
                episodes: int, c_ent: float, acts: tuple[int, ...], parts: list,
                *tensors: Tensor) -> Tensor:
        arrays = [t.detach().numpy() for t in tensors]
        loss, policy, entropy, grads = dense_pass(arrays, acts, obs, actions, returns,
                                                  episodes, c_ent)
        parts += [policy, entropy]
        ctx.grads = [torch.from_numpy(g) for g in grads]
        return torch.from_numpy(np.array(loss, dtype=arrays[0].dtype))

    @staticmethod
    def backward(ctx, g_loss: Tensor):
        scale = float(g_loss)
        grads = ctx.grads if scale == 1.0 else [g * scale for g in ctx.grads]
        return (None,) * 7 + tuple(grads)


def dense_reinforce_loss(target: nn.Module, weights: dict[str, Tensor], obs: np.ndarray,
                         actions: np.ndarray, returns: np.ndarray, episodes: int,
                         entropy_coef: float = 0.0) -> LossTerms | None:
    """The REINFORCE loss of ``target`` run with ``weights`` on a batch, by the
    compiled pass; None where it does not apply (another module, no Numba, off
    the CPU, not float32/64), and the caller runs the torch ops instead.

    Args:
        obs: ``(B, d)`` observations; actions: ``(B,)`` int64.
        returns: ``(B,)`` returns-to-go, *not* normalised (done here, in float64).
        episodes, entropy_coef: as :func:`qtrl.rl.reinforce.reinforce_loss`.
    Returns:
        :class:`~qtrl.rl.reinforce.LossTerms`: the loss differentiable in
        ``weights``; the policy loss and the mean entropy per step as floats.
    """
    plan = dense_plan(target)
    if plan is None or not jit.available():
        return None
    layers, _ = plan
    tensors = [t for w_name, b_name, _ in layers for t in (weights[w_name], weights[b_name])]
    if any(t.dtype not in _FLOATS or not t.is_cpu or t.dtype != tensors[0].dtype
           for t in tensors):
        return None
    parts: list[float] = []
    loss = _DenseLoss.apply(obs, np.ascontiguousarray(actions, dtype=np.int64),
                            np.ascontiguousarray(returns, dtype=np.float64), episodes,
                            entropy_coef / episodes, tuple(act for _, _, act in layers), parts,
                            *tensors)
    policy, entropy = parts
    return LossTerms(loss, policy, entropy / max(len(actions), 1))

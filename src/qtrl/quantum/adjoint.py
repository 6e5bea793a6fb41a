"""Adjoint-differentiated circuits: the autograd Functions behind
:func:`~qtrl.quantum.statevector.run_layers` and :func:`~qtrl.quantum.statevector.run_sweep`.

The adjoint method (as PennyLane-Lightning uses): the forward pass keeps only
the final state (or, for small circuits, every intermediate one); the backward
pass walks the circuit in reverse, recovering each earlier state by applying the
inverse (conjugate-transpose) gate, and forms the gradient of every gate matrix
from the adjoint and the recovered state. Peak memory is a few states,
independent of circuit depth. The matrices must be unitary.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .kernels import apply_flat, outer_sum

__all__ = ["STORE_STATES_BYTES", "AdjointCircuit", "Sweep"]

# Below this many bytes of intermediate states the forward pass keeps them, and
# the backward pass skips recomputing them by inverse gates (a quarter of the
# work). Above it, memory stays at a few states whatever the depth.
STORE_STATES_BYTES = 256 * 2**20


class AdjointCircuit(torch.autograd.Function):
    """Forward: apply every layer's operations. Backward: the adjoint method.

    Earlier states are either kept from the forward pass (small circuits) or
    recomputed by applying inverse gates to the final state (large ones).
    """

    @staticmethod
    def forward(ctx, initial: Tensor, n: int, wires: tuple, layers: int,
                *stacks: Tensor) -> Tensor:
        steps = layers * len(stacks)
        store = steps * initial.numel() * initial.element_size() <= STORE_STATES_BYTES
        kept = []
        x = initial
        for layer in range(layers):
            for stack, w in zip(stacks, wires):
                if store:
                    kept.append(x)
                x = apply_flat(x, stack[layer], w, n)
        ctx.n, ctx.wires, ctx.layers, ctx.n_stacks = n, wires, layers, len(stacks)
        ctx.save_for_backward(x, *stacks, *kept)
        return x

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        final, *rest = ctx.saved_tensors
        stacks, kept = rest[:ctx.n_stacks], rest[ctx.n_stacks:]
        n, wires = ctx.n, ctx.wires
        wanted = ctx.needs_input_grad[4:]
        grads = [torch.empty_like(st) if need else None for st, need in zip(stacks, wanted)]
        # Inverse gates, conj-transposed once for all layers (not per call).
        inverses = [st.mH.resolve_conj() for st in stacks]
        if kept:
            adjoint = grad_out.expand_as(final)
            step = len(kept)
            for layer in range(ctx.layers - 1, -1, -1):
                for j in range(len(stacks) - 1, -1, -1):
                    step -= 1
                    matrix = stacks[j][layer]
                    if grads[j] is not None:
                        # y = M x  =>  dL/dM = g x^H, x kept from the forward pass
                        grads[j][layer] = outer_sum(adjoint, kept[step], wires[j], n,
                                                     matrix.dim() == 3)
                    adjoint = apply_flat(adjoint, inverses[j][layer], wires[j], n)
            grad_initial = adjoint
        else:
            # buf[0] is the state after a gate, buf[1] the adjoint dL/dψ* after it;
            # both are walked back together with one (batched) matmul per gate.
            buf = torch.stack(torch.broadcast_tensors(final, grad_out))
            for layer in range(ctx.layers - 1, -1, -1):
                for j in range(len(stacks) - 1, -1, -1):
                    matrix = stacks[j][layer]
                    if grads[j] is not None:
                        # y = M x  =>  dL/dM = g x^H = g (M^H y)^H = (g y^H) M
                        outer = outer_sum(buf[1], buf[0], wires[j], n, matrix.dim() == 3)
                        grads[j][layer] = outer @ matrix
                    buf = apply_flat(buf, inverses[j][layer], wires[j], n)
            grad_initial = buf[1]
        return (grad_initial if ctx.needs_input_grad[0] else None, None, None, None, *grads)


def _rotate(x: Tensor, shift: int, n: int, out: Tensor | None = None) -> Tensor:
    """Flat states ``(batch, 2**n)`` whose axes are the wires from ``f`` around the
    ring, re-laid from wire ``f + shift`` on: one transpose copy (into ``out`` if given)."""
    batch = x.shape[0]
    moved = x.view(batch, 2**shift, 2 ** (n - shift)).transpose(1, 2)
    if out is None:
        return moved.reshape(batch, 2**n)
    out.view(batch, 2 ** (n - shift), 2**shift).copy_(moved)
    return out


def _apply_leading(matrix: Tensor, x: Tensor, d: int) -> Tensor:
    """``matrix`` on the leading wires of flat states ``x`` ``(batch, 2**n)``: one GEMM.

    ``matrix`` is ``(d, d)`` (shared) or ``(batch, d, d)``."""
    batch = x.shape[0]
    if batch == 1 and matrix.dim() == 2:
        return torch.mm(matrix, x.view(d, -1)).view(1, -1)
    return torch.matmul(matrix, x.view(batch, d, -1)).view(batch, -1)


def _gemm_views(states: Tensor, matrices: Tensor, d: int) -> tuple[Tensor, ...]:
    """Each of ``states`` ``(K, batch, 2**n)`` as the right GEMM operand of window ``k``'s
    matrix: ``(d, rest)`` for one circuit and a shared matrix, else ``(batch, d, rest)``."""
    windows, batch = states.shape[:2]
    if batch == 1 and matrices.dim() == 3:
        return states.view(windows, d, -1).unbind(0)
    return states.view(windows, batch, d, -1).unbind(0)


class Sweep(torch.autograd.Function):
    """Forward: the windows of :func:`~qtrl.quantum.statevector.run_sweep`. Backward:
    the adjoint method.

    The state is kept in a rotating frame: before window ``k`` its axes are the
    wires from the window's first wire around the ring, so every window acts on
    the leading axes (one GEMM, no permutation) and moving on to the next window
    is one 2-D transpose copy.
    """

    @staticmethod
    def forward(ctx, initial: Tensor, n: int, matrices: Tensor) -> Tensor:
        windows, d = matrices.shape[0], matrices.shape[-1]
        batch = initial.shape[0]
        step = d.bit_length() - 2                       # g - 1 wires from one window to the next
        last = (windows - 1) * step % n                 # first wire of the last window
        store = windows * initial.numel() * initial.element_size() <= STORE_STATES_BYTES
        mats = matrices.unbind(0)
        if store:
            # states[k]: the state before window k, in its frame. Views made once.
            states = initial.new_empty(windows, batch, 2**n)
            states[0] = initial
            inputs = _gemm_views(states, matrices, d)
            rotated = states.view(windows, batch, 2 ** (n - step), 2**step).unbind(0)
            for k in range(windows):
                y = torch.matmul(mats[k], inputs[k])
                if k + 1 < windows:
                    rotated[k + 1].copy_(y.view(batch, 2**step, -1).transpose(1, 2))
            saved = states
        else:
            y = initial
            for k in range(windows):
                x = _rotate(y, step, n) if k else y
                y = _apply_leading(mats[k], x, d)
        y = y.reshape(batch, 2**n)
        out = _rotate(y, (n - last) % n, n) if last else y
        ctx.n, ctx.store = n, store
        ctx.save_for_backward(matrices, saved if store else out)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        matrices, saved = ctx.saved_tensors
        n = ctx.n
        windows, d = matrices.shape[0], matrices.shape[-1]
        step = d.bit_length() - 2
        last = (windows - 1) * step % n
        batch = grad_out.shape[0]
        shared = matrices.dim() == 3
        inverses = matrices.mH.resolve_conj()   # conj copy, transposed view: BLAS reads it as is
        grad_out = grad_out.expand(batch, 2**n)
        if ctx.store:
            states = saved
            # adjoint[k] = dL/dψ* right after window k, in window k's frame.
            adjoint = torch.empty_like(states)
            if last:
                _rotate(grad_out, last, n, adjoint[-1])
            else:
                adjoint[-1].copy_(grad_out)
            invs = inverses.unbind(0)
            inputs = _gemm_views(adjoint, matrices, d)
            rotated = adjoint.view(windows, batch, 2**step, 2 ** (n - step)).unbind(0)
            for k in range(windows - 1, 0, -1):
                a = torch.matmul(invs[k], inputs[k])
                rotated[k - 1].copy_(a.view(batch, 2 ** (n - step), 2**step).transpose(1, 2))
            grad_initial = None
            if ctx.needs_input_grad[0]:
                grad_initial = torch.matmul(invs[0], inputs[0]).reshape(batch, 2**n)
            if ctx.needs_input_grad[2]:
                # y = M x  =>  dL/dM = g x^H, summed over the trailing wires: one batched GEMM.
                a = adjoint.view(windows, batch, d, -1)
                x = states.view(windows, batch, d, -1)
                if shared and batch > 1:
                    a = a.transpose(1, 2).reshape(windows, d, -1)
                    x = x.transpose(1, 2).reshape(windows, d, -1)
                grad_matrices = (a @ x.mH).view(matrices.shape)
            else:
                grad_matrices = None
            return grad_initial, None, grad_matrices
        # Recomputed states: walk the final state and the adjoint back together.
        grads = torch.empty_like(matrices) if ctx.needs_input_grad[2] else None
        both = torch.stack((saved, grad_out)).view(2 * batch, 2**n)
        if last:
            both = _rotate(both, last, n)
        for k in range(windows - 1, -1, -1):
            pair = both.view(2, batch, d, -1)
            if grads is not None:
                # dL/dM = g x^H = g (M^H y)^H = (g y^H) M, y the state after the window
                outer = pair[1] @ pair[0].mH
                grads[k] = (outer.sum(0) if shared else outer) @ matrices[k]
            both = torch.matmul(inverses[k], pair).view(2 * batch, 2**n)
            if k:
                both = _rotate(both, n - step, n)
        grad_initial = both[batch:] if ctx.needs_input_grad[0] else None
        return grad_initial, None, grads

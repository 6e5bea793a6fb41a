"""The optimizer step of an update, without torch.optim's per-call bookkeeping.

A CartPole update steps a few hundred parameters in 4 (classical) or 10
(Quantum-Train) tensors. Torch's fused Adam kernel does that in ~30–50 µs, but
``Adam.step`` wraps it in ~100–150 µs of Python (hooks, profiler records, state
look-ups, device grouping), and ``clip_grad_norm_`` adds as much again. Those
hundreds of µs per update are paid against a roll-out of ~200 env steps.

:class:`LeanAdam` is ``torch.optim.Adam`` whose ``step`` calls the same fused
kernel with the same arguments directly when it can (one device and dtype, no
hooks, plain float learning rates, state already made): the same numbers, bit
for bit (``tests/test_optim.py``). Anything else takes ``Adam.step`` itself.
:func:`global_norm` and :func:`clip_` are ``clip_grad_norm_``'s two halves
with the same ops, so the norm an update logs is also the one it clips with.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.optim import optimizer as _optimizer

__all__ = ["LeanAdam", "clip_", "global_norm"]


def _one_group(tensors: Sequence[Tensor]) -> bool:
    """All on one device with one dtype: torch then sums them in list order."""
    first = tensors[0]
    return all(t.device == first.device and t.dtype == first.dtype for t in tensors)


def global_norm(grads: Sequence[Tensor]) -> Tensor:
    """The 2-norm of all ``grads`` as one vector, a 0-d tensor, computed as
    ``clip_grad_norm_`` does (norm of the per-tensor norms)."""
    if not grads:
        return torch.tensor(0.0)
    if not _one_group(grads):
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(grads))))


def clip_(grads: Sequence[Tensor], max_norm: float, total: Tensor | None = None) -> None:
    """Scale ``grads`` in place so their global norm is at most ``max_norm``
    (``clip_grad_norm_``'s arithmetic); ``total``: their norm, if known."""
    if not grads:
        return
    if total is None:
        total = global_norm(grads)
    coef = torch.clamp(float(max_norm) / (total + 1e-6), max=1.0)
    if _one_group(grads):
        torch._foreach_mul_(list(grads), coef.to(grads[0].device))
    else:
        torch.nn.utils.clip_grads_with_norm_(grads, max_norm, total)


class LeanAdam(torch.optim.Adam):
    """``torch.optim.Adam`` (fused) whose common-case step skips its Python overhead."""

    def step(self, closure=None):  # type: ignore[override]
        lists = None if closure is not None else self._lean_lists()
        if lists is None:
            return super().step(closure)   # Adam.step, hooks and all
        with torch.no_grad():
            for group, (params, exp_avgs, exp_avg_sqs, steps) in zip(self.param_groups, lists,
                                                                     strict=True):
                grads = [p.grad for p in params]
                if any(g is None or g.is_sparse for g in grads):
                    return super().step()
                torch._foreach_add_(steps, 1)
                beta1, beta2 = group["betas"]
                torch._fused_adam_(
                    params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,
                    lr=group["lr"], beta1=beta1, beta2=beta2,
                    weight_decay=group["weight_decay"], eps=group["eps"],
                    maximize=group["maximize"], grad_scale=None, found_inf=None)
        return None

    # Adam.step is wrapped by Optimizer in a profiler record and the hook calls
    # (~20 µs); this one is not (``hooked`` tells Optimizer it already is) and
    # hands over to Adam.step whenever a hook is registered.
    step.hooked = True  # type: ignore[attr-defined]

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._lean = None

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        self._lean = None

    def _lean_lists(self) -> list[tuple[list[Tensor], ...]] | None:
        """Per group ``(params, exp_avgs, exp_avg_sqs, steps)`` when :meth:`step`
        may call the fused kernel directly (what ``Adam.step`` would do then is
        exactly that call), else None. Checked per step: hooks and the group
        settings; made once (after the first step made the state): the lists."""
        if (self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks
                or _optimizer._global_optimizer_pre_hooks
                or _optimizer._global_optimizer_post_hooks
                or getattr(self, "grad_scale", None) is not None
                or getattr(self, "found_inf", None) is not None):
            return None
        for group in self.param_groups:
            if (not group["fused"] or group["amsgrad"] or group["capturable"]
                    or group["differentiable"] or group["decoupled_weight_decay"]
                    or isinstance(group["lr"], Tensor)
                    or any(isinstance(b, Tensor) for b in group["betas"])):
                return None
        if not getattr(self, "_lean", None):
            self._lean = self._make_lists()   # until the first step made the state
        return self._lean or None

    def _make_lists(self) -> list[tuple[list[Tensor], ...]]:
        """The state's tensor lists; empty until every parameter has its
        state, and while a group mixes devices or dtypes."""
        lists = []
        for group in self.param_groups:
            params = list(group["params"])
            states = [self.state.get(p) for p in params]
            if (not params or not all(states) or not _one_group(params)
                    or any(p.is_complex() for p in params)):
                return []
            lists.append((params, [s["exp_avg"] for s in states],
                          [s["exp_avg_sq"] for s in states], [s["step"] for s in states]))
        return lists

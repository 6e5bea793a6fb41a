"""Adam (Kingma & Ba 2015) in plain torch, one flat buffer per parameter group.

The update is ``torch.optim.Adam``'s (no weight decay, no AMSGrad): per step ``t``

    m ← β1 m + (1 − β1) g,   v ← β2 v + (1 − β2) g²,
    p ← p − lr / (1 − β1^t) · m / (√v / √(1 − β2^t) + ε)

and so is the ``state_dict`` layout (``step``, ``exp_avg``, ``exp_avg_sq`` per
parameter index; the groups' settings with their parameters' indices, torch's
keys included), so checkpoints move between the two either way. Real floating
parameters only; no weight decay, AMSGrad or closures. Why not ``torch.optim.Adam`` itself: building
any ``torch.optim`` optimizer imports ``torch._dynamo`` (its ``add_param_group``
is wrapped for ``torch.compile``), which costs about as much start-up as torch's
own import. Why flat: a group's moments are one tensor each, so a step is a
handful of ops whatever the number of parameter tensors (a Quantum-Train actor
and critic have about twenty), rather than five per tensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["Adam"]


class _Moments:
    """The flat moments of one group's parameters of one dtype and their step counts."""

    def __init__(self, params: list[Tensor]) -> None:
        self.params = params
        self.sizes = [p.numel() for p in params]
        total = sum(self.sizes)
        self.exp_avg = params[0].new_zeros(total)
        self.exp_avg_sq = params[0].new_zeros(total)
        self.steps = [0] * len(params)     # per parameter, as torch counts them
        # Each parameter's moments as views of the flat ones (only updated in place).
        self.avg, self.avg_sq = self.views(self.exp_avg), self.views(self.exp_avg_sq)

    def views(self, flat: Tensor) -> list[Tensor]:
        """``flat`` cut into views of each parameter's shape."""
        return [part.view_as(p) for part, p in zip(flat.split(self.sizes), self.params,
                                                   strict=True)]

    @torch.no_grad()
    def step(self, lr: float, betas: tuple[float, float], eps: float) -> None:
        beta1, beta2 = betas
        have = [p.grad is not None for p in self.params]
        if all(have) and len(set(self.steps)) == 1:
            # the common case: every tensor has a gradient and the same count
            grad = torch.cat([p.grad.reshape(-1) for p in self.params])
            step = self.steps[0] + 1
            self.steps = [step] * len(self.params)
            delta = _moved(self.exp_avg, self.exp_avg_sq, grad, step, lr, beta1, beta2, eps)
            for p, d in zip(self.params, self.views(delta), strict=True):
                p.add_(d)
            return
        for i, (p, m, v) in enumerate(zip(self.params, self.avg, self.avg_sq, strict=True)):
            if have[i]:   # torch skips a tensor without a gradient, its count too
                self.steps[i] += 1
                p.add_(_moved(m, v, p.grad, self.steps[i], lr, beta1, beta2, eps))


def _moved(m: Tensor, v: Tensor, grad: Tensor, step: int, lr: float, beta1: float,
           beta2: float, eps: float) -> Tensor:
    """Update the moments ``m``, ``v`` in place with ``grad`` at step ``step``
    (1-based) and return the parameter change (same shape)."""
    m.lerp_(grad, 1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (v.sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
    return torch.div(m, denom).mul_(-lr / (1 - beta1**step))


# What torch.optim.Adam's groups also carry (its defaults, the update above):
# written into state_dict() so that torch's Adam loads ours.
_TORCH_GROUP_KEYS = {"weight_decay": 0.0, "amsgrad": False, "maximize": False, "foreach": None,
                     "capturable": False, "differentiable": False, "fused": None,
                     "decoupled_weight_decay": False}


class Adam:
    """Adam over parameter groups: dicts with ``params`` and ``lr``, optionally
    ``betas`` and ``eps`` (else the constructor's); other keys, such as
    ``base_lr``, are kept as given. ``param_groups``, ``zero_grad()``,
    ``step()``, ``state_dict()`` and ``load_state_dict()`` as torch's."""

    def __init__(self, groups: Iterable[Mapping[str, Any]],
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.param_groups: list[dict[str, Any]] = []
        self._moments: list[list[_Moments]] = []
        seen: set[int] = set()
        for group in groups:
            params = list(group["params"])
            if any(id(p) in seen for p in params) or len({id(p) for p in params}) < len(params):
                raise ValueError("a parameter appears in more than one place of the groups")
            if any(not p.dtype.is_floating_point or p.is_complex() for p in params):
                raise ValueError("Adam takes real floating-point parameters only")
            seen |= {id(p) for p in params}
            self.param_groups.append({**group, "params": params,
                                      "lr": float(group["lr"]),
                                      "betas": tuple(group.get("betas", betas)),
                                      "eps": float(group.get("eps", eps))})
            by_dtype: dict[torch.dtype, list[Tensor]] = {}
            for p in params:
                by_dtype.setdefault(p.dtype, []).append(p)
            self._moments.append([_Moments(ps) for ps in by_dtype.values()])

    def zero_grad(self) -> None:
        """Drop every parameter's gradient (``set_to_none``, torch's default)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self) -> None:
        """One Adam step of every parameter that has a gradient."""
        for group, moments in zip(self.param_groups, self._moments, strict=True):
            for m in moments:
                m.step(float(group["lr"]), group["betas"], group["eps"])

    def _entries(self) -> list[tuple[Tensor, _Moments, int]]:
        """Every parameter in torch's index order, with its moments and its place there."""
        where = {id(p): (m, i) for moments in self._moments for m in moments
                 for i, p in enumerate(m.params)}
        return [(p, *where[id(p)]) for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.Adam``'s layout: ``state`` by parameter index (those
        stepped at least once), ``param_groups`` with their parameters' indices."""
        state: dict[int, dict[str, Tensor]] = {}
        for index, (_, m, i) in enumerate(self._entries()):
            if m.steps[i]:
                state[index] = {"step": torch.tensor(float(m.steps[i])),
                                "exp_avg": m.avg[i].clone(), "exp_avg_sq": m.avg_sq[i].clone()}
        groups, start = [], 0
        for group in self.param_groups:
            count = len(group["params"])
            groups.append({**_TORCH_GROUP_KEYS,
                           **{k: v for k, v in group.items() if k != "params"},
                           "params": list(range(start, start + count))})
            start += count
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (or ``torch.optim.Adam``'s) of the same groups."""
        if [len(g["params"]) for g in saved["param_groups"]] != [
                len(g["params"]) for g in self.param_groups]:
            raise ValueError("the saved optimizer's parameter groups differ from this one's")
        for group, old in zip(self.param_groups, saved["param_groups"], strict=True):
            for key in ("lr", "base_lr", "betas", "eps"):
                if key in old:
                    group[key] = tuple(old[key]) if key == "betas" else old[key]
        entries = self._entries()
        for index, (p, _, _) in enumerate(entries):   # all checked before any is loaded
            entry = saved["state"].get(index)
            if entry and any(tuple(entry[k].shape) != tuple(p.shape)
                             for k in ("exp_avg", "exp_avg_sq")):
                raise ValueError(f"the saved moments of parameter {index} are not of "
                                 f"its shape {tuple(p.shape)}")
        with torch.no_grad():
            for index, (_, m, i) in enumerate(entries):
                entry = saved["state"].get(index)
                m.steps[i] = int(entry["step"]) if entry else 0
                for name, view in (("exp_avg", m.avg[i]), ("exp_avg_sq", m.avg_sq[i])):
                    view.copy_(entry[name]) if entry else view.zero_()

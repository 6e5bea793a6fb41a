"""LeanAdam and the gradient clipping: torch's own numbers, bit for bit."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from qtrl.rl.optim import LeanAdam, clip_, global_norm


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))


def _grads(model: nn.Module, step: int) -> None:
    g = torch.Generator().manual_seed(100 + step)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g) * (1 + step)


def _pair(**kwargs):
    a, b = _model(), _model()
    groups = lambda m: [{"params": list(m[0].parameters()), "lr": 1e-2},
                        {"params": list(m[2].parameters()), "lr": 3e-3}]
    return (a, torch.optim.Adam(groups(a), fused=True, **kwargs),
            b, LeanAdam(groups(b), fused=True, **kwargs))


@pytest.mark.parametrize("kwargs", [{}, {"weight_decay": 0.1, "betas": (0.8, 0.99)}])
def test_lean_adam_equals_fused_adam_bit_for_bit(kwargs: dict) -> None:
    ref, opt_ref, lean, opt_lean = _pair(**kwargs)
    for step in range(6):
        for m in (ref, lean):
            _grads(m, step)
        if step == 3:  # an annealed learning rate is read at every step
            for o in (opt_ref, opt_lean):
                o.param_groups[0]["lr"] = 4e-3
        opt_ref.step()
        opt_lean.step()
        assert opt_lean._lean_lists() is not None   # the lean path ran
        for p, q in zip(ref.parameters(), lean.parameters(), strict=True):
            assert torch.equal(p, q)
    assert str(opt_ref.state_dict()) == str(opt_lean.state_dict())


def test_lean_adam_resumes_from_a_state_dict_and_honours_hooks() -> None:
    ref, opt_ref, lean, opt_lean = _pair()
    for m, o in ((ref, opt_ref), (lean, opt_lean)):
        _grads(m, 0)
        o.step()
    # A copy restored from the state dict (new state tensors) steps the same.
    clone = copy.deepcopy(lean)
    opt_clone = LeanAdam([{"params": list(clone[0].parameters()), "lr": 1e-2},
                          {"params": list(clone[2].parameters()), "lr": 3e-3}], fused=True)
    opt_clone.load_state_dict(opt_lean.state_dict())
    seen = []
    opt_clone.register_step_post_hook(lambda *_: seen.append(1))
    for m, o in ((ref, opt_ref), (clone, opt_clone)):
        _grads(m, 1)
        o.step()
    assert seen == [1]                                  # Adam.step ran, hook and all
    for p, q in zip(ref.parameters(), clone.parameters(), strict=True):
        assert torch.equal(p, q)


def test_lean_adam_falls_back_without_fused_or_with_a_missing_gradient() -> None:
    model = _model()
    opt = LeanAdam(model.parameters(), lr=1e-2)         # foreach, not fused
    _grads(model, 0)
    opt.step()
    assert opt._lean_lists() is None
    model2 = _model()
    opt2 = LeanAdam(model2.parameters(), lr=1e-2, fused=True)
    _grads(model2, 0)
    opt2.step()
    before = [p.detach().clone() for p in model2.parameters()]
    _grads(model2, 1)
    model2[0].bias.grad = None                           # Adam skips such a parameter
    opt2.step()
    assert torch.equal(model2[0].bias, before[1])
    assert not torch.equal(model2[0].weight, before[0])


@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_matches_clip_grad_norm(max_norm: float) -> None:
    a, b = _model(), _model()
    for m in (a, b):
        _grads(m, 2)
    grads = [p.grad for p in b.parameters()]
    flat = torch.cat([g.reshape(-1).double() for g in grads])
    norm = global_norm(grads)
    assert float(norm) == pytest.approx(float(flat.norm()), rel=1e-6)   # by hand
    total = torch.nn.utils.clip_grad_norm_(a.parameters(), max_norm)
    assert torch.equal(norm, total)
    clip_(grads, max_norm, norm)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad)
    assert float(global_norm(grads)) == pytest.approx(min(float(total), max_norm), rel=1e-5)

"""qtrl's Adam against torch.optim.Adam (an independent implementation of the
same update), its state_dict against torch's layout, and start-up: a training
run never imports torch._dynamo (what torch's optimizers import)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from qtrl.adam import Adam


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g, dtype=torch.float64))
            for shape in ((3, 4), (4,), (2, 2, 5), ())]


def _loss(params: list[torch.Tensor], t: int) -> torch.Tensor:
    return sum(((p - 0.1 * t) ** 2 * (i + 1)).sum() + p.sin().sum()
               for i, p in enumerate(params))


def _step(opt, params: list[torch.Tensor], t: int) -> None:
    """One optimizer step on :func:`_loss` of ``params`` at time ``t``."""
    opt.zero_grad()
    _loss(params, t).backward()
    opt.step()


def _copy(into: list[torch.Tensor], source: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, q in zip(into, source, strict=True):
            p.copy_(q)


def _assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("eps", [1e-8, 1e-5])
def test_steps_match_torch_adam(eps: float) -> None:
    ours, theirs = _params(0), _params(0)
    def groups(ps: list) -> list[dict]:
        return [{"params": ps[:2], "lr": 0.05}, {"params": ps[2:], "lr": 0.01}]

    a = Adam(groups(ours), eps=eps)
    b = torch.optim.Adam(groups(theirs), eps=eps, foreach=False)
    for t in range(40):
        for opt, ps in ((a, ours), (b, theirs)):
            _step(opt, ps, t)
            if t == 20:   # a step without a gradient for one tensor: skipped, its count too
                opt.zero_grad()
                _loss(ps[1:], t).backward()
                opt.step()
    _assert_same(ours, theirs)


def test_state_dict_round_trips_with_torch_layout() -> None:
    ours, theirs = _params(1), _params(1)
    a = Adam([{"params": ours, "lr": 0.02, "base_lr": 0.02}])
    b = torch.optim.Adam([{"params": theirs, "lr": 0.02, "base_lr": 0.02}], foreach=False)
    for opt, ps in ((a, ours), (b, theirs)):
        for t in range(5):
            _step(opt, ps, t)
    mine, torchs = a.state_dict(), b.state_dict()
    assert mine["state"].keys() == torchs["state"].keys()
    for index, entry in torchs["state"].items():
        for key in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(mine["state"][index][key], entry[key])
    assert mine["param_groups"][0]["params"] == torchs["param_groups"][0]["params"]
    # torch's state loads into ours, and then both carry on alike
    fresh = _params(1)
    _copy(fresh, theirs)
    c = Adam([{"params": fresh, "lr": 0.5, "base_lr": 0.5}])
    c.load_state_dict(torchs)
    assert c.param_groups[0]["lr"] == 0.02
    for opt, ps in ((c, fresh), (b, theirs)):
        _step(opt, ps, 9)
    _assert_same(fresh, theirs)


def test_torch_adam_loads_ours_and_steps_alike() -> None:
    ours, theirs = _params(2), _params(2)
    a = Adam([{"params": ours, "lr": 0.03}])
    for t in range(4):
        _step(a, ours, t)
    _copy(theirs, ours)
    b = torch.optim.Adam(theirs, lr=1.0, foreach=False)
    b.load_state_dict(a.state_dict())
    for opt, ps in ((a, ours), (b, theirs)):
        _step(opt, ps, 7)
    _assert_same(ours, theirs)


def test_bad_groups_and_states_are_refused() -> None:
    p = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="more than one place"):
        Adam([{"params": [p], "lr": 0.1}, {"params": [p], "lr": 0.2}])
    with pytest.raises(ValueError, match="real floating-point"):
        Adam([{"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.complex64))],
               "lr": 0.1}])
    a = Adam([{"params": [p], "lr": 0.1}])
    bad = {"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(()),
                         "exp_avg_sq": torch.zeros(())}},
           "param_groups": [{"params": [0], "lr": 0.1}]}
    with pytest.raises(ValueError, match="not of its shape"):
        a.load_state_dict(bad)


def test_a_training_run_does_not_import_dynamo(tmp_path) -> None:
    code = ("import sys; from qtrl.cli import main;"
            f"code = main(['train', '--preset', 'cartpole', '--total-steps', '1024', "
            f"'--out', {str(tmp_path / 'run')!r}]);"
            "print(code, sorted(m for m in sys.modules if m.startswith('torch._dynamo'))[:3])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "0 []"

"""Kernel registration, compiled kernels rounding as the cached ones do, and the
``QTRL_COMPILED=0`` switch."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qtrl import jit


def test_the_base_imports_none_of_its_clients() -> None:
    tree = ast.parse(Path(jit.__file__).read_text(encoding="utf-8"))
    own = [node for node in ast.walk(tree)
           if (isinstance(node, ast.ImportFrom) and (node.level or (node.module or "")
                                                     .startswith("qtrl")))
           or (isinstance(node, ast.Import) and any(a.name.startswith("qtrl")
                                                    for a in node.names))]
    assert not own


def test_warm_runs_what_was_registered(monkeypatch) -> None:
    monkeypatch.setattr(jit, "_warmups", {})
    calls: list[str] = []

    @jit.warmup
    def first() -> None:
        calls.append("first")

    @jit.warmup
    def second() -> None:
        calls.append("second")

    names = jit.warm()
    if not jit.available():
        assert names == [] and calls == []
        return
    assert calls == ["first", "second"]
    assert names == [f"{__name__}.{f.__qualname__}" for f in (first, second)]


def test_every_kernel_module_a_run_imports_registers_its_warmup() -> None:
    import qtrl.train  # noqa: F401  (imports every module with kernels)
    modules = {name.rsplit(".", 1)[0] for name in jit._warmups}
    assert modules == {"qtrl.mapping", "qtrl.quantum.compiled", "qtrl.quantum.wide",
                       "qtrl.rl.policy", "qtrl.rl.returns"}


# One call of every kernel on fixed inputs, at several sizes and depths (the
# number of layers is part of a kernel's signature); writes the outputs to
# argv[1]. argv[2] == "forward": no backward passes.
_PROBE = r"""
import sys
import numpy as np
import torch
from qtrl import QuantumTrain
from qtrl.mapping import generate_weights, mlp
from qtrl.presets import build_policy
from qtrl.quantum import compiled, wide
from qtrl.rl.policy import make_actor
from qtrl.rl.returns import discounted_returns

torch.set_num_threads(2)
torch.manual_seed(0)  # the mapping models' initial weights
backward = sys.argv[2] == "backward"
rng = np.random.default_rng(0)
out = {}

def differentiate(tag, loss, tensors):
    if backward:
        loss.backward()
        for i, t in enumerate(tensors):
            out[f"{tag}/grad{i}"] = t.grad.numpy()

for tag, kernels, n, dtype in (("compiled", compiled, 5, torch.float64),
                               ("wide32", wide, 7, torch.float32),
                               ("wide64", wide, 13, torch.float64),
                               ("wide32-shared", wide, 17, torch.float32)):
    u3, cu3 = (torch.tensor(rng.uniform(-3, 3, (2, 3, n, 3)), dtype=dtype, requires_grad=True)
               for _ in range(2))
    p = kernels.ring_u3_probabilities(u3, cu3)
    out[tag] = p.detach().numpy()
    differentiate(tag, (p * torch.tensor(rng.standard_normal(p.shape), dtype=dtype)).sum(),
                  (u3, cu3))
for dtype in (torch.float32, torch.float64):
    for act in ("relu", "tanh", "gelu", "silu", "none"):
        for k, alpha in ((300, 1.0), (300, 2.0), (70_000, 1.0)):
            f = int(np.ceil(np.log2(k)))
            bits = torch.tensor(rng.choice([-1.0, 1.0], (k, f)), dtype=dtype)
            mapping = mlp([f + 1, 6, 6, 1], act).to(dtype)
            p = torch.tensor(rng.uniform(0, 2.0 / 2**f, (1, 2**f)), dtype=dtype,
                             requires_grad=True)
            w = generate_weights(p, bits, mapping, 0.3 * 2 ** (f - 1), 0.8, alpha)
            tag = f"mapping/{dtype}/{act}/{k}/{alpha}"
            out[tag] = w.detach().numpy()
            differentiate(tag, (w * torch.tensor(rng.standard_normal(k), dtype=dtype)).sum(),
                          (p, *mapping.parameters()))
for hidden, mapping_hidden in (((128,), (10, 10, 10)), ((16, 16), (6, 6))):
    torch.manual_seed(0)
    qt = QuantumTrain(build_policy(4, hidden, 2), layers=5, mapping_hidden=mapping_hidden)
    w = qt.generate_flat()
    tag = f"generator/{hidden}/{mapping_hidden}"
    out[tag] = w.detach().numpy()
    differentiate(tag, (w * torch.arange(w.numel(), dtype=w.dtype)).sum(),
                  list(qt.parameters()))
    actor = make_actor(qt.target, qt.generate())
    obs = rng.standard_normal((8, 4)).astype(np.float32)
    out[tag + "/logits"] = actor(obs)
    out[tag + "/actions"] = actor.actions(obs, rng.gumbel(size=(8, 2)))
out["returns"] = discounted_returns(rng.standard_normal(50), np.array([20, 30]), 0.97)
np.savez(sys.argv[1], **out)
"""


@pytest.mark.slow
@pytest.mark.skipif(not jit.available(), reason="needs Numba")
def test_kernels_compiled_here_round_as_the_cached_ones(tmp_path: Path) -> None:
    """A run that compiled its kernels must match its resumption, which loads
    them from Numba's cache. Three processes on one fresh cache: the first
    compiles the forward kernels, the second loads those and compiles the rest
    (backward passes sharing functions with them), the third loads everything."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    results = {}
    for name, passes in (("forward", "forward"), ("mixed", "backward"),
                         ("loaded", "backward")):
        path = tmp_path / f"{name}.npz"
        subprocess.run([sys.executable, "-c", _PROBE, str(path), passes], env=env,
                       check=True, timeout=1200)
        results[name] = dict(np.load(path))
    loaded = results["loaded"]
    for name in ("forward", "mixed"):
        differ = [key for key, value in results[name].items()
                  if value.tobytes() != loaded[key].tobytes()]
        assert not differ, (name, differ)
    assert set(results["mixed"]) == set(loaded)


_PLAIN_RUN = """
import json, torch
from qtrl import jit
from qtrl.generator import QuantumTrain
from qtrl.presets import build_policy
from qtrl.rl.policy import CompiledActor, make_actor
torch.manual_seed(0)
qt = QuantumTrain(build_policy(4, (16,), 2), layers=2, mapping_hidden=(6, 6))
w = qt.generate_flat()
actor = make_actor(qt.target, qt.generate())
print(json.dumps({"available": jit.available(), "compiled_actor": isinstance(actor, CompiledActor),
                  "grad_fn": type(w.grad_fn).__name__, "weights": w.tolist()}))
"""


def test_the_switch_turns_every_kernel_off() -> None:
    """``QTRL_COMPILED=0``: no compiled kernel runs (circuit, mapping, actor), and
    the plain paths generate the same weights to rounding."""
    import json

    import torch

    from qtrl.generator import QuantumTrain
    from qtrl.presets import build_policy
    done = subprocess.run([sys.executable, "-c", _PLAIN_RUN], capture_output=True, text=True,
                          env={**os.environ, "QTRL_COMPILED": "0"}, timeout=300, check=True)
    plain = json.loads(done.stdout.strip().splitlines()[-1])
    assert not plain["available"] and not plain["compiled_actor"]
    assert "Fused" not in plain["grad_fn"]
    torch.manual_seed(0)
    qt = QuantumTrain(build_policy(4, (16,), 2), layers=2, mapping_hidden=(6, 6))
    compiled = qt.generate_flat()
    assert "Fused" in type(compiled.grad_fn).__name__
    torch.testing.assert_close(torch.tensor(plain["weights"]), compiled.detach(),
                               rtol=1e-4, atol=1e-6)

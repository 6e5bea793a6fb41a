"""Exports of the generated classical policy: state_dict, torch.export, ONNX.

Every format must give the logits of the in-project policy — QuantumTrain's
forward with generated weights and its materialised copy — at any batch size,
carry its metadata inside the one file, and evaluate in an environment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import pytest
import torch

from qtrl.cli import main
from qtrl.errors import UserError
from qtrl.export import (
    FORMATS,
    PolicyMeta,
    evaluate_exported,
    export_policy,
    load_exported,
    policy_architecture,
)
from qtrl.generator import QuantumTrain
from qtrl.presets import PRESETS, build_policy

DIMS = {"cartpole": (4, 2), "minigrid": (147, 3)}   # (obs_dim, n_actions) after flattening
BATCHES = [1, 7, 256]


def _quantum_train(preset: str) -> QuantumTrain:
    p = PRESETS[preset]
    obs_dim, n_actions = DIMS[preset]
    torch.manual_seed(0)
    return QuantumTrain(build_policy(obs_dim, p.hidden, n_actions), p.layers, p.mapping_hidden,
                        gamma=p.qt_gamma, beta=p.qt_beta, alpha=p.qt_alpha)


class Exported(NamedTuple):
    qt: QuantumTrain
    paths: dict[str, Path]                  # format -> its file (alone in its directory)
    obs: list[np.ndarray]                   # random observations at batch 1, 7, 256
    reference: list[np.ndarray]             # QuantumTrain(obs): circuit -> weights -> logits
    plain: list[np.ndarray]                 # materialize()(obs): the plain classical copy


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Exported]:
    """Both presets' generated policies written in all three formats, and their
    logits on random observations (one weight generation per preset)."""
    out = {}
    for preset, (obs_dim, _) in DIMS.items():
        qt = _quantum_train(preset)
        policy = qt.materialize()
        meta = PolicyMeta.from_policy(policy, PRESETS[preset].env_id, PRESETS[preset].max_steps,
                                      "quantum-train")
        paths = {}
        for fmt, suffix in FORMATS.items():
            folder = tmp_path_factory.mktemp(f"{preset}-{fmt}")
            paths[fmt] = export_policy(policy, folder / f"policy{suffix}", fmt, meta)
        gen = torch.Generator().manual_seed(1)
        obs = [torch.randn(batch, obs_dim, generator=gen) for batch in BATCHES]
        with torch.no_grad():
            reference = qt(torch.cat(obs)).split(BATCHES)
            plain = [policy(o).numpy() for o in obs]
        out[preset] = Exported(qt, paths, [o.numpy() for o in obs],
                               [r.numpy() for r in reference], plain)
    return out


@pytest.mark.parametrize("preset", list(DIMS))
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_outputs_match_generated_policy(exported, preset: str, fmt: str) -> None:
    ex = exported[preset]
    policy = load_exported(ex.paths[fmt], threads=1)
    for obs, reference, plain in zip(ex.obs, ex.reference, ex.plain):   # one file, any batch
        logits = policy(obs)
        assert logits.shape == (len(obs), DIMS[preset][1]) and logits.dtype == np.float32
        np.testing.assert_allclose(plain, reference, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(logits, reference, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(logits, plain, rtol=1e-6, atol=1e-6)
    assert policy.meta.env_id == PRESETS[preset].env_id
    assert (policy.meta.obs_dim, policy.meta.n_actions) == DIMS[preset]
    assert policy.meta.hidden == PRESETS[preset].hidden


def test_onnx_is_one_checked_file_with_dynamic_batch(exported) -> None:
    path = exported["minigrid"].paths["onnx"]
    assert [p.name for p in path.parent.iterdir()] == [path.name]   # no external-data file
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path), load_external_data=False)
    assert all(init.data_location != onnx.TensorProto.EXTERNAL
               for init in model.graph.initializer)
    (inp,) = model.graph.input
    batch_dim, obs_dim = inp.type.tensor_type.shape.dim
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value")
    assert obs_dim.dim_value == 147
    props = {p.key: p.value for p in model.metadata_props}
    assert props["env_id"] == "MiniGrid-Empty-5x5-v0"
    assert json.loads(props["obs_dim"]) == 147 and json.loads(props["n_actions"]) == 3
    assert json.loads(props["max_steps"]) == 100
    assert props["qtrl_version"]


def test_state_dict_loads_weights_only(exported) -> None:
    ex = exported["cartpole"]
    payload = torch.load(ex.paths["state_dict"], weights_only=True)
    meta = payload["meta"]
    assert (meta["env_id"], meta["obs_dim"], meta["hidden"], meta["n_actions"]) == \
        ("CartPole-v1", 4, [128], 2)
    net = build_policy(meta["obs_dim"], meta["hidden"], meta["n_actions"])
    net.load_state_dict(payload["state_dict"])
    for name, weight in ex.qt.generate().items():
        torch.testing.assert_close(net.state_dict()[name], weight.detach(), rtol=0, atol=0)


def test_pt2_carries_metadata_inside(exported) -> None:
    path = exported["cartpole"].paths["exported"]
    assert [p.name for p in path.parent.iterdir()] == [path.name]    # no sidecar
    extra = {"qtrl_meta.json": ""}
    torch.export.load(path, extra_files=extra)
    assert PolicyMeta.from_dict(json.loads(extra["qtrl_meta.json"])).architecture == "4-128-2"


def test_export_refuses_bad_requests_and_writes_nothing(exported, tmp_path) -> None:
    policy = exported["cartpole"].qt.materialize()
    meta = PolicyMeta.from_policy(policy, "CartPole-v1")
    with pytest.raises(UserError, match="unknown export format 'torchscript'"):
        export_policy(policy, tmp_path / "p.pt", "torchscript", meta)
    with pytest.raises(UserError, match="does not exist"):
        export_policy(policy, tmp_path / "missing" / "p.pt", "state_dict", meta)
    target = tmp_path / "p.pt"
    target.write_bytes(b"keep me")
    with pytest.raises(UserError, match="already exists"):
        export_policy(policy, target, "state_dict", meta)
    assert target.read_bytes() == b"keep me"
    with pytest.raises(UserError, match="expected logits"):
        export_policy(policy, tmp_path / "q.pt", "state_dict",
                      PolicyMeta("CartPole-v1", 4, (128,), 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.pt"]    # no temporary left
    export_policy(policy, target, "state_dict", meta, overwrite=True)
    assert load_exported(target).meta == meta
    with pytest.raises(UserError, match="unknown policy file type"):
        load_exported(tmp_path / "p.tflite")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(UserError, match="not a loadable ONNX model"):
        load_exported(tmp_path / "bad.onnx")


def test_policy_architecture_only_for_build_policy_mlps() -> None:
    assert policy_architecture(build_policy(6, (16, 8), 3)) == (6, (16, 8), 3)
    with pytest.raises(ValueError, match="build_policy"):
        policy_architecture(torch.nn.Linear(4, 2))


@pytest.mark.parametrize("fmt", ["onnx", "exported"])
def test_evaluate_exported_cartpole(exported, fmt: str) -> None:
    returns, meta = evaluate_exported(exported["cartpole"].paths[fmt], episodes=3, seed=0)
    assert returns.shape == (3,) and np.isfinite(returns).all() and (returns >= 1).all()
    assert meta.env_id == "CartPole-v1"


def test_evaluate_exported_refuses_wrong_env(exported) -> None:
    with pytest.raises(UserError, match="does not fit"):
        evaluate_exported(exported["cartpole"].paths["onnx"], "MiniGrid-Empty-5x5-v0", episodes=1)


# ------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------

def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_cli_errors_are_one_line(tmp_path, capsys) -> None:
    assert main(["export", str(tmp_path / "no-run"), "-o", str(tmp_path / "p.onnx")]) == 2
    assert "no-run does not exist" in _one_error_line(capsys)
    assert main(["export", str(tmp_path), "--format", "torchscript"]) == 2
    assert "--format 'torchscript': choose from state_dict, exported, onnx" in \
        _one_error_line(capsys)
    assert main(["export", str(tmp_path), "--format", "onnx", "-o", "p.pt2"]) == 2
    assert "name it *.onnx" in _one_error_line(capsys)
    assert main(["eval", str(tmp_path / "missing.onnx")]) == 2
    assert "missing.onnx does not exist" in _one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_train_export_eval_end_to_end(tmp_path, capsys) -> None:
    """A 2-episode run, exported in every format; each export evaluates exactly
    like the run itself (same episodes, greedy actions)."""
    from qtrl.train import evaluate, load_policy

    run = tmp_path / "run"
    assert main(["train", "--preset", "cartpole-paper", "--episodes", "2", "--out", str(run),
                 "--no-tensorboard"]) == 0
    policy, config = load_policy(run)
    expected = evaluate(policy, config, episodes=3, greedy=True, seed=5)
    obs = np.random.default_rng(0).standard_normal((64, 4), dtype=np.float32)
    with torch.no_grad():
        logits = policy(torch.from_numpy(obs)).numpy()
    for fmt, suffix in FORMATS.items():
        out = tmp_path / f"policy{suffix}"
        assert main(["export", str(run), "--format", fmt, "-o", str(out)]) == 0
        assert f"wrote {out} ({fmt}, policy 4-128-2 for CartPole-v1" in capsys.readouterr().out
        np.testing.assert_allclose(load_exported(out)(obs), logits, rtol=1e-6, atol=1e-6)
        returns, _ = evaluate_exported(out, episodes=3, greedy=True, seed=5)
        np.testing.assert_array_equal(returns, expected)
    assert main(["export", str(run), "-o", str(tmp_path / "policy.onnx")]) == 2
    assert "already exists" in _one_error_line(capsys)
    assert main(["export", str(run)]) == 0                   # default: RUN_DIR/policy.onnx
    assert (run / "policy.onnx").is_file()
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "policy.onnx"), "--episodes", "2", "--greedy"]) == 0
    assert capsys.readouterr().out.startswith("CartPole-v1 (policy.onnx, 4-128-2, greedy")

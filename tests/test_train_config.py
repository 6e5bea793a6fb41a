"""TrainConfig: JSON round trip, preset defaults, generated flags, validation."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

import pytest

from qtrl.cli import build_parser
from qtrl.config import TrainConfig
from qtrl.errors import UserError
from qtrl.flags import add_dataclass_flags, config_from_flags
from qtrl.presets import PRESETS


def _parse(*argv: str) -> TrainConfig:
    return config_from_flags(build_parser().parse_args(["train", *argv]))


def test_json_round_trip(tmp_path) -> None:
    config = TrainConfig.from_preset("minigrid-paper", seed=7, classical=True, hidden=(16, 8))
    config.save(tmp_path / "config.json")
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["hidden"] == [16, 8] and data["preset"] == "minigrid-paper"
    again = TrainConfig.load(tmp_path / "config.json")
    assert again == config and isinstance(again.hidden, tuple)


def test_every_field_has_help_and_a_flag() -> None:
    parser = argparse.ArgumentParser()
    add_dataclass_flags(parser, TrainConfig)
    dests = {a.dest: a for a in parser._actions}
    for f in fields(TrainConfig):
        assert f.metadata.get("help"), f.name
        assert f.name in dests, f.name
        assert dests[f.name].default is argparse.SUPPRESS


def test_preset_defaults_and_overrides() -> None:
    config = _parse("--preset", "minigrid-paper", "--lr", "3e-4", "--hidden", "64", "--entropy", "0")
    p = PRESETS["minigrid-paper"]
    assert (config.env, config.layers, config.mapping_hidden) == (p.env_id, p.layers,
                                                                  p.mapping_hidden)
    assert config.lr == 3e-4 and config.hidden == (64,) and config.entropy == 0.0
    assert config.n_actions == 3 and config.max_steps == 100 and config.solve_threshold == 0.8
    assert _parse() == TrainConfig.from_preset("cartpole")          # the default preset
    plain = _parse("--env", "Acrobot-v1")
    assert plain.preset is None and plain.env == "Acrobot-v1"


def test_a_presets_switch_turns_off_with_its_no_flag() -> None:
    assert _parse().norm_obs and _parse().anneal_lr           # the cartpole preset's
    config = _parse("--no-norm-obs", "--no-anneal-lr", "--algo", "a2c", "--agents", "2",
                    "--mode", "async")
    assert not config.norm_obs and not config.anneal_lr
    with pytest.raises(UserError, match="--no-norm-obs"):
        _parse("--algo", "a2c", "--agents", "2", "--mode", "async")


def test_flag_types() -> None:
    config = _parse("--algo", "reinforce", "--gamma", "0.9", "--episodes-per-update", "4", "--num-envs", "2",
                    "--max-steps", "none", "--classical", "--mapping-activation", "none",
                    "--qt-gamma", "0.2", "--autoreset", "next-step")
    assert config.gamma == 0.9 and config.episodes_per_update == 4 and config.num_envs == 2
    assert config.max_steps is None and config.classical and config.qt_gamma == 0.2
    assert config.mapping_activation == "none" and config.autoreset == "next-step"


def test_derived_sizes() -> None:
    config = TrainConfig(episodes=10, episodes_per_update=4)
    assert config.updates == 3 and config.vector_envs == 4
    assert TrainConfig(episodes_per_update=32).vector_envs == 8
    assert TrainConfig(episodes_per_update=32, num_envs=2).vector_envs == 2


@pytest.mark.parametrize("overrides,match", [
    ({"episodes": 0}, "--episodes 0"),
    ({"layers": -1}, "--layers -1"),
    ({"lr": 0.0}, "--lr"),
    ({"lr": float("nan")}, "--lr"),
    ({"hidden": ()}, "--hidden"),
    ({"gamma": 1.5}, "--gamma"),
    ({"num_envs": 4, "episodes_per_update": 2}, "--num-envs"),
    ({"backend": "cirq"}, "--backend 'cirq': choose from torch, pennylane"),
    ({"grad": "adjoint"}, "--grad 'adjoint': choose from backprop, parameter-shift, spsa"),
    ({"grad": "spsa", "shots": 0}, "--shots 0"),
    ({"shots": 100}, "grad='backprop' needs the exact torch backend"),
    ({"backend": "qiskit"}, "grad='backprop' needs the exact torch backend"),
    ({"backend": "qiskit", "grad": "spsa", "noise": "depolarizing:2"}, "--noise: bad noise"),
    ({"backend": "pennylane", "grad": "spsa", "noise": "readout:0.1"},
     "noise needs --backend torch .* or qiskit"),
    ({"grad": "spsa", "spsa_c": 0.0}, "--spsa-c 0.0"),
    ({"grad": "parameter-shift", "spsa_samples": 4}, "only used with --grad spsa"),
    ({"classical": True, "grad": "spsa"}, "--grad spsa: a --classical run has no circuit"),
])
def test_validation(overrides: dict, match: str) -> None:
    with pytest.raises(UserError, match=match):
        TrainConfig(**overrides)


def test_quantum_settings_parse_and_old_configs_get_their_defaults() -> None:
    config = _parse("--backend", "qiskit", "--shots", "256", "--noise",
                    "depolarizing:0.01,readout:0.02", "--grad", "spsa", "--spsa-c", "0.2",
                    "--spsa-samples", "2")
    assert (config.backend, config.shots, config.noise) == ("qiskit", 256,
                                                            "depolarizing:0.01,readout:0.02")
    assert (config.grad, config.spsa_c, config.spsa_samples) == ("spsa", 0.2, 2)
    old = TrainConfig.from_preset("cartpole-paper").to_dict()
    for key in ("backend", "shots", "noise", "grad", "spsa_c", "spsa_samples"):
        del old[key]  # a config.json written before these fields existed
    assert TrainConfig.from_dict(old) == TrainConfig.from_preset("cartpole-paper")


def test_unknown_keys_in_json_are_refused() -> None:
    with pytest.raises(UserError, match="unknown configuration keys"):
        TrainConfig.from_dict({"episodes": 3, "warp_speed": 9})


def test_every_algorithm_is_a_choice_of_algo() -> None:
    from qtrl.algos import ALGORITHMS
    from qtrl.config import ALGOS
    assert set(ALGOS) == set(ALGORITHMS)

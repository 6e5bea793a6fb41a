"""``qtrl info``: the parameter table, and one-line errors."""

from __future__ import annotations

import pytest

from qtrl.cli import main


def _table(text: str) -> dict[str, str]:
    rows = {}
    for line in text.strip().splitlines():
        key, _, value = line.partition("  ")
        rows[key.strip()] = value.strip()
    return rows


@pytest.mark.parametrize("preset, expected", [
    ("cartpole-paper", {"environment": "CartPole-v1", "policy": "4-128-2", "target weights k": "898",
                  "qubits n": "10", "chunks Q": "1", "layers L": "5",
                  "mapping hidden": "[10, 10, 10]", "QNN parameters": "300",
                  "mapping parameters": "351", "total trainable": "651",
                  "compression k/total": "1.38x"}),
    ("minigrid-paper", {"environment": "MiniGrid-Empty-5x5-v0", "policy": "147-32-3",
                  "target weights k": "4835", "qubits n": "13", "layers L": "13",
                  "QNN parameters": "1014", "mapping parameters": "1515",
                  "total trainable": "2529"}),
    # 3-100-1 twice, by hand: 3·100 + 100 + 100 + 1 = 501 weights each
    ("pendulum", {"actor": "3-100-1", "actor target weights k": "501", "actor qubits n": "9",
                  "critic target weights k": "501", "classical actor-critic weights": "1003",
                  "total trainable": "787"}),
    # a 21-64-5 policy per player (18 observations + 3-player one-hot), 3 · (21·64 + 64 +
    # 64·5 + 5), and a 57-64-1 critic (the one-hot and three observations), 57·64 + 64 + 64 + 1
    ("spread", {"environment": "mpe2:simple_spread_v3 N=3 max_cycles=25",
                "policy layout": "per-agent", "actor classical weights": "5199",
                "critic classical weights": "3777",
                "classical actor-critic weights": "8976"}),
])
def test_info_preset_table(preset: str, expected: dict, capsys) -> None:
    assert main(["info", "--preset", preset]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    rows = _table(out)
    for key, value in expected.items():
        assert rows[key] == value, key


def test_info_policy_overrides_the_presets_layout(capsys) -> None:
    assert main(["info", "--preset", "spread", "--policy", "shared"]) == 0
    rows = _table(capsys.readouterr().out)
    assert rows["policy layout"] == "shared"
    assert rows["actor classical weights"] == "1733"      # one network for the three players


def test_info_any_environment(capsys) -> None:
    assert main(["info", "--env", "Acrobot-v1", "--hidden", "64"]) == 0
    rows = _table(capsys.readouterr().out)
    k = 6 * 64 + 64 + 64 * 3 + 3
    assert rows["algorithm"] == "ppo"                   # --env alone: PPO's defaults
    assert rows["actor"] == "6-64-3" and rows["critic"] == "6-64-1"
    assert rows["actor target weights k"] == str(k)
    assert rows["actor qubits n"] == "10"
    assert rows["actor QNN parameters"] == str(6 * 10 * 5)
    critic_k = 6 * 64 + 64 + 64 + 1
    assert rows["classical actor-critic weights"] == str(k + critic_k)
    assert int(rows["total trainable"]) == (int(rows["actor total trainable"])
                                            + int(rows["critic total trainable"]))


def test_info_chunks(capsys) -> None:
    assert main(["info", "--preset", "cartpole-paper", "--chunks", "4"]) == 0
    rows = _table(capsys.readouterr().out)
    assert rows["chunks Q"] == "4"
    assert rows["qubits n"] == "8"           # ceil(log2(ceil(898 / 4)))
    assert rows["QNN parameters"] == str(4 * 6 * 8 * 5)


def test_unknown_environment_is_one_line_and_exit_2(capsys) -> None:
    assert main(["info", "--env", "NoSuchEnv-v0"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("qtrl info: error:") and "NoSuchEnv-v0" in lines[0]


def test_missing_preset_and_env(capsys) -> None:
    assert main(["info"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--preset" in err[0]


def test_non_positive_sizes(capsys) -> None:
    assert main(["info", "--preset", "cartpole-paper", "--hidden", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--hidden" in err[0]

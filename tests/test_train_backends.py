"""``qtrl train`` on a QPU-like backend: sampled probabilities and hardware gradients
end to end; settings that cannot work are refused before anything is written."""

from __future__ import annotations

import csv
import json

import pytest

from qtrl.cli import main
from qtrl.config import TrainConfig

BASE = ["train", "--preset", "cartpole-paper", "--episodes", "2", "--no-tensorboard"]


def test_qiskit_shots_spsa_run(tmp_path, capsys) -> None:
    pytest.importorskip("qiskit_aer")
    run = tmp_path / "run"
    assert main([*BASE, "--backend", "qiskit", "--shots", "256", "--grad", "spsa",
                 "--out", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["episodes"] == 2 and summary["mode"] == "quantum-train"
    config = TrainConfig.load(run / "config.json")
    assert (config.backend, config.shots, config.grad) == ("qiskit", 256, "spsa")
    with open(run / "progress.csv") as fh:
        rows = list(csv.DictReader(fh))
    # One forward circuit, then SPSA's two perturbed copies of it.
    assert [float(r["quantum/circuit_evals_per_update"]) for r in rows] == [3.0] * len(rows)
    assert [float(r["quantum/circuit_evals_this_agent"]) for r in rows] == [3.0] * len(rows)
    # Its trained circuit exports like any other (exact, whatever it trained on).
    capsys.readouterr()
    assert main(["circuit", str(run), "--qasm", str(tmp_path / "c.qasm")]) == 0
    assert (tmp_path / "c.qasm").read_text().startswith("OPENQASM 2.0;")


@pytest.mark.parametrize("flags,needle", [
    (["--grad", "backprop", "--shots", "100"], "grad='backprop' needs the exact torch backend"),
    (["--backend", "pennylane"], "grad='backprop' needs the exact torch backend"),
    (["--backend", "pennylane", "--grad", "spsa", "--noise", "depolarizing:0.01"],
     "noise needs --backend torch (exact density matrices) or qiskit"),
    (["--classical", "--grad", "spsa"], "a --classical run has no circuit"),
])
def test_unworkable_settings_are_refused_before_writing(flags, needle, tmp_path,
                                                        capsys) -> None:
    out = tmp_path / "run"
    assert main([*BASE, *flags, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("qtrl train: error:"), err
    assert needle in err[0]
    assert captured.out == "" and not out.exists()

"""``qtrl circuit``: the trained circuit as OpenQASM 2.0 reproduces its probabilities
in Qiskit (the other stack), and user errors are one line with exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qtrl.cli import main


def _train(out: Path, *flags: str) -> Path:
    argv = ["train", "--preset", "cartpole-paper", "--episodes", "2", "--no-tensorboard",
            "--out", str(out), *flags]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def qt_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("circuit") / "qt")


def test_qasm_in_qiskit_gives_the_saved_probabilities(qt_run, tmp_path, capsys) -> None:
    qasm2 = pytest.importorskip("qiskit.qasm2")
    from qiskit.quantum_info import Statevector

    qasm, probs_file = tmp_path / "policy.qasm", tmp_path / "probs.npy"
    assert main(["circuit", str(qt_run), "--qasm", str(qasm), "--probs", str(probs_file)]) == 0
    assert "wrote" in capsys.readouterr().out
    probs = np.load(probs_file)
    assert probs.dtype == np.float64 and probs.shape == (898,)  # k weights of the cartpole net
    circuit = qasm2.loads(qasm.read_text())
    assert circuit.num_qubits == 10                               # ceil(log2 898)
    # Our wire j is q[n-1-j]: Qiskit's little-endian index is the weight index, no reversal.
    theirs = Statevector(circuit).probabilities()
    np.testing.assert_allclose(theirs[: probs.size], probs, atol=1e-5, rtol=0)
    assert abs(theirs.sum() - 1) < 1e-9 and probs.sum() <= 1 + 1e-9
    # Existing files are kept unless --force.
    assert main(["circuit", str(qt_run), "--qasm", str(qasm)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["circuit", str(qt_run), "--qasm", str(qasm), "--force"]) == 0


def _one_error_line(capsys, *needles: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("qtrl circuit: error:"), err
    for needle in needles:
        assert needle in err[0], err[0]


def test_user_errors(qt_run, tmp_path, capsys) -> None:
    out = tmp_path / "c.qasm"
    assert main(["circuit", str(tmp_path / "nope"), "--qasm", str(out)]) == 2
    _one_error_line(capsys, "does not exist")
    assert main(["circuit", str(qt_run)]) == 2
    _one_error_line(capsys, "--qasm")
    assert main(["circuit", str(qt_run), "--qasm", str(out), "--chunk", "1"]) == 2
    _one_error_line(capsys, "--chunk 1", "0..0")
    assert main(["circuit", str(qt_run), "--qasm", str(tmp_path / "no" / "dir.qasm")]) == 2
    _one_error_line(capsys, "cannot write")
    classical = _train(tmp_path / "classical", "--classical")
    capsys.readouterr()
    assert main(["circuit", str(classical), "--qasm", str(out)]) == 2
    _one_error_line(capsys, "run was trained with --classical: it has no circuit")
    assert not out.exists()

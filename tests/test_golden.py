"""The golden trajectory: a short fixed-seed CartPole Quantum-Train run whose
per-episode returns must match a committed file, so that any change of
numerics (kernels, loss, sampling, seeding) is a deliberate, visible act.

After such a change, regenerate the file and commit it with the reason:

    .venv/bin/python -m tests.test_golden --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from qtrl.config import TrainConfig
from qtrl.train import train

GOLDEN = Path(__file__).resolve().parent / "golden" / "cartpole_qt.json"
# The CartPole preset (10 qubits, 5 layers, mapping 10-10-10: the compiled
# circuit and mapping kernels) with the tuned recipe, 8 updates of 4 episodes.
FLAGS = {"episodes": 32, "seed": 5, "qt_init_std": 0.1, "episodes_per_update": 4,
         "lr": 7e-3, "anneal_lr": True, "max_grad_norm": 1.0, "checkpoint_every": 100}


def _trajectory(run_dir: Path) -> dict:
    summary = train(TrainConfig.from_preset("cartpole-paper", **FLAGS), run_dir, tensorboard=False)
    rows = (run_dir / "metrics.csv").read_text().splitlines()[1:]
    returns = [float(r.split(",")[2]) for r in rows]
    return {"flags": FLAGS, "returns": returns, "env_steps": summary["env_steps"]}


def test_golden_trajectory(tmp_path: Path) -> None:
    expected = json.loads(GOLDEN.read_text())
    assert expected["flags"] == FLAGS, "the golden file was made with other flags: --write it"
    got = _trajectory(tmp_path)
    assert got["returns"] == expected["returns"], (
        "per-episode returns differ from tests/golden/cartpole_qt.json: the numerics "
        "changed. If deliberate, regenerate it (python -m tests.test_golden --write)")
    assert got["env_steps"] == expected["env_steps"]


if __name__ == "__main__":
    import tempfile
    if "--write" not in sys.argv:
        sys.exit("usage: python -m tests.test_golden --write")
    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_text(json.dumps(_trajectory(Path(tmp)), indent=1) + "\n")
    print(f"wrote {GOLDEN}")

"""``qtrl bench inference --quick``: a smoke run; every row and column exists (no timing asserts)."""

from __future__ import annotations

import json

from qtrl.bench.inference import BACKENDS, BATCHES
from qtrl.cli import main


def test_bench_inference_quick(tmp_path, capsys) -> None:
    out = tmp_path / "inference.json"
    assert main(["bench", "inference", "--quick", "--repeats", "1", "--min-time", "0.0002",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 thread" in text and "intra_op_num_threads=1" in text
    for title, _ in BACKENDS:
        assert title in text
    rows = json.loads(out.read_text())["rows"]
    assert [(r["preset"], r["batch"]) for r in rows] == \
        [(p, b) for p in ("cartpole-paper", "minigrid-paper") for b in BATCHES]
    assert {r["policy"] for r in rows} == {"4-128-2", "147-32-3"}
    for r in rows:
        for _, fmt in BACKENDS:
            assert r[f"us_{fmt}"] > 0 and r[f"obs_per_s_{fmt}"] > 0
    lines = text.splitlines()
    assert sum(line.startswith(("cartpole", "minigrid")) for line in lines) == 6

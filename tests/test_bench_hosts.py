"""``qtrl bench hosts``'s time-to-solve table from canned runs (no namespaces,
no timing): the rows and the sync-against-async line."""

from __future__ import annotations

import argparse

from qtrl.bench import hosts


def test_solve_table_rows_and_summary(monkeypatch, capsys):
    canned = {("sync", 0): (400, 190.0), ("sync", 1): (None, None),
              ("async", 0): (900, 60.0), ("async", 1): (700, 40.0)}

    def fake(n_hosts, delay, mode, episodes, seed):
        assert (n_hosts, delay, episodes) == (4, 20.0, 3200)
        solved, wall = canned[mode, seed]
        return {"episodes": solved, "wall_s": wall, "final": 480.0}

    monkeypatch.setattr(hosts, "time_to_solve", fake)
    args = argparse.Namespace(solve_seeds=[0, 1], solve_delays=[20.0], solve_episodes=3200,
                              modes=["sync", "async"])
    hosts._solve_table(4, args)
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == ("at 20 ms: sync solved 1 of 2 in 190.0 s on average; "
                       "async solved 2 of 2 in 50.0 s on average")
    rows = [line.split() for line in out if line.strip().startswith("20 ")]
    assert rows[0] == ["20", "sync", "0", "400", "190.0", "480.0"]
    assert rows[1][:3] == ["20", "sync", "1"] and rows[1].count("not") == 2

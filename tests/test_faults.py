"""Fault injection (issue 16): each way a careless or hostile user, a second
process or a full disk can hurt a run ends in one clear line, with nothing lost
or half-written. Ends with a seeded fuzz of ``qtrl train``'s flag values."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qtrl.cli import main
from qtrl.config import TrainConfig
from qtrl.run.lock import LOCK_FILE, RunDirLock, lock_holder

TINY = ["--preset", "cartpole-paper", "--episodes", "4", "--hidden", "8", "--layers", "1",
        "--mapping-hidden", "4", "--checkpoint-every", "2", "--no-tensorboard"]
SRC = str(Path(__file__).resolve().parent.parent / "src")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _qtrl(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qtrl", *argv], capture_output=True,
                          text=True, env=_env(), timeout=timeout, check=False)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _call(argv: list[str], capsys) -> tuple[int, str]:
    """``qtrl ARGV`` in this process: exit code and its one stderr line."""
    try:
        code = main(argv)
    except SystemExit as exc:          # argparse's own refusals
        code = exc.code
    return code, _one_line(capsys.readouterr().err)


def _hashes(run: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("faults") / "tiny"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    return run


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    return copy


# -- 1. two processes on one run directory ---------------------------------------------

def test_two_trains_at_once_one_is_refused_and_the_other_is_whole(tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "qtrl", "train", *TINY, "--out", str(run)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=_env()) for _ in range(2)]
    results = [(p.pid, p.wait(timeout=180), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(code for _, code, _ in results)
    assert codes == [0, 2], results
    (winner, _, _), = [r for r in results if r[1] == 0]
    loser = _one_line(next(err for _, code, err in results if code == 2))
    assert f"pid {winner} " in loser or "already holds a run" in loser, loser
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 4                          # one header, the winner's episodes
    assert sum(r.startswith("update,") for r in (run / "progress.csv").read_text()
               .splitlines()) == 1
    assert not (run / LOCK_FILE).exists()


def test_a_racing_writers_write_probe_neither_fails_nor_fills_the_run_dir(
        tmp_path: Path, monkeypatch) -> None:
    """Two trains with one new --out: the one that gets there second finds the
    first's write probe in it (not a run, so no 'not empty'), and its own probe
    has another name, so the first's unlinking it cannot fail the second's."""
    from qtrl.run.directory import create_run_dir
    out = tmp_path / "run"
    out.mkdir()
    (out / ".write-test-1").write_text("")              # the other writer's, mid-probe
    removed = []
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        removed.append(self.name)
        real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    assert create_run_dir(out, TrainConfig()) == out
    assert removed == [f".write-test-{os.getpid()}"]    # its own probe only
    assert (out / ".write-test-1").exists()


def test_a_held_run_dir_refuses_train_and_resume_naming_the_pid(run_copy: Path, capsys,
                                                                caplog) -> None:
    before = _hashes(run_copy)
    hold = ("import sys, time\nfrom qtrl.run.lock import RunDirLock\n"
            "RunDirLock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(run_copy)],
                              stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        assert lock_holder(run_copy).startswith(f"pid {holder.pid} on ")
        for argv in (["train", "--resume", str(run_copy), "--episodes", "8"],
                     ["train", *TINY, "--out", str(run_copy)]):
            code, line = _call(argv, capsys)
            assert code == 2 and f"pid {holder.pid} on " in line, line
        with pytest.raises(Exception, match=f"pid {holder.pid} on "):
            RunDirLock(run_copy).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)       # dies holding it: a stale lock file stays
        holder.wait()
        holder.stdout.close()
    assert (run_copy / LOCK_FILE).exists() and lock_holder(run_copy) is None
    with caplog.at_level(logging.WARNING, logger="qtrl.run.lock"), RunDirLock(run_copy):
        assert f"pid {os.getpid()} on " in (run_copy / LOCK_FILE).read_text()
    assert f"taking over the lock of pid {holder.pid} on " in caplog.text
    assert not (run_copy / LOCK_FILE).exists()
    assert _hashes(run_copy) == before


def test_the_lock_is_reentrant_within_a_process(tmp_path: Path) -> None:
    with RunDirLock(tmp_path), RunDirLock(tmp_path):
        assert (tmp_path / LOCK_FILE).exists()
    assert not (tmp_path / LOCK_FILE).exists()


# -- 3. disk full / I/O error ----------------------------------------------------------

def _fail_fsync(monkeypatch, name: str, after: int, code: int) -> None:
    """Make fsync of temporary file ``name`` fail with ``code`` after ``after`` good ones."""
    real, seen = os.fsync, {"n": 0}

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(name):
            seen["n"] += 1
            if seen["n"] > after:
                raise OSError(code, os.strerror(code))
        real(fd)
    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_disk_full_at_a_checkpoint_names_the_last_good_one(tmp_path: Path, capsys,
                                                           monkeypatch) -> None:
    run = tmp_path / "run"
    _fail_fsync(monkeypatch, ".checkpoint.pt.tmp", after=1, code=errno.ENOSPC)
    code, line = _call(["train", *TINY, "--out", str(run)], capsys)
    assert code == 1
    assert f"cannot write {run / 'checkpoint.pt'}: No space left on device" in line
    assert "last good checkpoint" in line and "(update 2, 2 episodes)" in line
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert not (run / LOCK_FILE).exists()
    monkeypatch.undo()
    assert main(["train", "--resume", str(run)]) == 0     # nothing lost: it carries on
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 4


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_io_error_before_the_first_checkpoint_leaves_no_directory(tmp_path: Path, capsys,
                                                                  monkeypatch) -> None:
    run = tmp_path / "run"
    _fail_fsync(monkeypatch, ".config.json.tmp", after=0, code=errno.EIO)
    code, line = _call(["train", *TINY, "--out", str(run)], capsys)
    assert code == 1 and "Input/output error" in line and "nothing to resume" in line
    assert not run.exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_in_a_real_process_is_one_line(run_copy: Path) -> None:
    """The checkpoint's temporary file is /dev/full, which refuses every write with
    ENOSPC: the CLI says so in one line and keeps the last good checkpoint."""
    tmp = run_copy / ".checkpoint.pt.tmp"
    tmp.symlink_to("/dev/full")
    good = (run_copy / "checkpoint.pt").read_bytes()
    result = _qtrl("train", "--resume", str(run_copy), "--episodes", "6")
    assert result.returncode == 1, result.stderr
    line = _one_line(result.stderr)
    assert "No space left on device" in line and "(update 4, 4 episodes)" in line
    assert not os.path.lexists(tmp)
    assert (run_copy / "checkpoint.pt").read_bytes() == good


# -- 4, 5. refused configurations and out-of-range integers write nothing ------------------

@pytest.mark.parametrize("argv,needle", [
    (["--seed", "-1"], "--seed -1: must be an integer from 0 to 2**64-1"),
    (["--seed", str(2**64)], f"--seed {2**64}: must be an integer from 0 to 2**64-1"),
    (["--episodes", str(2**63)], f"--episodes {2**63}: too large; at most 2**63-1"),
    (["--hidden", "8", str(2**70)], "--hidden"),
    (["--threads", "0"], "--threads 0: must be an integer from 1 to"),
    (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
    (["--noise", "depolarizing:0.01", "--hidden", "1024", "1024"], "noisy circuit"),
])
def test_refused_configuration_writes_nothing(tmp_path: Path, capsys, argv, needle) -> None:
    code, line = _call(["train", *TINY, *argv, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and needle in line, line
    assert list(tmp_path.iterdir()) == []


def test_refused_into_an_existing_empty_dir_leaves_it_empty(tmp_path: Path, capsys) -> None:
    code, _ = _call(["train", *TINY, "--seed", "-1", "--out", str(tmp_path)], capsys)
    assert code == 2 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv,needle", [
    (["--seed", "-1"], "--seed -1: must be an integer from 0"),
    (["--episodes", "0"], "--episodes 0: must be a positive integer"),
])
def test_eval_refuses_out_of_range_integers(tiny_run: Path, capsys, argv, needle) -> None:
    code, line = _call(["eval", str(tiny_run), *argv], capsys)
    assert code == 2 and needle in line


# -- 6. run files that are not what they claim -----------------------------------------

def _corrupt_checkpoint(run: Path, how: str) -> None:
    path = run / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    first = next(iter(state["model"]))
    policy_first = next(iter(state["policy"]))
    if how == "incomplete":
        del state["optimizer"]
    elif how == "shape":
        state["model"][first] = torch.zeros(3, 3)
        state["policy"][policy_first] = torch.zeros(3, 3)
    elif how == "dtype":
        state["model"][first] = state["model"][first].double()
        state["policy"][policy_first] = state["policy"][policy_first].double()
    elif how == "negative-update":
        state["update"] = -1
    elif how == "inconsistent-steps":
        state["env_steps"] += 7
    elif how == "optimizer-shape":
        entry = next(iter(state["optimizer"]["state"].values()))
        entry["exp_avg"] = torch.zeros(2, 5)
    elif how == "rng":
        state["rng"]["numpy"] = "not json"
    torch.save(state, path)


CORRUPTIONS = {
    "config-not-utf8": (lambda run: (run / "config.json").write_bytes(b"\xff\xfe{\x00"),
                        "not UTF-8 JSON"),
    "config-not-json": (lambda run: (run / "config.json").write_text("{episodes: 4"),
                        "not UTF-8 JSON"),
    "config-not-config": (lambda run: (run / "config.json").write_text('{"hidden": 5}'),
                          "not a valid configuration"),
    "incomplete": (lambda run: _corrupt_checkpoint(run, "incomplete"), "incomplete: no optimizer"),
    "shape": (lambda run: _corrupt_checkpoint(run, "shape"), "(3, 3)"),
    "dtype": (lambda run: _corrupt_checkpoint(run, "dtype"), "torch.float64"),
    "negative-update": (lambda run: _corrupt_checkpoint(run, "negative-update"), "update -1"),
    "inconsistent-steps": (lambda run: _corrupt_checkpoint(run, "inconsistent-steps"),
                           "inconsistent"),
    "not-a-checkpoint": (lambda run: (run / "checkpoint.pt").write_bytes(b"PK\x03\x04junk"),
                         "truncated or corrupt"),
}
RESUME_ONLY = {
    "optimizer-shape": (lambda run: _corrupt_checkpoint(run, "optimizer-shape"),
                        "optimizer exp_avg"),
    "rng": (lambda run: _corrupt_checkpoint(run, "rng"), "random-generator state is corrupt"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS) + sorted(RESUME_ONLY))
def test_bad_run_files_are_one_line_everywhere(run_copy: Path, capsys, case: str) -> None:
    corrupt, needle = {**CORRUPTIONS, **RESUME_ONLY}[case]
    corrupt(run_copy)
    before = _hashes(run_copy)
    commands = [["train", "--resume", str(run_copy), "--episodes", "8"]]
    if case in CORRUPTIONS:
        commands += [["eval", str(run_copy), "--episodes", "1"],
                     ["export", str(run_copy), "--format", "state_dict"]]
    for argv in commands:
        code, line = _call(argv, capsys)
        assert code == 2 and needle in line, (argv, line)
    assert _hashes(run_copy) == before           # nothing rewritten, nothing exported


# -- 10. --resume: budgets and run-time-only settings -----------------------------------

@pytest.mark.parametrize("argv,needle", [
    (["--episodes", "3"], "--episodes 3 is below the 4 episodes the run has already done"),
    (["--total-steps", "10"], "--total-steps 10 is below the 96 env steps"),
])
def test_resume_below_what_is_done_is_refused(run_copy: Path, capsys, argv, needle) -> None:
    before = _hashes(run_copy)
    code, line = _call(["train", "--resume", str(run_copy), *argv], capsys)
    assert code == 2 and needle in line, line
    assert _hashes(run_copy) == before


def test_resume_may_change_run_time_settings_not_learning_ones(run_copy: Path,
                                                              capsys) -> None:
    code, line = _call(["train", "--resume", str(run_copy), "--episodes", "6", "--lr", "0.5"],
                       capsys)
    assert code == 2 and "--lr" in line
    assert main(["train", "--resume", str(run_copy), "--episodes", "6", "--agent-timeout",
                 "99", "--checkpoint-every", "3", "--solve-threshold", "10"]) == 0
    config = TrainConfig.load(run_copy / "config.json")
    assert (config.episodes, config.agent_timeout, config.checkpoint_every,
            config.solve_threshold) == (6, 99.0, 3, 10.0)
    assert len((run_copy / "metrics.csv").read_text().splitlines()) == 1 + 6


# -- 12. a junk .pt2 ---------------------------------------------------------------------

def test_junk_pt2_is_one_line_without_torchs_traceback(tmp_path: Path) -> None:
    junk = tmp_path / "policy.pt2"
    junk.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    result = _qtrl("eval", str(junk))
    assert result.returncode == 2
    assert "is not a readable torch.export program" in _one_line(result.stderr)


# -- fuzz: invalid flag values of qtrl train ------------------------------------------------

POSITIVE_INTS = ["--episodes", "--layers", "--chunks", "--checkpoint-every", "--agents",
                 "--num-envs", "--num-steps", "--num-minibatches", "--update-epochs",
                 "--total-steps", "--max-steps", "--n-actions", "--shots", "--hidden",
                 "--mapping-hidden", "--sync-check-every", "--threads"]
POSITIVE_FLOATS = ["--lr", "--agent-timeout", "--clip-coef", "--vf-coef", "--mapping-lr",
                   "--max-grad-norm", "--qt-init-std"]
CHOICES = ["--algo", "--backend", "--grad", "--activation", "--ansatz", "--autoreset",
           "--mode", "--preset", "--critic", "--mapping-activation"]

bad_int = st.one_of(st.integers(max_value=0), st.integers(min_value=2**63, max_value=2**80),
                    st.sampled_from(["1.5", "x", "", "1e3", "0x10"]))
bad_float = st.one_of(st.floats(max_value=0, allow_nan=False),
                      st.sampled_from(["nan", "-inf", "inf", "abc", ""]))
bad_choice = st.text(alphabet="abcxyz-:", min_size=1, max_size=8)
bad_seed = st.one_of(st.integers(max_value=-1), st.integers(min_value=2**64, max_value=2**90))
invalid = st.one_of(
    st.tuples(st.sampled_from(POSITIVE_INTS), bad_int.map(str)),
    st.tuples(st.sampled_from(POSITIVE_FLOATS), bad_float.map(str)),
    st.tuples(st.sampled_from(CHOICES), bad_choice),
    st.tuples(st.just("--seed"), bad_seed.map(str)),
    st.tuples(st.just("--gamma"), st.one_of(st.floats(min_value=1.0, exclude_min=True),
                                            st.floats(max_value=0.0, exclude_max=True))
              .map(str)),
)


@settings(derandomize=True, max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag_value=invalid)
def test_fuzz_invalid_train_flags(tmp_path: Path, capsys, flag_value) -> None:
    flag, value = flag_value
    work = tmp_path / f"fuzz-{time.monotonic_ns()}"
    work.mkdir()
    # a tiny budget first: were a value wrongly accepted, the run would be short
    code, line = _call(["train", "--episodes", "1", "--total-steps", "1", "--no-tensorboard",
                        flag, value, "--out", str(work / "run")], capsys)
    assert code != 0 and code is not None
    assert line.startswith("qtrl train: error: ") and flag in line, line
    assert list(work.iterdir()) == []

"""One writer per run directory: a second process gets one clean error naming the holder,
and the lock dies with its holder (issue 18)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys

import pytest

from trpo import TRPO, rundir
from trpo.cli import main

HOLD = "import sys, time; from trpo import rundir; rundir.acquire(sys.argv[1]); print('held', flush=True); time.sleep(600)"  # noqa: E501


@pytest.fixture
def holder(tmp_path):
    """Another process holding tmp_path/run."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    yield run_dir, process
    process.kill()
    process.wait()


def test_a_second_writer_gets_one_error_naming_the_holder(holder, capsys):
    run_dir, process = holder
    code = main(["train", "CartPole-v1", "--run-dir", str(run_dir), "--overwrite", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and err.startswith("trpo: error: run directory")
    assert f"pid {process.pid}" in err and "host " in err
    assert os.listdir(run_dir) == [rundir.LOCK_FILE]  # nothing written, nothing removed

    agent = TRPO("CartPole-v1", run_dir=run_dir, n_envs=1, steps_per_iter=64)
    with pytest.raises(rundir.RunDirLockedError, match=f"pid {process.pid}"):
        agent.learn(64)
    agent.close()


def test_the_lock_dies_with_its_holder(holder):
    run_dir, process = holder
    process.send_signal(signal.SIGKILL)
    process.wait()
    with rundir.RunDirLock(run_dir):
        assert f"pid {os.getpid()}" in (run_dir / rundir.LOCK_FILE).read_text()


def test_two_concurrent_trains_one_runs_the_other_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "trpo.cli", "train", "CartPole-v1", "--run-dir", str(run_dir),
        "--overwrite", "--no-progress", "--steps", "4096",
        "--set", "n_envs=2", "steps_per_iter=256", "tensorboard=false", "eval_every=0",
    ]  # fmt: skip
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    codes = sorted(code for code, _ in results)
    errors = [err for code, err in results if code != 0]
    if codes == [0, 0]:  # one finished before the other started: both runs are whole
        pass
    else:
        assert codes == [0, 2], results
        assert "in use by another trpo process" in errors[0], errors
        assert errors[0].strip().count("\n") == 0
    with (run_dir / "metrics.csv").open(newline="") as f:
        iterations = [int(row["iteration"]) for row in csv.DictReader(f)]
    assert iterations == list(range(1, 4096 // 256 + 1))

"""SIGTERM = Ctrl-C within a deadline: the learner abandons the running iteration, saves
the last whole one, prints the resume command and exits 143 (issue 18)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

from trpo import TRPO

SETTINGS = ["n_envs=2", "steps_per_iter=256", "tensorboard=false", "checkpoint_every=1000"]


def start(run_dir, *settings: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable, "-m", "trpo.cli", "train", "CartPole-v1", "--run-dir", str(run_dir),
            "--steps", "10000000", "--no-progress", "--set", *SETTINGS, *settings,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def rows(run_dir) -> list[int]:
    path = run_dir / "metrics.csv"
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [int(r["iteration"]) for r in csv.DictReader(f) if r.get("wall_sec")]


def wait_for_rows(run_dir, process, n: int) -> None:
    while len(rows(run_dir)) < n:  # an event, not a duration
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)


@pytest.mark.parametrize(
    "settings",
    [
        ["eval_every=1", "eval_episodes=10"],  # mostly lands in an evaluation
        ["vec=async", "eval_every=0"],  # env subprocesses get the signal too
    ],
)
def test_sigterm_saves_the_last_whole_iteration_and_exits_143(tmp_path, settings):
    run_dir = tmp_path / "run"
    process = start(run_dir, *settings)
    wait_for_rows(run_dir, process, 3)
    sent = time.monotonic()  # SLURM signals every process of the job: so do we
    for pid in _group(process.pid):
        os.kill(pid, signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert time.monotonic() - sent < 25  # well within a scheduler's ~30 s
    assert process.returncode == 143, err
    assert "Traceback" not in err
    assert f"trpo train --resume {run_dir}" in err
    assert (run_dir / "last.safetensors").exists() and not (run_dir / "final.safetensors").exists()
    saved = TRPO.load(run_dir / "last.safetensors")
    assert saved.trainer.iteration == rows(run_dir)[-1] >= 3  # the CSV ends where last does
    assert rows(run_dir) == list(range(1, saved.trainer.iteration + 1))
    saved.close()

    resumed = subprocess.run(
        [sys.executable, "-m", "trpo.cli", "train", "--resume", str(run_dir), "--no-progress",
         "--steps", str(256 * (saved.trainer.iteration + 2))],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert rows(run_dir) == list(range(1, saved.trainer.iteration + 3))


def _group(pid: int) -> list[int]:
    """The process and its children (the async env workers)."""
    children = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True
    ).stdout.split()
    return [pid, *map(int, children)]

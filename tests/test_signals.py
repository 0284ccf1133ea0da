"""SIGTERM = Ctrl-C within a deadline: the learner abandons the running iteration, saves
the last whole one, prints the resume command and exits 143 (issue 18)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time

import gymnasium as gym
import numpy as np
import pytest

from trpo import TRPO
from trpo.envs import make_vector_env

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


class _SlowStep(gym.Env):
    """Env 1 takes a while to step, so a signal lands after env 0's reply was read."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, delay: float):
        self.delay = delay

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        time.sleep(self.delay)
        return np.zeros(1, np.float32), 0.0, False, False, {}


class _Abandon(Exception):
    pass


def test_async_envs_close_after_a_step_abandoned_half_read(capfd):
    envs = make_vector_env([lambda: _SlowStep(0.0), lambda: _SlowStep(2.0)], 2, "async")
    envs.reset(seed=0)

    def abandon(signum, frame):
        raise _Abandon

    previous = signal.signal(signal.SIGALRM, abandon)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(_Abandon):
            envs.step(np.zeros(2, np.int64))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    closing = threading.Thread(target=envs.close, daemon=True)
    closing.start()
    closing.join(timeout=20)
    assert not closing.is_alive(), "close waited for a reply that will never come"
    time.sleep(2.5)  # env 1's step would have finished and answered by now
    assert "Traceback" not in capfd.readouterr().err

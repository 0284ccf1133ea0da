"""Real `trpo train` processes killed with SIGKILL at checkpoint events, or interrupted
with Ctrl-C (SIGINT), then resumed: the run completes, every checkpoint on disk loads, the
metrics CSV has each iteration exactly once, and the final parameters equal those of the
same run never interrupted (checkpoints every iteration, so resume is exact).

Settings: CartPole-v1, 2 envs x 256 steps per iteration, 48 iterations, a checkpoint
every iteration, evaluation every 4 iterations on 2 episodes.
"""

from __future__ import annotations

import csv
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trpo import TRPO
from trpo.config import Config

STEPS = 48 * 512
KILLS = 3
SETTINGS = [
    "n_envs=2",
    "steps_per_iter=512",
    "checkpoint_every=1",
    "eval_every=4",
    "eval_episodes=2",
    "tensorboard=false",
]


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "trpo.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def train(run_dir: Path) -> subprocess.Popen:
    return start(
        "train", "CartPole-v1", "--steps", str(STEPS), "--seed", "7", "--run-dir", str(run_dir),
        "--no-progress", "--set", *SETTINGS,
    )  # fmt: skip


def resume(run_dir: Path) -> subprocess.Popen:
    return start("train", "--resume", str(run_dir), "--no-progress")


def checkpoint_mtime(run_dir: Path) -> int | None:
    try:
        return (run_dir / "last.safetensors").stat().st_mtime_ns
    except FileNotFoundError:
        return None


def wait_for_new_checkpoint(run_dir: Path, process: subprocess.Popen, seen: int | None) -> int:
    """Block until ``last.safetensors`` is replaced (its mtime differs from ``seen``): an
    event of the run, not a duration, so the test does not depend on the machine's speed."""
    while (mtime := checkpoint_mtime(run_dir)) in (None, seen):
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    return mtime


def csv_iterations(run_dir: Path) -> list[int]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [int(row["iteration"]) for row in csv.DictReader(f)]


def uninterrupted_parameters(run_dir: Path) -> list[torch.Tensor]:
    config = Config.from_dict(json.loads((run_dir / "config.json").read_text()))
    agent = TRPO(config=config)
    agent.learn()
    agent.close()
    return [p.detach() for p in [*agent.policy.parameters(), *agent.value_fn.parameters()]]


def final_parameters(path: Path) -> list[torch.Tensor]:
    agent = TRPO.load(path)
    agent.close()
    return [p.detach() for p in [*agent.policy.parameters(), *agent.value_fn.parameters()]]


def assert_complete_and_exact(run_dir: Path) -> None:
    iterations = csv_iterations(run_dir)
    assert iterations == list(range(1, STEPS // 512 + 1))
    for name in ("last", "best", "final"):
        TRPO.load(run_dir / f"{name}.safetensors").close()
    resumed = final_parameters(run_dir / "final.safetensors")
    for a, b in zip(resumed, uninterrupted_parameters(run_dir), strict=True):
        assert torch.equal(a, b)


def test_sigkill_at_checkpoint_events_then_resume(tmp_path):
    """Each process is killed at its k-th new checkpoint (k drawn from 1-3): right after
    a replace, the moment a torn write would show. Every run has 48 iterations and each
    process is killed after at most 3, so all KILLS kills happen whatever the speed."""
    rng = random.Random(0)
    run_dir = tmp_path / "run"
    process = train(run_dir)
    seen = None
    for _ in range(KILLS):
        for _ in range(rng.randint(1, 3)):
            seen = wait_for_new_checkpoint(run_dir, process, seen)
        process.send_signal(signal.SIGKILL)
        process.wait()
        for path in run_dir.glob("*.safetensors"):  # every checkpoint on disk loads
            TRPO.load(path).close()
        process = resume(run_dir)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "done:" in out
    assert_complete_and_exact(run_dir)


def test_ctrl_c_saves_the_last_whole_iteration_and_prints_the_resume_command(tmp_path):
    run_dir = tmp_path / "run"
    process = train(run_dir)
    wait_for_new_checkpoint(run_dir, process, None)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert f"trpo train --resume {run_dir}" in err
    assert "Traceback" not in err
    saved = TRPO.load(run_dir / "last.safetensors")
    assert saved.trainer.iteration == csv_iterations(run_dir)[-1]  # the checkpoint is the CSV's end
    assert saved.trainer.iteration < STEPS // 512
    saved.close()

    process = resume(run_dir)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert_complete_and_exact(run_dir)


def test_tensorboard_after_a_resume_has_every_step_once(tmp_path):
    """A run that died after writing events past its last checkpoint: the resumed run's
    events replace those, so no step appears twice."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    settings = {"n_envs": 1, "steps_per_iter": 64, "checkpoint_every": 2, "eval_every": 0}
    agent = TRPO("CartPole-v1", run_dir=run_dir, **settings)

    def crash(stats):
        if stats.iteration == 3:  # events for iteration 3 written, last holds iteration 2
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        agent.learn(64 * 5, callback=crash)
    agent.close()
    resumed = TRPO.load(run_dir / "last.safetensors", run_dir=run_dir)
    assert resumed.trainer.iteration == 2
    resumed.learn(64 * 5)
    resumed.close()
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    steps = [event.step for event in events.Scalars("iteration")]
    assert sorted(steps) == [64 * i for i in range(1, 6)]

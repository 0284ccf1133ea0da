"""Real `trpo train` processes killed with SIGKILL at random points, or interrupted with
Ctrl-C (SIGINT), then resumed: the run completes, every checkpoint on disk loads, the
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

import torch

from trpo import TRPO
from trpo.config import Config

STEPS = 48 * 512
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


def wait_for_checkpoint(run_dir: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (run_dir / "last.safetensors").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.05)


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


def test_sigkill_at_random_points_then_resume(tmp_path):
    rng = random.Random(0)
    run_dir = tmp_path / "run"
    process = train(run_dir)
    kills = 0
    for _ in range(3):
        wait_for_checkpoint(run_dir, process)
        time.sleep(rng.uniform(0.5, 3.0))  # a resumed process spends ~2 s importing
        if process.poll() is not None:  # finished before the kill
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        for path in run_dir.glob("*.safetensors"):  # every checkpoint on disk loads
            TRPO.load(path).close()
        process = resume(run_dir)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert kills >= 2
    assert "done:" in out
    assert_complete_and_exact(run_dir)


def test_ctrl_c_saves_the_last_whole_iteration_and_prints_the_resume_command(tmp_path):
    run_dir = tmp_path / "run"
    process = train(run_dir)
    wait_for_checkpoint(run_dir, process)
    time.sleep(0.5)
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

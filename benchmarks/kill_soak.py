"""Kill soak: a CartPole-v1 `trpo train` killed with SIGKILL and SIGTERM at random points
(>= 20 kills), resumed each time; two concurrent writers on one directory; a full disk
(RLIMIT_FSIZE on the child: the kernel refuses writes beyond the limit with EFBIG, as a
full disk refuses them with ENOSPC; a tmpfs would need root mounts). Checks: metrics.csv
holds every iteration exactly once, every checkpoint loads, and the final weights equal
those of the same run never interrupted.

    PYTHONPATH=src python benchmarks/kill_soak.py [--kills 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from trpo import TRPO
from trpo.config import Config

ITERATIONS = 40
BATCH = 256
FSIZE = 64 * 1024
"""Bytes a file may reach in the full-disk check: metrics.csv outgrows it mid-run."""
SETTINGS = ["n_envs=2", f"steps_per_iter={BATCH}", "checkpoint_every=1", "eval_every=4",
            "eval_episodes=2", "tensorboard=true"]  # fmt: skip


def cli(*args: str, fsize: int | None = None) -> subprocess.Popen:
    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a core dump

    return subprocess.Popen(
        [sys.executable, "-m", "trpo.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit,
    )  # fmt: skip


def train(run_dir: Path, overwrite: bool = False, fsize: int | None = None) -> subprocess.Popen:
    return cli("train", "CartPole-v1", "--steps", str(ITERATIONS * BATCH), "--seed", "7",
               "--run-dir", str(run_dir), "--no-progress", *(["--overwrite"] * overwrite),
               "--set", *SETTINGS, fsize=fsize)  # fmt: skip


def resume(run_dir: Path, **kw) -> subprocess.Popen:
    return cli("train", "--resume", str(run_dir), "--no-progress", **kw)


def iterations(run_dir: Path) -> list[int]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [int(row["iteration"]) for row in csv.DictReader(f)]


def weights(agent: TRPO) -> list[torch.Tensor]:
    return [p.detach() for p in [*agent.policy.parameters(), *agent.value_fn.parameters()]]


def check_checkpoints(run_dir: Path) -> int:
    paths = sorted(run_dir.glob("*.safetensors"))
    for path in paths:
        TRPO.load(path).close()
    return len(paths)


def soak_round(run_dir: Path, rng: random.Random, counts: dict[str, int]) -> None:
    """One run to its end, killed at random points (during import, rollout, evaluation,
    writes) and resumed after each kill, until it finishes."""
    process = train(run_dir)
    while True:
        if rng.random() < 0.25:  # anywhere, startup included
            time.sleep(rng.uniform(0.0, 3.0))
        else:  # somewhere in the iteration after this process's first new checkpoint
            wait_for_new_checkpoint(run_dir, process)
            time.sleep(rng.uniform(0.0, 1.0))
        if process.poll() is not None:
            _, err = process.communicate()
            assert process.returncode == 0, err
            return
        sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
        process.send_signal(sig)
        _, err = process.communicate(timeout=60)
        if sig == signal.SIGTERM:  # -15: still starting Python, before trpo's handler
            assert process.returncode in (143, -15) and "Traceback" not in err, err
        counts[sig.name] += 1
        if (run_dir / "final.safetensors").exists():  # killed after it finished: done
            return
        if (run_dir / "last.safetensors").exists():
            counts["checkpoints_loaded"] += check_checkpoints(run_dir)
            process = resume(run_dir)
        else:  # killed before its first checkpoint: start the run again
            counts["restarted"] += 1
            process = train(run_dir, overwrite=True)


def wait_for_new_checkpoint(run_dir: Path, process: subprocess.Popen) -> None:
    """Until this process has replaced last.safetensors once (or ended), so that every
    second kill at least follows progress and the soak always ends."""

    def mtime() -> int | None:
        path = run_dir / "last.safetensors"
        return path.stat().st_mtime_ns if path.exists() else None

    seen = mtime()
    while mtime() == seen and process.poll() is None:
        time.sleep(0.01)


def two_writers(run_dir: Path) -> list[tuple[int, str]]:
    processes = [train(run_dir, overwrite=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read().strip()) for p in processes]
    assert sorted(code for code, _ in results) in ([0, 2], [0, 0]), results
    assert iterations(run_dir) == list(range(1, ITERATIONS + 1))
    return results


def full_disk(run_dir: Path) -> tuple[int, str, int]:
    """Train under a file-size limit that a file outgrows mid-run, then resume unlimited."""
    process = train(run_dir, fsize=FSIZE)
    _, err = process.communicate(timeout=300)
    code, last_line = process.returncode, err.strip().splitlines()[-1]
    assert code == 2 and last_line.startswith("trpo: error:"), err
    if (run_dir / "last.safetensors").exists():
        check_checkpoints(run_dir)
        done = resume(run_dir)
    else:  # the limit struck before the first checkpoint: nothing to continue
        done = train(run_dir, overwrite=True)
    _, err2 = done.communicate(timeout=600)
    assert done.returncode == 0, err2
    return code, last_line, len(iterations(run_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        counts = dict.fromkeys(["SIGKILL", "SIGTERM", "restarted", "checkpoints_loaded"], 0)
        reference = None
        rounds = 0
        while counts["SIGKILL"] + counts["SIGTERM"] < args.kills:
            rounds += 1
            run_dir = tmp / f"soak{rounds}"
            soak_round(run_dir, rng, counts)
            assert iterations(run_dir) == list(range(1, ITERATIONS + 1)), iterations(run_dir)
            check_checkpoints(run_dir)
            if reference is None:
                config = Config.from_dict(json.loads((run_dir / "config.json").read_text()))
                reference = TRPO(config=config)
                reference.learn()
                reference.close()
            final = TRPO.load(run_dir / "final.safetensors")
            exact = all(torch.equal(a, b) for a, b in zip(weights(final), weights(reference)))
            final.close()
            print(
                f"round {rounds}: {counts}; metrics.csv has iterations 1..{ITERATIONS} once "
                f"each; every checkpoint loads; final weights equal uninterrupted: {exact}"
            )
            assert exact
        writers = two_writers(tmp / "two")
        print(
            "two writers:", [(code, err.splitlines()[-1] if err else "") for code, err in writers]
        )
        code, line, rows = full_disk(tmp / "full")
        print(f"full disk (RLIMIT_FSIZE {FSIZE // 1024} KiB): exit {code}: {line}")
        print(f"  resumed without the limit: {rows} iterations, each once")
    print(f"kill soak passed in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

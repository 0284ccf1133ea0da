"""Memory soak: train a fast env for many steps with every output on (CSV, TensorBoard,
checkpoints, evaluation) and report resident memory at 10 % and at 100 % of the run.

    python benchmarks/soak.py                       # CartPole-v1, 1M steps (~2 min)
    python benchmarks/soak.py --env Pendulum-v1 --steps 2000000

Peak RSS (ru_maxrss) never falls, so current RSS (/proc/self/statm) is reported beside it:
growth between 10 % and 100 % would be a leak.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

from trpo import TRPO


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--steps", type=int, default=1_000_000)
    args = parser.parse_args()

    marks: dict[str, tuple[int, float, float]] = {}

    def record(stats) -> None:
        if "10 %" not in marks and stats.steps >= args.steps // 10:
            marks["10 %"] = (stats.steps, current_rss_mib(), peak_rss_mib())

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        agent = TRPO(args.env, run_dir=run_dir)
        agent.learn(args.steps, callback=record)
        marks["100 %"] = (agent.steps, current_rss_mib(), peak_rss_mib())
        agent.close()
    print(f"{args.env}, {args.steps:,} steps in {time.perf_counter() - started:.0f} s")
    print("| point | steps | current RSS MiB | peak RSS MiB |\n|---|---|---|---|")
    for point, (steps, current, peak) in marks.items():
        print(f"| {point} | {steps:,} | {current:.0f} | {peak:.0f} |")


if __name__ == "__main__":
    main()

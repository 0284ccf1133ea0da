"""What MKL's strict reproducibility mode (trpo.reproducibility) costs: the same training,
in fresh processes, with the mode on (what `import trpo` sets) and off (MKL's default, got
by running a product before trpo is imported), in alternating order.

    python benchmarks/strict_mode.py                          # CartPole-v1 and Pendulum-v1
    python benchmarks/strict_mode.py --envs Hopper-v5 --steps 20000 --repeats 2

Prints each env's median wall time in both modes and their ratio (strict / default).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

TRAIN = (
    "import sys, torch\n"
    "if sys.argv[1] == 'off':\n"
    "    torch.ones(7, 64) @ torch.ones(64, 3)  # before trpo: MKL's default mode stays\n"
    "from trpo import TRPO\n"
    "from trpo.reproducibility import alignment_dependent\n"
    "TRPO(sys.argv[2], eval_every=0).learn(int(sys.argv[3]))\n"
    "print(alignment_dependent())\n"
)


def timed_run(mode: str, env_id: str, steps: int) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", TRAIN, mode, env_id, str(steps)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - start, out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="CartPole-v1,Pendulum-v1")
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| env | steps | default s | strict s | strict / default | default alignment-dependent |")
    print("|---|---|---|---|---|---|")
    for env_id in args.envs.split(","):
        times: dict[str, list[float]] = {"off": [], "strict": []}
        dependent = ""
        for r in range(args.repeats):
            for mode in ("off", "strict") if r % 2 == 0 else ("strict", "off"):
                seconds, flag = timed_run(mode, env_id, args.steps)
                times[mode].append(seconds)
                dependent = flag if mode == "off" else dependent
        off, strict = statistics.median(times["off"]), statistics.median(times["strict"])
        ratio = strict / off
        print(f"| {env_id} | {args.steps} | {off:.2f} | {strict:.2f} | {ratio:.3f} | {dependent} |")


if __name__ == "__main__":
    main()

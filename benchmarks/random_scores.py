"""A uniformly random policy's score per env: the lower anchor of normalised scores.

    python benchmarks/random_scores.py                       # the envs of docs/results.md
    python benchmarks/random_scores.py Hopper-v5 Ant-v5 --episodes 20

Episode i resets the env with seed 1_000_000 + i (far from the training and evaluation
seeds) and seeds the action space with the same number, then takes uniformly random actions
(`action_space.sample()`) until the episode terminates or is truncated by the env's own time
limit. The score is the mean raw (undiscounted, unnormalised) return over the episodes, the
quantity `trpo benchmark` scores its runs in. `trpo.reference_scores` holds the figures
this script printed, with its command.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym

SEED_OFFSET = 1_000_000
"""Episode i resets with seed SEED_OFFSET + i."""
DEFAULT_ENVS = [
    "Hopper-v5",
    "Walker2d-v5",
    "HalfCheetah-v5",
    "Ant-v5",
    "Humanoid-v5",
    "Swimmer-v5",
    "Reacher-v5",
    "InvertedPendulum-v5",
    "InvertedDoublePendulum-v5",
    "CartPole-v1",
    "Pendulum-v1",
    "Acrobot-v1",
    "MountainCarContinuous-v0",
]


def random_returns(env_id: str, episodes: int) -> tuple[list[float], int]:
    """Raw returns of ``episodes`` uniformly random episodes, and the steps they took."""
    env = gym.make(env_id)
    returns, steps = [], 0
    for i in range(episodes):
        env.reset(seed=SEED_OFFSET + i)
        env.action_space.seed(SEED_OFFSET + i)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            steps += 1
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env_ids", nargs="*", default=DEFAULT_ENVS)
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()
    print(f"gymnasium {gym.__version__}; {args.episodes} episodes, reset seeds {SEED_OFFSET:_} + i")
    print("| env | random score (mean ± std) | episodes | steps | seconds |")
    print("|---|---|---|---|---|")
    for env_id in args.env_ids:
        started = time.perf_counter()
        returns, steps = random_returns(env_id, args.episodes)
        seconds = time.perf_counter() - started
        print(
            f"| {env_id} | {statistics.fmean(returns):.2f} ± {statistics.pstdev(returns):.2f} "
            f"| {len(returns)} | {steps:,} | {seconds:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

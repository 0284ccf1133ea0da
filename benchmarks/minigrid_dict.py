"""MiniGrid from its own Dict observation against the usual image-only wrapper.

MiniGrid's observation is a Dict: a 7x7x3 uint8 encoding of the agent's view ("image"), its
direction (Discrete(4)) and a text mission. trpo reads the Dict as it is: the grid through
the small-grid CNN, the direction one-hot beside it, the mission dropped with a warning.
The usual way (`minigrid.wrappers.ImgObsWrapper`) keeps only the image. Both train with
trpo's defaults; each trained policy then plays ``--episodes`` episodes, sampling its
actions, and the success rate is the fraction that reached the goal (return > 0).

    pip install minigrid
    python benchmarks/minigrid_dict.py                      # ~25 min on a 2-core machine
    python benchmarks/minigrid_dict.py --envs MiniGrid-Empty-8x8-v0 --steps 50000 --seeds 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial

import gymnasium as gym
import minigrid  # noqa: F401 - registers the MiniGrid envs
import numpy as np
from minigrid.wrappers import ImgObsWrapper

from trpo import TRPO

STEPS = {"MiniGrid-Empty-8x8-v0": 100_000, "MiniGrid-DoorKey-5x5-v0": 200_000}


def make(env_id: str, observation: str) -> gym.Env:
    env = gym.make(env_id)
    return ImgObsWrapper(env) if observation == "image" else env


def success_rate(model: TRPO, env_id: str, observation: str, episodes: int, seed: int):
    """(success rate, mean return) of ``episodes`` episodes with sampled actions."""
    env = make(env_id, observation)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + 1_000_000 + episode)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=False)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(np.asarray(returns) > 0)), float(np.mean(returns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", default=",".join(STEPS))
    parser.add_argument("--steps", type=int, help="steps per run (default: per env)")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()

    print("| env | observation | steps | seed | success rate | mean return | train s |")
    print("|---|---|---|---|---|---|---|")
    for env_id in args.envs.split(","):
        steps = args.steps or STEPS.get(env_id, 100_000)
        for observation in ("dict", "image"):
            rates = []
            for seed in range(args.seeds):
                with tempfile.TemporaryDirectory() as run_dir:
                    started = time.perf_counter()
                    model = TRPO(
                        partial(make, env_id, observation),
                        seed=seed,
                        eval_every=0,
                        tensorboard=False,
                        run_dir=run_dir,
                    )
                    model.learn(total_steps=steps)
                    seconds = time.perf_counter() - started
                    rate, mean = success_rate(model, env_id, observation, args.episodes, seed)
                    model.close()
                rates.append(rate)
                print(
                    f"| {env_id} | {observation} | {steps:,} | {seed} | {rate:.2f} | "
                    f"{mean:.3f} | {seconds:.0f} |",
                    flush=True,
                )
            if args.seeds > 1:
                print(f"| {env_id} | {observation} | mean | | {statistics.mean(rates):.2f} | | |")


if __name__ == "__main__":
    main()

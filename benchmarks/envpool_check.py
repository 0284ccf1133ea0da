"""Does trpo learn Hopper-v5 as well on EnvPool's simulator as on Gymnasium's?

    python benchmarks/envpool_check.py                  # vec=envpool, seeds 0-2, 200k steps
    python benchmarks/envpool_check.py --vec sync       # the same on Gymnasium's envs

Trains with `benchmarks/speed.py`'s matched Hopper settings (8 envs) on the chosen vector
env, then evaluates each trained policy on both simulators the same way (10 deterministic
episodes from reset seeds seed + EVAL_SEED_OFFSET + i, frozen observation statistics, raw
returns): Gymnasium's Hopper-v5 through the trainer, EnvPool's one copy at a time. A policy
that scores alike on both says the simulators agree where it goes; a gap between the
backends' *training* then lies in the data they give the learner. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from speed import EVAL_EPISODES, make_trpo, matched_settings

from trpo.evaluate import EVAL_SEED_OFFSET

ENV_ID = "Hopper-v5"


def evaluate_on_envpool(agent, seed: int) -> list[float]:
    import envpool

    returns = []
    for i in range(EVAL_EPISODES):
        env = envpool.make_gymnasium(ENV_ID, num_envs=1, seed=seed + EVAL_SEED_OFFSET + i)
        obs, _ = env.reset()
        total, done = 0.0, False
        while not done:
            action = agent.predict(obs.astype(np.float32), deterministic=True)[0]
            obs, reward, terminated, truncated, _ = env.step(np.asarray(action).reshape(1, -1))
            total += float(reward[0])
            done = bool(terminated[0] or truncated[0])
        returns.append(total)
        env.close()
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vec", choices=("envpool", "sync"), default="envpool")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=200_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for seed in args.seeds:
        agent = make_trpo(matched_settings(ENV_ID, 8, seed, args.vec))
        agent.learn(args.steps)
        on_gymnasium = statistics.fmean(agent.evaluate(EVAL_EPISODES).returns)
        on_envpool = statistics.fmean(evaluate_on_envpool(agent, seed))
        agent.close()
        print(
            f"trained on {args.vec}, seed {seed}: evaluated on Gymnasium {on_gymnasium:.0f}, "
            f"on EnvPool {on_envpool:.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

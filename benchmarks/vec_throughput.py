"""Vector env kinds side by side: env steps/s of random actions (the simulator's limit) and
of trpo's rollout collection (policy forward on every step included), at several n_envs.

    python benchmarks/vec_throughput.py                       # CartPole-v1 and Hopper-v5
    python benchmarks/vec_throughput.py --envs Hopper-v5 --n-envs 8 16 --vecs sync envpool

Async runs each env copy in its own subprocess (Gymnasium AsyncVectorEnv), envpool in
EnvPool's C++ thread pool (the envpool extra); the policy stays batched in this process.
Rates are medians of --repeats timed windows of --seconds each; each row's kinds are
measured one after the other, and the last column is each kind's rollout rate over the
first kind's.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from trpo import TRPO
from trpo.envs import env_factory, make_vector_env


def steps_per_second(step: Callable[[], int], seconds: float, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        steps, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            steps += step()
        rates.append(steps / (time.perf_counter() - started))
    return statistics.median(rates)


def raw_rate(env_id: str, n_envs: int, vec: str, seconds: float, repeats: int) -> float:
    envs = make_vector_env(env_factory(env_id), n_envs, vec, env_id)
    envs.reset(seed=0)
    envs.action_space.seed(0)

    def step() -> int:
        envs.step(envs.action_space.sample())
        return n_envs

    try:
        return steps_per_second(step, seconds, repeats)
    finally:
        envs.close()


def rollout_rate(env_id: str, n_envs: int, vec: str, seconds: float, repeats: int) -> float:
    agent = TRPO(env_id, n_envs=n_envs, vec=vec, steps_per_iter=64 * n_envs, eval_every=0)
    try:
        return steps_per_second(
            lambda: agent.trainer.collector.collect(64).n_transitions, seconds, repeats
        )
    finally:
        agent.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "Hopper-v5"])
    parser.add_argument("--n-envs", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vecs", nargs="+", default=["sync", "async"])
    args = parser.parse_args()
    vecs, base = args.vecs, args.vecs[0]

    raw_heads = " | ".join(f"raw {v}" for v in vecs)
    roll_heads = " | ".join(f"rollout {v}" for v in vecs)
    ratio_heads = " | ".join(f"{v}/{base}" for v in vecs[1:])
    print(f"| env | n_envs | {raw_heads} | {roll_heads} | {ratio_heads} |")
    print("|---|---|" + "---|" * (3 * len(vecs) - 1))
    for env_id in args.envs:
        for n in args.n_envs:
            raw = {v: raw_rate(env_id, n, v, args.seconds, args.repeats) for v in vecs}
            roll = {v: rollout_rate(env_id, n, v, args.seconds, args.repeats) for v in vecs}
            cells = [f"{raw[v]:,.0f}" for v in vecs] + [f"{roll[v]:,.0f}" for v in vecs]
            cells += [f"{roll[v] / roll[base]:.2f}" for v in vecs[1:]]
            print(f"| {env_id} | {n} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()

"""Each library as a user would run it, side by side in one job: the user's view of speed.

    python benchmarks/users_view.py                    # CartPole-v1 100k, Hopper-v5 200k, 3 seeds
    python benchmarks/users_view.py --envs Hopper-v5 --steps 1000000 --repeats 2

`benchmarks/speed.py` times the two libraries on one set of matched settings. A user does
not match settings: they take sb3-contrib's TRPO with rl-zoo's tuned hyperparameters for
the env (`hyperparams/trpo.yml`: 2 envs on both envs here; CartPole-v1 512-step rollouts,
cg_damping 1e-3, λ 0.98, 20 critic epochs of 512, no normalisation; MuJoCo the
`mujoco-defaults` of `sb3_reference.py`, VecNormalize) and trpo as shipped (`TRPO(env_id)`:
its defaults, or the env's preset). Each repeat r trains both with seed r, in alternating
order, timing only `learn()` (no periodic evaluation, one torch thread); each trained
policy is then evaluated trpo's way (`speed.evaluate_sb3`: 10 deterministic episodes from
reset seeds r + EVAL_SEED_OFFSET + i, frozen statistics, raw returns).
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import numpy as np
import torch
from sb3_reference import zoo_model
from speed import EVAL_EPISODES, evaluate_sb3, machine, timed

from trpo import TRPO

ZOO_CLASSIC: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "n_envs": 2,
        "n_steps": 512,
        "batch_size": 512,
        "cg_damping": 1e-3,
        "gae_lambda": 0.98,
        "gamma": 0.99,
        "learning_rate": 1e-3,
        "n_critic_updates": 20,
    },
}
"""rl-zoo's tuned sb3-contrib TRPO settings for classic control (no `normalize`)."""
STEPS = {"CartPole-v1": 100_000, "Hopper-v5": 200_000}


def run_sb3(env_id: str, seed: int, steps: int) -> dict[str, Any]:
    classic = ZOO_CLASSIC.get(env_id)
    model = zoo_model(env_id, seed, classic, normalize=classic is None)
    torch.set_num_threads(1)
    wall = timed(lambda: model.learn(steps))
    returns = evaluate_sb3(model, env_id, seed)
    model.get_env().close()
    return {"wall_s": wall, "steps": model.num_timesteps, "eval_returns": returns}


def run_trpo(env_id: str, seed: int, steps: int) -> dict[str, Any]:
    agent = TRPO(env_id, seed=seed, eval_every=0, tensorboard=False)
    wall = timed(lambda: agent.learn(steps))
    returns = agent.evaluate(EVAL_EPISODES).returns
    overlapped = agent.trainer.overlapped
    agent.close()
    return {"wall_s": wall, "steps": agent.steps, "eval_returns": returns, "overlap": overlapped}


def evals(runs: list[dict[str, Any]]) -> str:
    """Mean ± std over seeds of each run's mean evaluation return."""
    means = [float(np.mean(r["eval_returns"])) for r in runs]
    return f"{np.mean(means):.1f} ± {np.std(means):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(STEPS))
    parser.add_argument("--steps", type=int, help="training steps for every env")
    parser.add_argument("--repeats", type=int, default=3, help="seeds 0 .. repeats-1")
    args = parser.parse_args()
    runners = {"trpo": run_trpo, "sb3": run_sb3}
    lines = [
        "| env | steps | trpo s | sb3 s (rl-zoo) | median sb3/trpo | trpo eval | sb3 eval |",
        "|---|---|---|---|---|---|---|",
    ]
    for env_id in args.envs:
        steps = args.steps or STEPS.get(env_id, 100_000)
        runs: dict[str, list[dict[str, Any]]] = {"trpo": [], "sb3": []}
        ratios = []
        for seed in range(args.repeats):
            order = ("trpo", "sb3") if seed % 2 == 0 else ("sb3", "trpo")
            pair = {lib: runners[lib](env_id, seed, steps) for lib in order}
            for lib in order:
                runs[lib].append(pair[lib])
            ratios.append(pair["sb3"]["wall_s"] / pair["trpo"]["wall_s"])
            print(
                f"{env_id} seed {seed}: trpo {pair['trpo']['wall_s']:.1f} s (overlap "
                f"{pair['trpo']['overlap']}), sb3 {pair['sb3']['wall_s']:.1f} s, "
                f"sb3/trpo {ratios[-1]:.2f}; eval trpo "
                f"{np.mean(pair['trpo']['eval_returns']):.1f}, sb3 "
                f"{np.mean(pair['sb3']['eval_returns']):.1f}",
                flush=True,
            )

        walls = {lib: statistics.median(r["wall_s"] for r in runs[lib]) for lib in runs}
        lines.append(
            f"| {env_id} | {steps:,} | {walls['trpo']:.1f} | {walls['sb3']:.1f} "
            f"| {statistics.median(ratios):.2f} | {evals(runs['trpo'])} | {evals(runs['sb3'])} |"
        )
    info = machine()
    lines.append(f"\nMachine: {info['cpu']}, {info['cores']} cores; {info['versions']}")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()

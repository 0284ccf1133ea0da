"""A fixed-seed closed-loop trace: the first iterations' metrics and parameter checksums.

A closed loop amplifies one rounding difference through the env and the sampling, so the
trace is compared bit for bit on one machine (same seed, same process or a fresh one),
never against numbers from another machine: golden_reference.py pins the algorithm's
numbers across machines.

    python tests/golden_trace.py     # print the trace
"""

from __future__ import annotations

import json

import torch

from trpo import TRPO

RUNS = {
    "CartPole-v1": {"seed": 0, "n_envs": 4, "steps_per_iter": 512, "eval_every": 0},
    "Pendulum-v1": {"seed": 0, "n_envs": 4, "steps_per_iter": 512, "eval_every": 0},
}
ITERATIONS = 3
METRICS = ("episode_return", "kl", "backtracks", "surrogate_improvement", "entropy", "value_loss")


def checksum(module: torch.nn.Module) -> list[float]:
    flat = torch.cat([p.detach().reshape(-1).double() for p in module.parameters()])
    return [float(flat.sum()), float((flat**2).sum())]


def trace() -> dict:
    result = {}
    for env_id, settings in RUNS.items():
        rows = []
        agent = TRPO(env_id, **settings)

        def record(stats, agent=agent, rows=rows):
            row = stats.row()
            metrics = {k: row[k] for k in METRICS}
            metrics["policy"] = checksum(agent.policy)
            metrics["value"] = checksum(agent.value_fn)
            rows.append(metrics)

        agent.learn(ITERATIONS * settings["steps_per_iter"], callback=record)
        agent.close()
        result[env_id] = {"settings": settings, "iterations": rows}
    return result


if __name__ == "__main__":
    print(json.dumps(trace()))

"""A fixed-seed reference trace: the first iterations' metrics and parameter checksums.

Speed work must leave it unchanged (within floating-point tolerance). After a deliberate
change to the algorithm, regenerate it and say why in the commit:

    python tests/golden_trace.py --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from trpo import TRPO

TRACE_FILE = Path(__file__).parent / "golden" / "trace.json"
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
    if "--write" not in sys.argv:
        print(json.dumps(trace(), indent=1))
    else:
        TRACE_FILE.parent.mkdir(exist_ok=True)
        TRACE_FILE.write_text(json.dumps(trace(), indent=1) + "\n")
        print(f"wrote {TRACE_FILE}")

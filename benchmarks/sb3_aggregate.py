"""The normalised aggregate (IQM, mean, performance profile) of sb3-contrib reference runs,
computed by the same code as `trpo benchmark`'s, optionally beside a trpo benchmark's.

    python benchmarks/sb3_aggregate.py runs/sb3-reference
    python benchmarks/sb3_aggregate.py runs/sb3-reference --trpo runs/grid-mujoco/results.json \
        --profile runs/profile.png

Reads every finished `<env>-s<seed>.csv` that benchmarks/sb3_reference.py wrote in the
directory (not its `.partial.csv` files), scores each run as `trpo benchmark` does (mean of
its last 5 evaluations) and normalises by `trpo.reference_scores`. Since the reference
scores are sb3-contrib's own, its mean normalised score is ~1 by construction on the envs
(and seeds) they came from; the point is that both libraries go through one computation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from trpo.benchmark import BOOTSTRAP_SEED, aggregate_markdown, aggregate_scores, plot_profile
from trpo.logger import read_metrics
from trpo.trainer import run_score


def read_reference_scores(directory: Path) -> dict[str, list[float]]:
    """Env id -> the scores of its finished runs in ``directory``, in seed order."""
    runs: dict[str, dict[int, float]] = {}
    for path in directory.glob("*-s*.csv"):
        if path.name.endswith(".partial.csv"):
            continue
        env_id, seed = path.stem.rsplit("-s", 1)
        runs.setdefault(env_id, {})[int(seed)] = run_score(read_metrics(path))
    return {env: [by_seed[s] for s in sorted(by_seed)] for env, by_seed in sorted(runs.items())}


def read_benchmark_scores(results_json: Path) -> dict[str, list[float]]:
    """Env id -> per-seed scores from a `trpo benchmark` results.json."""
    results = json.loads(results_json.read_text())
    envs = results["envs"] if isinstance(results, dict) else results  # older files: a list
    return {r["env_id"]: r["scores"] for r in envs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="benchmarks/sb3_reference.py's --out")
    parser.add_argument("--trpo", type=Path, help="a trpo benchmark's results.json to set beside")
    parser.add_argument("--profile", type=Path, help="write the performance profile PNG here")
    args = parser.parse_args()

    scores = {"sb3-contrib": read_reference_scores(args.directory)}
    if args.trpo is not None:
        scores["trpo"] = read_benchmark_scores(args.trpo)
    aggregates = {}
    for label, by_env in scores.items():
        # a fresh generator each: trpo's figures match its own results.md to the digit
        aggregate = aggregate_scores(by_env, np.random.default_rng(BOOTSTRAP_SEED))
        if aggregate is None:
            print(f"{label}: fewer than two envs with reference scores ({', '.join(by_env)})")
            continue
        aggregates[label] = aggregate
        print(f"## {label}\n\n{aggregate_markdown(aggregate, profile=None)}\n")
    if args.profile is not None and aggregates:
        print(f"performance profile: {plot_profile(aggregates, args.profile)}")


if __name__ == "__main__":
    main()

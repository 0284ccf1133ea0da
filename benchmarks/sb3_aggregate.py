"""The normalised aggregate (IQM, mean, performance profile) of sb3-contrib reference runs,
computed by the same code as `trpo benchmark`'s, optionally beside a trpo benchmark's.

    python benchmarks/sb3_aggregate.py runs/sb3-reference
    python benchmarks/sb3_aggregate.py runs/sb3-reference --trpo runs/grid-mujoco/results.json \
        --profile runs/profile.png
    python benchmarks/sb3_aggregate.py benchmarks/results/mujoco-1m-sb3 \
        --trpo-runs benchmarks/results/mujoco-1m-trpo      # each seed side by side
    python benchmarks/sb3_aggregate.py benchmarks/results/mujoco-1m-sb3 --anchors

Reads every finished `<env>-s<seed>.csv` that benchmarks/sb3_reference.py wrote in the
directory (not its `.partial.csv` files), scores each run as `trpo benchmark` does (mean of
its last 5 evaluations) and normalises by `trpo.reference_scores`. Since the reference
scores are sb3-contrib's own, its mean normalised score is ~1 by construction on the envs
(and seeds) they came from; the point is that both libraries go through one computation.

With --trpo (a `trpo benchmark`'s results.json) it also prints each env's mean score for
both libraries with its 95 % bootstrap interval over seeds, and whether the intervals are
apart (issue 20's binding per-env test).

With --trpo-runs (a `trpo benchmark` directory) it also prints every env and seed that both
libraries have finished side by side: the two scores, and the step of each run's first
evaluation at or above `LEARNING_SPEED`'s threshold, and each library's median of those steps
(issue 20's learning-speed target).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from trpo.aggregate import stratified_bootstrap_ci
from trpo.benchmark import BOOTSTRAP_SEED, aggregate_markdown, aggregate_scores, plot_profile
from trpo.logger import METRICS_FILE, read_metrics
from trpo.metrics import run_score
from trpo.rundir import env_dir_name

LEARNING_SPEED = {"Hopper-v5": 2500.0, "Walker2d-v5": 3000.0}
"""Env id -> the return whose first evaluation at or above it marks how fast a run learns."""


def finished_reference_runs(directory: Path) -> list[tuple[str, int, Path]]:
    """(env id, seed, CSV) of every finished run in ``directory`` (not the `.partial.csv`
    files of runs under way), sorted."""
    runs = []
    for path in sorted(directory.glob("*-s*.csv")):
        if not path.name.endswith(".partial.csv"):
            env_id, seed = path.stem.rsplit("-s", 1)
            runs.append((env_id, int(seed), path))
    return runs


def scores_by_seed(directory: Path) -> dict[str, dict[int, float]]:
    """Env id -> seed -> the score of each finished run in ``directory``, sorted."""
    runs: dict[str, dict[int, float]] = {}
    for env_id, seed, path in finished_reference_runs(directory):
        runs.setdefault(env_id, {})[seed] = run_score(read_metrics(path))
    return {env: dict(sorted(by_seed.items())) for env, by_seed in sorted(runs.items())}


def read_reference_scores(directory: Path) -> dict[str, list[float]]:
    """Env id -> the scores of its finished runs in ``directory``, in seed order."""
    return {env: list(by_seed.values()) for env, by_seed in scores_by_seed(directory).items()}


def anchor_entries(directory: Path) -> str:
    """The reference part of each env's `trpo.reference_scores.ANCHORS` entry for the runs
    finished in ``directory``: what to write there as the grid's seeds land."""
    lines = []
    for env_id, by_seed in scores_by_seed(directory).items():
        per_seed = ", ".join(f"{score:.1f}" for score in by_seed.values())
        mean = float(np.mean(list(by_seed.values())))
        lines.append(f'"{env_id}": reference {mean:.1f}, seeds {tuple(by_seed)}, "...: {per_seed}"')
    return "\n".join(lines)


def first_reaching(rows: list[dict[str, float]], threshold: float) -> int | None:
    """Steps at the first evaluation whose return is at least ``threshold``, or None."""
    return next((int(r["steps"]) for r in rows if r["eval_return"] >= threshold), None)


Pair = tuple[str, int, list[dict[str, float]], list[dict[str, float]]]
"""(env id, seed, trpo's metrics rows, sb3's evaluation rows)."""


def finished_pairs(sb3_directory: Path, trpo_directory: Path) -> list[Pair]:
    """Every env and seed both libraries finished: a trpo run counts once its metrics reach
    the sb3 run's last evaluation."""
    pairs = []
    for env_id, seed, path in finished_reference_runs(sb3_directory):
        metrics = trpo_directory / f"{env_dir_name(env_id)}-s{seed}" / METRICS_FILE
        sb3_rows = read_metrics(path)
        trpo_rows = read_metrics(metrics) if metrics.exists() else []
        if trpo_rows and trpo_rows[-1]["steps"] >= sb3_rows[-1]["steps"]:
            pairs.append((env_id, seed, trpo_rows, sb3_rows))
    return pairs


def side_by_side(pairs: list[Pair]) -> str:
    """A Markdown table of every env and seed finished by both libraries (`finished_pairs`)."""
    lines = [
        "| env | seed | trpo score | sb3-contrib score | first evaluation ≥ threshold: "
        "trpo / sb3-contrib |",
        "|---|---|---|---|---|",
    ]
    for env_id, seed, trpo_rows, sb3_rows in pairs:
        reached = "–"
        if env_id in LEARNING_SPEED:
            steps = [first_reaching(rows, LEARNING_SPEED[env_id]) for rows in (trpo_rows, sb3_rows)]
            reached = f"≥ {LEARNING_SPEED[env_id]:.0f}: " + " / ".join(
                "never" if s is None else f"{s:,}" for s in steps
            )
        lines.append(
            f"| {env_id} | {seed} | {run_score(trpo_rows):.1f} | {run_score(sb3_rows):.1f} "
            f"| {reached} |"
        )
    return "\n".join(lines)


def learning_speed_medians(pairs: list[Pair]) -> str:
    """Per `LEARNING_SPEED` env, over the seeds both libraries finished (`finished_pairs`),
    each one's median step of its first evaluation at the threshold (a run that never
    reaches it counts as later than any that does): issue 20's learning-speed target."""
    firsts: dict[str, tuple[list[float], list[float]]] = {}
    for env_id, _, trpo_rows, sb3_rows in pairs:
        if env_id in LEARNING_SPEED:
            for runs, rows in zip(firsts.setdefault(env_id, ([], [])), (trpo_rows, sb3_rows)):
                step = first_reaching(rows, LEARNING_SPEED[env_id])
                runs.append(math.inf if step is None else step)
    lines = []
    for env_id, (trpo, sb3) in firsts.items():
        shown = ["never" if math.isinf(m) else f"{m:,.0f}" for m in map(np.median, (trpo, sb3))]
        lines.append(
            f"{env_id}, median first evaluation ≥ {LEARNING_SPEED[env_id]:.0f} over "
            f"{len(trpo)} seeds: trpo {shown[0]}, sb3-contrib {shown[1]}"
        )
    return "\n".join(lines)


def per_env_intervals(
    trpo: dict[str, list[float]], sb3: dict[str, list[float]], rng: np.random.Generator
) -> str:
    """A Markdown table of each env both libraries ran: each one's mean score with its 95 %
    bootstrap interval over seeds, and whether the intervals are apart (issue 20's binding
    test: no env where sb3-contrib is better with non-overlapping intervals)."""
    lines = [
        "| env | seeds trpo / sb3 | trpo mean (95 % CI) | sb3-contrib mean (95 % CI) | intervals |",
        "|---|---|---|---|---|",
    ]
    for env_id in (env for env in sb3 if env in trpo):
        cells = []
        for scores in (trpo[env_id], sb3[env_id]):
            column = np.asarray(scores, dtype=float)[:, None]
            low, high = stratified_bootstrap_ci(column, np.mean, 10_000, 0.95, rng)
            cells.append((float(np.mean(scores)), low, high))
        (_, t_low, t_high), (_, s_low, s_high) = cells
        verdict = "overlap"
        if t_low > s_high:
            verdict = "trpo better, apart"
        elif s_low > t_high:
            verdict = "**sb3-contrib better, apart**"
        shown = [f"{mean:.1f} ({low:.1f} to {high:.1f})" for mean, low, high in cells]
        seeds = f"{len(trpo[env_id])} / {len(sb3[env_id])}"
        lines.append(f"| {env_id} | {seeds} | {shown[0]} | {shown[1]} | {verdict} |")
    return "\n".join(lines)


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
    parser.add_argument(
        "--trpo-runs", type=Path, help="a trpo benchmark's directory: each seed side by side"
    )
    parser.add_argument(
        "--anchors", action="store_true", help="print the reference scores to write into "
        "trpo.reference_scores.ANCHORS for these runs, and stop"
    )  # fmt: skip
    args = parser.parse_args()
    if args.anchors:
        print(anchor_entries(args.directory))
        return
    if args.trpo_runs is not None:
        pairs = finished_pairs(args.directory, args.trpo_runs)
        print(f"{side_by_side(pairs)}\n")
        print(f"{learning_speed_medians(pairs)}\n")

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
    if "trpo" in scores:
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        print(f"{per_env_intervals(scores['trpo'], scores['sb3-contrib'], rng)}\n")
    if args.profile is not None and aggregates:
        print(f"performance profile: {plot_profile(aggregates, args.profile)}")


if __name__ == "__main__":
    main()

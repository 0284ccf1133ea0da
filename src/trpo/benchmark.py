"""`trpo benchmark`: envs × seeds with each env's preset, run as a resumable parallel grid
(`trpo.grid`), then a results table and one learning-curve figure per env.

The metric is each run's score: the mean of its last evaluations (deterministic actions,
raw returns), never the best evaluation seen. The table gives its mean ± std over seeds,
every seed's score, and the maximum over training of the across-seed mean evaluation
return (the metric some published tables use instead).

Across envs (`aggregate_scores`), when at least two envs have a random and a reference
score (`trpo.reference_scores`): each run's score normalised per env, 0 = random policy,
1 = reference; their interquartile mean and mean with 95 % stratified-bootstrap intervals,
and a performance profile (`trpo.aggregate`, after Agarwal et al. 2021).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from trpo.aggregate import (
    iqm,
    mean_score,
    normalize_scores,
    performance_profile,
    stratified_bootstrap_ci,
)
from trpo.config import Config
from trpo.grid import Cell
from trpo.logger import METRICS_FILE, read_metrics
from trpo.metrics import SCORE_WINDOW, run_score
from trpo.plot import figure, plot_band
from trpo.reference_scores import GRID_SEEDS, anchors
from trpo.rundir import env_dir_name

CONFIDENCE = 0.95
AGGREGATE_REPS = 50_000
"""Bootstrap resamples for the IQM's and mean's intervals (rliable's default)."""
PROFILE_REPS = 2_000
"""Bootstrap resamples for the performance profile's band (rliable's default)."""
BOOTSTRAP_SEED = 0
"""Seed of the report's own `numpy.random.Generator`: the same scores, the same intervals."""
PROFILE_FILE = "performance_profile.png"


def benchmark_cells(configs: list[Config], seeds: list[int], out: Path) -> list[Cell]:
    """One cell per env config (preset and user settings already applied) and seed."""
    return [
        Cell(config.replace(seed=seed), out / f"{env_dir_name(config.env_id)}-s{seed}")
        for config in configs
        for seed in seeds
    ]


@dataclass(frozen=True)
class EarlierRuns:
    """The finished runs already in a benchmark's directory that its command did not name."""

    reported: list[Cell]
    """Those the report covers: each agrees with the settings (seed aside) of every other
    run of its env in the report."""
    other_settings: list[str]
    """Run directory names left out: their env ran with other settings in the report."""
    unreadable: list[str]
    """Run directory names left out: their config.json does not load."""


def earlier_runs(out: Path, cells: list[Cell]) -> EarlierRuns:
    """The finished runs in ``out`` besides ``cells``, so that a command run for one env or
    seed into a grid's directory reports the whole grid, not only its own runs."""
    named = {cell.run_dir.resolve() for cell in cells}
    settings = {cell.config.env_id: cell.config.replace(seed=0) for cell in cells}
    reported, other_settings, unreadable = [], [], []
    for path in sorted(out.glob("*/config.json")):
        if path.parent.resolve() in named:
            continue
        try:
            cell = Cell(Config.from_dict(json.loads(path.read_text())), path.parent)
        except (ValueError, TypeError):  # JSONDecodeError and ConfigError are ValueErrors
            unreadable.append(path.parent.name)
            continue
        if not cell.logged_to_the_end:
            continue
        seedless = cell.config.replace(seed=0)
        if settings.setdefault(cell.config.env_id, seedless) != seedless:
            other_settings.append(path.parent.name)
            continue
        reported.append(cell)
    return EarlierRuns(reported, other_settings, unreadable)


def by_env_and_seed(cells: list[Cell]) -> list[Cell]:
    """``cells`` with each env's runs together in seed order, envs in order of appearance."""
    first = {}
    for index, cell in enumerate(cells):
        first.setdefault(cell.config.env_id, index)
    return sorted(cells, key=lambda cell: (first[cell.config.env_id], cell.config.seed))


@dataclass(frozen=True)
class EnvResult:
    env_id: str
    steps: int
    seeds: list[int]
    scores: list[float]
    score_mean: float
    score_std: float
    max_of_mean: float
    """Maximum over evaluation points of the across-seed mean evaluation return."""


def evaluation_curves(runs: list[list[dict[str, float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Steps of the evaluations and a [seeds, evaluations] array of their returns (NaN
    where a run has no evaluation at that step)."""
    steps = sorted(
        {row["steps"] for run in runs for row in run if not math.isnan(row["eval_return"])}
    )
    column = {s: i for i, s in enumerate(steps)}
    returns = np.full((len(runs), len(steps)), np.nan)
    for r, run in enumerate(runs):
        for row in run:
            if not math.isnan(row["eval_return"]):
                returns[r, column[row["steps"]]] = row["eval_return"]
    return np.array(steps), returns


def summarize_env(cells: list[Cell], runs: list[list[dict[str, float]]]) -> EnvResult:
    """One env's seeds: ``runs``, each cell's metrics rows in the same order."""
    scores = [run_score(run) for run in runs]
    _, returns = evaluation_curves(runs)
    complete = returns[:, ~np.isnan(returns).any(axis=0)]  # points every seed evaluated
    return EnvResult(
        env_id=cells[0].config.env_id,
        steps=int(min(run[-1]["steps"] for run in runs)),
        seeds=[cell.config.seed for cell in cells],
        scores=scores,
        score_mean=float(np.mean(scores)),
        score_std=float(np.std(scores)),
        max_of_mean=float(complete.mean(axis=0).max()) if complete.size else math.nan,
    )


def results_table(results: list[EnvResult]) -> str:
    lines = [
        "| env | steps | seeds | score (mean ± std) | per seed | max of mean |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        per_seed = ", ".join(f"{s:.0f}" for s in r.scores)
        lines.append(
            f"| {r.env_id} | {r.steps:,} | {len(r.seeds)} | {r.score_mean:.1f} ± "
            f"{r.score_std:.1f} | {per_seed} | {r.max_of_mean:.1f} |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Aggregate:
    """Normalised scores across envs: 0 = random policy, 1 = the env's reference score."""

    env_ids: list[str]
    """The envs covered: those with a random and a reference score and a scored run."""
    runs: list[int]
    """Scored runs per covered env."""
    normalized: list[list[float]]
    """[runs, envs] normalised scores; NaN where an env has fewer runs than the most."""
    iqm: float
    iqm_ci: list[float]
    """[lower, upper], CONFIDENCE stratified-bootstrap percentile interval."""
    mean: float
    """Mean over envs of each env's mean normalised score."""
    mean_ci: list[float]
    taus: list[float]
    profile: list[float]
    """Fraction of all runs whose normalised score exceeds each τ in ``taus``."""
    profile_ci: list[list[float]]
    """[2, len(taus)]: lower and upper band of ``profile``."""
    left_out: list[str]
    """Envs without both scores (or without a scored run), not in the aggregate."""
    provisional: list[str]
    """Covered envs whose reference score is marked provisional."""


def aggregate_scores(
    scores: dict[str, list[float]],
    rng: np.random.Generator,
    reps: int = AGGREGATE_REPS,
    profile_reps: int = PROFILE_REPS,
) -> Aggregate | None:
    """IQM, mean and performance profile of ``scores`` (env id -> each run's raw score),
    normalised by `trpo.reference_scores`; None when fewer than two envs can be normalised.
    Used for trpo's runs (`write_results`) and for sb3-contrib's
    (benchmarks/sb3_aggregate.py), so both are summarised the same way."""
    finite = {env: [s for s in runs if not math.isnan(s)] for env, runs in scores.items()}
    env_ids = [env for env, runs in finite.items() if runs and anchors(env) is not None]
    if len(env_ids) < 2:
        return None
    raw = np.full((max(len(finite[env]) for env in env_ids), len(env_ids)), np.nan)
    for task, env in enumerate(env_ids):
        raw[: len(finite[env]), task] = finite[env]
    normalized = normalize_scores(
        raw, [anchors(env).random for env in env_ids], [anchors(env).reference for env in env_ids]
    )
    low, high = min(0.0, np.nanmin(normalized)), max(1.5, np.nanmax(normalized))
    taus = np.linspace(low, high, 101)
    return Aggregate(
        env_ids=env_ids,
        runs=[len(finite[env]) for env in env_ids],
        normalized=normalized.tolist(),
        iqm=iqm(normalized),
        iqm_ci=stratified_bootstrap_ci(normalized, iqm, reps, CONFIDENCE, rng).tolist(),
        mean=mean_score(normalized),
        mean_ci=stratified_bootstrap_ci(normalized, mean_score, reps, CONFIDENCE, rng).tolist(),
        taus=taus.tolist(),
        profile=performance_profile(normalized, taus).tolist(),
        profile_ci=stratified_bootstrap_ci(
            normalized, lambda s: performance_profile(s, taus), profile_reps, CONFIDENCE, rng
        ).tolist(),
        left_out=[env for env in scores if env not in env_ids],
        provisional=[env for env in env_ids if anchors(env).provisional],
    )


def aggregate_markdown(aggregate: Aggregate, profile: str | None = PROFILE_FILE) -> str:
    """The aggregate as a markdown table and notes, for results.md; ``profile``: the
    performance-profile image to link, if any."""
    percent = f"{CONFIDENCE * 100:.0f} %"
    per_env = ", ".join(
        f"{env} {np.nanmean(column):.2f}"
        for env, column in zip(aggregate.env_ids, np.transpose(aggregate.normalized))
    )
    lines = [
        f"| across {len(aggregate.env_ids)} envs, normalised | estimate | {percent} CI |",
        "|---|---|---|",
        f"| IQM | {aggregate.iqm:.2f} | {aggregate.iqm_ci[0]:.2f} to {aggregate.iqm_ci[1]:.2f} |",
        f"| mean | {aggregate.mean:.2f} | {aggregate.mean_ci[0]:.2f} to "
        f"{aggregate.mean_ci[1]:.2f} |",
        "",
        "Normalised score, per env: (score − random policy's) / (reference − random "
        "policy's), the reference being sb3-contrib's TRPO on the same env version "
        "(`trpo.reference_scores`). IQM: mean of the middle 50 % of all runs of all envs; "
        "mean: over envs of each env's mean. CI: stratified bootstrap over each env's runs, "
        "percentile interval (Agarwal et al. 2021). Runs per env: "
        f"{', '.join(f'{env} {n}' for env, n in zip(aggregate.env_ids, aggregate.runs))}. "
        f"Mean per env: {per_env}.",
    ]
    if aggregate.provisional:
        provisional = ", ".join(aggregate.provisional)
        lines.append(
            f"Provisional reference scores (fewer than {GRID_SEEDS} seeds): {provisional}."
        )
    if aggregate.left_out:
        lines.append(f"Left out (no reference score): {', '.join(aggregate.left_out)}.")
    if profile is not None:
        lines.append(f"\n![performance profile]({profile})")
    return "\n".join(lines)


def write_results(
    out: Path, cells: list[Cell], command: str, earlier: Sequence[Cell] = ()
) -> list[EnvResult]:
    """Write results.md, results.json, ENV.png (mean ± std evaluation curves) and, when
    at least two envs have reference scores, the normalised aggregate and PROFILE_FILE to
    ``out``. results.json: {"envs": [EnvResult...], "aggregate": Aggregate or null}.
    ``earlier``: those of ``cells`` that ``command`` did not run (`earlier_runs`), named
    beside it."""
    by_env: dict[str, list[Cell]] = {}
    for cell in cells:
        by_env.setdefault(cell.config.env_id, []).append(cell)
    results = []
    for env_id, env_cells in by_env.items():
        runs = [read_metrics(cell.run_dir / METRICS_FILE) for cell in env_cells]
        results.append(summarize_env(env_cells, runs))
        plot_env(env_id, runs, out)
    aggregate = aggregate_scores(
        {r.env_id: r.scores for r in results}, np.random.default_rng(BOOTSTRAP_SEED)
    )
    across = ""
    if aggregate is not None:
        plot_profile({"trpo": aggregate}, out / PROFILE_FILE)
        across = f"\n\n{aggregate_markdown(aggregate)}"
    envs_and_aggregate = {
        "envs": [asdict(r) for r in results],
        "aggregate": asdict(aggregate) if aggregate is not None else None,
    }
    (out / "results.json").write_text(json.dumps(envs_and_aggregate, indent=2))
    (out / "results.md").write_text(
        f"{results_table(results)}\n\nScore: mean of each run's last {SCORE_WINDOW} deterministic "
        "evaluations (raw returns); ± is the std over seeds. Max of mean: the best "
        f"across-seed mean evaluation during training.{across}\n\nCommand: `{command}`\n"
        + _earlier_line(earlier)
    )
    return results


def _earlier_line(earlier: Sequence[Cell]) -> str:
    if not earlier:
        return ""
    names = ", ".join(cell.run_dir.name for cell in earlier)
    return (
        "\nAlso reported, finished earlier in this directory by other commands (each run's "
        f"settings are in its config.json): {names}.\n"
    )


def plot_env(env_id: str, runs: list[list[dict[str, float]]], out: Path) -> None:
    steps, returns = evaluation_curves(runs)
    fig, ax = figure((7, 4))
    plot_band(ax, steps, returns, "C0", f"{len(runs)} seeds")
    ax.set(xlabel="environment steps", ylabel="evaluation return")
    ax.set_title(f"{env_id}: deterministic evaluation, mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(out / f"{env_dir_name(env_id)}.png", dpi=110)


def plot_profile(aggregates: dict[str, Aggregate], path: Path) -> Path:
    """One PNG: each aggregate's performance profile (fraction of runs with normalised
    score > τ) with its bootstrap band; ``aggregates``: label -> Aggregate."""
    fig, ax = figure((7, 4))
    for index, (label, aggregate) in enumerate(aggregates.items()):
        colour = f"C{index % 10}"
        envs = len(aggregate.env_ids)
        ax.plot(aggregate.taus, aggregate.profile, color=colour, label=f"{label} ({envs} envs)")
        ax.fill_between(aggregate.taus, *aggregate.profile_ci, color=colour, alpha=0.2)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set(
        xlabel="normalised score τ (0: random policy, 1: reference)", ylabel="fraction of runs > τ"
    )
    ax.set_title(f"performance profile, {CONFIDENCE * 100:.0f} % stratified-bootstrap band")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path

"""`trpo benchmark`: envs × seeds with each env's preset, run as a resumable parallel grid
(`trpo.grid`), then a results table and one learning-curve figure per env.

The metric is each run's score: the mean of its last evaluations (deterministic actions,
raw returns), never the best evaluation seen. The table gives its mean ± std over seeds,
every seed's score, and the maximum over training of the across-seed mean evaluation
return (the metric some published tables use instead).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from trpo.config import Config
from trpo.grid import Cell
from trpo.logger import METRICS_FILE, read_metrics
from trpo.metrics import SCORE_WINDOW, run_score
from trpo.plot import plot_band


def benchmark_cells(configs: list[Config], seeds: list[int], out: Path) -> list[Cell]:
    """One cell per env config (preset and user settings already applied) and seed."""
    return [
        Cell(config.replace(seed=seed), out / f"{config.env_id}-s{seed}")
        for config in configs
        for seed in seeds
    ]


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


def summarize_env(cells: list[Cell]) -> EnvResult:
    runs = [read_metrics(cell.run_dir / METRICS_FILE) for cell in cells]
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


def write_results(out: Path, cells: list[Cell], command: str) -> list[EnvResult]:
    """Write results.md, results.json and ENV.png (mean ± std evaluation curves) to ``out``."""
    by_env: dict[str, list[Cell]] = {}
    for cell in cells:
        by_env.setdefault(cell.config.env_id, []).append(cell)
    results = [summarize_env(env_cells) for env_cells in by_env.values()]
    for env_id, env_cells in by_env.items():
        plot_env(env_id, [read_metrics(c.run_dir / METRICS_FILE) for c in env_cells], out)
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    (out / "results.md").write_text(
        f"{results_table(results)}\n\nScore: mean of each run's last {SCORE_WINDOW} deterministic "
        "evaluations (raw returns); ± is the std over seeds. Max of mean: the best "
        f"across-seed mean evaluation during training.\n\nCommand: `{command}`\n"
    )
    return results


def plot_env(env_id: str, runs: list[list[dict[str, float]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, returns = evaluation_curves(runs)
    fig, ax = plt.subplots(figsize=(7, 4))
    plot_band(ax, steps, returns, "C0", f"{len(runs)} seeds")
    ax.set(xlabel="environment steps", ylabel="evaluation return")
    ax.set_title(f"{env_id}: deterministic evaluation, mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(out / f"{env_id}.png", dpi=110)
    plt.close(fig)

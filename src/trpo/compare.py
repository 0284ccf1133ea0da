"""Vanilla policy gradient, natural policy gradient and TRPO on one task, side by side:
the comparison TRPO's theory is built on. The three differ only in the policy step
(`trpo.update.policy_step`); rollouts, advantages and the value fit are shared.

Per algorithm the report gives the final return (each run's score: the mean of its last
evaluations), the largest single-iteration drop of the training return, how often the
step's exact KL exceeded δ, and how often TRPO's line search had to shorten or refuse
the step.
"""

from __future__ import annotations

import json
import math
import typing
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from trpo.config import Algo, Config
from trpo.grid import Cell
from trpo.logger import METRICS_FILE, read_metrics
from trpo.metrics import run_score
from trpo.plot import figure, plot_band


def compare_cells(config: Config, algos: list[str], seeds: list[int], out: Path) -> list[Cell]:
    return [
        Cell(config.replace(algo=algo, seed=seed), out / f"{algo}-s{seed}")
        for algo in algos
        for seed in seeds
    ]


@dataclass(frozen=True)
class AlgoSummary:
    algo: str
    runs: int
    final_return: float
    """Mean over runs of each run's score (mean of its last evaluations)."""
    final_return_std: float
    largest_drop: float
    """Mean over runs of the largest fall of the training return from one iteration to
    the next."""
    kl_over_bound: float
    """Fraction of all iterations whose exact KL after the step exceeded max_kl (the KL per
    action dimension with `kl_scale="per_dim"`)."""
    backtracked_or_rejected: float
    """Fraction of iterations whose line search shortened or refused the step (NaN
    without a line search, i.e. for vpg and npg)."""


def filled_returns(rows: list[dict[str, float]]) -> np.ndarray:
    """Training episode return per iteration; an iteration in which no episode ended
    carries the previous value (NaN before the first episode ends)."""
    returns = np.array([row["episode_return"] for row in rows], dtype=np.float64)
    for i in range(1, len(returns)):
        if math.isnan(returns[i]):
            returns[i] = returns[i - 1]
    return returns


def largest_drop(returns: np.ndarray) -> float:
    falls = returns[:-1] - returns[1:]
    falls = falls[~np.isnan(falls)]
    return float(max(falls.max(), 0.0)) if falls.size else 0.0


def bounded_kl(config: Config) -> str:
    """The metrics column that max_kl bounds: `kl_per_dim` with `kl_scale="per_dim"`."""
    return "kl_per_dim" if config.kl_scale == "per_dim" else "kl"


def summarize(
    algo: str, runs: list[list[dict[str, float]]], max_kl: float, kl_column: str = "kl"
) -> AlgoSummary:
    scores = [run_score(rows) for rows in runs]
    rows = [row for run in runs for row in run]
    if algo == "trpo":
        shortened = [row["backtracks"] > 0 or not row["accepted"] for row in rows]
        backtracked = float(np.mean(shortened))
    else:
        backtracked = math.nan
    return AlgoSummary(
        algo=algo,
        runs=len(runs),
        final_return=float(np.mean(scores)),
        final_return_std=float(np.std(scores)),
        largest_drop=float(np.mean([largest_drop(filled_returns(run)) for run in runs])),
        kl_over_bound=float(np.mean([row[kl_column] > max_kl for row in rows])),
        backtracked_or_rejected=backtracked,
    )


def markdown_table(summaries: list[AlgoSummary], max_kl: float) -> str:
    lines = [
        "| algo | runs | final return | largest 1-iteration drop | iterations with KL > δ "
        "| line searches that backtracked or refused |",
        "|---|---|---|---|---|---|",
    ]
    for s in summaries:
        searched = "–" if math.isnan(s.backtracked_or_rejected) else _pct(s.backtracked_or_rejected)
        lines.append(
            f"| {s.algo} | {s.runs} | {s.final_return:.1f} ± {s.final_return_std:.1f} "
            f"| {s.largest_drop:.1f} | {_pct(s.kl_over_bound)} | {searched} |"
        )
    lines.append(f"\nδ = max_kl = {max_kl}; ± is the standard deviation over seeds.")
    return "\n".join(lines)


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.0f} %"


def write_report(out: Path, cells: list[Cell], command: str) -> list[AlgoSummary]:
    """Read the cells' metrics and write summary.md, summary.json, returns.png and kl.png
    into ``out``."""
    runs: dict[str, list[list[dict[str, float]]]] = {}
    for cell in cells:
        runs.setdefault(cell.config.algo, []).append(read_metrics(cell.run_dir / METRICS_FILE))
    config = cells[0].config
    summaries = [
        summarize(algo, algo_runs, config.max_kl, bounded_kl(config))
        for algo, algo_runs in runs.items()
    ]
    table = markdown_table(summaries, config.max_kl)
    (out / "summary.md").write_text(
        f"# {config.env_id}: {', '.join(runs)} over {len(cells) // len(runs)} seeds, "
        f"{config.total_steps:,} steps\n\n{table}\n\nCommand: `{command}`\n\n"
        "![returns](returns.png)\n\n![kl](kl.png)\n"
    )
    (out / "summary.json").write_text(json.dumps([asdict(s) for s in summaries], indent=2))
    plot_comparison(runs, config, out)
    return summaries


def plot_comparison(runs: dict[str, list[list[dict[str, float]]]], config: Config, out: Path):
    fig_r, ax_r = figure((8, 4.5))
    fig_k, ax_k = figure((8, 4.5))
    for algo, algo_runs in runs.items():
        colour = f"C{typing.get_args(Algo).index(algo)}"  # each algo keeps its colour
        length = min(len(run) for run in algo_runs)
        steps = np.array([row["steps"] for row in algo_runs[0][:length]])
        returns = np.stack([filled_returns(run)[:length] for run in algo_runs])
        # NPG dashed and on top: where TRPO's line search never shortens a step the two
        # curves coincide.
        style = {"linestyle": "--", "zorder": 3} if algo == "npg" else {}
        plot_band(ax_r, steps, returns, colour, algo, **style)
        for seed_index, run in enumerate(algo_runs):
            kl = np.array([row[bounded_kl(config)] for row in run])
            kl_steps = np.array([row["steps"] for row in run])
            shown = kl > 0  # a refused step has KL 0, which a log scale cannot show
            ax_k.plot(
                kl_steps[shown],
                kl[shown],
                color=colour,
                alpha=0.6,
                linewidth=1,
                label=algo if seed_index == 0 else None,
                **style,
            )
    ax_k.axhline(config.max_kl, color="black", linestyle="--", linewidth=1, label="δ (max_kl)")
    ax_k.set_yscale("log")
    ax_r.set(xlabel="environment steps", ylabel="training episode return")
    ax_r.set_title(f"{config.env_id}: mean ± std over seeds")
    per_dim = " per action dimension" if config.kl_scale == "per_dim" else ""
    ax_k.set(xlabel="environment steps", ylabel=f"KL between consecutive policies{per_dim}")
    ax_k.set_title(f"{config.env_id}: exact KL after each step, one line per seed")
    for fig, ax, name in ((fig_r, ax_r, "returns.png"), (fig_k, ax_k, "kl.png")):
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)

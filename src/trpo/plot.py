"""Learning-curve figures from run directories' metrics.csv."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from trpo.logger import METRICS_FILE, read_metrics


def figure(size: tuple[float, float]):
    """A matplotlib figure and its axes, drawn to files only: no pyplot, so no backend is
    chosen for the process and nothing is left open (matplotlib is imported on first use)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    return fig, fig.subplots()


def plot_runs(run_dirs: list[Path], output: Path) -> Path:
    """One PNG: training episode return (thin) and evaluation return (markers) against
    environment steps, one colour per run."""
    fig, ax = figure((8, 4.5))
    for index, run_dir in enumerate(run_dirs):
        rows = read_metrics(run_dir / METRICS_FILE)
        colour = f"C{index % 10}"
        train = [
            (r["steps"], r["episode_return"]) for r in rows if not math.isnan(r["episode_return"])
        ]
        evals = [(r["steps"], r["eval_return"]) for r in rows if not math.isnan(r["eval_return"])]
        if train:
            ax.plot(*zip(*train), color=colour, alpha=0.35, linewidth=1)
        if evals:
            ax.plot(*zip(*evals), color=colour, marker="o", markersize=3, label=run_dir.name)
        else:  # still named: a run too short for an episode or an evaluation says so
            ax.plot([], [], color=colour, label=run_dir.name)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title("training (thin) and deterministic evaluation (markers)")
    ax.grid(alpha=0.3)
    if run_dirs:
        ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    return output


def plot_band(
    ax, steps: np.ndarray, values: np.ndarray, colour: str, label: str, **line: Any
) -> None:
    """Mean ± std over the rows of ``values`` (one row per seed; NaN = no value there);
    ``line``: more matplotlib arguments for the mean's line."""
    with warnings.catch_warnings():  # a column that is all NaN has no mean: left blank
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
    ax.plot(steps, mean, color=colour, label=label, **line)
    ax.fill_between(steps, mean - std, mean + std, color=colour, alpha=0.2)

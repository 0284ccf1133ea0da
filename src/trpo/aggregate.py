"""Aggregate scores across envs the way Agarwal et al. 2021 recommend ("Deep Reinforcement
Learning at the Edge of the Statistical Precipice", NeurIPS; their `rliable` package):
normalise each env's scores, summarise all runs of all envs by the interquartile mean
(IQM), give it a stratified-bootstrap confidence interval, and show the whole distribution
as a performance profile.

Scores are a ``[runs, tasks]`` array, one column per env (task), one row per run (seed).
NaN marks a run a task does not have, so tasks may have different run counts; with no NaN
every function here computes what its rliable counterpart computes (`tests/test_aggregate.py`
checks this against rliable itself). Pure NumPy: randomness comes from the
`numpy.random.Generator` the caller passes in.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def normalize_scores(
    scores: np.ndarray, random_scores: np.ndarray, reference_scores: np.ndarray
) -> np.ndarray:
    """``(scores - random) / (reference - random)``: 0 is a uniformly random policy's score,
    1 the reference's. ``scores``: [runs, tasks]; ``random_scores``, ``reference_scores``:
    [tasks] (they broadcast along the last axis)."""
    random_scores = np.asarray(random_scores, dtype=float)
    span = np.asarray(reference_scores, dtype=float) - random_scores
    if np.any(span == 0):
        raise ValueError(f"reference equals random score for tasks {np.flatnonzero(span == 0)}")
    return (np.asarray(scores, dtype=float) - random_scores) / span


def trim_mean(values: np.ndarray, proportion: float) -> float:
    """Mean of ``values`` (flattened, NaN dropped) without the ``floor(proportion * n)``
    lowest and as many highest: `scipy.stats.trim_mean(values, proportion, axis=None)`."""
    kept = np.sort(np.asarray(values, dtype=float).ravel())
    kept = kept[~np.isnan(kept)]
    cut = int(proportion * kept.size)
    if kept.size == 0 or 2 * cut >= kept.size:
        raise ValueError(f"no values left after trimming {proportion} of {kept.size} from each end")
    return float(kept[cut : kept.size - cut].mean())


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all runs of all tasks: the mean of the middle 50 % of the pooled
    ``[runs, tasks]`` scores, a quarter trimmed from each end, rounded down
    (rliable's `aggregate_iqm`: `scipy.stats.trim_mean(scores, 0.25, axis=None)`).
    Robust to one outlying run or task, less noisy than the median."""
    return trim_mean(scores, 0.25)


def mean_score(scores: np.ndarray) -> float:
    """Mean over tasks of each task's mean over its runs (rliable's `aggregate_mean`);
    every task weighs the same whatever its run count. ``scores``: [runs, tasks]."""
    return float(np.mean(np.nanmean(scores, axis=0)))


def performance_profile(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """The fraction of runs whose score exceeds each τ in ``taus`` [k], over all runs of all
    tasks (rliable's run-score distribution, `create_performance_profile` with its default
    `use_score_distribution=True`). ``scores``: [runs, tasks]. Returns [k]. With tasks of
    different run counts every run counts once."""
    runs = np.asarray(scores, dtype=float).ravel()
    runs = runs[~np.isnan(runs)]
    return (runs[:, None] > np.asarray(taus, dtype=float)[None, :]).mean(axis=0)


def stratified_bootstrap(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], float | np.ndarray],
    reps: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``statistic`` of ``reps`` stratified resamples of ``scores`` [runs, tasks]: each task's
    runs drawn with replacement from its own runs, as many as it has (its NaN stay where
    they are), tasks never mixed (rliable's `StratifiedBootstrap`, `task_bootstrap=False`).
    Returns [reps, *statistic's shape]."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [runs, tasks], got shape {scores.shape}")
    runs, tasks = scores.shape
    rows = np.broadcast_to(np.arange(runs)[None, :, None], (reps, runs, tasks)).copy()
    for task in range(tasks):
        present = np.flatnonzero(~np.isnan(scores[:, task]))
        if present.size == 0:
            raise ValueError(f"task {task} has no runs")
        rows[:, present, task] = present[rng.integers(present.size, size=(reps, present.size))]
    resamples = scores[rows, np.arange(tasks)]  # [reps, runs, tasks]
    results = [statistic(resample) for resample in resamples]
    return np.asarray(results, dtype=float)


def stratified_bootstrap_ci(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], float | np.ndarray],
    reps: int,
    confidence: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Percentile confidence interval of ``statistic`` from `stratified_bootstrap`: the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of its ``reps``
    resampled values (rliable's default `method="percentile"`, through arch). Returns
    [2, *statistic's shape]: lower, upper. rliable uses 50,000 reps for aggregates and
    2,000 for profiles; a few thousand give the interval's ends to ~1 % of its width.

    With n runs per task the interval reflects only the run-to-run spread of those n seeds:
    with 3-5 seeds it is a rough guide (it cannot be wider than the scores seen)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    values = stratified_bootstrap(scores, statistic, reps, rng)
    tail = 100 * (1 - confidence) / 2
    return np.percentile(values, [tail, 100 - tail], axis=0)

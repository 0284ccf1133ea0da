"""What a run measures: one `IterationStats` per iteration (metrics.csv's rows) and the
run's score, the one number that `trpo benchmark` and `trpo compare` rank runs by."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from trpo.update import StepStats, ValueStats

SCORE_WINDOW = 5
"""The run's score is the mean of its last this-many evaluations."""


@dataclass(frozen=True)
class Overlap:
    """How the value fit met the policy step and the next iteration's rollout, which run
    beside it (config `overlap`; zeros when they run one after the other)."""

    wait_for_fit_sec: float = 0.0
    """The rollout was done and waited this long for the value fit."""
    wait_for_rollout_sec: float = 0.0
    """The value fit was done and its process idle this long while the policy step and
    the rollout ran."""


@dataclass(frozen=True)
class IterationStats:
    """What happened in one iteration; `row()` is its line in metrics.csv."""

    iteration: int
    steps: int
    episodes: int
    episode_return: float
    """Mean raw return of the episodes that ended in this iteration (NaN if none did)."""
    episode_length: float
    dropped: int
    """Transitions left out for a NaN/Inf observation or reward (nonfinite_env=drop)."""
    policy: StepStats
    value: ValueStats
    eval_return: float
    """Mean deterministic evaluation return (NaN when no evaluation ran this iteration)."""
    eval_return_std: float
    fps: float
    """Environment steps per second of this iteration, evaluation excluded."""
    rollout_sec: float
    advantage_sec: float
    policy_sec: float
    value_sec: float
    """Seconds of the value fit (in the second process with `overlap`)."""
    overlap: Overlap
    eval_sec: float
    wall_sec: float
    """Seconds since training started (evaluation included)."""

    def row(self) -> dict[str, Any]:
        """Flat metrics, the policy step's and value fit's stats inlined."""
        flat: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            flat.update(
                dataclasses.asdict(value) if dataclasses.is_dataclass(value) else {f.name: value}
            )
        return flat

    @staticmethod
    def columns() -> list[str]:
        columns = []
        for f in dataclasses.fields(IterationStats):
            nested = {"policy": StepStats, "value": ValueStats, "overlap": Overlap}.get(f.name)
            columns += [g.name for g in dataclasses.fields(nested)] if nested else [f.name]
        return columns


Callback = Callable[[IterationStats], bool | None]
"""Called after every iteration; returning False stops training after it."""


def run_score(rows: list[dict[str, Any]]) -> float:
    """A run's score from its metrics rows: the mean of its last `SCORE_WINDOW` evaluation
    returns (NaN before any)."""
    evals = [row["eval_return"] for row in rows if not math.isnan(row["eval_return"])]
    return float(np.mean(evals[-SCORE_WINDOW:])) if evals else math.nan

"""`trpo.reference_scores`: the anchors of normalised scores are consistent data."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

from trpo.reference_scores import ANCHORS, GRID_SEEDS, anchors

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import sb3_aggregate  # noqa: E402

GRID = BENCHMARKS / "results" / "mujoco-1m-sb3"
"""The reporting grid's sb3-contrib runs, one CSV of evaluations per env and seed."""


def test_anchors_only_for_envs_with_both_scores():
    assert anchors("Hopper-v5") is ANCHORS["Hopper-v5"]
    assert anchors("CartPole-v1") is None  # a random score, no reference
    assert anchors("Nope-v0") is None


@pytest.mark.parametrize("env_id", [env for env, a in ANCHORS.items() if a.reference is not None])
def test_a_reference_beats_random_and_says_where_it_came_from(env_id):
    scores = ANCHORS[env_id]
    assert scores.reference > scores.random
    assert scores.reference_seeds and "sb3-contrib" in scores.reference_source
    assert scores.provisional == (len(scores.reference_seeds) < GRID_SEEDS)


@pytest.mark.parametrize("env_id", [env for env, a in ANCHORS.items() if a.reference is not None])
def test_a_reference_is_what_the_committed_sb3_grid_scored(env_id):
    """Each reference and its per-seed scores are the committed grid's runs, so a seed that
    lands and is not copied in (or a typo) fails here; `python benchmarks/sb3_aggregate.py
    benchmarks/results/mujoco-1m-sb3 --anchors` prints what to write."""
    scores = ANCHORS[env_id]
    finished = sb3_aggregate.scores_by_seed(GRID)[env_id]  # seed -> score, finished runs only
    per_seed = list(finished.values())
    assert scores.reference_source.endswith(", ".join(f"{s:.1f}" for s in per_seed))
    assert scores.reference == pytest.approx(statistics.fmean(per_seed), abs=0.05)
    assert list(scores.reference_seeds) == list(finished)

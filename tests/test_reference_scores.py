"""`trpo.reference_scores`: the anchors of normalised scores are consistent data."""

from __future__ import annotations

import pytest

from trpo.reference_scores import ANCHORS, anchors


def test_anchors_only_for_envs_with_both_scores():
    assert anchors("Hopper-v5") is ANCHORS["Hopper-v5"]
    assert anchors("Humanoid-v5") is None  # a random score, no reference yet
    assert anchors("Nope-v0") is None


@pytest.mark.parametrize("env_id", [env for env, a in ANCHORS.items() if a.reference is not None])
def test_a_reference_beats_random_and_says_where_it_came_from(env_id):
    scores = ANCHORS[env_id]
    assert scores.reference > scores.random
    assert scores.reference_seeds and "sb3-contrib" in scores.reference_source
    assert scores.provisional  # until remeasured with the fixed harness

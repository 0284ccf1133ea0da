"""`trpo.aggregate`: normalised scores, IQM, stratified-bootstrap intervals and performance
profiles, worked by hand, as properties, and against rliable itself where it is installed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trpo.aggregate import (
    iqm,
    mean_score,
    normalize_scores,
    performance_profile,
    stratified_bootstrap,
    stratified_bootstrap_ci,
    trim_mean,
)

NAN = math.nan
SCORES = st.floats(-1e3, 1e3, allow_nan=False)
RUNS_BY_TASKS = arrays(float, st.tuples(st.integers(1, 6), st.integers(1, 5)), elements=SCORES)


def test_normalize_scores_maps_random_to_0_and_reference_to_1():
    random, reference = np.array([-300.0, 17.0]), np.array([3430.0, 2841.0])
    scores = np.array([[-300.0, 2841.0], [3430.0, 17.0], [1565.0, 1429.0]])  # [runs, tasks]
    np.testing.assert_allclose(
        normalize_scores(scores, random, reference), [[0, 1], [1, 0], [0.5, 0.5]]
    )
    with pytest.raises(ValueError, match="reference equals random"):
        normalize_scores(scores, random, np.array([-300.0, 1.0]))


def test_iqm_by_hand():
    # 8 values, a quarter (2) trimmed from each end: mean of 2, 3, 4, 5.
    assert iqm(np.array([[1.0, 8.0], [2.0, 5.0], [100.0, 3.0], [4.0, -50.0]])) == 3.5
    # 10 values: int(2.5) = 2 trimmed from each end: mean of 0, 1, 1, 2, 3, 5 = 12 / 6.
    values = np.array([13.0, 0, 8, 0, 5, 0, 3, 1, 2, 1]).reshape(5, 2)
    assert iqm(values) == 2.0
    # 3 values: none trimmed; NaN (a run a task lacks) is not a value.
    assert iqm(np.array([[1.0, 2.0], [6.0, NAN]])) == 3.0


def test_trim_mean_refuses_to_trim_everything():
    with pytest.raises(ValueError, match="no values left"):
        trim_mean(np.array([1.0, 2.0]), 0.5)
    with pytest.raises(ValueError, match="no values left"):
        iqm(np.full((2, 2), NAN))


def test_mean_score_weighs_tasks_equally():
    # Task means 2 and 10, whatever their run counts.
    assert mean_score(np.array([[1.0, 10.0], [3.0, NAN]])) == 6.0


def test_performance_profile_by_hand():
    scores = np.array([[0.2, 1.5], [0.8, -0.1]])
    taus = np.array([-1.0, 0.0, 0.5, 0.8, 1.0, 2.0])
    # strictly above τ: a score equal to τ (0.8) does not count.
    np.testing.assert_array_equal(performance_profile(scores, taus), [1, 0.75, 0.5, 0.25, 0.25, 0])


def test_stratified_bootstrap_resamples_each_task_from_its_own_runs():
    scores = np.array([[0.0, 100.0, 1000.0], [1.0, 101.0, NAN], [2.0, NAN, NAN]])
    resamples = stratified_bootstrap(scores, np.copy, 500, np.random.default_rng(0))
    assert resamples.shape == (500, 3, 3)
    np.testing.assert_array_equal(
        np.isnan(resamples), np.broadcast_to(np.isnan(scores), (500, 3, 3))
    )
    for task in range(3):
        column = resamples[:, :, task]
        assert set(column[~np.isnan(column)]) == set(scores[~np.isnan(scores[:, task]), task])
    # with replacement: some resample of task 0 repeats a run
    assert any(len(set(r[:, 0])) < 3 for r in resamples)


def test_bootstrap_ci_contains_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(5, 6))
    low, high = stratified_bootstrap_ci(scores, iqm, 2000, 0.95, np.random.default_rng(2))
    assert low < iqm(scores) < high
    again = stratified_bootstrap_ci(scores, iqm, 2000, 0.95, np.random.default_rng(2))
    np.testing.assert_array_equal([low, high], again)


def test_bootstrap_ci_shrinks_with_more_runs():
    rng = np.random.default_rng(3)
    widths = []
    for runs in (5, 50):
        scores = rng.normal(size=(runs, 4))
        low, high = stratified_bootstrap_ci(scores, iqm, 2000, 0.95, rng)
        widths.append(high - low)
    assert widths[1] < 0.5 * widths[0]  # ~ 1 / sqrt(10) in expectation


def test_bootstrap_ci_of_identical_runs_is_a_point_and_of_a_profile_is_a_band():
    scores = np.full((4, 3), 0.7)
    np.testing.assert_allclose(
        stratified_bootstrap_ci(scores, iqm, 100, 0.95, np.random.default_rng(0)), [0.7, 0.7]
    )
    taus = np.linspace(0, 1, 5)
    band = stratified_bootstrap_ci(
        np.random.default_rng(4).uniform(size=(5, 3)),
        lambda s: performance_profile(s, taus),
        500,
        0.95,
        np.random.default_rng(0),
    )
    assert band.shape == (2, 5) and np.all(band[0] <= band[1])


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95.0])
def test_bootstrap_ci_refuses_a_confidence_outside_0_1(confidence):
    with pytest.raises(ValueError, match="confidence"):
        stratified_bootstrap_ci(np.ones((2, 2)), iqm, 10, confidence, np.random.default_rng(0))


@settings(max_examples=50, deadline=None)
@given(RUNS_BY_TASKS, st.floats(0.1, 10), st.floats(-100, 100))
def test_iqm_lies_within_the_scores_and_follows_affine_maps(scores, scale, shift):
    assert scores.min() - 1e-9 <= iqm(scores) <= scores.max() + 1e-9
    assert iqm(scale * scores + shift) == pytest.approx(scale * iqm(scores) + shift, abs=1e-6)
    assert iqm(scores[::-1, ::-1]) == pytest.approx(iqm(scores), abs=1e-9)  # order-free


@settings(max_examples=50, deadline=None)
@given(RUNS_BY_TASKS, arrays(float, st.integers(1, 8), elements=SCORES))
def test_performance_profile_is_a_fraction_falling_with_tau(scores, taus):
    taus = np.sort(taus)
    profile = performance_profile(scores, taus)
    assert np.all((profile >= 0) & (profile <= 1)) and np.all(np.diff(profile) <= 0)


@settings(max_examples=20, deadline=None)
@given(RUNS_BY_TASKS, st.integers(0, 2**32 - 1))
def test_bootstrap_ci_of_the_iqm_lies_within_the_scores(scores, seed):
    low, high = stratified_bootstrap_ci(scores, iqm, 50, 0.9, np.random.default_rng(seed))
    assert scores.min() - 1e-9 <= low <= high <= scores.max() + 1e-9


@settings(max_examples=50, deadline=None)
@given(arrays(float, st.integers(1, 40), elements=SCORES), st.floats(0, 0.49))
def test_trim_mean_is_scipys(values, proportion):
    scipy_stats = pytest.importorskip("scipy.stats")
    assert trim_mean(values, proportion) == pytest.approx(
        scipy_stats.trim_mean(values, proportion), rel=1e-9, abs=1e-9
    )


@pytest.fixture
def global_numpy_seed():
    """rliable draws its resamples from NumPy's global RNG: seed it for this test only."""
    state = np.random.get_state()
    np.random.seed(0)
    yield
    np.random.set_state(state)


def test_agrees_with_rliable(global_numpy_seed):
    """Point estimates equal rliable's to rounding; interval ends agree to within a few %
    of the interval's width (two independent Monte Carlo estimates of one percentile: with
    these reps their spread is ~1 % of the width)."""
    library = pytest.importorskip("rliable.library")
    metrics = pytest.importorskip("rliable.metrics")
    scores = np.random.default_rng(5).normal(size=(5, 7))  # [runs, tasks]
    taus = np.linspace(-2, 2, 21)
    assert iqm(scores) == pytest.approx(metrics.aggregate_iqm(scores), rel=1e-12)
    assert mean_score(scores) == pytest.approx(metrics.aggregate_mean(scores), rel=1e-12)

    def both(s):
        return np.array([metrics.aggregate_iqm(s), metrics.aggregate_mean(s)])

    _, theirs = library.get_interval_estimates({"x": scores}, both, reps=5000)
    ours = stratified_bootstrap_ci(
        scores, lambda s: np.array([iqm(s), mean_score(s)]), 20_000, 0.95, np.random.default_rng(6)
    )
    width = ours[1] - ours[0]  # [2]: the IQM's and the mean's
    assert np.all(np.abs(ours - theirs["x"]) < 0.07 * width), (ours, theirs["x"])

    profiles, bands = library.create_performance_profile({"x": scores}, taus, reps=2000)
    np.testing.assert_allclose(performance_profile(scores, taus), profiles["x"], atol=1e-12)
    band = stratified_bootstrap_ci(
        scores, lambda s: performance_profile(s, taus), 2000, 0.95, np.random.default_rng(7)
    )
    # 35 runs: the band moves in steps of 1/35; allow one step of Monte Carlo difference.
    np.testing.assert_allclose(band, bands["x"], atol=1 / 35 + 1e-9)

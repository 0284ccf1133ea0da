"""Evaluation (trpo.evaluate): deterministic episodes on separate envs, raw returns."""

from conftest import EVAL_EACH

from trpo import TRPO


def test_evaluation_is_deterministic_and_reports_raw_returns():
    agent = TRPO("Pendulum-v1", normalize_reward=True, seed=1, **EVAL_EACH).learn(256)
    first, second = agent.evaluate(3), agent.evaluate(3)
    assert first.returns == second.returns
    assert all(length == 200 for length in first.lengths)
    # Raw Pendulum returns over 200 steps lie in [-16.3 * 200, 0]; scaled ones would not.
    assert all(-3300 < r < -100 for r in first.returns)

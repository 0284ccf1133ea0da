"""Observations are normalised and rewards scaled with the statistics their
`obs_norm_update` and `reward_norm_update` modes promise (trpo.normalization), checked on
CountingEnv's known observations and rewards."""

import numpy as np
import pytest
from conftest import CountingEnv
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trpo import TRPO
from trpo.normalization import ObservationNormalizer, RunningMeanStd


def normalised(raw: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """``raw`` normalised with the moments of the observations ``seen`` (none: unchanged)."""
    if len(seen) == 0:
        return raw
    mean, var = seen.mean(0), seen.var(0)
    return np.clip((raw - mean) / np.sqrt(var + 1e-8), -10.0, 10.0)


@pytest.mark.parametrize("mode", ["step", "iteration"])
def test_each_step_is_normalised_with_the_statistics_its_mode_promises(mode):
    """CountingEnv's observations do not depend on the actions, so an unnormalised run
    shows the raw observations the normalised run saw."""
    sizes = {"n_envs": 2, "steps_per_iter": 12}
    raw = TRPO(CountingEnv, normalize_obs=False, **sizes).trainer.collector.collect(12).obs
    raw = raw.astype(np.float64)
    agent = TRPO(CountingEnv, obs_norm_update=mode, **sizes)
    first, second = agent.trainer.collector.collect(6), agent.trainer.collector.collect(6)
    seen = np.concatenate([first.obs, second.obs])
    for t in range(12):
        moments_from = raw[: t + 1] if mode == "step" else raw[: 6 * (t // 6)]
        expected = normalised(raw[t], moments_from.reshape(-1, 2))
        np.testing.assert_allclose(seen[t], expected, rtol=1e-5, atol=1e-5, err_msg=f"step {t}")
    # Either way, after a batch the statistics hold every observation collected so far.
    stats = agent.agent.normalizer.stats
    np.testing.assert_allclose(stats.mean, raw.reshape(-1, 2).mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.var, raw.reshape(-1, 2).var(0), rtol=1e-10)


def test_per_step_next_observation_is_normalised_as_the_step_after_it():
    """With per-step statistics, V(s_{t+1}) must see the same input in δ_t as V(s_t) does
    in δ_{t+1} (sb3's VecNormalize), or GAE's telescoping sum picks up the drift of the
    statistics; an ended episode's final observation takes the statistics of the same step."""
    sizes = {"n_envs": 2, "steps_per_iter": 12}
    raw = TRPO(CountingEnv, normalize_obs=False, **sizes).trainer.collector.collect(13)
    agent = TRPO(CountingEnv, obs_norm_update="step", **sizes)
    first, second = agent.trainer.collector.collect(6), agent.trainer.collector.collect(7)
    obs = np.concatenate([first.obs, second.obs])
    next_obs = np.concatenate([first.next_obs, second.next_obs])
    ended = raw.terminated | raw.truncated
    for t in range(12):
        for n in range(2):
            if ended[t, n]:  # the final observation, with the moments of steps 0..t+1
                seen = raw.obs[: t + 2].reshape(-1, 2).astype(np.float64)
                expected = normalised(raw.next_obs[t, n], seen)
                np.testing.assert_allclose(next_obs[t, n], expected, rtol=1e-5, atol=1e-5)
            else:  # bit for bit, across the batches' boundary too
                np.testing.assert_array_equal(next_obs[t, n], obs[t + 1, n], f"step {t}")
    assert ended[:12].any() and not ended[5].any()  # both cases, and a boundary mid-episode


@settings(max_examples=50, deadline=None)
@given(
    steps=st.lists(
        arrays(np.float32, (3, 2), elements=st.floats(-100, 100, width=32)),
        min_size=1,
        max_size=8,
    )
)
def test_per_step_normaliser_takes_in_each_step_before_normalising_it(steps):
    normalizer = ObservationNormalizer(2, enabled=True, clip=10.0, per_step=True)
    for t, raw in enumerate(steps):
        seen = np.concatenate(steps[: t + 1]).astype(np.float64)
        got = normalizer.observe(raw)
        np.testing.assert_allclose(got, normalised(raw, seen), rtol=1e-4, atol=1e-3)
    normalizer.end_batch(RunningMeanStd.of(np.concatenate(steps)))  # already taken in
    assert normalizer.stats.count == 3 * len(steps)


def discounted_returns(rewards: np.ndarray, done: np.ndarray, gamma: float) -> np.ndarray:
    """Each env's running discounted return after each step [T, N], restarting after an
    episode ends."""
    running = np.zeros(rewards.shape[1])
    returns = np.empty(rewards.shape)
    for t in range(len(rewards)):
        running = running * gamma + rewards[t]
        returns[t] = running
        running[done[t]] = 0.0
    return returns


@pytest.mark.parametrize("mode", ["step", "iteration"])
def test_each_reward_is_scaled_with_the_statistics_its_mode_promises(mode):
    sizes = {"n_envs": 2, "steps_per_iter": 12, "gamma": 0.9}
    plain = TRPO(CountingEnv, **sizes).trainer.collector.collect(12)
    returns = discounted_returns(plain.rewards, plain.terminated | plain.truncated, 0.9)
    agent = TRPO(
        CountingEnv, normalize_reward=True, reward_norm_update=mode, clip_reward=1.5, **sizes
    )
    batches = agent.trainer.collector.collect(6), agent.trainer.collector.collect(6)
    scale = np.concatenate([batch.reward_scale for batch in batches])
    for t in range(12):
        moments_from = returns[: t + 1] if mode == "step" else returns[: 6 * (t // 6 + 1)]
        expected = 1.0 / np.sqrt(moments_from.var() + 1e-8)
        np.testing.assert_allclose(scale[t], expected, rtol=1e-6, err_msg=f"step {t}")
    scaled = np.concatenate(
        [agent.trainer.reward_scaler.scaled(b.rewards, b.reward_scale) for b in batches]
    )
    assert (np.abs(plain.rewards * scale) > 1.5).any()  # the clip is exercised
    np.testing.assert_allclose(scaled, np.clip(plain.rewards * scale, -1.5, 1.5), rtol=1e-6)
    # Either way, after a batch the statistics hold every return seen so far.
    assert agent.trainer.reward_scaler.stats.count == returns.size
    np.testing.assert_allclose(agent.trainer.reward_scaler.stats.var, returns.var(), rtol=1e-10)

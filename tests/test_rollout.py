"""Rollout collection: SAME_STEP autoreset keeps fake transitions out of the batch, final
observations feed the truncation bootstrap, episode statistics match the env's own, and
observations are normalised and rewards scaled with the statistics their `obs_norm_update`
and `reward_norm_update` modes promise."""

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trpo import TRPO
from trpo.envs import EnvError
from trpo.normalization import ObservationNormalizer, RunningMeanStd

EPISODE_LENGTHS = (3, 5, 2, 4)


class CountingEnv(gym.Env):
    """Episode k lasts EPISODE_LENGTHS[k % 4] steps; obs = [k, t]; reward r_t = t after the
    t-th step. Odd episodes end by termination, even ones by truncation."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.episode = -1
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        ended = self.t == EPISODE_LENGTHS[self.episode % len(EPISODE_LENGTHS)]
        odd = self.episode % 2 == 1
        return self._obs(), float(self.t), ended and odd, ended and not odd, {}

    def _obs(self):
        return np.array([self.episode, self.t], np.float32)


def collect(n_steps: int):
    agent = TRPO(CountingEnv, n_envs=2, steps_per_iter=2 * n_steps, normalize_obs=False)
    return agent.trainer.collector.collect(n_steps)


def test_no_fake_transition_enters_the_batch():
    batch = collect(20)
    episode, t = batch.obs[..., 0], batch.obs[..., 1]
    lengths = np.array(EPISODE_LENGTHS)[episode.astype(int) % 4]
    # Every transition starts from a live state: never from a final observation.
    assert np.all(t < lengths)
    # Within an env, consecutive transitions chain, except that after an episode ends
    # the next transition starts from the reset state of the next episode.
    done = batch.terminated | batch.truncated
    for i in range(2):
        for step in range(19):
            if done[step, i]:
                np.testing.assert_array_equal(batch.obs[step + 1, i], [episode[step, i] + 1, 0])
            else:
                np.testing.assert_array_equal(batch.next_obs[step, i], batch.obs[step + 1, i])


def test_next_obs_is_the_final_observation_where_an_episode_ends():
    batch = collect(20)
    done = batch.terminated | batch.truncated
    final = batch.next_obs[done]
    lengths = np.array(EPISODE_LENGTHS)[final[:, 0].astype(int) % 4]
    np.testing.assert_array_equal(final[:, 1], lengths)
    # Terminations on odd episodes, truncations on even ones, never both.
    odd = batch.next_obs[..., 0] % 2 == 1
    assert np.all(batch.terminated == (done & odd))
    assert np.all(batch.truncated == (done & ~odd))


def test_episode_returns_and_lengths_match_the_env():
    batch = collect(30)
    # Each env runs episodes 0, 1, 2, ... with lengths 3, 5, 2, 4, 3, 5, ...
    per_env_steps = 30
    expected = []
    for _ in range(2):
        used, k = 0, 0
        while used + EPISODE_LENGTHS[k % 4] <= per_env_steps:
            length = EPISODE_LENGTHS[k % 4]
            expected.append((length * (length + 1) / 2, length))
            used += length
            k += 1
    assert sorted(zip(batch.episode_returns, batch.episode_lengths)) == sorted(expected)


def test_episode_statistics_match_record_episode_statistics_on_cartpole():
    def make():
        return gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1"))

    agent = TRPO(make, n_envs=1, steps_per_iter=600, seed=3)
    batch = agent.trainer.collector.collect(600)
    own = agent.trainer.collector.envs.envs[0]
    # The wrapper's queue holds the returns of the episodes it saw end, in order.
    assert list(own.return_queue)[-len(batch.episode_returns) :] == pytest.approx(
        batch.episode_returns
    )
    assert list(own.length_queue)[-len(batch.episode_lengths) :] == batch.episode_lengths
    assert len(batch.episode_returns) > 5
    assert sum(batch.episode_lengths) <= 600


def test_collection_continues_episodes_across_batches():
    agent = TRPO(CountingEnv, n_envs=1, steps_per_iter=4, normalize_obs=False)
    first = agent.trainer.collector.collect(4)
    second = agent.trainer.collector.collect(4)
    # Episode 0 lasts 3 steps, episode 1 five: the second batch resumes inside episode 1.
    np.testing.assert_array_equal(second.obs[0, 0], first.next_obs[-1, 0])
    assert first.episode_lengths == [3]
    assert second.episode_lengths == [5]


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


class NaNEnv(CountingEnv):
    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self.t == 2:
            obs[1] = np.nan
        return obs, reward, terminated, truncated, info


def test_non_finite_observation_is_a_clear_error():
    agent = TRPO(NaNEnv, n_envs=1, steps_per_iter=8)
    with pytest.raises(EnvError, match="non-finite observation"):
        agent.trainer.collector.collect(8)

"""Rollout collection: SAME_STEP autoreset keeps fake transitions out of the batch, final
observations feed the truncation bootstrap, episode statistics match the env's own. (How
the collected observations are normalised and rewards scaled: test_normalization.py.)"""

import gymnasium as gym
import numpy as np
import pytest
from conftest import EPISODE_LENGTHS, CountingEnv

from trpo import TRPO
from trpo.envs import EnvError


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

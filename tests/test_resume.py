"""Exact resume: a run saved mid-episode and continued from the checkpoint ends with the
same parameters, bit for bit, as the same run never interrupted. The envs' internal
state (physics, time-limit counters, random generator) is restored, not reset (how:
test_env_state.py).

Settings: 2 envs x 256 steps per iteration, evaluation every 2 iterations on 2 episodes;
the checkpoint is taken after iteration 3 of 6.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import CLASSIC_ENVS, SMALL_EVAL, parameters

from trpo import TRPO
from trpo.checkpoint import CheckpointError


def interrupted_and_uninterrupted(env_id: str, tmp_path, **settings):
    checkpoint = tmp_path / "mid.safetensors"
    whole = TRPO(env_id, seed=5, **{**SMALL_EVAL, **settings})
    mid_episode = []

    def save_at_three(stats):
        if stats.iteration == 3:
            whole.save(checkpoint)
            mid_episode.append(bool(whole.trainer.collector._episode_length.any()))

    whole.learn(6 * 512, callback=save_at_three)
    resumed = TRPO.load(checkpoint)
    resumed.learn(6 * 512)
    assert mid_episode == [True]  # the checkpoint really was taken inside episodes
    return whole, resumed


@pytest.mark.parametrize("env_id", CLASSIC_ENVS)
def test_resumed_run_is_bit_identical(env_id, tmp_path):
    whole, resumed = interrupted_and_uninterrupted(env_id, tmp_path)
    for a, b in zip(parameters(whole), parameters(resumed), strict=True):
        assert torch.equal(a, b)
    assert (whole.steps, whole.trainer.episodes, whole.evaluations) == (
        resumed.steps,
        resumed.trainer.episodes,
        resumed.evaluations,
    )
    np.testing.assert_array_equal(
        whole.agent.normalizer.stats.mean, resumed.agent.normalizer.stats.mean
    )
    whole.close(), resumed.close()


@pytest.mark.parametrize("mode", ["step", "iteration"])
def test_resume_with_reward_scaling_is_bit_identical_in_either_mode(mode, tmp_path):
    whole, resumed = interrupted_and_uninterrupted(
        "Pendulum-v1", tmp_path, normalize_reward=True, reward_norm_update=mode
    )
    for a, b in zip(parameters(whole), parameters(resumed), strict=True):
        assert torch.equal(a, b)
    assert whole.trainer.reward_scaler.stats == resumed.trainer.reward_scaler.stats


@pytest.mark.parametrize("mode", ["step", "iteration"])
def test_resume_is_bit_identical_in_either_obs_norm_update_mode(mode, tmp_path):
    whole, resumed = interrupted_and_uninterrupted("Pendulum-v1", tmp_path, obs_norm_update=mode)
    for a, b in zip(parameters(whole), parameters(resumed), strict=True):
        assert torch.equal(a, b)
    for moment in ("mean", "var", "count"):
        a, b = (
            getattr(whole.agent.normalizer.stats, moment),
            getattr(resumed.agent.normalizer.stats, moment),
        )
        np.testing.assert_array_equal(a, b)


def test_hopper_resume_is_bit_identical(tmp_path):
    pytest.importorskip("mujoco")
    whole, resumed = interrupted_and_uninterrupted("Hopper-v5", tmp_path)
    for a, b in zip(parameters(whole), parameters(resumed), strict=True):
        assert torch.equal(a, b)


class UserMadeEnv(gym.Env):
    """A user-made env: trpo cannot know where its state lives."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], np.float32), 1.0, False, self.t >= 50, {}


def test_env_without_saveable_state_resumes_with_new_episodes(tmp_path, caplog):
    settings = {"n_envs": 2, "steps_per_iter": 64, "eval_every": 0}
    agent = TRPO(UserMadeEnv, seed=0, **settings)
    agent.learn(64)
    assert agent.trainer.collector._episode_length.tolist() == [32, 32]
    assert agent.trainer.collector.state()["envs"] is None
    agent.save(tmp_path / "run.safetensors")
    assert agent.config.env_id == "custom"  # no registered id: the run does not claim one
    with pytest.raises(CheckpointError, match="pass it as TRPO.load"):
        TRPO.load(tmp_path / "run.safetensors")

    resumed = TRPO.load(tmp_path / "run.safetensors", env=UserMadeEnv)
    assert "starts new episodes" not in caplog.text  # loading to predict continues nothing
    assert resumed.trainer.collector._episode_length.tolist() == [0, 0]
    assert "starts new episodes" in caplog.text
    resumed.learn(128)
    assert resumed.steps == 128


@pytest.mark.parametrize("damage", ["row cut short", "csv deleted"])
def test_api_resume_continues_the_metrics_csv(tmp_path, damage):
    # A run that fails after writing iteration 5's row, whose last checkpoint is from
    # iteration 4, and whose CSV a crash damaged: the resumed run rewrites the CSV from the
    # rows the checkpoint holds and goes on, every iteration exactly once.
    settings = {**SMALL_EVAL, "eval_every": 0, "checkpoint_every": 2, "tensorboard": False}
    agent = TRPO("CartPole-v1", seed=1, run_dir=tmp_path, **settings)

    def fail_at_five(stats):
        if stats.iteration == 5:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        agent.learn(10 * 512, callback=fail_at_five)
    agent.close()
    if damage == "row cut short":
        with (tmp_path / "metrics.csv").open("a") as f:
            f.write("6,3072,1")
    else:
        (tmp_path / "metrics.csv").unlink()
    resumed = TRPO.load(tmp_path / "last.safetensors", run_dir=tmp_path)
    assert resumed.trainer.iteration == 4
    resumed.learn(8 * 512)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert [int(row.split(",")[0]) for row in rows[1:]] == list(range(1, 9))
    assert len(resumed.metrics) == 8 and resumed.metrics[3]["iteration"] == 4

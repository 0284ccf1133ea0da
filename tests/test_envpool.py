"""vec=envpool: EnvPool's envs behind the same SAME_STEP contract as the Gymnasium path (no
fake reset transitions, final observations handed over, truncations flagged), and a run
that learns through them."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from trpo import TRPO
from trpo.cli import main
from trpo.envpool import EnvPoolVectorEnv, atari_task
from trpo.envs import EnvError

pytest.importorskip("envpool")


def test_episodes_end_and_restart_in_the_same_step():
    """CartPole pays 1 for every real step; EnvPool's own reset step would pay 0."""
    agent = TRPO("CartPole-v1", vec="envpool", n_envs=4, env_kwargs={"max_episode_steps": 20})
    batch = agent.trainer.collector.collect(200)
    assert (batch.rewards == 1).all()
    assert batch.episode_lengths and max(batch.episode_lengths) <= 20
    assert batch.truncated.any() and batch.terminated.any()
    steps_per_episode = 200 * 4 / (len(batch.episode_lengths) + 4)
    assert 8 < steps_per_episode <= 20
    agent.close()


def test_final_observation_is_handed_over():
    envs = EnvPoolVectorEnv("CartPole-v1", 2, {"max_episode_steps": 5})
    obs, _ = envs.reset(seed=[3, 4])
    for _ in range(4):
        obs, *_ = envs.step(np.zeros(2, np.int64))
    last, reward, terminated, truncated, info = envs.step(np.zeros(2, np.int64))
    assert truncated.all() or terminated.all()
    assert info["_final_obs"].all()
    final = np.stack(info["final_obs"])
    assert not np.allclose(final, last)  # last holds the reset observations
    assert np.abs(last).max() <= 0.05  # CartPole resets to U(-0.05, 0.05)
    envs.close()


def test_same_seed_same_batches_and_reseeding():
    def batch(seed):
        agent = TRPO("CartPole-v1", vec="envpool", n_envs=4, seed=seed)
        out = agent.trainer.collector.collect(50)
        agent.close()
        return out

    np.testing.assert_array_equal(batch(1).obs, batch(1).obs)
    assert not np.array_equal(batch(1).obs, batch(2).obs)


def test_learns_cartpole_through_envpool(tmp_path):
    run = tmp_path / "run"
    args = ["train", "CartPole-v1", "--vec", "envpool", "--steps", "20000", "--run-dir", str(run)]
    assert main([*args, "--no-progress", "--set", "tensorboard=false", "eval_every=4"]) == 0
    agent = TRPO.load(run / "final.safetensors")
    assert agent.config.vec == "envpool"
    assert agent.score > 100  # from ~20 at the start
    agent.close()
    assert main(["eval", str(run), "--episodes", "2"]) == 0


def test_envpool_errors_name_the_fix(monkeypatch):
    with pytest.raises(EnvError, match="EnvPool has no task 'Taxi-v4'"):
        TRPO("Taxi-v4", vec="envpool")
    with pytest.raises(EnvError, match="not an env object or factory"):
        TRPO(lambda: __import__("gymnasium").make("CartPole-v1"), vec="envpool")
    monkeypatch.setitem(sys.modules, "envpool", None)
    with pytest.raises(EnvError, match=r"pip install 'trpo\[envpool\]'"):
        TRPO("CartPole-v1", vec="envpool")


def test_atari_ids_map_to_envpools_task_with_the_runs_preprocessing():
    pytest.importorskip("ale_py")
    task, options = atari_task("ALE/Breakout-v5", {"frame_stack": 2, "full_action_space": True})
    assert task == "Breakout-v5"
    assert options["repeat_action_probability"] == 0.25  # v5's sticky actions
    assert options["max_episode_steps"] == 108_000 // 4  # raw frames -> agent steps
    assert (options["stack_num"], options["full_action_space"]) == (2, True)
    assert atari_task("BreakoutNoFrameskip-v4", {})[1]["repeat_action_probability"] == 0.0
    with pytest.raises(EnvError, match="grayscale only"):
        atari_task("ALE/Breakout-v5", {"grayscale": False})
    with pytest.raises(EnvError, match="noop_max=0"):
        atari_task("ALE/Breakout-v5", {"noop_max": 0})


def test_atari_through_envpool_reports_whole_games_with_raw_scores():
    pytest.importorskip("ale_py")
    # A 400-frame game limit (100 agent steps) ends games within the test; lives are lost
    # before it under random actions, and each ends an episode, not the game.
    agent = TRPO("ALE/Breakout-v5", vec="envpool", n_envs=2, env_kwargs={"max_episode_steps": 400})
    envs = agent.trainer.collector.envs
    assert envs.single_observation_space == agent.get_env().single_observation_space
    assert envs.single_observation_space.shape == (4, 84, 84)

    batch = agent.trainer.collector.collect(250)

    episodes = int((batch.terminated | batch.truncated).sum())
    assert batch.episode_lengths and set(batch.episode_lengths) == {100}  # whole games only
    assert len(batch.episode_lengths) == int(batch.truncated.sum()) < episodes
    assert batch.rewards.max() <= 1.0  # the learner sees clipped rewards
    assert min(batch.episode_returns) >= 0.0  # Breakout scores only add up
    agent.close()

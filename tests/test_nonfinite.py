"""NaN/Inf from the environment (injected by a wrapper) and in the update: the run stops
with a message naming the env and step, or with nonfinite_env=drop leaves the transition
out and counts it; the weights stay finite either way.

Settings: CartPole-v1, 2 envs x 128 steps per iteration, no evaluation.
"""

from __future__ import annotations

import logging
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import TINY

from trpo import TRPO, trainer
from trpo.envs import EnvError
from trpo.update import policy_step


class Poison(gym.Wrapper):
    """Turns the observation or the reward of the given (1-based) steps into NaN/Inf."""

    def __init__(self, env: gym.Env, steps: set[int], what: str, value: float = math.nan):
        super().__init__(env)
        self.steps, self.what, self.value, self.count = steps, what, value, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.count += 1
        if self.count in self.steps:
            if self.what == "obs":
                obs = np.full_like(obs, self.value)
            else:
                reward = self.value
        return obs, reward, terminated, truncated, info


def poisoned(steps: set[int], what: str, value: float = math.nan):
    return lambda: Poison(gym.make("CartPole-v1"), steps, what, value)


@pytest.mark.parametrize(
    ("what", "value", "named"),
    [("obs", math.nan, "observation"), ("reward", math.inf, "reward"), ("obs", -math.inf, "obs")],
)
def test_nonfinite_env_output_stops_the_run_naming_env_and_step(what, value, named):
    agent = TRPO(poisoned({10}, what, value), seed=0, **TINY)
    with pytest.raises(EnvError) as info:
        agent.learn(256)
    message = str(info.value)
    assert "CartPole-v1" in message and named in message
    assert "environment step 20 " in message  # the 10th step of 2 envs
    assert "nonfinite_env=drop" in message


def test_drop_leaves_the_transitions_out_and_ends_the_episode_before_them():
    agent = TRPO(poisoned({10, 75}, "obs"), seed=0, nonfinite_env="drop", **TINY)
    batch = agent.trainer.collector.collect(128)
    assert batch.dropped == 4  # steps 10 and 75 in each of the 2 env copies
    assert not batch.valid[[9, 74]].any() and batch.valid.sum() == 256 - 4
    assert batch.truncated[[8, 73]].all()  # GAE bootstraps at the last good transition
    assert np.isfinite(batch.obs).all() and np.isfinite(batch.next_obs).all()
    assert np.isfinite(batch.rewards).all()


def test_drop_trains_on_with_finite_weights_and_counts_the_drops():
    agent = TRPO(poisoned({10, 75, 300}, "reward"), seed=0, nonfinite_env="drop", **TINY)
    dropped = []
    agent.learn(4 * 256, callback=lambda stats: dropped.append(stats.dropped))
    assert dropped == [4, 0, 2, 0]
    assert all(torch.isfinite(p).all() for p in agent.policy.parameters())
    assert all(torch.isfinite(p).all() for p in agent.value_fn.parameters())


def test_nonfinite_step_in_training_keeps_the_parameters_with_a_warning(monkeypatch, caplog):
    # An advantage turned NaN makes g and the step NaN: the step is rejected and logged.
    def poisoned_step(policy, obs, actions, advantages, old_log_probs, config, dims, generator):
        advantages = advantages.clone()
        advantages[3] = math.nan
        return policy_step(policy, obs, actions, advantages, old_log_probs, config, dims, generator)

    monkeypatch.setattr(trainer, "policy_step", poisoned_step)
    agent = TRPO("CartPole-v1", seed=0, **TINY)
    before = [p.detach().clone() for p in agent.policy.parameters()]
    flags = []
    with caplog.at_level(logging.WARNING, logger="trpo"):
        agent.learn(512, callback=lambda stats: flags.append(stats.policy.nonfinite))
    assert flags == [True, True]
    assert caplog.text.count("NaN/Inf in the gradient, step or KL") == 2
    for a, b in zip(before, agent.policy.parameters(), strict=True):
        assert torch.equal(a, b)

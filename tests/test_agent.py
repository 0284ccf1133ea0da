"""The Agent: acts from a checkpoint without an env, owns its state and random streams, and
shares nothing with another agent in the process."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import EVAL_EACH, TINY, parameters, raw_observations
from torch import nn

from trpo import TRPO, Agent


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[TRPO, Path]:
    """A tiny Pendulum run (2 iterations) and its checkpoint; the run must not be changed."""
    path = tmp_path_factory.mktemp("agent") / "pendulum.safetensors"
    agent = TRPO("Pendulum-v1", seed=2, **TINY).learn(512)
    agent.save(path)
    yield agent, path
    agent.close()


def test_agent_load_predicts_what_the_trained_agent_predicts(trained):
    agent, path = trained
    obs = raw_observations("Pendulum-v1")

    loaded = Agent.load(path)

    np.testing.assert_array_equal(loaded.predict(obs), agent.predict(obs)[0])
    np.testing.assert_array_equal(loaded.predict(obs[0]), agent.predict(obs[0])[0])


def test_loading_to_predict_builds_no_env_and_warns_of_nothing(trained, caplog):
    agent, path = trained
    obs = raw_observations("Pendulum-v1")

    with caplog.at_level(logging.DEBUG, logger="trpo"):
        loaded = TRPO.load(path)
        actions, _ = loaded.predict(obs)

    np.testing.assert_array_equal(actions, agent.predict(obs)[0])
    assert loaded._run is None  # no trainer, no run, no env
    assert caplog.records == []


def test_two_agents_in_one_process_are_independent(tmp_path):
    """Agent A trained 2 iterations, then other agents built, loaded and trained, then A
    2 more: A ends as a run of A alone for 4 iterations, bit for bit."""
    alone = TRPO("CartPole-v1", seed=1, **TINY).learn(4 * 256)
    a = TRPO("CartPole-v1", seed=1, **TINY).learn(2 * 256)
    a.save(tmp_path / "a.safetensors")
    b = TRPO("CartPole-v1", seed=2, **TINY).learn(2 * 256)
    b.predict(raw_observations("CartPole-v1"), deterministic=False)
    copy_of_a = TRPO.load(tmp_path / "a.safetensors").learn(3 * 256)

    a.learn(4 * 256)

    for x, y in zip(parameters(a), parameters(alone), strict=True):
        assert torch.equal(x, y)
    assert a.metrics[-1]["episode_return"] == alone.metrics[-1]["episode_return"]
    np.testing.assert_array_equal(a.agent.normalizer.stats.mean, alone.agent.normalizer.stats.mean)
    for run in (alone, a, b, copy_of_a):
        run.close()


def test_torch_global_random_state_is_left_alone(tmp_path):
    """Building (its init weights), learning, predicting, saving and loading draw only from
    the agent's and the trainer's own generators."""
    obs = raw_observations("Pendulum-v1")
    torch.manual_seed(123)
    before, numpy_before = torch.get_rng_state(), np.random.get_state()[1].copy()

    agent = TRPO("Pendulum-v1", seed=4, **TINY)
    agent.learn(512)
    agent.predict(obs)
    agent.predict(obs, deterministic=False)
    agent.save(tmp_path / "run.safetensors")
    Agent.load(tmp_path / "run.safetensors").predict(obs, deterministic=False)
    loaded = TRPO.load(tmp_path / "run.safetensors")
    loaded.predict(obs[0], deterministic=False)
    loaded.learn(768)

    assert torch.equal(torch.get_rng_state(), before)
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_before)
    agent.close(), loaded.close()


class TinyPolicy(nn.Module):
    def __init__(self):
        super().__init__()
        self.logits = nn.Linear(4, 2)

    def forward(self, obs):
        return torch.distributions.Categorical(logits=self.logits(obs))


class TinyValue(nn.Module):
    def __init__(self):
        super().__init__()
        self.v = nn.Linear(4, 1)

    def forward(self, obs):
        return self.v(obs).squeeze(-1)


def test_custom_policy_and_value_modules(tmp_path):
    policy, value = TinyPolicy(), TinyValue()
    before = policy.logits.weight.detach().clone()
    agent = TRPO("CartPole-v1", policy=policy, value_fn=value, **EVAL_EACH)
    agent.learn(256)
    assert agent.policy is policy and not torch.equal(policy.logits.weight, before)
    agent.save(tmp_path / "custom.safetensors")
    loaded = TRPO.load(tmp_path / "custom.safetensors", policy=TinyPolicy(), value_fn=TinyValue())
    assert torch.equal(loaded.policy.logits.weight, policy.logits.weight)

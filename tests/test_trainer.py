"""The TRPO object: spaces, custom modules, callbacks, vector-env modes, env sources."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from trpo import TRPO
from trpo.config import ConfigError
from trpo.envs import EnvError

TINY = {"n_envs": 2, "steps_per_iter": 128, "eval_every": 1, "eval_episodes": 2}


class SpaceEnv(gym.Env):
    """A short random-walk env with configurable observation and action spaces."""

    def __init__(self, observation_space, action_space):
        self.observation_space = observation_space
        self.action_space = action_space
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        assert self.action_space.contains(action), action
        self.t += 1
        reward = float(np.sum(np.asarray(action, dtype=np.float64)))
        return self.observation_space.sample(), reward, False, self.t >= 10, {}


SPACES = {
    "box-obs/multidiscrete-act": (
        gym.spaces.Box(-1, 1, (3, 2), np.float32),
        gym.spaces.MultiDiscrete([3, 2], start=[1, -1]),
    ),
    "discrete-obs/multibinary-act": (gym.spaces.Discrete(5, start=2), gym.spaces.MultiBinary(3)),
    "multidiscrete-obs/box-act": (
        gym.spaces.MultiDiscrete([2, 3]),
        gym.spaces.Box(-0.5, 0.5, (2,), np.float32),
    ),
    "multibinary-obs/discrete-act": (gym.spaces.MultiBinary(4), gym.spaces.Discrete(3, start=5)),
}


@pytest.mark.parametrize("name", SPACES)
def test_every_supported_space_trains_evaluates_and_predicts(name):
    obs_space, action_space = SPACES[name]
    agent = TRPO(lambda: SpaceEnv(obs_space, action_space), seed=0, **TINY)
    agent.learn(256)
    assert agent.trainer.iteration == 2 and len(agent.evaluations) == 2
    obs = obs_space.sample()
    assert action_space.contains(agent.predict(obs)[0])
    batch, _ = agent.predict(np.stack([obs, obs_space.sample()]))
    assert all(action_space.contains(a) for a in batch)


def test_box_actions_are_clipped_only_when_sent_to_the_env():
    space = gym.spaces.Box(-0.01, 0.01, (2,), np.float32)
    agent = TRPO(lambda: SpaceEnv(gym.spaces.Box(-1, 1, (2,), np.float32), space), **TINY)
    batch = agent.trainer.collector.collect(
        64
    )  # SpaceEnv asserts every action it gets is in bounds
    assert np.abs(batch.actions).max() > 0.01  # the batch keeps the unclipped samples


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Dict({"a": gym.spaces.Discrete(2)}),
        gym.spaces.Tuple([gym.spaces.Discrete(2)]),
        gym.spaces.Text(5),
    ],
    ids=["dict", "tuple", "text"],
)
def test_unsupported_observation_spaces_are_refused_up_front(space):
    with pytest.raises(EnvError, match="observation space .* is not supported"):
        TRPO(lambda: SpaceEnv(space, gym.spaces.Discrete(2)), **TINY)


def test_unsupported_action_space_is_refused_up_front():
    actions = gym.spaces.Tuple([gym.spaces.Discrete(2), gym.spaces.Discrete(2)])
    with pytest.raises(EnvError, match="action space .* is not supported"):
        TRPO(lambda: SpaceEnv(gym.spaces.Box(-1, 1, (2,)), actions), **TINY)


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
    agent = TRPO("CartPole-v1", policy=policy, value_fn=value, **TINY)
    agent.learn(256)
    assert agent.policy is policy and not torch.equal(policy.logits.weight, before)
    agent.save(tmp_path / "custom.safetensors")
    loaded = TRPO.load(tmp_path / "custom.safetensors", policy=TinyPolicy(), value_fn=TinyValue())
    assert torch.equal(loaded.policy.logits.weight, policy.logits.weight)


def test_callback_sees_every_iteration_and_can_stop_training():
    seen = []

    def callback(stats):
        seen.append(stats.iteration)
        return stats.iteration < 3

    agent = TRPO("CartPole-v1", **TINY).learn(10_000, callback=callback)
    assert seen == [1, 2, 3]
    assert agent.steps == 3 * TINY["steps_per_iter"]


def test_async_vector_env_gives_the_same_run_as_sync():
    runs = {}
    for vec in ("sync", "async"):
        agent = TRPO("CartPole-v1", vec=vec, seed=4, **TINY)
        agent.learn(256)
        runs[vec] = torch.nn.utils.parameters_to_vector(agent.policy.parameters())
        agent.close()
    assert torch.equal(runs["sync"], runs["async"])


def test_env_instance_is_accepted_for_a_single_env():
    agent = TRPO(gym.make("CartPole-v1"), n_envs=1, steps_per_iter=64, eval_every=1)
    agent.learn(64)
    assert agent.config.env_id == "CartPole-v1" and len(agent.evaluations) == 1


def test_env_instance_cannot_back_several_copies():
    with pytest.raises(EnvError, match="only one env copy"):
        TRPO(gym.make("CartPole-v1"), n_envs=2, steps_per_iter=64)


def test_evaluation_is_deterministic_and_reports_raw_returns():
    agent = TRPO("Pendulum-v1", normalize_reward=True, seed=1, **TINY).learn(256)
    first, second = agent.evaluate(3), agent.evaluate(3)
    assert first.returns == second.returns
    assert all(length == 200 for length in first.lengths)
    # Raw Pendulum returns over 200 steps lie in [-16.3 * 200, 0]; scaled ones would not.
    assert all(-3300 < r < -100 for r in first.returns)


def test_update_on_a_separate_copy_gives_the_same_run():
    """device=cuda updates a copy of the policy and copies its weights back for rollouts:
    the same path on the CPU (a deep copy as the learner's policy) changes nothing."""
    runs = []
    for separate in (False, True):
        agent = TRPO("Pendulum-v1", seed=4, **TINY)
        if separate:
            agent.trainer.learner_policy = copy.deepcopy(agent.policy)
        agent.learn(4 * 128)
        runs.append([p.detach().clone() for p in agent.policy.parameters()])
        if separate:
            learner = list(agent.trainer.learner_policy.parameters())
            assert all(torch.equal(a, b) for a, b in zip(runs[-1], learner, strict=True))
        agent.close()
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(ConfigError, match="torch sees no GPU"):
        TRPO("CartPole-v1", device="cuda")

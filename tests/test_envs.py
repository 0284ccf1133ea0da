"""Env sources, vector-env modes and every supported space: observations encoded and
actions adapted (trpo.envs), unsupported spaces refused before any run."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import EVAL_EACH, CountingEnv

from trpo import TRPO
from trpo.envs import EnvError


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
    agent = TRPO(lambda: SpaceEnv(obs_space, action_space), seed=0, **EVAL_EACH)
    agent.learn(256)
    assert agent.trainer.iteration == 2 and len(agent.evaluations) == 2
    obs = obs_space.sample()
    assert action_space.contains(agent.predict(obs)[0])
    batch, _ = agent.predict(np.stack([obs, obs_space.sample()]))
    assert all(action_space.contains(a) for a in batch)


def test_box_actions_are_clipped_only_when_sent_to_the_env():
    space = gym.spaces.Box(-0.01, 0.01, (2,), np.float32)
    agent = TRPO(lambda: SpaceEnv(gym.spaces.Box(-1, 1, (2,), np.float32), space), **EVAL_EACH)
    batch = agent.trainer.collector.collect(
        64
    )  # SpaceEnv asserts every action it gets is in bounds
    assert np.abs(batch.actions).max() > 0.01  # the batch keeps the unclipped samples


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Text(5),
        gym.spaces.Dict({"a": gym.spaces.Graph(gym.spaces.Discrete(2), None)}),
        gym.spaces.Tuple([gym.spaces.Sequence(gym.spaces.Discrete(2))]),
    ],
    ids=["text", "dict-of-graph", "tuple-of-sequence"],
)
def test_unsupported_observation_spaces_are_refused_up_front(space):
    with pytest.raises(EnvError, match="observation space .* is not supported"):
        TRPO(lambda: SpaceEnv(space, gym.spaces.Discrete(2)), **EVAL_EACH)


def test_unsupported_action_space_is_refused_up_front():
    actions = gym.spaces.Tuple([gym.spaces.Discrete(2), gym.spaces.Discrete(2)])
    with pytest.raises(EnvError, match="action space .* is not supported"):
        TRPO(lambda: SpaceEnv(gym.spaces.Box(-1, 1, (2,)), actions), **EVAL_EACH)


def test_async_vector_env_gives_the_same_run_as_sync():
    runs = {}
    for vec in ("sync", "async"):
        agent = TRPO("CartPole-v1", vec=vec, seed=4, **EVAL_EACH)
        agent.learn(256)
        runs[vec] = torch.nn.utils.parameters_to_vector(agent.policy.parameters())
        agent.close()
    assert torch.equal(runs["sync"], runs["async"])


def test_env_instance_is_accepted_for_a_single_env():
    agent = TRPO(gym.make("CartPole-v1"), n_envs=1, steps_per_iter=64, eval_every=1)
    agent.learn(64)
    assert agent.config.env_id == "CartPole-v1" and len(agent.evaluations) == 1


def test_env_instance_cannot_back_several_copies():
    with pytest.raises(EnvError, match="n_envs=2 needs env copies"):
        TRPO(CountingEnv(), n_envs=2, steps_per_iter=64)  # no spec: it cannot be copied


def test_minigrid_ids_are_a_family_registered_by_importing_minigrid():
    from trpo.envs import family_hint

    assert "pip install 'trpo[minigrid]'" in family_hint("MiniGrid-DoorKey-5x5-v0")
    assert "pip install 'trpo[minigrid]'" in family_hint("BabyAI-GoToLocal-v0")
    assert family_hint("MiniGridLike-v0") == ""

"""trpo export: the deployed graph (encoder, frozen normaliser, mode, action adapter)
gives `Agent.predict`'s actions, as TorchScript and as ONNX."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from trpo import TRPO
from trpo.agent import Agent
from trpo.cli import main
from trpo.config import Config
from trpo.export import ExportError, example_observations, export_policy
from trpo.normalization import RunningMeanStd


class SpaceEnv(gym.Env):
    def __init__(self, observation_space, action_space):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, True, {}


SPACES = {
    "box/box": (gym.spaces.Box(-5, 5, (3, 2), np.float32), gym.spaces.Box(-0.1, 0.2, (2,))),
    "box/discrete": (gym.spaces.Box(-5, 5, (4,), np.float32), gym.spaces.Discrete(3, start=2)),
    "discrete/multidiscrete": (
        gym.spaces.Discrete(5, start=-1),
        gym.spaces.MultiDiscrete([3, 2], start=[1, -1]),
    ),
    "multidiscrete/multibinary": (gym.spaces.MultiDiscrete([2, 3]), gym.spaces.MultiBinary(3)),
    "multibinary/box": (gym.spaces.MultiBinary(4), gym.spaces.Box(-1, 1, (2,), np.float32)),
}


def agent_for(obs_space, action_space):
    env = SpaceEnv(obs_space, action_space)
    agent = TRPO(env, log_std_init=0.0, tensorboard=False).agent
    for p in agent.policy.parameters():  # larger weights: actions reach the Box bounds
        p.data.normal_(0, 1.0, generator=torch.Generator().manual_seed(0))
    dim = agent.encoder.dim
    rng = np.random.default_rng(0)
    agent.normalizer.set_stats(RunningMeanStd(rng.normal(size=dim), rng.uniform(0.5, 4, dim), 9))
    return agent


@pytest.mark.parametrize("name", SPACES)
def test_torchscript_gives_predicts_actions(name, tmp_path):
    agent = agent_for(*SPACES[name])
    obs = example_observations(agent.observation_space, 64, seed=1)
    path = export_policy(agent, tmp_path / "policy.pt", "torchscript")
    actions = torch.jit.load(str(path))(torch.from_numpy(obs)).numpy()
    expected = agent.predict(obs)
    assert actions.dtype == expected.dtype and actions.shape == expected.shape
    np.testing.assert_array_equal(actions, expected)
    if name == "box/box":  # the clipping is in the graph
        assert (actions == 0.2).any() and (actions == -0.1).any()


@pytest.mark.parametrize("name", ["box/box", "box/discrete", "discrete/multidiscrete"])
def test_onnx_gives_predicts_actions(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    agent = agent_for(*SPACES[name])
    obs = example_observations(agent.observation_space, 64, seed=2)
    path = export_policy(agent, tmp_path / "policy.onnx", "onnx")
    (actions,) = ort.InferenceSession(str(path)).run(None, {"obs": obs})
    expected = agent.predict(obs)
    assert actions.dtype == expected.dtype and actions.shape == expected.shape
    # onnxruntime's matmul rounds differently from torch's: float32 rounding, not more
    np.testing.assert_allclose(actions, expected, rtol=1e-5, atol=1e-5)


def test_cli_export_of_a_trained_run(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "Pendulum-v1", "--steps", "256", "--no-progress", "--run-dir", str(run)]
    assert main([*argv, "--set", "steps_per_iter=128", "n_envs=2", "eval_every=1"]) == 0
    assert main(["export", str(run)]) == 0
    assert "policy.pt" in capsys.readouterr().out
    loaded = TRPO.load(run / "best.safetensors")
    obs = example_observations(loaded.observation_space, 32)
    actions = torch.jit.load(str(run / "policy.pt"))(torch.from_numpy(obs)).numpy()
    np.testing.assert_array_equal(actions, loaded.predict(obs)[0])
    assert main(["export", str(run), "--checkpoint", "nope"]) == 2


@pytest.mark.parametrize(
    "obs_space",
    [
        gym.spaces.Box(0, 255, (4, 84, 84), np.uint8),
        gym.spaces.Dict({"v": gym.spaces.Box(-1, 1, (2,)), "d": gym.spaces.Discrete(3)}),
    ],
    ids=["image", "dict"],
)
def test_export_refuses_images_and_dicts_naming_the_way(obs_space, tmp_path):
    agent = Agent(obs_space, gym.spaces.Discrete(3), Config(policy_hidden=(), value_hidden=()))
    with pytest.raises(ExportError, match="images or Dict/Tuple observations, export agent.policy"):
        export_policy(agent, tmp_path / "policy.pt")

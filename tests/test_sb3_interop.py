"""The SB3-style API against Stable-Baselines3 itself: evaluate_policy on a trpo agent,
predict's (action, state), learn's total_timesteps, num_timesteps, get_env, policy names,
and every row of the README's "Coming from Stable-Baselines3" table."""

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from trpo import TRPO

evaluation = pytest.importorskip("stable_baselines3.common.evaluation")
ROOT = Path(__file__).resolve().parent.parent
FAST = {"steps_per_iter": 256, "n_envs": 2, "tensorboard": False}


@pytest.fixture(scope="module")
def trained():
    return TRPO("MlpPolicy", gym.make("CartPole-v1"), seed=1, **FAST).learn(total_timesteps=2048)


def test_evaluate_policy_plays_the_episodes_trpo_would(trained):
    from stable_baselines3.common.vec_env import DummyVecEnv

    vec_env = DummyVecEnv([lambda: gym.make("CartPole-v1")])
    vec_env.seed(123)
    returns, lengths = evaluation.evaluate_policy(
        trained, vec_env, n_eval_episodes=10, return_episode_rewards=True
    )
    env, expected = gym.make("CartPole-v1"), []
    obs, _ = env.reset(seed=123)
    for _ in range(10):  # SB3's order: the first reset seeded, the next ones not
        total, done = 0.0, False
        while not done:
            action, _ = trained.predict(obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + reward, terminated or truncated
        expected.append(total)
        obs, _ = env.reset()
    assert returns == expected and sum(lengths) == sum(expected)


def test_evaluate_policy_on_a_plain_env(trained):
    mean, std = evaluation.evaluate_policy(trained, gym.make("CartPole-v1"), n_eval_episodes=10)
    assert 0 < mean <= 500 and std >= 0


def test_predict_has_sb3s_signature_and_return(trained):
    obs = np.zeros((3, 4), np.float32)
    action, state = trained.predict(obs, state=None, episode_start=np.ones(3, bool))
    assert state is None and action.shape == (3,)
    np.testing.assert_array_equal(action, trained.agent.predict(obs))
    single, _ = trained.predict(obs[0], deterministic=False)
    assert trained.action_space.contains(single)


def test_learn_total_timesteps_trains_more_and_num_timesteps_counts_like_sb3(caplog):
    agent = TRPO("CartPole-v1", **FAST)
    agent.learn(total_timesteps=512)
    agent.learn(total_timesteps=512)
    assert agent.steps == 1024 and agent.num_timesteps == 512  # reset_num_timesteps=True
    agent.learn(total_timesteps=256, reset_num_timesteps=False)
    assert agent.steps == 1280 and agent.num_timesteps == 768
    agent.learn(300, reset_num_timesteps=False)  # positional with SB3's keyword: 300 more
    assert agent.steps == 1280 + 512  # whole iterations, as SB3's on-policy algorithms
    agent.learn(1024)  # trpo's own meaning: the run's total, already reached
    assert agent.steps == 1792 and "nothing is trained" in caplog.text


def test_get_env_is_the_training_vector_env(trained):
    env = trained.get_env()
    assert env.num_envs == 2 and env.single_action_space == trained.action_space


def test_mlp_policy_name_gives_the_default_mlps():
    by_name = TRPO("MlpPolicy", "CartPole-v1", **FAST)
    plain = TRPO("CartPole-v1", **FAST)
    keyword = TRPO("CartPole-v1", policy="MlpPolicy", **FAST)
    for a, b, c in zip(*(x.policy.parameters() for x in (by_name, plain, keyword))):
        assert torch.equal(a, b) and torch.equal(a, c)


class GridEnv(gym.Env):
    observation_space = gym.spaces.Dict({"grid": gym.spaces.Box(0, 1, (10, 10, 2), bool)})
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


@pytest.mark.parametrize("name", ["CnnPolicy", "MultiInputPolicy"])
def test_cnn_and_multi_input_names_are_the_default_networks(name):
    by_name = TRPO(name, GridEnv, **FAST)
    assert by_name.agent.policy.features.images["0"].kind == "grid"


def test_unknown_policy_names_are_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="MlpPolicy, CnnPolicy, MultiInputPolicy"):
        TRPO("CartPole-v1", policy="LstmPolicy")


def test_sb3_callback_objects_are_refused():
    from stable_baselines3.common.callbacks import StopTrainingOnMaxEpisodes

    agent = TRPO("CartPole-v1", **FAST)
    with pytest.raises(TypeError, match="function of the iteration's stats"):
        agent.learn(total_timesteps=256, callback=StopTrainingOnMaxEpisodes(5))


def readme_rows() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Coming from Stable-Baselines3")[1].split("\n## ")[0]
    rows = re.findall(r"^\| (.+?) \| `(.+?)` \|$", section, flags=re.M)
    return [(sb3, trpo) for sb3, trpo in rows if sb3 != "---"]


def test_every_row_of_the_readme_table_runs(tmp_path, monkeypatch):
    from stable_baselines3.common.evaluation import evaluate_policy

    from trpo.export import export_policy

    monkeypatch.chdir(tmp_path)
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    namespace = {
        "TRPO": TRPO,
        "gym": gym,
        "env": env,
        "obs": obs,
        "evaluate_policy": evaluate_policy,
        "export_policy": export_policy,
    }
    rows = readme_rows()
    assert len(rows) >= 15
    for _sb3, code in rows:
        exec(code, namespace)  # noqa: S102 - the README's own snippets
    assert isinstance(namespace["agent"], TRPO) and (tmp_path / "policy.pt").exists()

"""A user's envs: instances (copied faithfully or run as one copy), eval_env, module:Id
ids, --import, the env families that need a registration call, and where the CLI takes
its options."""

import logging
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch

from trpo import TRPO
from trpo.cli import main, split_key_values
from trpo.envs import EnvError, check_env_id, copy_factory, env_factory
from trpo.evaluate import Evaluator

TINY = {"steps_per_iter": 128, "eval_episodes": 2, "tensorboard": False}


class Walk(gym.Env):
    """A 10-step random walk, made by calling the class: no spec, so no faithful copy."""

    observation_space = gym.spaces.Box(-1, 1, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        obs = self.np_random.uniform(-1, 1, 3).astype(np.float32)
        return obs, float(action), False, self.t >= 10, {}


def weights(agent):
    return [p.detach().clone() for p in agent.policy.parameters()]


# -- env instances ---------------------------------------------------------------------
def test_an_instance_without_spec_trains_one_copy_without_evaluation(caplog):
    with caplog.at_level(logging.WARNING, "trpo"):
        agent = TRPO(Walk(), **TINY)
    assert agent.config.n_envs == 1 and agent.config.eval_every == 0
    notes = [r.message for r in caplog.records if "no periodic evaluation" in r.message]
    assert len(notes) == 1 and "eval_env=" in notes[0]
    agent.learn(128 * 6)  # past the iteration the default eval_every=5 would evaluate
    assert agent.steps == 768 and agent.evaluations == []


@pytest.mark.parametrize(
    "settings, named",
    [({"n_envs": 2}, "n_envs=2"), ({"eval_every": 3}, "eval_every=3"), ({"vec": "async"}, "vec")],
)
def test_what_an_uncopyable_instance_cannot_do_is_refused_at_construction(settings, named):
    with pytest.raises(EnvError, match=named):
        TRPO(Walk(), **{**TINY, **settings})


def test_eval_env_instance_evaluates_an_uncopyable_training_instance():
    agent = TRPO(Walk(), eval_env=Walk(), eval_every=1, **TINY)
    agent.learn(256)
    assert [steps for steps, _ in agent.evaluations] == [128, 256]
    with pytest.raises(EnvError, match="another env"):
        env = Walk()
        TRPO(env, eval_env=env, **TINY)


@pytest.mark.parametrize("eval_env", ["CartPole-v1", lambda: gym.make("CartPole-v1")])
def test_eval_env_id_or_factory(eval_env):
    agent = TRPO("CartPole-v1", eval_env=eval_env, n_envs=2, eval_every=1, **TINY)
    agent.learn(128)
    assert len(agent.evaluations) == 1


def test_a_made_instance_runs_like_its_id_bit_for_bit():
    settings = {"n_envs": 2, "eval_every": 1, **TINY}
    by_id = TRPO("CartPole-v1", seed=5, **settings).learn(256)
    by_instance = TRPO(gym.make("CartPole-v1"), seed=5, **settings).learn(256)
    assert by_instance.config == by_id.config
    for a, b in zip(weights(by_instance), weights(by_id)):
        assert torch.equal(a, b)
    assert by_instance.evaluations == by_id.evaluations


def test_a_made_instance_gets_its_ids_preset():
    assert TRPO(gym.make("Pendulum-v1")).config.gamma == 0.95


def test_copy_factory_decides_by_the_spec_and_its_wrappers():
    assert copy_factory(Walk()) is None  # no spec
    made = gym.make("CartPole-v1", max_episode_steps=50)
    copy = copy_factory(made)()
    assert copy.spec.max_episode_steps == 50
    recorded = gym.wrappers.TimeAwareObservation(gym.make("CartPole-v1"))
    assert copy_factory(recorded)().observation_space == recorded.observation_space

    class Unrecorded(gym.ObservationWrapper):  # does not record its arguments
        def observation(self, obs):
            return obs

    assert copy_factory(Unrecorded(gym.make("CartPole-v1"))) is None


def test_evaluation_in_rounds_on_one_copy_equals_one_copy_per_episode():
    agent = TRPO("CartPole-v1", n_envs=2, eval_every=0, **TINY).learn(256)
    factory = env_factory("CartPole-v1")
    parallel, rounds = Evaluator(factory, 4), Evaluator(factory, 4, copies=1)
    assert rounds.run(agent.agent, 7) == parallel.run(agent.agent, 7)


# -- ids of the user's modules and of env families -------------------------------------
@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module that registers an env id when imported, on sys.path."""
    name = f"trpo_user_envs_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import gymnasium as gym
            gym.register("UserTarget-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv",
                         max_episode_steps=50)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    gym.registry.pop("UserTarget-v0", None)
    sys.modules.pop(name, None)


def test_module_colon_id_imports_the_module(user_module):
    agent = TRPO(f"{user_module}:UserTarget-v0", n_envs=2, eval_every=1, **TINY).learn(128)
    assert agent.config.env_id == f"{user_module}:UserTarget-v0" and agent.evaluations


def test_env_modules_are_imported_wherever_envs_are_built(user_module):
    with pytest.raises(EnvError, match="--import MODULE"):
        check_env_id("UserTarget-v0")
    agent = TRPO("UserTarget-v0", env_modules=(user_module,), n_envs=2, **TINY)
    assert agent.config.env_modules == (user_module,)
    gym.registry.pop("UserTarget-v0")  # as in a fresh process: the factory imports again
    sys.modules.pop(user_module)
    assert env_factory("UserTarget-v0", modules=[user_module])().spec.id == "UserTarget-v0"


def test_cli_import_and_module_id_in_async_subprocesses(user_module, tmp_path, capsys):
    common = ["--steps", "256", "--no-progress", "--set", "n_envs=2", "steps_per_iter=128"]
    assert main(["train", "UserTarget-v0", "--import", user_module, "--vec", "async",
                 "--run-dir", str(tmp_path / "a"), *common]) == 0  # fmt: skip
    assert main(["train", f"{user_module}:UserTarget-v0", "--run-dir", str(tmp_path / "b"),
                 *common]) == 0  # fmt: skip
    assert '"env_modules": [' in (tmp_path / "a" / "config.json").read_text()


@pytest.mark.parametrize(
    "env_id, extra",
    [("ALE/Pong-v5", "atari"), ("MinAtar/Breakout-v1", "minatar"), ("Hopper-v99", "mujoco")],
)
def test_family_ids_name_the_extra_to_install(env_id, extra):
    if extra == "atari" and _importable("ale_py") or extra == "minatar" and _importable("minatar"):
        pytest.skip("the family's package is installed")
    with pytest.raises(EnvError, match=rf"trpo\[{extra}\]"):
        check_env_id(env_id)


def _importable(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


# -- where the CLI takes its options ---------------------------------------------------
def test_key_value_flags_leave_the_env_id_alone():
    assert split_key_values(["train", "--set", "a=1", "b=2", "CartPole-v1", "--seed", "3"]) == [
        "train", "--set", "a=1", "--set", "b=2", "CartPole-v1", "--seed", "3"
    ]  # fmt: skip
    assert split_key_values(["--env-kwargs", "x=1", "--set", "a=1", "Env"]) == [
        "--env-kwargs", "x=1", "--set", "a=1", "Env"
    ]  # fmt: skip
    # a second flag's every pair is its own too, not a stray positional
    assert split_key_values(["--env-kwargs", "x=1", "--set", "a=1", "b=2", "Env"]) == [
        "--env-kwargs", "x=1", "--set", "a=1", "--set", "b=2", "Env"
    ]  # fmt: skip


@pytest.mark.parametrize("env_first", [True, False])
def test_train_takes_options_before_or_after_the_env_id(env_first, tmp_path):
    options = ["--set", "max_kl=0.02", "steps_per_iter=128", "--env-kwargs", "max_episode_steps=20"]
    options += ["--steps", "128", "--no-progress", "--run-dir", str(tmp_path / "run")]
    argv = ["train", "CartPole-v1", *options] if env_first else ["train", *options, "CartPole-v1"]
    assert main(argv) == 0
    config = (tmp_path / "run" / "config.json").read_text()
    assert '"max_kl": 0.02' in config and '"max_episode_steps": 20' in config


def test_help_config_fits_the_terminal(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "72")
    assert main(["train", "--help-config"]) == 0
    text = capsys.readouterr().out
    assert "max_kl = 0.01  (a number)" in text and "|" not in text.splitlines()[0]
    assert max(len(line) for line in text.splitlines()) <= 72


def test_train_help_lists_the_most_used_settings(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for setting in ("max_kl=0.01", "steps_per_iter=1024", "n_envs=8", "gamma=0.99", "seed=0"):
        assert setting in out

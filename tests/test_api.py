"""One resolution of settings for every entry point: TRPO(...), a Config, trpo train."""

import json

import gymnasium as gym
import pytest

from trpo import TRPO, Config
from trpo.cli import _parser, resolve_args_settings, split_key_values
from trpo.config import Settings, resolve_config, resolve_settings
from trpo.presets import PRESETS


def cli_settings(*argv):
    return resolve_args_settings(_parser().parse_args(split_key_values(["train", *argv])))


def test_python_and_cli_resolve_pendulum_the_same_way():
    agent = TRPO("Pendulum-v1")
    cli = cli_settings("Pendulum-v1")
    assert agent.config == cli.config == resolve_config("Pendulum-v1")
    assert agent.config.gamma == PRESETS["Pendulum-v1"]["gamma"]
    assert agent.settings.preset == cli.preset == "Pendulum-v1" and agent.settings.user_set == set()


def test_user_settings_beat_the_preset_in_both():
    agent = TRPO("Pendulum-v1", max_kl=0.05, seed=2)
    cli = cli_settings("Pendulum-v1", "--set", "max_kl=0.05", "--seed", "2")
    assert agent.config == cli.config
    assert agent.config.max_kl == 0.05 and agent.config.gamma == 0.95
    assert agent.settings.overrides == {"max_kl": 0.05, "seed": 2}
    assert cli.sources["max_kl"] == "set" and cli.sources["gamma"] == "preset"


def test_opting_out_of_the_preset():
    agent = TRPO("Pendulum-v1", preset=False)
    assert (
        agent.config
        == Config(env_id="Pendulum-v1")
        == cli_settings("Pendulum-v1", "--no-preset").config
    )
    assert agent.settings.preset is None


def test_a_whole_config_is_the_users_every_field():
    agent = TRPO(config=Config(env_id="Pendulum-v1"))
    assert agent.config.gamma == 0.99  # no preset under a whole Config
    assert agent.settings.preset is None
    assert agent.settings.user_set == set(Config.field_names())


def test_file_layer_sits_between_preset_and_set():
    settings = resolve_settings(
        "Pendulum-v1", file_values={"gamma": 0.9, "max_kl": 0.03}, set_pairs={"max_kl": "0.04"}
    )
    assert settings.config.gamma == 0.9 and settings.config.max_kl == 0.04
    assert settings.sources["gamma"] == "file" and settings.sources["max_kl"] == "set"


def test_run_dir_records_the_preset_and_overrides_and_config_json_still_loads(tmp_path):
    run = tmp_path / "run"
    TRPO("Pendulum-v1", run_dir=run, steps_per_iter=128, n_envs=2, tensorboard=False).learn(128)
    assert Config.from_dict(json.loads((run / "config.json").read_text())).gamma == 0.95
    saved = json.loads((run / "settings.json").read_text())
    assert saved["preset"] == "Pendulum-v1" and saved["preset_values"]["gamma"] == 0.95
    assert saved["overrides"] == {"n_envs": 2, "steps_per_iter": 128, "tensorboard": False}
    loaded = TRPO.load(run / "last.safetensors")
    assert loaded.settings.preset == "Pendulum-v1"
    assert loaded.settings.user_set == {"n_envs", "steps_per_iter", "tensorboard"}


def test_settings_describe_names_preset_and_user_settings():
    settings = resolve_settings("Pendulum-v1", values={"max_kl": 0.05})
    assert settings.describe() == "preset Pendulum-v1; user settings: max_kl=0.05"
    assert Settings.of_config(Config()).preset is None


def test_cli_passes_its_resolution_to_the_agent(tmp_path):
    from trpo.cli import main

    run = tmp_path / "run"
    argv = ["train", "--set", "steps_per_iter=128", "n_envs=2", "Pendulum-v1", "--steps", "128"]
    assert main([*argv, "--no-progress", "--run-dir", str(run)]) == 0
    saved = json.loads((run / "settings.json").read_text())
    assert saved["preset"] == "Pendulum-v1"
    assert saved["sources"] == {
        **dict.fromkeys(PRESETS["Pendulum-v1"], "preset"),
        "steps_per_iter": "set",
        "n_envs": "set",
        "total_steps": "argument",
    }


@pytest.mark.parametrize("env", [lambda: gym.make("Pendulum-v1"), "Pendulum-v1"])
def test_factories_get_their_envs_preset(env):
    assert TRPO(env).config.gamma == 0.95

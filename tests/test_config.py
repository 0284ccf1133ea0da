"""Tests of trpo.config: defaults, validation messages, string overrides, round trips."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trpo.config import Config, ConfigError


def test_defaults_validate():
    config = Config()

    assert config.algo == "trpo"
    assert config.max_kl == 0.01
    assert config.steps_per_iter % config.n_envs == 0
    assert isinstance(config.policy_hidden, tuple)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().max_kl = 0.02


@pytest.mark.parametrize(
    "changes, expected_fragments",
    [
        pytest.param({"max_kl": 0.0}, ["max_kl", "0.0"], id="max_kl=0"),
        pytest.param({"max_kl": -0.01}, ["max_kl", "-0.01"], id="max_kl<0"),
        pytest.param({"max_kl": math.nan}, ["max_kl", "nan"], id="max_kl=nan"),
        pytest.param({"total_steps": 0}, ["total_steps", "0"], id="total_steps=0"),
        pytest.param({"gamma": 1.5}, ["gamma", "1.5"], id="gamma=1.5"),
        pytest.param(
            {"steps_per_iter": 1000, "n_envs": 3},
            ["steps_per_iter (1000)", "n_envs (3)"],
            id="steps_per_iter-not-multiple-of-n_envs",
        ),
        pytest.param({"algo": "foo"}, ["algo", "'foo'"], id="algo=foo"),
        pytest.param({"backtrack_coef": 1.0}, ["backtrack_coef", "1.0"], id="backtrack_coef=1"),
        pytest.param({"damping": -0.1}, ["damping", "-0.1"], id="damping<0"),
        pytest.param({"policy_hidden": (64, 0)}, ["policy_hidden", "(64, 0)"], id="hidden-0"),
        pytest.param({"activation": "gelu"}, ["activation", "'gelu'"], id="activation=gelu"),
        pytest.param({"kl_scale": "mean"}, ["kl_scale", "joint, per_dim", "'mean'"], id="kl_scale"),
        pytest.param(
            {"normalize_obs": "yes"}, ["normalize_obs", "true or false", "'yes'"], id="bool"
        ),
        pytest.param(
            {"share_encoder": True, "overlap": "on"},
            ["overlap=on", "share_encoder=true", "overlap=auto"],
            id="share_encoder-overlap-on",
        ),
    ],
)
def test_bad_values_raise_config_error_naming_field_and_value(changes, expected_fragments):
    with pytest.raises(ConfigError) as error:
        Config(**changes)

    for fragment in expected_fragments:
        assert fragment in str(error.value)


def test_steps_per_iter_error_suggests_a_multiple():
    with pytest.raises(ConfigError, match=r"try steps_per_iter=999\b"):
        Config(steps_per_iter=1000, n_envs=3)


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as error:
        Config(max_kl=0.0, gamma=2.0)

    assert "max_kl" in str(error.value)
    assert "gamma" in str(error.value)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# ---------------------------------------------------------------------------------------
# with_overrides
# ---------------------------------------------------------------------------------------


def test_with_overrides_parses_each_type():
    config = Config().with_overrides(
        {
            "n_envs": "4",
            "steps_per_iter": "2_048",
            "max_kl": "1e-3",
            "gamma": "0.95",
            "normalize_obs": "off",
            "tensorboard": "YES",
            "policy_hidden": "(128, 32)",
            "value_hidden": "32,32",
            "algo": "npg",
            "kl_direction": "new_old",
            "env_id": "Pendulum-v1",
            "env_kwargs": "max_episode_steps=200,render_mode=rgb_array,g=9.81",
        }
    )

    assert (config.n_envs, config.steps_per_iter) == (4, 2048)
    assert isinstance(config.n_envs, int)
    assert (config.max_kl, config.gamma) == (1e-3, 0.95)
    assert (config.normalize_obs, config.tensorboard) == (False, True)
    assert config.policy_hidden == (128, 32)
    assert config.value_hidden == (32, 32)
    assert (config.algo, config.kl_direction) == ("npg", "new_old")
    assert config.env_id == "Pendulum-v1"
    assert config.env_kwargs == {"max_episode_steps": 200, "render_mode": "rgb_array", "g": 9.81}


def test_with_overrides_leaves_the_original_untouched():
    original = Config()

    changed = original.with_overrides({"max_kl": "0.05"})

    assert changed.max_kl == 0.05
    assert original.max_kl == 0.01
    assert changed.replace(max_kl=0.01) == original


def test_with_overrides_refuses_unknown_key_with_suggestion():
    with pytest.raises(ConfigError, match=r"unknown setting 'max_k1' \(did you mean 'max_kl'\?\)"):
        Config().with_overrides({"max_k1": "0.1"})


def test_replace_refuses_unknown_key_with_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'gae_lambda'"):
        Config().replace(gae_lamda=0.9)


@pytest.mark.parametrize(
    "key, text, expected_fragment",
    [
        ("n_envs", "four", "an integer"),
        ("n_envs", "2.5", "an integer"),
        ("max_kl", "small", "a number"),
        ("normalize_obs", "maybe", "true/false"),
        ("algo", "ppo", "one of vpg, npg, kl_penalty, trpo"),
        ("policy_hidden", "64,x", "comma-separated integers"),
        ("env_kwargs", "no_equals_sign", "key=value pairs"),
    ],
)
def test_with_overrides_refuses_wrong_type_naming_key_and_value(key, text, expected_fragment):
    with pytest.raises(ConfigError) as error:
        Config().with_overrides({key: text})

    message = str(error.value)
    assert f"'{key}'" in message
    assert repr(text) in message
    assert expected_fragment in message


def test_with_overrides_validates_parsed_values():
    with pytest.raises(ConfigError, match="max_kl must be a positive number, got nan"):
        Config().with_overrides({"max_kl": "nan"})


# Each field gets arbitrary text plus text that parses (numbers, booleans, names), so the
# property also reaches validation, not only the parsers.
override_text = st.one_of(
    st.text(max_size=20),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["true", "off", "trpo", "new_old", "64,64", "()", "a=1,b=[2]"]),
)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(key=st.sampled_from(Config.field_names()), text=override_text)
def test_with_overrides_returns_config_or_raises_config_error(key, text):
    try:
        config = Config().with_overrides({key: text})
    except ConfigError:
        return
    assert isinstance(config, Config)


def test_huge_steps_per_iter_raises_config_error():
    with pytest.raises(ConfigError):
        Config().with_overrides({"steps_per_iter": "1" * 400})


# ---------------------------------------------------------------------------------------
# to_dict / from_dict
# ---------------------------------------------------------------------------------------


def test_from_dict_round_trips_to_dict_through_json():
    config = Config(
        algo="npg",
        n_envs=4,
        steps_per_iter=512,
        policy_hidden=(32, 16),
        value_hidden=(8,),
        env_kwargs={"max_episode_steps": 100},
        normalize_obs=False,
    )

    loaded = json.loads(config.to_json())

    assert loaded["policy_hidden"] == [32, 16]  # JSON turns tuples into lists
    restored = Config.from_dict(loaded)
    assert restored == config
    assert restored.policy_hidden == (32, 16)


def test_from_dict_refuses_unknown_keys():
    with pytest.raises(ConfigError, match="unknown setting 'seeed'"):
        Config.from_dict({"seeed": 1})


@pytest.mark.parametrize(
    "key, value",
    [("n_envs", "8"), ("n_envs", 8.0), ("normalize_obs", 1), ("max_kl", True), ("algo", 3)],
)
def test_from_dict_refuses_wrong_types_naming_key(key, value):
    with pytest.raises(ConfigError, match=f"setting '{key}' expects"):
        Config.from_dict({key: value})

"""Env state capture (trpo.env_state): a restored env steps exactly like the original,
through episode ends (time limit and random generator carried over)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import CLASSIC_ENVS

from trpo.env_state import capture, restore


@pytest.mark.parametrize("env_id", [*CLASSIC_ENVS, "Hopper-v5"])
def test_restored_env_steps_exactly_like_the_original(env_id):
    if env_id == "Hopper-v5":
        pytest.importorskip("mujoco")
    original = gym.make(env_id)
    original.reset(seed=1)
    original.action_space.seed(2)
    for _ in range(17):
        original.step(original.action_space.sample())
    state = capture(original)
    copy = gym.make(env_id)
    restore(copy, state)
    actions = [original.action_space.sample() for _ in range(300)]
    for action in actions:  # through episode ends: the time limit and the RNG carry over
        a, b = original.step(action), copy.step(action)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:4] == b[1:4]
        if a[2] or a[3]:
            seed_state = original.unwrapped.np_random.bit_generator.state
            assert copy.unwrapped.np_random.bit_generator.state == seed_state
            np.testing.assert_array_equal(original.reset()[0], copy.reset()[0])

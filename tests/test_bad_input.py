"""Bad input is refused in one clear line before anything is written (issue 18)."""

from __future__ import annotations

import json
import logging
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.spaces import Box

from trpo import TRPO, resources
from trpo.cli import main
from trpo.config import Config
from trpo.config_text import parse_key_values
from trpo.encoders import ObservationEncoder
from trpo.envs import EnvError
from trpo.resources import InsufficientMemoryError, memory_estimate
from trpo.update import policy_step

FAST = ["--no-progress", "--steps", "128", "--set", "n_envs=1", "steps_per_iter=64"]


class _AssertingEnv(gym.Env):
    """Like LunarLander-v3 given gravity=5 (box2d is not always installed)."""

    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.Discrete(2)

    def __init__(self, gravity: float = -10.0):
        assert -12.0 < gravity < 0.0, f"gravity (current value: {gravity}) must be in (-12, 0)"

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, True, False, {}


gym.register("AssertingTest-v0", entry_point=_AssertingEnv)


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("trpo: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    ("env_id", "kwarg", "says"),
    [
        ("Pendulum-v1", "g=abc", "TypeError"),
        ("Pendulum-v1", "g=nan", "non-finite observation"),
        ("AssertingTest-v0", "gravity=5", "AssertionError"),
    ],
)
def test_an_env_that_cannot_run_is_refused_before_the_run_dir_exists(
    tmp_path, capsys, env_id, kwarg, says
):
    run_dir = tmp_path / "run"
    code, err = cli(
        capsys, "train", env_id, "--run-dir", str(run_dir), *FAST, "--env-kwargs", kwarg
    )
    line = one_error_line(err)
    assert code == 2
    assert says in line and f"keyword argument {kwarg.split('=')[0]}=" in line
    assert not run_dir.exists()


def test_nan_and_inf_are_floats_in_key_values():
    values = dict(parse_key_values(["a=nan", "b=inf", "c=-inf", "d=NaN", "e=abc"]))
    assert math.isnan(values["a"]) and math.isnan(values["d"])
    assert values["b"] == math.inf and values["c"] == -math.inf and values["e"] == "abc"


def test_an_env_instance_is_never_stepped_by_the_probe():
    env = gym.make("CartPole-v1")
    env.reset(seed=3)
    state = np.array(env.unwrapped.state)
    TRPO(env, n_envs=1, steps_per_iter=64, eval_every=0).close()
    assert np.array_equal(env.unwrapped.state, state)


@pytest.mark.parametrize(
    "setting", [["policy_hidden=1048576,1048576"], ["steps_per_iter=1000000000000", "n_envs=1"]]
)
def test_a_config_that_cannot_fit_in_memory_is_refused_with_the_figures(tmp_path, capsys, setting):
    run_dir = tmp_path / "run"
    code, err = cli(capsys, "train", "CartPole-v1", "--run-dir", str(run_dir), "--set", *setting)
    line = one_error_line(err)
    assert code == 2
    assert "needs at least" in line and "GiB" in line and "is available" in line
    assert "--force" in line
    assert not run_dir.exists()


def test_force_skips_the_memory_check(monkeypatch):
    monkeypatch.setattr(resources, "available_memory", lambda: 1024)
    with pytest.raises(InsufficientMemoryError, match="1.0 MiB|0.0 MiB|is available"):
        TRPO("CartPole-v1", n_envs=1, steps_per_iter=64)
    TRPO("CartPole-v1", n_envs=1, steps_per_iter=64, force=True).close()


def test_memory_estimate_counts_parameters_batch_and_activations():
    config = Config(
        policy_hidden=(64, 64), value_hidden=(64, 64), steps_per_iter=1000, overlap="off"
    )
    encoder = ObservationEncoder(Box(-1, 1, (4,)))
    estimate = memory_estimate(config, encoder, act_dim=2)
    policy = (4 * 64 + 64) + (64 * 64 + 64) + (64 * 2 + 2) + 2
    value = (4 * 64 + 64) + (64 * 64 + 64) + (64 + 1)
    assert estimate.parameters == 4 * (10 * policy + 4 * value)
    assert estimate.batch == 4 * 1000 * (4 * 4 + 2 * 2 + 12)
    assert estimate.total == estimate.parameters + estimate.batch + estimate.activations
    # overlap: the held next batch and the value fit's process on top
    overlapped = memory_estimate(config.replace(overlap="on"), encoder, act_dim=2)
    assert overlapped.parameters == estimate.parameters + 4 * 4 * value
    assert overlapped.batch == 2 * estimate.batch


class CameraEnv(gym.Env):
    """Full-size camera frames, as AddRenderObservation gives them."""

    observation_space = Box(0, 255, (400, 600, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros((400, 600, 3), np.uint8), {}

    def step(self, action):
        return np.zeros((400, 600, 3), np.uint8), 0.0, False, False, {}


def test_large_frames_that_do_not_fit_are_refused_with_the_resize_wrapper(monkeypatch):
    monkeypatch.setattr(resources, "available_memory", lambda: 2**30)
    with pytest.raises(InsufficientMemoryError, match="ResizeObservation"):
        TRPO(CameraEnv, n_envs=1, steps_per_iter=64)


def test_memory_estimate_of_atari_frames_counts_bytes_and_both_cnns():
    config = Config(policy_hidden=(), value_hidden=(), steps_per_iter=1000, overlap="off")
    frames = ObservationEncoder(Box(0, 255, (4, 84, 84), np.uint8))
    estimate = memory_estimate(config, frames, act_dim=4)
    nature = (4 * 32 * 64 + 32) + (32 * 64 * 16 + 64) + (64 * 64 * 9 + 64) + (3136 * 512 + 512)
    policy, value = nature + 512 * 4 + 4 + 4, nature + 512 + 1
    assert estimate.parameters == 4 * (10 * policy + 4 * value)
    assert estimate.batch == 1000 * (4 * 28224 + 4 * (2 * 4 + 12))  # a byte a pixel
    # Per row and network: the frame as floats, two convolutions with their ReLUs, ...
    cnn = 28224 + 2 * (20 * 20 * 32) + 2 * (9 * 9 * 64) + 3 * (7 * 7 * 64) + 2 * 512
    assert estimate.activations == 4 * 1000 * 3 * (2 * cnn + 4 + 1)


def test_predict_checks_the_observation_shape():
    agent = TRPO("CartPole-v1", n_envs=1, steps_per_iter=64)
    assert np.shape(agent.predict(np.zeros(4))[0]) == ()
    assert np.shape(agent.predict(np.zeros((3, 4)))[0]) == (3,)
    with pytest.raises(
        ValueError, match=r"shape \(4,\) or a batch of shape \(B, 4\), got shape \(3,\)"
    ):
        agent.predict(np.zeros(3))
    with pytest.raises(ValueError, match=r"got shape \(2, 3\)"):
        agent.predict(np.zeros((2, 3)))
    agent.close()


def test_env_id_given_twice_differently_is_refused(tmp_path, capsys):
    code, err = cli(
        capsys,
        "train",
        "CartPole-v1",
        "--run-dir",
        str(tmp_path / "r"),
        "--set",
        "env_id=Pendulum-v1",
    )
    assert code == 2 and "conflicts" in one_error_line(err)
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "cartpole"
    assert (
        main(["train", "CartPole-v1", "--run-dir", str(run_dir), *FAST, "tensorboard=false"]) == 0
    )
    return run_dir


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["Pendulum-v1"], "is a run on CartPole-v1, not Pendulum-v1"),
        (["--run-dir", "elsewhere"], "--run-dir does not go with it"),
        (["--overwrite"], "--overwrite does not go with it"),
    ],
)
def test_resume_refuses_what_it_would_ignore(cartpole_run, capsys, extra, says):
    before = (cartpole_run / "metrics.csv").read_bytes()
    code, err = cli(capsys, "train", "--resume", str(cartpole_run), "--no-progress", *extra)
    assert code == 2 and says in one_error_line(err)
    assert (cartpole_run / "metrics.csv").read_bytes() == before


def test_resume_refuses_an_edited_config_json(cartpole_run, tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "edited"
    shutil.copytree(cartpole_run, run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    config["max_kl"] = 0.05
    (run_dir / "config.json").write_text(json.dumps(config))
    code, err = cli(capsys, "train", "--resume", str(run_dir), "--no-progress")
    line = one_error_line(err)
    assert code == 2 and "max_kl=0.05 (checkpoint: 0.01)" in line


def test_eval_and_load_print_no_resume_warning(cartpole_run, capsys, caplog):
    with caplog.at_level(logging.WARNING, logger="trpo"):
        assert main(["eval", str(cartpole_run), "--episodes", "1"]) == 0
        TRPO.load(cartpole_run / "last.safetensors").close()
    assert "not bit-identical" not in caplog.text + capsys.readouterr().err


@pytest.mark.parametrize("damage", [b"1,2,garbage,x\n", bytes(range(256)) * 2])
def test_plot_skips_damaged_rows_with_one_warning(cartpole_run, tmp_path, capsys, caplog, damage):
    import shutil

    run_dir = tmp_path / "damaged"
    shutil.copytree(cartpole_run, run_dir)
    with (run_dir / "metrics.csv").open("ab") as f:
        f.write(damage)
    with caplog.at_level(logging.WARNING, logger="trpo"):
        code, err = cli(capsys, "plot", str(run_dir))
    assert code == 0 and "Traceback" not in err
    assert (run_dir / "learning_curve.png").exists()
    assert len([r for r in caplog.records if "damaged row" in r.getMessage()]) == 1


def _batch(policy, n=32):
    obs = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        dist = policy(obs)
        actions = dist.sample()
        return obs, actions, dist.log_prob(actions)


@pytest.mark.parametrize("algo", ["trpo", "npg", "vpg"])
def test_a_zero_gradient_is_no_step_and_no_nan(algo):
    agent = TRPO("CartPole-v1", n_envs=1, steps_per_iter=64, algo=algo)
    policy = agent.policy
    before = [p.detach().clone() for p in policy.parameters()]
    obs, actions, log_probs = _batch(policy)
    step = policy_step(policy, obs, actions, torch.zeros(32), log_probs, agent.config, 1)
    assert step.zero_gradient and not step.accepted and not step.nonfinite
    assert all(math.isfinite(v) for v in (step.kl, step.expected_improvement, step.grad_norm))
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    agent.close()


def test_an_infinite_kl_under_vpg_is_a_nonfinite_rejected_step():
    agent = TRPO("CartPole-v1", n_envs=1, steps_per_iter=64, algo="vpg", vpg_lr=1e30)
    policy = agent.policy
    before = [p.detach().clone() for p in policy.parameters()]
    obs, actions, log_probs = _batch(policy)
    advantages = torch.randn(32, generator=torch.Generator().manual_seed(1))
    step = policy_step(policy, obs, actions, advantages, log_probs, agent.config, 1)
    assert step.nonfinite and not step.accepted
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    agent.close()


def test_a_bad_factory_is_refused(tmp_path):
    def factory():
        return gym.make("Pendulum-v1", g=math.nan)

    with pytest.raises(EnvError, match="non-finite"):
        TRPO(factory, run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()

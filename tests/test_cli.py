"""Tests of the `trpo` command line, run in-process on tiny budgets.

Every training run here takes a few thousand CartPole/Pendulum steps with 2 envs and
512 transitions per iteration, so the file stays fast. Bad input must end with exit status
2, one ``trpo: error:`` line naming the problem, no traceback and no run directory.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import typing
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import SMALL, SMALL_EVAL, set_pairs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trpo.cli
import trpo.commands
from trpo.checkpoint import FORMAT_VERSION
from trpo.cli import main
from trpo.config import Config, resolve_settings
from trpo.config_text import parse_value
from trpo.logger import METRICS_FILE
from trpo.presets import ATARI, PRESETS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# 2 envs x 256 steps = 512 transitions per iteration; no evaluation, no TensorBoard.
TINY = ["--set", *set_pairs(SMALL)]
TINY_EVAL = ["--set", *set_pairs(SMALL_EVAL)]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def iterations(run_dir: Path) -> list[int]:
    return [int(row["iteration"]) for row in read_csv(run_dir / "metrics.csv")]


def one_error_line(err: str) -> str:
    """The single stderr line of a user error (asserts there is exactly one)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("trpo: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Run every test in its own directory, so runs/ lands in tmp_path."""
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory) -> Path:
    """One tiny CartPole run (4 iterations, evaluation every 2) shared by read-only tests."""
    run_dir = tmp_path_factory.mktemp("cli") / "cartpole"
    rc = main(
        ["train", "CartPole-v1", "--steps", "2048", *TINY_EVAL, "checkpoint_every=1"]
        + ["--run-dir", str(run_dir), "--no-progress"]
    )
    assert rc == 0
    return run_dir


# -- train: the run directory ----------------------------------------------------------
def test_train_too_short_for_an_evaluation_says_so(tmp_path, capsys):
    rc = main(["train", "CartPole-v1", "--steps", "2048", "--no-progress"])

    assert rc == 0
    out = capsys.readouterr().out
    assert "no score yet: the run ended before its first evaluation (every 5 iterations)" in out
    assert "nan" not in out


def test_train_writes_run_directory(tmp_path, capsys):
    rc = main(["train", "CartPole-v1", "--steps", "2048", *TINY_EVAL, "--no-progress"])

    assert rc == 0
    run_dir = tmp_path / "runs" / "CartPole-v1-trpo-s0"
    assert "done: 2,048 steps" in capsys.readouterr().out
    expected = {
        "config.json",
        "settings.json",
        "run.lock",
        "metrics.csv",
        "provenance.json",
        "final.safetensors",
        "best.safetensors",
        "last.safetensors",
        "learning_curve.png",
    }
    assert {p.name for p in run_dir.iterdir()} == expected  # no tb/ with tensorboard=false

    config = json.loads((run_dir / "config.json").read_text())
    assert set(config) == set(Config.field_names())
    assert config["env_id"] == "CartPole-v1"
    assert config["total_steps"] == 2048
    assert config["n_envs"] == 2
    assert config["steps_per_iter"] == 512
    assert config["eval_every"] == 2
    assert config["eval_episodes"] == 2
    assert config["tensorboard"] is False
    assert config["max_kl"] == Config().max_kl  # CartPole's preset is the defaults

    rows = read_csv(run_dir / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    assert [int(r["steps"]) for r in rows] == [512, 1024, 1536, 2048]
    assert [r["eval_return"] != "" for r in rows] == [False, True, False, True]
    assert all(float(r["episode_return"]) > 0 for r in rows)

    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert set(provenance["versions"]) >= {"trpo", "torch", "gymnasium", "numpy", "safetensors"}
    assert provenance["versions"]["torch"] == torch.__version__
    assert provenance["versions"]["gymnasium"] == gym.__version__
    assert provenance["torch_threads"] == 1
    assert provenance["checkpoint_format"] == FORMAT_VERSION

    png = (run_dir / "learning_curve.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 1000


def test_train_with_tensorboard_writes_events(tmp_path):
    rc = main(
        ["train", "CartPole-v1", "--steps", "1024", "--run-dir", "tb_run", "--no-progress"]
        + ["--set", "n_envs=2", "steps_per_iter=512", "eval_every=0", "tensorboard=true"]
    )

    assert rc == 0
    events = list((tmp_path / "tb_run" / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1
    assert events[0].stat().st_size > 0


def test_eval_prints_returns(cartpole_run, capsys):
    rc = main(["eval", str(cartpole_run), "--episodes", "2"])

    assert rc == 0
    out = capsys.readouterr().out
    assert f"checkpoint: {cartpole_run / 'best.safetensors'}" in out
    line = next(line for line in out.splitlines() if line.startswith("episodes:"))
    assert line.startswith("episodes: 2  return: ")
    returns = next(line for line in out.splitlines() if line.startswith("returns:"))
    values = [float(x) for x in returns.removeprefix("returns: ").split(", ")]
    assert len(values) == 2 and all(1 <= v <= 500 for v in values)


def test_eval_is_deterministic_for_a_seed(cartpole_run, capsys):
    main(["eval", str(cartpole_run), "--episodes", "2", "--checkpoint", "final", "--seed", "3"])
    first = capsys.readouterr().out
    main(["eval", str(cartpole_run), "--episodes", "2", "--checkpoint", "final", "--seed", "3"])

    assert capsys.readouterr().out == first


def test_plot_two_runs(cartpole_run, tmp_path, capsys):
    rc = main(["plot", str(cartpole_run), str(cartpole_run), "-o", "out.png"])

    assert rc == 0
    assert capsys.readouterr().out.strip() == "wrote out.png"
    png = (tmp_path / "out.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 1000


def test_plot_a_run_with_no_episode_or_evaluation_yet(tmp_path, capsys):
    # CarRacing's 1000-step episodes: a 2-iteration run finishes neither
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / METRICS_FILE).write_text("steps,episode_return,eval_return\n1024,,\n")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["plot", "run", "-o", "out.png"]) == 0

    assert (tmp_path / "out.png").read_bytes().startswith(PNG_MAGIC)


def test_presets_lists_every_preset(capsys):
    assert main(["presets"]) == 0

    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == [*PRESETS, "ALE/*", "MinAtar/*"]
    assert f"log_std_init={PRESETS['Pendulum-v1']['log_std_init']}" in out
    assert "ALE/* (Atari)" in out and "image_encoder=small" in out


def test_every_atari_and_minatar_game_has_its_familys_preset(capsys):
    assert main(["presets", "ALE/Pong-v5"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        k: list(v) if isinstance(v, tuple) else v for k, v in ATARI.items()
    }
    assert main(["presets", "MinAtar/Seaquest-v1"]) == 0
    assert json.loads(capsys.readouterr().out)["policy_hidden"] == []
    assert resolve_settings("MinAtar/Seaquest-v1").config.steps_per_iter == 2048


def test_presets_for_one_env(capsys):
    assert main(["presets", "Pendulum-v1"]) == 0

    assert json.loads(capsys.readouterr().out) == PRESETS["Pendulum-v1"]


def test_presets_names_an_env_tuned_to_the_defaults(capsys):
    assert main(["presets", "Humanoid-v5"]) == 0

    captured = capsys.readouterr()
    assert json.loads(captured.out) == {}
    assert "Humanoid-v5 runs with the defaults" in captured.err


def test_help_config_lists_every_field(capsys):
    assert main(["train", "--help-config", "markdown"]) == 0

    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == Config.field_names()
    assert "| `max_kl` | `0.01` |" in out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: trpo" in capsys.readouterr().out


# -- presets, config files, precedence, env kwargs --------------------------------------
def test_pendulum_run_uses_its_preset(tmp_path):
    rc = main(["train", "Pendulum-v1", "--steps", "1024", *TINY, "--no-progress"])

    assert rc == 0
    run_dir = tmp_path / "runs" / "Pendulum-v1-trpo-s0"
    config = json.loads((run_dir / "config.json").read_text())
    preset = PRESETS["Pendulum-v1"]
    defaults = Config().to_dict()
    assert {k for k, v in preset.items() if v != defaults[k]} >= {"gamma", "log_std_init"}
    overridden = {arg.split("=")[0] for arg in TINY if "=" in arg}  # --set beats the preset
    assert {k: config[k] for k in preset if k not in overridden} == {
        k: v for k, v in preset.items() if k not in overridden
    }
    assert config["n_envs"] == 2 and config["total_steps"] == 1024
    rows = read_csv(run_dir / "metrics.csv")
    assert [int(r["steps"]) for r in rows] == [512, 1024]
    # Pendulum episodes last 200 steps and every reward is in [-16.3, 0].
    assert all(-16.3 * 200 <= float(r["episode_return"]) <= 0 for r in rows)
    assert (run_dir / "final.safetensors").exists()


def test_no_preset_keeps_the_defaults(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(trpo.commands, "_train", lambda agent, *rest: seen.append(agent) or 0)

    rc = main(["train", "Pendulum-v1", "--no-preset", "--steps", "1024", *TINY])

    seen[0].close()
    assert rc == 0
    assert seen[0].config == Config(env_id="Pendulum-v1").replace(
        total_steps=1024, n_envs=2, steps_per_iter=512, eval_every=0, tensorboard=False
    )


CONFIG_TOML = """\
gamma = 0.9
log_std_init = -1.0
damping = 0.2
total_steps = 4096
seed = 5
policy_hidden = [32, 32]
n_envs = 2
steps_per_iter = 512
eval_every = 0
tensorboard = false
"""
CONFIG_JSON = json.dumps(
    {
        "gamma": 0.9,
        "log_std_init": -1.0,
        "damping": 0.2,
        "total_steps": 4096,
        "seed": 5,
        "policy_hidden": [32, 32],
        "n_envs": 2,
        "steps_per_iter": 512,
        "eval_every": 0,
        "tensorboard": False,
    }
)


@pytest.mark.parametrize("name, text", [("file.toml", CONFIG_TOML), ("file.json", CONFIG_JSON)])
def test_precedence_defaults_preset_file_set_flags(tmp_path, name, text):
    # preset: gamma 0.95, gae_lambda 0.95, log_std_init -0.5, ... (Pendulum-v1)
    assert {"gamma": 0.95, "gae_lambda": 0.95, "log_std_init": -0.5}.items() <= PRESETS[
        "Pendulum-v1"
    ].items()
    # file:   gamma 0.9, log_std_init -1, damping 0.2, total_steps 4096, seed 5, hidden 32,32
    # --set:  gamma 0.8, total_steps 3072, seed 6
    # flags:  --steps 1024 --seed 7
    (tmp_path / name).write_text(text)
    argv = ["train", "Pendulum-v1", "--config", name, "--no-progress"]
    argv += ["--set", "gamma=0.8", "total_steps=3072", "seed=6", "--steps", "1024", "--seed", "7"]

    assert main(argv) == 0

    run_dir = tmp_path / "runs" / "Pendulum-v1-trpo-s7"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["cg_iters"] == 10  # default
    assert config["gae_lambda"] == 0.95  # preset over default
    assert config["log_std_init"] == -1.0  # file over preset
    assert config["damping"] == 0.2  # file over default
    assert config["policy_hidden"] == [32, 32]
    assert config["gamma"] == 0.8  # --set over file
    assert config["total_steps"] == 1024  # --steps over --set and file
    assert config["seed"] == 7  # --seed over --set and file
    assert iterations(run_dir) == [1, 2]


def test_env_kwargs_reach_the_env(tmp_path):
    argv = ["train", "CartPole-v1", "--steps", "2048", *TINY_EVAL, "--no-progress"]
    argv += ["--env-kwargs", "max_episode_steps=50", "sutton_barto_reward=true"]

    assert main(argv) == 0

    run_dir = tmp_path / "runs" / "CartPole-v1-trpo-s0"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["env_kwargs"] == {"max_episode_steps": 50, "sutton_barto_reward": True}
    rows = read_csv(run_dir / "metrics.csv")
    lengths = [float(r["episode_length"]) for r in rows]
    returns = [float(r["episode_return"]) for r in rows]
    assert all(1 <= n <= 50 for n in lengths)
    # Sutton-Barto reward: 0 per step, -1 when the pole falls; so a return is 0 or -1.
    assert all(-1.0 <= r <= 0.0 for r in returns)
    assert min(returns) < 0  # some episodes ended by falling
    evals = [float(r["eval_return"]) for r in rows if r["eval_return"]]
    assert len(evals) == 2 and all(-1.0 <= r <= 0.0 for r in evals)


# -- resume ----------------------------------------------------------------------------
def test_resume_continues_metrics(tmp_path, capsys):
    base = ["--no-progress"]
    argv = ["train", "CartPole-v1", "--steps", "1024", *TINY, "checkpoint_every=1", *base]
    assert main(argv) == 0
    run_dir = tmp_path / "runs" / "CartPole-v1-trpo-s0"
    assert iterations(run_dir) == [1, 2]
    capsys.readouterr()

    assert main(["train", "--resume", str(run_dir), "--steps", "2048", *base]) == 0

    assert "resuming" in capsys.readouterr().out
    rows = read_csv(run_dir / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    assert [int(r["steps"]) for r in rows] == [512, 1024, 1536, 2048]
    assert json.loads((run_dir / "config.json").read_text())["total_steps"] == 2048


def test_resume_drops_rows_after_the_checkpoint(tmp_path):
    # A crash after iteration 4 was logged but before its checkpoint: emulate it by putting
    # back the iteration-2 checkpoint. The resumed run must not log iterations 3, 4 twice.
    argv = ["train", "CartPole-v1", "--steps", "1024", *TINY, "checkpoint_every=1"]
    assert main([*argv, "--no-progress"]) == 0
    run_dir = tmp_path / "runs" / "CartPole-v1-trpo-s0"
    at_two = (run_dir / "last.safetensors").read_bytes()
    assert main(["train", "--resume", str(run_dir), "--steps", "2048", "--no-progress"]) == 0
    assert iterations(run_dir) == [1, 2, 3, 4]
    (run_dir / "last.safetensors").write_bytes(at_two)

    assert main(["train", "--resume", str(run_dir), "--steps", "2560", "--no-progress"]) == 0

    rows = read_csv(run_dir / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4, 5]
    assert [int(r["steps"]) for r in rows] == [512 * i for i in range(1, 6)]


def test_resume_refuses_settings_it_would_ignore(cartpole_run, capsys):
    before = (cartpole_run / "metrics.csv").read_text()

    rc = main(["train", "--resume", str(cartpole_run), "--set", "max_kl=0.02", "--seed", "3"])

    assert rc == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--set" in line and "--seed" in line
    assert (cartpole_run / "metrics.csv").read_text() == before


def test_resume_without_checkpoint(tmp_path, capsys):
    (tmp_path / "empty").mkdir()

    assert main(["train", "--resume", "empty"]) == 2

    assert "last.safetensors does not exist" in one_error_line(capsys.readouterr().err)


# -- bad input -------------------------------------------------------------------------
class TextObsEnv(gym.Env):
    observation_space = gym.spaces.Text(8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return "hello", {}

    def step(self, action):
        return "hello", 0.0, True, False, {}


class TupleActionEnv(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3)))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, True, False, {}


@pytest.fixture(scope="module", autouse=True)
def _test_envs():
    ids = {"trpo-test/TextObs-v0": TextObsEnv, "trpo-test/TupleAction-v0": TupleActionEnv}
    for env_id, cls in ids.items():
        gym.register(env_id, entry_point=cls)
    yield
    for env_id in ids:
        gym.registry.pop(env_id, None)


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["Foo-v0"], ["unknown environment id 'Foo-v0'"]),
        (["trpo-test/TextObs-v0"], ["observation space Text(", "not supported"]),
        (["trpo-test/TupleAction-v0"], ["action space Tuple(", "not supported"]),
        (["CartPole-v1", "--set", "nonexistent=1"], ["unknown setting 'nonexistent'"]),
        (["CartPole-v1", "--set", "max_kll=0.1"], ["'max_kll'", "did you mean 'max_kl'"]),
        (["CartPole-v1", "--set", "line\nbreak=1"], ["unknown setting 'line\\nbreak'"]),
        (["Cart\x1ePole-v1"], ["unknown environment id 'Cart\\x1ePole-v1'"]),
        (["CartPole-v1", "--set", "max_kl=abc"], ["'max_kl' expects a number", "'abc'"]),
        (["CartPole-v1", "--set", "max_kl=0"], ["max_kl must be a positive number, got 0.0"]),
        (["CartPole-v1", "--set", "max_kl=-1"], ["max_kl must be a positive number, got -1.0"]),
        (["CartPole-v1", "--set", "max_kl=nan"], ["max_kl must be a positive number"]),
        (["CartPole-v1", "--set", "max_kl"], ["--set expects KEY=VALUE", "'max_kl'"]),
        (["CartPole-v1", "--set", "n_envs=3"], ["multiple of n_envs (3)"]),
        (["CartPole-v1", "--steps", "0"], ["total_steps must be a positive number, got 0"]),
        (["CartPole-v1", "--steps", "-5"], ["total_steps must be a positive number, got -5"]),
        (["CartPole-v1", "--env-kwargs", "foo=1"], ["does not accept", "'foo'"]),
        (["CartPole-v1", "--env-kwargs", "foo"], ["expected key=value, got 'foo'"]),
        (["CartPole-v1", "--config", "missing.toml"], ["No such file", "missing.toml"]),
        ([], ["train needs an environment id"]),
    ],
)
def test_bad_train_input(tmp_path, capsys, argv, fragments):
    steps = [] if "--steps" in argv else ["--steps", "1024"]
    rc = main(["train", *steps, *TINY, "--no-progress", *argv])  # argv's --set wins

    assert rc == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    for fragment in fragments:
        assert fragment in line
    assert captured.out == ""
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("bad.toml", b"max_kl = \n", "cannot parse config file bad.toml"),
        ("bad.json", b"{max_kl: 0.1", "cannot parse config file bad.json"),
        ("binary.toml", b"\xff\xfe\x00max_kl", "cannot parse config file binary.toml"),
        ("list.json", b"[1, 2]", "config file list.json must hold a table"),
        ("typo.json", b'{"max_kll": 0.1}', "did you mean 'max_kl'"),
        ("type.toml", b'max_kl = "x"', "setting 'max_kl' expects a number, got 'x'"),
    ],
)
def test_bad_config_file(tmp_path, capsys, name, content, fragment):
    (tmp_path / name).write_bytes(content)

    rc = main(["train", "CartPole-v1", "--config", name, "--steps", "1024", *TINY])

    assert rc == 2
    assert fragment in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()


def test_existing_run_directory_needs_overwrite(tmp_path, capsys):
    argv = ["train", "CartPole-v1", "--steps", "1024", *TINY, "--no-progress"]
    run_dir = tmp_path / "runs" / "CartPole-v1-trpo-s0"
    run_dir.mkdir(parents=True)
    (run_dir / "keep.txt").write_text("old run")

    assert main(argv) == 2

    line = one_error_line(capsys.readouterr().err)
    assert f"run directory {Path('runs/CartPole-v1-trpo-s0')} already exists" in line
    assert "--overwrite" in line
    assert [p.name for p in run_dir.iterdir()] == ["keep.txt"]

    # A bad setting with --overwrite fails before anything is removed.
    assert main([*argv, "--overwrite", "--set", "max_kl=0"]) == 2
    one_error_line(capsys.readouterr().err)
    assert [p.name for p in run_dir.iterdir()] == ["keep.txt"]

    assert main([*argv, "--overwrite"]) == 0

    assert not (run_dir / "keep.txt").exists()
    assert iterations(run_dir) == [1, 2]


def test_eval_without_checkpoint(tmp_path, capsys):
    (tmp_path / "run").mkdir()

    assert main(["eval", "run", "--episodes", "2"]) == 2

    line = one_error_line(capsys.readouterr().err)
    assert "final.safetensors does not exist" in line


def test_eval_of_a_foreign_file(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.safetensors").write_text("not a checkpoint")

    assert main(["eval", "run"]) == 2

    assert "not a readable trpo checkpoint" in one_error_line(capsys.readouterr().err)


def test_eval_needs_positive_episodes(cartpole_run, capsys):
    assert main(["eval", str(cartpole_run), "--episodes", "0"]) == 2

    assert "--episodes must be positive, got 0" in one_error_line(capsys.readouterr().err)


def test_plot_without_metrics(tmp_path, capsys):
    (tmp_path / "run").mkdir()

    assert main(["plot", "run", "-o", "out.png"]) == 2

    assert "run has no metrics.csv" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out.png").exists()


def test_presets_unknown_env(capsys):
    assert main(["presets", "Nope-v0"]) == 2

    line = one_error_line(capsys.readouterr().err)
    assert "no preset for Nope-v0" in line
    assert ", ".join(sorted(PRESETS)) in line


# -- property: any --set either works or is one clean error ---------------------------
# Values that parse as some setting's type, so that some examples get past parsing.
PLAUSIBLE_VALUES = ["0", "1", "2", "-1", "0.5", "1e-3", "nan", "true", "off", "64,64", "tanh"]


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    key=st.one_of(st.sampled_from(Config.field_names()), st.text(max_size=12)),
    value=st.one_of(st.text(max_size=12), st.sampled_from(PLAUSIBLE_VALUES)),
)
def test_any_set_is_accepted_or_one_clean_error(monkeypatch, capsys, key, value):
    built = []
    monkeypatch.setattr(trpo.commands, "_train", lambda agent, *rest: built.append(agent) or 0)
    capsys.readouterr()

    # --set=... keeps argparse from reading a key that starts with '-' as an option.
    rc = main(["train", "CartPole-v1", "--steps", "1024", *TINY, f"--set={key}={value}"])

    for agent in built:
        agent.close()
    err = capsys.readouterr().err
    if rc == 0:
        assert len(built) == 1
        hint = typing.get_type_hints(Config)[key.strip()]
        assert getattr(built[0].config, key.strip()) == parse_value(key, value.strip(), hint)
    else:
        assert rc == 2
        assert built == []
        one_error_line(err)


# -- property: any argument list either works or is one clean error ---------------------
TOKENS = [
    "train", "eval", "plot", "compare", "presets", "CartPole-v1", "Pendulum-v1", "Nope-v0",
    "--steps", "--seed", "--set", "--config", "--env-kwargs", "--run-dir", "--resume",
    "--overwrite", "--no-preset", "--episodes", "--checkpoint", "--algos", "--seeds", "-o",
    "512", "0", "-3", "1e9", "x", "max_kl=0.02", "n_envs=2", "n_envs=0", "nope=1", "runs/r",
    "", "=", "--",
]  # fmt: skip


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(argv=st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=6)), max_size=7))
def test_any_argument_list_works_or_is_one_clean_error(monkeypatch, capsys, argv):
    # Training and comparing are replaced by no-ops: this is about argument handling.
    monkeypatch.setattr(trpo.commands, "_train", lambda agent, *rest: agent.close() or 0)
    monkeypatch.setattr("trpo.grid.run_grid", lambda cells, workers: [])
    monkeypatch.setattr("trpo.compare.write_report", lambda out, cells, command: [])
    capsys.readouterr()

    rc = main(argv)

    out, err = capsys.readouterr()
    assert rc in (0, 2), (argv, err)
    if rc == 2 and err:
        assert err.count("trpo: error: ") == 1 and "Traceback" not in err, (argv, err)
        assert len(err.strip().splitlines()) <= 1 or err.startswith("usage:"), (argv, err)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["train", "--steps", "abc"], "argument --steps: invalid int value: 'abc'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["train", "CartPole-v1", "--bogus"], "unrecognized arguments: --bogus"),
        (["eval"], "the following arguments are required: run_dir"),
    ],
)
def test_argparse_errors_are_one_line(capsys, argv, fragment):
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert fragment in line and "--help" in line


def test_run_dir_below_a_file_is_one_clean_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rc = main(["train", "CartPole-v1", "--steps", "512", *TINY, "--run-dir", str(blocker / "r")])
    assert rc == 2
    assert "Not a directory" in one_error_line(capsys.readouterr().err)
    assert blocker.read_text() == "not a directory"


def test_full_disk_mid_run_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    argv = ["train", "CartPole-v1", "--steps", "4096", "--run-dir", str(run_dir), "--no-progress"]
    argv += [*TINY, "checkpoint_every=2"]
    real_fsync, calls = os.fsync, []

    def fsync_then_full(fd):  # the 3rd checkpoint write finds the disk full
        calls.append(fd)
        if len(calls) == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_then_full)
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "No space left on device" in line and f"trpo train --resume {run_dir}" in line
    assert not list(run_dir.glob(".*"))  # no temporary file left behind
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    assert iterations(run_dir) == list(range(1, 9))

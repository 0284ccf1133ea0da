"""The Ray backend gives the local backend's results: the same batches (whatever the number
of workers), the same parameters after updates, the same run after a worker is killed,
and checkpoints that resume on either backend.

One local Ray cluster serves the module (started by the first Ray collector)."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import sys
import threading
import time
from importlib.util import find_spec

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import SMALL_EVAL, CountingEnv, parameters

from trpo import TRPO, Agent
from trpo.cli import main
from trpo.config import Config, ConfigError
from trpo.distributed import BackendError, RayCollector
from trpo.envs import EnvError, env_factory
from trpo.normalization import RewardScaler
from trpo.reproducibility import seeded_generator
from trpo.rollout import SIDE_BY_SIDE

pytest.importorskip("ray")

SETTINGS = {**SMALL_EVAL, "n_envs": 4}
COMPARED_METRICS = ("steps", "episodes", "episode_return", "kl", "value_loss", "eval_return")


def assert_same_batch(a, b) -> None:
    for name in SIDE_BY_SIDE:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert sorted(a.episode_returns) == sorted(b.episode_returns)
    np.testing.assert_allclose(a.obs_stats.mean, b.obs_stats.mean, rtol=1e-12)
    np.testing.assert_allclose(a.obs_stats.var, b.obs_stats.var, rtol=1e-10)


def first_batch_and_update(env_id: str, **settings):
    agent = TRPO(env_id, seed=7, **{**SETTINGS, **settings})
    batch = agent.trainer.collector.collect(128)
    agent.close()  # its Ray actors hold the CPUs the next agent's need
    agent = TRPO(env_id, seed=7, **{**SETTINGS, **settings})
    agent.learn(512)
    agent.close()
    return batch, parameters(agent)


MINATAR = pytest.param(
    "MinAtar/Breakout-v1",  # images: the batches cross Ray as bytes
    marks=pytest.mark.skipif(find_spec("minatar") is None, reason="needs minatar"),
)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", MINATAR])
def test_two_workers_give_the_local_first_batch_and_update(env_id):
    local_batch, local_params = first_batch_and_update(env_id)
    ray_batch, ray_params = first_batch_and_update(env_id, backend="ray", ray_workers=2)
    assert ray_batch.obs.dtype == local_batch.obs.dtype
    assert_same_batch(local_batch, ray_batch)
    for a, b in zip(local_params, ray_params, strict=True):
        assert torch.equal(a, b)


def test_one_worker_with_per_step_statistics_gives_the_local_first_batch_and_update():
    """With per-step observation and return statistics each worker's statistics follow its
    own envs, so only one worker, which sees every env, matches the local run exactly."""
    per_step = {"obs_norm_update": "step", "normalize_reward": True, "reward_norm_update": "step"}
    local_batch, local_params = first_batch_and_update("Pendulum-v1", **per_step)
    ray_batch, ray_params = first_batch_and_update(
        "Pendulum-v1", **per_step, backend="ray", ray_workers=1
    )
    assert_same_batch(local_batch, ray_batch)
    for a, b in zip(local_params, ray_params, strict=True):
        assert torch.equal(a, b)


def test_uneven_split_gives_the_local_run():
    """3 workers over 4 envs (2, 1, 1), reward scaling on: six iterations, every metric
    but the timings equal."""
    runs = []
    for settings in ({}, {"backend": "ray", "ray_workers": 3}):
        agent = TRPO("CartPole-v1", seed=2, normalize_reward=True, **{**SETTINGS, **settings})
        agent.learn(6 * 512)
        agent.close()
        runs.append(agent)
    local, distributed = runs
    assert distributed.trainer.collector.sizes == [2, 1, 1]
    for a, b in zip(parameters(local), parameters(distributed), strict=True):
        assert torch.equal(a, b)
    for row_a, row_b in zip(local.metrics, distributed.metrics, strict=True):
        for key in COMPARED_METRICS:
            assert row_a[key] == row_b[key] or np.isnan(row_a[key]) and np.isnan(row_b[key])


def collector(env_id: str, workers: int, seed: int = 11) -> RayCollector:
    factory = env_factory(env_id)
    env = factory()
    config = Config(env_id=env_id, seed=seed, n_envs=4, backend="ray", ray_workers=workers)
    agent = Agent(env.observation_space, env.action_space, config)
    scaler, generator = RewardScaler.for_run(4, config), seeded_generator(seed, "rollout")
    return RayCollector(factory, agent, scaler, generator, config)


def worker_pids(rollouts: RayCollector) -> list[int]:
    return rollouts._ray.get([worker.pid.remote() for worker in rollouts.workers])


def test_killed_worker_is_restarted_and_its_share_collected_again():
    """SIGKILL one worker while it collects: Ray restarts it, it restores the env state of
    the iteration's start and collects again, and the batch is the one without the kill."""
    batches = {}
    for kill in (False, True):
        rollouts = collector("CartPole-v1", workers=2)
        rollouts.collect(64)  # the envs are mid-episode when the kill comes
        victim = worker_pids(rollouts)[0]
        if kill:
            killer = threading.Timer(0.3, os.kill, (victim, signal.SIGKILL))
            killer.start()
        started = time.perf_counter()
        batches[kill] = rollouts.collect(10_000)
        if kill:
            killer.join()
            assert time.perf_counter() - started > 0.3, "the kill came after the collection"
            assert rollouts.restarts == 1
            assert victim not in worker_pids(rollouts)
        rollouts.close()
    assert_same_batch(batches[False], batches[True])


def test_ray_checkpoint_resumes_locally_bit_for_bit(tmp_path):
    checkpoint = tmp_path / "mid.safetensors"
    whole = TRPO("Pendulum-v1", seed=5, **SETTINGS)
    whole.learn(6 * 512)
    first = TRPO("Pendulum-v1", seed=5, backend="ray", ray_workers=2, **SETTINGS)
    first.learn(3 * 512)
    first.save(checkpoint)
    first.close()
    assert first.trainer.collector.state()["envs"] is not None
    resumed = TRPO.load(checkpoint, backend="local")
    resumed.learn(6 * 512)
    for a, b in zip(parameters(whole), parameters(resumed), strict=True):
        assert torch.equal(a, b)
    whole.close(), resumed.close()


def test_bad_ray_settings_are_refused():
    with pytest.raises(ConfigError, match="ray_workers"):
        TRPO("CartPole-v1", backend="ray", n_envs=2, ray_workers=3)
    with pytest.raises(EnvError, match="env id or a zero-argument factory"):
        TRPO(CountingEnv(), backend="ray", n_envs=1, ray_workers=1)  # cannot be copied


def test_unreachable_cluster_fails_fast():
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(BackendError, match=f"cannot reach a Ray cluster at 127.0.0.1:{port}"):
        TRPO("CartPole-v1", backend="ray", ray_address=f"127.0.0.1:{port}")


def test_missing_ray_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(BackendError, match=r"pip install 'trpo\[ray\]'"):
        TRPO("CartPole-v1", backend="ray")


def test_cli_trains_on_ray_and_resumes_locally(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--no-progress", "--set", "tensorboard=false", "eval_every=1"]
    args = ["train", "CartPole-v1", "--backend", "ray", "--workers", "2", "--steps", "2048"]
    assert main([*args, "--run-dir", str(run), *common]) == 0
    assert main(["eval", str(run), "--episodes", "2"]) == 0  # in this process, without Ray
    assert main(["train", "--resume", str(run), "--steps", "3072", "--backend", "local"]) == 0
    out = capsys.readouterr().out
    assert "done: 2,048 steps" in out and "done: 3,072 steps" in out


def test_an_env_error_in_a_worker_reaches_the_learner_as_itself():
    def broken() -> gym.Env:  # fine at first (the up-front probe steps once), NaN from step 3
        steps = itertools.count()
        nan_later = lambda r: float("nan") if next(steps) >= 3 else r  # noqa: E731
        return gym.wrappers.TransformReward(gym.make("CartPole-v1"), nan_later)

    agent = TRPO(broken, backend="ray", ray_workers=2, n_envs=2, eval_every=0)
    with pytest.raises(EnvError, match="non-finite reward"):
        agent.trainer.collector.collect(8)
    agent.close()

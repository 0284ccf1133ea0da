"""The value fit beside the next rollout (config `overlap`, issue 23): the same run bit
for bit as the serial path, checkpoints taken while a batch is held for the next
iteration resume it exactly, and the metrics show how the two sides waited."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import EVAL_EACH, SMALL_EVAL, parameters

from trpo import TRPO
from trpo.config import Config, ConfigError
from trpo.overlap import overlap_on, share_cores

TIMES = {"fps", "rollout_sec", "advantage_sec", "policy_sec", "value_sec", "eval_sec", "wall_sec"}
WAITS = {"wait_for_fit_sec", "wait_for_rollout_sec"}

STATISTICS_EVERY_STEP = {
    "normalize_reward": True,
    "reward_norm_update": "step",
    "obs_norm_update": "step",
}
"""Statistics that change during a rollout: the held batch's copies must not leak into
the evaluation or a checkpoint between iterations."""


def same(a, b) -> bool:
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize(
    "env_id, settings",
    [("CartPole-v1", {}), ("Pendulum-v1", STATISTICS_EVERY_STEP), ("MinAtar/Breakout-v1", {})],
    ids=["CartPole-v1", "Pendulum-v1-step-statistics", "MinAtar-CNN"],
)
def test_overlap_gives_the_serial_run_bit_for_bit(env_id, settings):
    """Also for a CNN on bool frames, the MinAtar side by side's path (docs/results.md)."""
    if env_id.startswith("MinAtar/"):
        pytest.importorskip("minatar")
    runs = {}
    for overlap in ("off", "on"):
        model = TRPO(env_id, seed=4, overlap=overlap, **{**EVAL_EACH, **settings})
        model.learn(6 * 128)
        assert model.trainer.overlapped == (overlap == "on")
        runs[overlap] = model
    serial, overlapped = runs["off"], runs["on"]
    for a, b in zip(parameters(serial), parameters(overlapped), strict=True):
        assert torch.equal(a, b)
    tensors_a, _ = serial.trainer.state_dict()
    tensors_b, _ = overlapped.trainer.state_dict()
    assert tensors_a.keys() == tensors_b.keys()
    for key in tensors_a:  # the value optimiser's moments, the scaler, every random stream
        assert torch.equal(tensors_a[key], tensors_b[key]), key
    np.testing.assert_array_equal(
        serial.agent.normalizer.stats.var, overlapped.agent.normalizer.stats.var
    )
    for row_a, row_b in zip(serial.run.metrics, overlapped.run.metrics, strict=True):
        for column in row_a.keys() - TIMES - WAITS:  # evaluation returns included
            assert same(row_a[column], row_b[column]), column
    serial.close(), overlapped.close()


@pytest.mark.parametrize("settings", [{}, STATISTICS_EVERY_STEP], ids=["defaults", "step"])
def test_a_checkpoint_taken_while_a_batch_is_held_resumes_the_run_exactly(settings, tmp_path):
    checkpoint = tmp_path / "mid.safetensors"
    whole = TRPO("Pendulum-v1", seed=5, overlap="on", **{**SMALL_EVAL, **settings})
    held = []

    def save_at_three(stats):
        if stats.iteration == 3:
            held.append(whole.trainer._prefetched is not None)
            whole.save(checkpoint)

    whole.learn(6 * 512, callback=save_at_three)
    resumed = TRPO.load(checkpoint)
    resumed.learn(6 * 512)
    assert held == [True]  # iteration 4's batch was already collected when it was saved
    for a, b in zip(parameters(whole), parameters(resumed), strict=True):
        assert torch.equal(a, b)
    assert whole.evaluations == resumed.evaluations
    whole.close(), resumed.close()


def test_the_metrics_show_how_the_rollout_and_the_fit_waited():
    model = TRPO("CartPole-v1", seed=0, overlap="on", **EVAL_EACH)
    model.learn(5 * 128)
    rows = model.run.metrics
    overlapped, last = rows[:-1], rows[-1]
    for row in overlapped:
        waits = row["wait_for_fit_sec"], row["wait_for_rollout_sec"]
        assert min(waits) >= 0.0 and max(waits) > 0.0
        assert row["value_sec"] > 0.0
    # the last iteration has no next batch to collect: its fit runs alone, in this process
    assert (last["wait_for_fit_sec"], last["wait_for_rollout_sec"]) == (0.0, 0.0)
    model.close()


def test_auto_leaves_the_overlap_off_where_it_cannot_pay(monkeypatch):
    monkeypatch.setattr("trpo.overlap.available_cores", lambda: 2)
    assert overlap_on(Config())
    assert not overlap_on(Config(torch_threads=2))
    assert not overlap_on(Config(backend="ray"))
    assert not overlap_on(Config(overlap="off"))
    share_cores(2)  # two grid workers on two cores
    try:
        assert not overlap_on(Config())
        assert overlap_on(Config(overlap="on"))
    finally:
        share_cores(1)
    monkeypatch.setattr("trpo.overlap.available_cores", lambda: 1)
    assert not overlap_on(Config())
    monkeypatch.setattr("trpo.overlap.available_cores", lambda: 8)
    monkeypatch.setattr("sys.platform", "darwin")  # fork is not safe beside its libraries
    assert not overlap_on(Config())


def test_overlap_on_refuses_settings_its_worker_cannot_follow():
    with pytest.raises(ConfigError, match="overlap=on needs .*torch_threads=1"):
        Config(overlap="on", torch_threads=2)


def test_the_fit_worker_holds_no_copy_of_the_run_directory_lock(tmp_path):
    from trpo import rundir

    model = TRPO("CartPole-v1", seed=0, overlap="on", run_dir=tmp_path / "run", **EVAL_EACH)
    model.learn(3 * 128)  # the worker was forked while the run held its directory
    assert model.trainer._fitter is not None
    rundir.acquire(tmp_path / "run")  # free once the run ended, worker still alive
    rundir.release(tmp_path / "run")
    model.close()

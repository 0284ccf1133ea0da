"""`trpo benchmark`: envs x seeds with presets, the results table and its metrics.

End to end on CartPole-v1 and Pendulum-v1 with 2 envs x 256 steps per iteration,
4 iterations per run and an evaluation every 2 iterations on 2 episodes.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from trpo.benchmark import evaluation_curves
from trpo.cli import main

NAN = math.nan
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["n_envs=2", "steps_per_iter=512", "eval_every=2", "eval_episodes=2", "tensorboard=false"]


def test_evaluation_curves_align_runs_by_step():
    run_a = [{"steps": s, "eval_return": r} for s, r in [(1, NAN), (2, 10.0), (3, NAN), (4, 30.0)]]
    run_b = [{"steps": s, "eval_return": r} for s, r in [(2, 20.0), (4, NAN), (6, 50.0)]]
    steps, returns = evaluation_curves([run_a, run_b])
    np.testing.assert_array_equal(steps, [2, 4, 6])
    np.testing.assert_array_equal(returns, [[10, 30, NAN], [20, NAN, 50]])


def test_benchmark_applies_presets_and_writes_results(tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["benchmark", "CartPole-v1,Pendulum-v1", "--seeds", "2", "--steps", "2048"]
    argv += ["--workers", "1", "--out", str(out), "--set", *TINY]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| CartPole-v1 | 2,048 | 2 |" in printed and "| Pendulum-v1 | 2,048 | 2 |" in printed

    pendulum = json.loads((out / "Pendulum-v1-s1" / "config.json").read_text())
    assert pendulum["gamma"] == 0.95  # its preset
    assert (pendulum["n_envs"], pendulum["seed"]) == (2, 1)  # --set and the seed range
    results = {r["env_id"]: r for r in json.loads((out / "results.json").read_text())}
    for result in results.values():
        assert result["seeds"] == [0, 1]
        assert result["score_mean"] == pytest.approx(np.mean(result["scores"]))
        assert result["max_of_mean"] >= min(result["scores"]) - 1e-9
    for env_id in ("CartPole-v1", "Pendulum-v1"):
        assert (out / f"{env_id}.png").read_bytes().startswith(PNG_MAGIC)
    assert "trpo benchmark CartPole-v1,Pendulum-v1" in (out / "results.md").read_text()

    assert main(argv) == 0
    assert "4 of 4 runs already finished: skipped" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("envs", "message"),
    [
        ("CartPole-v1,CartPole-v1", "distinct comma-separated env ids"),
        ("CartPole-v1,Nope-v0", "unknown environment id 'Nope-v0'"),
        (",", "distinct comma-separated env ids"),
    ],
)
def test_benchmark_bad_input_is_one_clean_error(tmp_path, capsys, envs, message):
    out = tmp_path / "bench"
    assert main(["benchmark", envs, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("trpo: error: ") and message in err and "\n" not in err
    assert not out.exists()

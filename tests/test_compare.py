"""`trpo compare`: the VPG/NPG/TRPO grid and its summary figures (the resumable runner:
test_grid.py).

The summary statistics are checked on hand-made metrics; the command runs end to end on
CartPole-v1 with 2 envs x 256 steps per iteration and 4 iterations per run.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import SMALL_EVAL, set_pairs

from trpo.cli import main
from trpo.compare import filled_returns, largest_drop, summarize
from trpo.metrics import run_score

NAN = math.nan
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# 4 iterations of 512 transitions with an evaluation at iterations 2 and 4.
TINY = set_pairs(SMALL_EVAL)


def rows(returns, kls, evals=None, backtracks=None, accepted=None):
    n = len(returns)
    evals = evals or [NAN] * n
    backtracks = backtracks or [0] * n
    accepted = accepted or [1] * n
    return [
        {
            "steps": 100.0 * (i + 1),
            "episode_return": returns[i],
            "kl": kls[i],
            "eval_return": evals[i],
            "backtracks": float(backtracks[i]),
            "accepted": float(accepted[i]),
        }
        for i in range(n)
    ]


def test_filled_returns_carry_the_last_episode_forward():
    filled = filled_returns(rows([NAN, 10, NAN, NAN, 30], [0.0] * 5))
    np.testing.assert_array_equal(filled, [NAN, 10, 10, 10, 30])


def test_largest_drop_is_the_biggest_fall_between_consecutive_iterations():
    assert largest_drop(np.array([NAN, 10, 50, 20, 40, 35])) == 30
    assert largest_drop(np.array([1.0, 2.0, 3.0])) == 0  # never falls
    assert largest_drop(np.array([NAN])) == 0


def test_score_is_the_mean_of_the_last_five_evaluations():
    evals = [NAN, 1, NAN, 2, 3, 4, 5, 6, NAN]
    assert run_score(rows([0.0] * 9, [0.0] * 9, evals=evals)) == pytest.approx(4.0)
    assert math.isnan(run_score(rows([0.0], [0.0])))


def test_summary_counts_kl_violations_and_shortened_searches():
    delta = 0.01
    run_a = rows([10, 5, 20, 20], [0.005, 0.02, 0.01, 0.0], evals=[NAN, 100, NAN, 200])
    run_b = rows(
        [10, 12, 2, 30],
        [0.009, 0.011, 0.003, 0.0],
        evals=[NAN, 300, NAN, 400],
        backtracks=[0, 2, 0, 0],
        accepted=[1, 1, 1, 0],
    )
    trpo = summarize("trpo", [run_a, run_b], delta)
    assert trpo.runs == 2
    assert trpo.final_return == pytest.approx(np.mean([150, 350]))
    assert trpo.final_return_std == pytest.approx(100)
    assert trpo.largest_drop == pytest.approx(np.mean([5, 10]))
    assert trpo.kl_over_bound == pytest.approx(2 / 8)  # 0.02 and 0.011; 0.01 is within δ
    assert trpo.backtracked_or_rejected == pytest.approx(2 / 8)
    assert math.isnan(summarize("npg", [run_a], delta).backtracked_or_rejected)


def test_compare_runs_the_grid_and_writes_figures_and_table(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "CartPole-v1", "--seeds", "2", "--steps", "2048", "--workers", "1"]
    argv += ["--out", str(out), "--set", *TINY]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for algo in ("vpg", "npg", "trpo"):
        assert f"| {algo} | 2 |" in printed
        for seed in (0, 1):
            config = json.loads((out / f"{algo}-s{seed}" / "config.json").read_text())
            assert (config["algo"], config["seed"], config["n_envs"]) == (algo, seed, 2)
    for figure in ("returns.png", "kl.png"):
        assert (out / figure).read_bytes().startswith(PNG_MAGIC)
    summary = json.loads((out / "summary.json").read_text())
    assert [s["algo"] for s in summary] == ["vpg", "npg", "trpo"]
    trpo = summary[2]
    assert trpo["kl_over_bound"] == 0  # the line search keeps every accepted step within δ
    assert all(math.isfinite(s["final_return"]) for s in summary)
    assert "trpo compare CartPole-v1" in (out / "summary.md").read_text()

    # Rerunning finds every run finished and only rewrites the report.
    assert main(argv) == 0
    assert "6 of 6 runs already finished: skipped" in capsys.readouterr().out


def test_compare_refuses_to_mix_runs_of_other_settings(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "CartPole-v1", "--algos", "trpo", "--seeds", "1", "--steps", "1024"]
    argv += ["--workers", "1", "--out", str(out), "--set", *TINY]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "max_kl=0.02"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "max_kl=0.01 (now 0.02)" in err and "--overwrite" in err
    assert main([*argv, "max_kl=0.02", "--overwrite"]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algos", "trpo,ppo"], "--algos takes distinct names from vpg,npg,kl_penalty,trpo"),
        (["--algos", "trpo,trpo"], "--algos takes distinct names"),
        (["--seeds", "0"], "--seeds and --workers must be positive"),
        (["--set", "max_kl=-1"], "max_kl"),
    ],
)
def test_compare_bad_input_is_one_clean_error(tmp_path, capsys, args, message):
    out = tmp_path / "cmp"
    assert main(["compare", "CartPole-v1", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("trpo: error: ") and message in err and "\n" not in err
    assert not out.exists()


def test_unknown_env_is_refused_before_any_run(tmp_path, capsys):
    assert main(["compare", "CartPoel-v1", "--out", str(tmp_path / "cmp")]) == 2
    assert "CartPoel-v1" in capsys.readouterr().err
    assert not (tmp_path / "cmp").exists()

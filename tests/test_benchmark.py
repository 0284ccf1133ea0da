"""`trpo benchmark`: envs x seeds with presets, the results table and its metrics.

End to end on CartPole-v1 and Pendulum-v1 with 2 envs x 256 steps per iteration,
4 iterations per run and an evaluation every 2 iterations on 2 episodes; the normalised
aggregate across envs on hand-made scores and fake metrics (no training).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import SMALL_EVAL, set_pairs

from trpo.benchmark import PROFILE_FILE, aggregate_scores, evaluation_curves, write_results
from trpo.cli import main
from trpo.config import Config
from trpo.grid import Cell
from trpo.logger import METRICS_FILE
from trpo.reference_scores import anchors

NAN = math.nan
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = set_pairs(SMALL_EVAL)


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
    written = json.loads((out / "results.json").read_text())
    assert written["aggregate"] is None  # neither env has a reference score
    assert not (out / PROFILE_FILE).exists()
    results = {r["env_id"]: r for r in written["envs"]}
    for result in results.values():
        assert result["seeds"] == [0, 1]
        assert result["score_mean"] == pytest.approx(np.mean(result["scores"]))
        assert result["max_of_mean"] >= min(result["scores"]) - 1e-9
    for env_id in ("CartPole-v1", "Pendulum-v1"):
        assert (out / f"{env_id}.png").read_bytes().startswith(PNG_MAGIC)
    assert "trpo benchmark CartPole-v1,Pendulum-v1" in (out / "results.md").read_text()
    assert "IQM" not in (out / "results.md").read_text()

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


def raw(env_id: str, normalized: float) -> float:
    """The raw score of ``env_id`` that normalises to ``normalized``."""
    scores = anchors(env_id)
    return scores.random + normalized * (scores.reference - scores.random)


def test_aggregate_scores_normalises_and_pools_runs_of_envs_with_both_scores(monkeypatch):
    from dataclasses import replace

    from trpo import reference_scores

    walker = reference_scores.ANCHORS["Walker2d-v5"]
    three_seeds = replace(walker, reference_seeds=(0, 1, 2))  # a grid still running
    monkeypatch.setitem(reference_scores.ANCHORS, "Walker2d-v5", three_seeds)
    scores = {
        "Hopper-v5": [raw("Hopper-v5", x) for x in (0.0, 0.5, 1.0)],
        "CartPole-v1": [200.0, 100.0, 300.0],  # a random score but no reference
        "Walker2d-v5": [raw("Walker2d-v5", x) for x in (2.0, 0.25, 0.75)],
        "Nope-v0": [1.0, 2.0, 3.0],
    }
    aggregate = aggregate_scores(scores, np.random.default_rng(0), reps=500, profile_reps=100)
    assert aggregate.env_ids == ["Hopper-v5", "Walker2d-v5"] and aggregate.runs == [3, 3]
    assert aggregate.left_out == ["CartPole-v1", "Nope-v0"]
    assert aggregate.provisional == ["Walker2d-v5"]
    np.testing.assert_allclose(aggregate.normalized, [[0, 2], [0.5, 0.25], [1, 0.75]], atol=1e-9)
    # 6 values, int(1.5) = 1 trimmed from each end: mean of 0.25, 0.5, 0.75, 1.
    assert aggregate.iqm == pytest.approx(0.625)
    assert aggregate.mean == pytest.approx((0.5 + 1.0) / 2)
    assert aggregate.iqm_ci[0] <= aggregate.iqm <= aggregate.iqm_ci[1]
    assert aggregate.mean_ci[0] <= aggregate.mean <= aggregate.mean_ci[1]
    taus = np.array(aggregate.taus)
    assert (taus[0], taus[-1]) == (0.0, 2.0)  # from 0 to the highest score
    at_1 = int(np.argmin(np.abs(taus - 1.0)))
    assert aggregate.profile[at_1] == pytest.approx(1 / 6)  # only the 2.0 lies above 1
    assert np.all(np.array(aggregate.profile_ci[0]) <= aggregate.profile)
    assert np.all(np.array(aggregate.profile_ci[1]) >= aggregate.profile)


def test_aggregate_scores_keeps_each_envs_run_count():
    scores = {
        "Hopper-v5": [raw("Hopper-v5", x) for x in (0.2, 0.4, 0.9)],
        "Ant-v5": [raw("Ant-v5", 1.0)],
    }
    aggregate = aggregate_scores(scores, np.random.default_rng(0), reps=200, profile_reps=50)
    assert aggregate.runs == [3, 1]
    np.testing.assert_allclose(aggregate.normalized, [[0.2, 1], [0.4, NAN], [0.9, NAN]])
    assert aggregate.mean == pytest.approx((0.5 + 1.0) / 2)  # each env weighs the same
    assert aggregate.iqm == pytest.approx(0.65)  # 4 values, 1 trimmed each end: 0.4, 0.9


@pytest.mark.parametrize(
    "scores",
    [
        {"Hopper-v5": [3000.0], "CartPole-v1": [500.0]},  # one env with a reference
        {"Hopper-v5": [NAN, NAN], "Walker2d-v5": [4000.0]},  # one with a scored run
    ],
)
def test_aggregate_scores_needs_two_envs(scores):
    assert aggregate_scores(scores, np.random.default_rng(0)) is None


def fake_cells(root, scores: dict[str, list[float]]) -> list[Cell]:
    """One finished-looking run per score: metrics with 5 evaluations of that return."""
    cells = []
    for env_id, env_scores in scores.items():
        for seed, score in enumerate(env_scores):
            run_dir = root / f"{env_id}-s{seed}"
            run_dir.mkdir(parents=True)
            rows = "".join(f"{1000 * i},{score}\n" for i in range(1, 6))
            (run_dir / METRICS_FILE).write_text(f"steps,eval_return\n{rows}")
            cells.append(Cell(Config(env_id=env_id, seed=seed), run_dir))
    return cells


def test_write_results_adds_the_aggregate_and_its_profile(tmp_path):
    scores = {
        "Hopper-v5": [raw("Hopper-v5", x) for x in (0.8, 1.1)],
        "Swimmer-v5": [raw("Swimmer-v5", x) for x in (0.5, 1.4)],
        "Pendulum-v1": [-200.0, -180.0],  # a random score but no reference
    }
    results = write_results(tmp_path, fake_cells(tmp_path, scores), "trpo benchmark fake")
    assert [r.env_id for r in results] == list(scores)
    written = json.loads((tmp_path / "results.json").read_text())
    assert [r["env_id"] for r in written["envs"]] == list(scores)
    assert written["envs"][0]["scores"] == pytest.approx(scores["Hopper-v5"])
    aggregate = written["aggregate"]
    assert aggregate["env_ids"] == ["Hopper-v5", "Swimmer-v5"]
    assert aggregate["iqm"] == pytest.approx(0.95)  # 0.5, 0.8, 1.1, 1.4 less one each end
    assert aggregate["mean"] == pytest.approx(0.95)
    assert (tmp_path / PROFILE_FILE).read_bytes().startswith(PNG_MAGIC)
    markdown = (tmp_path / "results.md").read_text()
    assert "| Hopper-v5 | 5,000 | 2 |" in markdown  # the per-env table as before
    assert (
        f"| IQM | 0.95 | {aggregate['iqm_ci'][0]:.2f} to {aggregate['iqm_ci'][1]:.2f} |" in markdown
    )
    assert "Left out (no reference score): Pendulum-v1." in markdown
    assert f"![performance profile]({PROFILE_FILE})" in markdown
    assert markdown.rstrip().endswith("Command: `trpo benchmark fake`")


def test_namespaced_env_ids_give_flat_run_directories(tmp_path):
    from trpo.benchmark import benchmark_cells
    from trpo.config import Config

    cells = benchmark_cells([Config(env_id="ALE/Pong-v5")], [0, 1], tmp_path)
    assert [cell.run_dir.name for cell in cells] == ["ALE-Pong-v5-s0", "ALE-Pong-v5-s1"]
    assert all(cell.run_dir.parent == tmp_path for cell in cells)


def test_report_only_reports_the_finished_runs_on_disk_and_trains_nothing(tmp_path, capsys):
    out = tmp_path / "grid"
    fake_cells(out, {"Hopper-v5": [3000.0, 3500.0], "Swimmer-v5": [300.0]})
    unfinished = out / "Swimmer-v5-s1"
    unfinished.mkdir()
    (unfinished / METRICS_FILE).write_text("steps,eval_return\n1000,50\n2000,60\n")
    argv = ["benchmark", "Hopper-v5,Swimmer-v5", "--seeds", "2", "--steps", "5000"]
    argv += ["--out", str(out), "--report-only"]
    assert main(argv) == 0
    assert "left out, not finished or not run: Swimmer-v5-s1" in capsys.readouterr().out
    written = json.loads((out / "results.json").read_text())
    assert {r["env_id"]: r["scores"] for r in written["envs"]} == {
        "Hopper-v5": [3000.0, 3500.0],
        "Swimmer-v5": [300.0],
    }
    assert sorted(p.name for p in unfinished.iterdir()) == [METRICS_FILE]  # nothing trained
    assert "--report-only" in (out / "results.md").read_text()


def test_report_only_refuses_runs_made_with_other_settings(tmp_path, capsys):
    out = tmp_path / "grid"
    (cell,) = fake_cells(out, {"Hopper-v5": [3000.0]})
    other = Config(env_id="Hopper-v5", max_kl=0.5, total_steps=5000)
    (cell.run_dir / "config.json").write_text(json.dumps(other.to_dict()))
    argv = ["benchmark", "Hopper-v5", "--seeds", "1", "--steps", "5000", "--out", str(out)]
    assert main([*argv, "--report-only"]) == 2
    err = capsys.readouterr().err
    assert "ran with other settings" in err and "max_kl" in err
    assert not (out / "results.json").exists()


def test_report_only_with_nothing_finished_is_one_clean_error(tmp_path, capsys):
    argv = ["benchmark", "Hopper-v5", "--seeds", "1", "--out", str(tmp_path), "--report-only"]
    assert main(argv) == 2
    assert "no finished runs in" in capsys.readouterr().err


def test_eval_every_steps_evaluates_each_env_at_the_same_steps(tmp_path, capsys):
    out = tmp_path / "grid"
    fake_cells(out, {"Hopper-v5": [3000.0], "HalfCheetah-v5": [2000.0]})
    argv = ["benchmark", "Hopper-v5,HalfCheetah-v5", "--seeds", "1", "--steps", "5000"]
    argv += ["--out", str(out), "--eval-every-steps", "10240", "--report-only"]
    for env_id, eval_every in (("Hopper-v5", 5), ("HalfCheetah-v5", 10)):  # 2048, 1024 a batch
        config = Config.from_dict(
            {**resolve_args_for(env_id).to_dict(), "eval_every": eval_every, "total_steps": 5000}
        )
        (out / f"{env_id}-s0" / "config.json").write_text(json.dumps(config.to_dict()))
    assert main(argv) == 0, capsys.readouterr().err
    assert main([*argv[:-3], "--eval-every-steps", "3000", "--report-only"]) == 2
    assert "not a positive multiple of Hopper-v5's steps_per_iter (2048)" in capsys.readouterr().err


def resolve_args_for(env_id: str) -> Config:
    """The settings `trpo benchmark ENV_ID` gives a run: the defaults and its preset."""
    from trpo.presets import preset_for

    return Config.from_dict({**Config(env_id=env_id).to_dict(), **preset_for(env_id)})


def test_a_command_for_one_run_reports_the_whole_directory(tmp_path, capsys):
    """A grid filled one env and seed at a time keeps a report of all its finished runs;
    runs of the command's env with other settings, and unloadable ones, are named and left
    out."""
    out = tmp_path / "grid"
    fake_cells(
        out,
        {"Swimmer-v5": [310.0, 300.0, 999.0], "Hopper-v5": [3000.0, 3500.0], "Ant-v5": [2000.0]},
    )
    for env_id, seed in (("Swimmer-v5", 0), ("Swimmer-v5", 1), ("Hopper-v5", 0), ("Hopper-v5", 1)):
        config = resolve_args_for(env_id).replace(seed=seed, total_steps=5000)
        (out / f"{env_id}-s{seed}" / "config.json").write_text(json.dumps(config.to_dict()))
    (out / "Swimmer-v5-s1" / "final.safetensors").touch()  # the command's own run, finished
    other = resolve_args_for("Swimmer-v5").replace(seed=2, total_steps=5000, max_kl=0.5)
    (out / "Swimmer-v5-s2" / "config.json").write_text(json.dumps(other.to_dict()))
    (out / "Ant-v5-s0" / "config.json").write_text("{not json")
    unfinished = resolve_args_for("Hopper-v5").replace(seed=7, total_steps=9000)
    (out / "Hopper-v5-s7").mkdir()
    (out / "Hopper-v5-s7" / "config.json").write_text(json.dumps(unfinished.to_dict()))

    argv = ["benchmark", "Swimmer-v5", "--seed", "1", "--seeds", "1", "--steps", "5000"]
    assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "1 of 1 runs already finished: skipped" in printed
    assert "finished earlier" in printed and "Hopper-v5-s0, Hopper-v5-s1, Swimmer-v5-s0" in printed
    assert "left out of the report (their env ran with other settings" in printed
    assert "Swimmer-v5-s2" in printed and "config.json does not load): Ant-v5-s0" in printed
    written = json.loads((out / "results.json").read_text())
    assert {r["env_id"]: (r["seeds"], r["scores"]) for r in written["envs"]} == {
        "Swimmer-v5": ([0, 1], [310.0, 300.0]),
        "Hopper-v5": ([0, 1], [3000.0, 3500.0]),
    }
    markdown = (out / "results.md").read_text()
    assert "Command: `trpo benchmark Swimmer-v5 --seed 1" in markdown
    assert "in its config.json): Hopper-v5-s0, Hopper-v5-s1, Swimmer-v5-s0." in markdown

"""benchmarks/sb3_aggregate.py's side-by-side table, on hand-made runs of both libraries."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import sb3_aggregate  # noqa: E402

from trpo.logger import METRICS_FILE  # noqa: E402


def write_curve(path: Path, returns: list[float], every: int = 1000) -> None:
    rows = "".join(f"{every * (i + 1)},{r}\n" for i, r in enumerate(returns))
    path.write_text(f"steps,eval_return\n{rows}")


def test_first_reaching_finds_the_first_evaluation_at_the_threshold():
    rows = [{"steps": 1.0, "eval_return": float("nan")}, {"steps": 2.0, "eval_return": 2500.0}]
    assert sb3_aggregate.first_reaching(rows, 2500.0) == 2
    assert sb3_aggregate.first_reaching(rows, 2500.5) is None


def test_side_by_side_lists_the_seeds_both_libraries_finished(tmp_path):
    sb3, trpo = tmp_path / "sb3", tmp_path / "trpo"
    sb3.mkdir()
    write_curve(sb3 / "Hopper-v5-s0.csv", [100, 2600, 2400, 3000, 3000, 3000])
    write_curve(sb3 / "Hopper-v5-s1.csv", [100] * 6)  # trpo's seed 1 is unfinished
    write_curve(sb3 / "Hopper-v5-s2.partial.csv", [100] * 3)
    for seed, returns in ((0, [2500, 100, 100, 100, 100, 100]), (1, [100, 100])):
        (trpo / f"Hopper-v5-s{seed}").mkdir(parents=True)
        write_curve(trpo / f"Hopper-v5-s{seed}" / METRICS_FILE, returns)
    table = sb3_aggregate.side_by_side(sb3_aggregate.finished_pairs(sb3, trpo)).splitlines()
    assert len(table) == 3  # the header, its rule and seed 0
    assert table[2] == "| Hopper-v5 | 0 | 100.0 | 2800.0 | ≥ 2500: 1,000 / 2,000 |"


def test_per_env_intervals_says_which_library_is_better_only_when_apart():
    trpo = {"A-v0": [10.0, 11.0, 12.0], "B-v0": [1.0, 5.0, 9.0], "C-v0": [1.0, 2.0], "D-v0": [0.0]}
    sb3 = {"A-v0": [1.0, 2.0, 3.0], "B-v0": [4.0, 5.0, 6.0], "C-v0": [7.0, 8.0, 9.0]}
    table = sb3_aggregate.per_env_intervals(trpo, sb3, np.random.default_rng(0))
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()[2:]}
    assert list(rows) == ["A-v0", "B-v0", "C-v0"]  # D-v0: trpo only
    assert rows["A-v0"].endswith("| trpo better, apart |")
    assert "| 11.0 (10.0 to 12.0) | 2.0 (1.0 to 3.0) |" in rows["A-v0"]
    assert rows["B-v0"].endswith("| overlap |")
    assert rows["C-v0"].endswith("| **sb3-contrib better, apart** |")
    assert "| 2 / 3 |" in rows["C-v0"]


def test_learning_speed_medians_count_a_run_that_never_reaches_the_threshold_as_last(tmp_path):
    sb3, trpo = tmp_path / "sb3", tmp_path / "trpo"
    sb3.mkdir()
    sb3_curves = [[100, 2600, 3000], [2600, 3000, 3000], [100, 100, 100]]  # 2k, 1k, never
    trpo_curves = [[2500, 100, 100], [100, 100, 2500], [100, 2500, 100]]  # 1k, 3k, 2k
    for seed, (sb3_returns, trpo_returns) in enumerate(zip(sb3_curves, trpo_curves)):
        write_curve(sb3 / f"Hopper-v5-s{seed}.csv", sb3_returns)
        (trpo / f"Hopper-v5-s{seed}").mkdir(parents=True)
        write_curve(trpo / f"Hopper-v5-s{seed}" / METRICS_FILE, trpo_returns)
    write_curve(sb3 / "Swimmer-v5-s0.csv", [1, 2, 3])  # no threshold: not listed
    (trpo / "Swimmer-v5-s0").mkdir()
    write_curve(trpo / "Swimmer-v5-s0" / METRICS_FILE, [1, 2, 3])
    assert sb3_aggregate.learning_speed_medians(sb3_aggregate.finished_pairs(sb3, trpo)) == (
        "Hopper-v5, median first evaluation ≥ 2500 over 3 seeds: trpo 2,000, sb3-contrib 2,000"
    )
    write_curve(sb3 / "Hopper-v5-s3.csv", [100, 100, 100])
    (trpo / "Hopper-v5-s3").mkdir()
    write_curve(trpo / "Hopper-v5-s3" / METRICS_FILE, [100, 100, 100])
    write_curve(sb3 / "Hopper-v5-s4.csv", [100, 100, 100])
    (trpo / "Hopper-v5-s4").mkdir()
    write_curve(trpo / "Hopper-v5-s4" / METRICS_FILE, [2500, 100, 100])
    assert sb3_aggregate.learning_speed_medians(sb3_aggregate.finished_pairs(sb3, trpo)).endswith(
        "over 5 seeds: trpo 2,000, sb3-contrib never"
    )

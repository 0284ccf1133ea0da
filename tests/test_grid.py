"""The resumable grid runner behind `trpo compare` and `trpo benchmark` (trpo.grid):
parallel cells give the serial runs, an interrupted cell continues exactly.

CartPole-v1 with 2 envs x 256 steps per iteration, no evaluation.
"""

from __future__ import annotations

import pytest
import torch
from conftest import SMALL

from trpo.checkpoint import load_checkpoint
from trpo.config import Config
from trpo.grid import Cell, run_grid


def test_parallel_grid_matches_serial_runs(tmp_path):
    # Two worker processes must produce the same runs as training in this process.
    config = Config(env_id="CartPole-v1", total_steps=1024, **_settings())
    cells = [Cell(config.replace(seed=s), tmp_path / "par" / f"s{s}") for s in (0, 1)]
    serial = [Cell(c.config, tmp_path / "ser" / c.run_dir.name) for c in cells]
    assert run_grid(cells, workers=2, report=lambda _: None) == cells
    run_grid(serial, workers=1, report=lambda _: None)
    for a, b in zip(cells, serial):
        assert (a.run_dir / "metrics.csv").read_text().split("\n")[1].split(",")[:9] == (
            (b.run_dir / "metrics.csv").read_text().split("\n")[1].split(",")[:9]
        )
        assert same_tensors(a.run_dir / "final.safetensors", b.run_dir / "final.safetensors")


def same_tensors(path_a, path_b) -> bool:
    """Same weights, optimiser, normaliser and RNG states (the metadata also holds timings)."""
    a, b = load_checkpoint(path_a).tensors, load_checkpoint(path_b).tensors
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _settings():
    return {**SMALL, "tensorboard": False}


def test_grid_continues_an_interrupted_cell_exactly(tmp_path):
    # A cell whose process died after its checkpoint at iteration 2 (of 4) is continued
    # from it, and ends with the same weights as a cell never interrupted.
    from trpo import TRPO

    config = Config(env_id="CartPole-v1", total_steps=2048, checkpoint_every=2, **_settings())
    crashed, whole = Cell(config, tmp_path / "crashed"), Cell(config, tmp_path / "whole")
    agent = TRPO(config=config, run_dir=crashed.run_dir)

    def crash_at_three(stats):
        if stats.iteration == 3:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        agent.learn(callback=crash_at_three)
    agent.close()
    assert not crashed.finished

    run_grid([crashed, whole], workers=1, report=lambda _: None)
    assert same_tensors(crashed.run_dir / "final.safetensors", whole.run_dir / "final.safetensors")

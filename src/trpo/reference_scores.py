"""The two scores each env's results are normalised by (`trpo.aggregate.normalize_scores`):
0 = a uniformly random policy, 1 = sb3-contrib's TRPO with rl-zoo's settings on the same
env version, scored the way `trpo benchmark` scores a run. An env without a reference is
left out of the cross-env aggregate.

The references come from the reporting grid's sb3-contrib runs (`benchmarks/mujoco_report.sh
sb3`: benchmarks/sb3_reference.py, which evaluates after each update as trpo does, from the
same reset seeds), seeds 0-4 at 1M steps. They stay provisional until an env has all five
seeds: update the figures below (with their per-seed scores) as the grid's seeds land.
"""

from __future__ import annotations

from dataclasses import dataclass

RANDOM_SOURCE = (
    "benchmarks/random_scores.py: uniform random actions, 100 episodes from reset seeds "
    "1_000_000 + i, mean raw return; gymnasium 1.4.0, mujoco 4.0.0, Box2D 2.3.10 (2026-11-29)"
)
GRID_SOURCE = (
    "sb3-contrib 2.9.2 TRPO, rl-zoo settings, the reporting grid (benchmarks/results/"
    "mujoco-1m-sb3, gymnasium 1.4.0, mujoco 4.0.1), 1M steps, mean of the seeds' scores"
)
GRID_SEEDS = 5
"""Seeds per env of the reporting grid: a reference with fewer is provisional."""


@dataclass(frozen=True)
class ScoreAnchors:
    random: float
    """Mean raw return of a uniformly random policy (`RANDOM_SOURCE`)."""
    reference: float | None = None
    """sb3-contrib's score on the same env version, or None where none was measured."""
    reference_seeds: tuple[int, ...] = ()
    reference_source: str = ""

    @property
    def provisional(self) -> bool:
        """The reference has fewer than the grid's seeds so far (module docstring)."""
        return self.reference is not None and len(self.reference_seeds) < GRID_SEEDS


ANCHORS: dict[str, ScoreAnchors] = {
    "Hopper-v5": ScoreAnchors(
        16.95, 2465.1, (0, 1, 2, 3, 4), f"{GRID_SOURCE}: 2829.6, 1365.1, 3613.1, 1538.6, 2979.2"
    ),
    "Walker2d-v5": ScoreAnchors(
        1.90, 4611.5, (0, 1, 2, 3, 4), f"{GRID_SOURCE}: 4345.4, 4797.6, 3941.4, 5518.9, 4454.1"
    ),
    "HalfCheetah-v5": ScoreAnchors(
        -300.27, 2467.5, (0, 1, 2, 3, 4), f"{GRID_SOURCE}: 2006.7, 1745.5, 3476.8, 1542.8, 3566.0"
    ),
    "Ant-v5": ScoreAnchors(
        -56.41, 721.2, (0, 1, 2, 3, 4), f"{GRID_SOURCE}: 902.9, 1023.9, 491.9, 974.0, 213.1"
    ),
    "Swimmer-v5": ScoreAnchors(
        -1.78, 275.8, (0, 1, 2, 3, 4), f"{GRID_SOURCE}: 360.4, 362.3, 153.7, 357.9, 144.6"
    ),
    "Humanoid-v5": ScoreAnchors(
        114.26, 980.7, (0, 1, 2, 3, 4), f"{GRID_SOURCE}: 837.8, 700.0, 739.1, 773.7, 1852.8"
    ),
    "Reacher-v5": ScoreAnchors(
        -43.08, -3.7, (0, 1, 2, 3, 4), f"{GRID_SOURCE}: -3.4, -3.8, -3.5, -3.8, -3.9"
    ),
    "InvertedPendulum-v5": ScoreAnchors(
        5.04, 702.1, (0, 1, 2, 3, 4), f"{GRID_SOURCE}: 1000.0, 502.8, 27.0, 980.5, 1000.0"
    ),
    "InvertedDoublePendulum-v5": ScoreAnchors(
        50.08, 5900.9, (0, 1, 2, 3, 4), f"{GRID_SOURCE}: 8458.2, 2540.4, 4010.0, 5139.5, 9356.6"
    ),
    "CartPole-v1": ScoreAnchors(22.99),
    "Pendulum-v1": ScoreAnchors(-1238.71),
    "Acrobot-v1": ScoreAnchors(-498.74),
    "MountainCarContinuous-v0": ScoreAnchors(-32.29),
    "LunarLander-v3": ScoreAnchors(-172.60),
    "BipedalWalker-v3": ScoreAnchors(-100.13),
}
"""Per env id. Random scores: 100 episodes each (std over episodes in docs/results.md)."""


def anchors(env_id: str) -> ScoreAnchors | None:
    """The env's random and reference scores if it has both, else None."""
    found = ANCHORS.get(env_id)
    return found if found is not None and found.reference is not None else None

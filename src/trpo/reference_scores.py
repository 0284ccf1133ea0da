"""The two scores each env's results are normalised by (`trpo.aggregate.normalize_scores`):
0 = a uniformly random policy, 1 = sb3-contrib's TRPO with rl-zoo's settings on the same
env version, scored the way `trpo benchmark` scores a run (docs/results.md, third and
fourth passes). An env without a reference is left out of the cross-env aggregate.

The references are provisional: the harness that measured them (benchmarks/sb3_reference.py
as of 2026-11-26) evaluates one update early, and sb3-contrib's trust region differs from
trpo's. Remeasure them with the fixed harness and replace the figures below (with their
per-seed scores), then set ``provisional=False``.
"""

from __future__ import annotations

from dataclasses import dataclass

RANDOM_SOURCE = (
    "benchmarks/random_scores.py: uniform random actions, 100 episodes from reset seeds "
    "1_000_000 + i, mean raw return; gymnasium 1.4.0, mujoco 4.0.0, Box2D 2.3.10 (2026-11-29)"
)
SB3_SOURCE = (
    "sb3-contrib 2.9.2 TRPO, rl-zoo settings, benchmarks/sb3_reference.py, 1M steps, "
    "mean of the seeds' scores (docs/results.md)"
)


@dataclass(frozen=True)
class ScoreAnchors:
    random: float
    """Mean raw return of a uniformly random policy (`RANDOM_SOURCE`)."""
    reference: float | None = None
    """sb3-contrib's score on the same env version, or None where none was measured."""
    reference_seeds: tuple[int, ...] = ()
    reference_source: str = ""
    provisional: bool = True
    """The reference awaits remeasuring with the fixed harness (see the module docstring)."""


ANCHORS: dict[str, ScoreAnchors] = {
    "Hopper-v5": ScoreAnchors(
        16.95, 2841.0, (0, 1, 2, 3, 4), f"{SB3_SOURCE}, fourth pass: 1338, 3552, 3633, 2156, 3526"
    ),
    "Walker2d-v5": ScoreAnchors(
        1.90, 4608.0, (0, 1, 2, 3, 4), f"{SB3_SOURCE}, fourth pass: 4729, 4450, 4462, 4384, 5012"
    ),
    "HalfCheetah-v5": ScoreAnchors(
        -300.27, 3430.0, (0, 1, 2, 3, 4), f"{SB3_SOURCE}, fourth pass: 2959, 5284, 3431, 3934, 1540"
    ),
    "Ant-v5": ScoreAnchors(-56.41, 273.0, (0,), f"{SB3_SOURCE}, third pass: seed 0 only"),
    "Swimmer-v5": ScoreAnchors(-1.78, 252.0, (0, 1), f"{SB3_SOURCE}, third pass: 144, 360"),
    "Humanoid-v5": ScoreAnchors(114.26),
    "Reacher-v5": ScoreAnchors(-43.08),
    "InvertedPendulum-v5": ScoreAnchors(5.04),
    "InvertedDoublePendulum-v5": ScoreAnchors(50.08),
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

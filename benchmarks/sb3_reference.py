"""sb3-contrib's TRPO with rl-zoo's tuned MuJoCo settings on today's env versions.

    python benchmarks/sb3_reference.py Hopper-v5                 # seeds 0-2, 1M steps
    python benchmarks/sb3_reference.py Walker2d-v5 --seeds 0 1 --steps 200000

The published sb3-contrib and rl-zoo figures in docs/results.md were measured on v3/v4
envs. This trains the same library with the same settings (rl-zoo's `trpo.yml`) on the env
id given, evaluates it the way `trpo benchmark` evaluates its runs (10 deterministic
episodes every 10,240 steps, after the update on the batch that reached them, from reset
seeds seed + EVAL_SEED_OFFSET + i, frozen observation statistics, raw returns), and scores
it the same way: the mean of the last 5 evaluations, and the best across-seed mean during
training.

rl-zoo's target_kl and cg_damping bound and damp sb3's KL, a mean over the action's A
coordinates: in trpo's terms they are `kl_scale=per_dim` (the default) with max_kl =
target_kl and damping = cg_damping (or, with `kl_scale=joint`, A times them), see
`trpo_equivalent` and tests/test_sb3_equivalence.py.

Each seed writes its evaluations to `<out>/<env>-s<seed>.partial.csv` as they come and
renames it `<env>-s<seed>.csv` when it finishes; a seed with that file is skipped, so an
interrupted reference restarts only its unfinished seed.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import statistics
from pathlib import Path
from typing import Any

import torch
from sb3_contrib import TRPO as SB3TRPO
from speed import evaluate_sb3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

EVAL_EVERY_STEPS = 10_240
"""trpo's `eval_every=10` iterations of 1,024 steps, the cadence of docs/results.md."""
SCORE_WINDOW = 5
"""A run's score is the mean of its last SCORE_WINDOW evaluations, as in `trpo benchmark`."""
ZOO_MUJOCO: dict[str, Any] = {
    "n_envs": 2,
    "n_steps": 1024,
    "batch_size": 128,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "sub_sampling_factor": 1,
    "cg_max_steps": 25,
    "cg_damping": 0.1,
    "n_critic_updates": 20,
    "learning_rate": 1e-3,
}
"""rl-zoo's `mujoco-defaults` for TRPO (with `normalize: true`, i.e. VecNormalize)."""
ZOO_CHANGES: dict[str, dict[str, Any]] = {
    "HalfCheetah": {"target_kl": 0.04},
    "Swimmer": {"gamma": 0.9999},
}
"""rl-zoo's per-env changes to ZOO_MUJOCO, keyed by env name without its version."""
SB3_DEFAULT_TARGET_KL = inspect.signature(SB3TRPO).parameters["target_kl"].default
"""sb3-contrib TRPO's target_kl where rl-zoo sets none."""


def zoo_settings(env_id: str) -> dict[str, Any]:
    return {**ZOO_MUJOCO, **ZOO_CHANGES.get(env_id.split("-")[0], {})}


def trpo_equivalent(env_id: str) -> dict[str, Any]:
    """trpo settings whose trust region is rl-zoo's for ``env_id`` (sb3's KL is per action
    coordinate, so `kl_scale=per_dim` carries its numbers over unchanged)."""
    settings = zoo_settings(env_id)
    return {
        "kl_scale": "per_dim",
        "max_kl": settings.get("target_kl", SB3_DEFAULT_TARGET_KL),
        "damping": settings["cg_damping"],
        "kl_direction": "new_old",
    }


class PeriodicEvaluation(BaseCallback):
    """Evaluates once the update on the first rollout that reaches each multiple of
    EVAL_EVERY_STEPS is done, as trpo's trainer does, appending each evaluation to ``path``
    as it comes, so a long run shows its progress.

    sb3 has no callback after `train()`: a rollout's end (before its update) marks the
    evaluation as due, and it runs at the next rollout's start or at the end of training,
    both after that update."""

    def __init__(self, env_id: str, seed: int, path: Path):
        super().__init__()
        self.env_id = env_id
        self.seed = seed
        self.path = path
        self.evaluations = 0
        self.due_at: int | None = None
        """Steps of the rollout whose update is awaited before evaluating."""
        path.write_text("steps,eval_return\n")

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.num_timesteps >= (self.evaluations + 1) * EVAL_EVERY_STEPS:
            self.due_at = self.num_timesteps

    def _on_rollout_start(self) -> None:
        self._evaluate_if_due()

    def _on_training_end(self) -> None:
        self._evaluate_if_due()

    def _evaluate_if_due(self) -> None:
        if self.due_at is None:
            return
        mean_return = statistics.fmean(evaluate_sb3(self.model, self.env_id, self.seed))
        self.evaluations += 1
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([self.due_at, mean_return])
        run = self.path.name.removesuffix(".partial.csv")
        print(f"{run}: {self.due_at:,} steps, return {mean_return:.1f}")
        self.due_at = None


def zoo_model(
    env_id: str, seed: int, settings: dict[str, Any] | None = None, normalize: bool = True
) -> SB3TRPO:
    """sb3-contrib's TRPO as rl-zoo trains it: ``settings`` (default: the MuJoCo ones for
    ``env_id``) on their n_envs DummyVecEnv copies, behind VecNormalize (observations and
    rewards) when ``normalize``, as rl-zoo's `normalize: true`."""
    settings = dict(settings or zoo_settings(env_id))
    n_envs = settings.pop("n_envs")
    venv = make_vec_env(env_id, n_envs=n_envs, seed=seed, vec_env_cls=DummyVecEnv)
    venv = VecNormalize(venv, gamma=settings["gamma"], norm_obs=normalize, norm_reward=normalize)
    return SB3TRPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **settings)


def train(env_id: str, seed: int, steps: int, path: Path) -> None:
    """Trains one seed, writing its evaluations to a partial file that becomes ``path``
    only once the run has finished."""
    partial = path.with_suffix(".partial.csv")
    model = zoo_model(env_id, seed)
    model.learn(steps, callback=PeriodicEvaluation(env_id, seed, partial))
    model.get_env().close()
    partial.replace(path)


def read_rows(path: Path) -> list[tuple[int, float]] | None:
    """The finished run stored at ``path``, or None if there is none."""
    if not path.exists():
        return None
    with path.open() as f:
        return [(int(r["steps"]), float(r["eval_return"])) for r in csv.DictReader(f)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env_id")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("runs/sb3-reference"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)

    runs, scores = [], []
    for seed in args.seeds:
        path = args.out / f"{args.env_id}-s{seed}.csv"
        rows = read_rows(path)
        if rows is None:
            train(args.env_id, seed, args.steps, path)
            rows = read_rows(path)
        runs.append(rows)
        scores.append(statistics.fmean(r for _, r in rows[-SCORE_WINDOW:]))
        print(f"{args.env_id} seed {seed}: score {scores[-1]:.1f} after {rows[-1][0]:,} steps")

    evaluations = min(len(rows) for rows in runs)
    max_of_mean = max(statistics.fmean(rows[i][1] for rows in runs) for i in range(evaluations))
    spread = statistics.pstdev(scores)  # as `trpo benchmark` reports it
    per_seed = ", ".join(f"{s:.0f}" for s in scores)
    print(
        f"{args.env_id}, sb3-contrib TRPO, rl-zoo settings, seeds {args.seeds}: "
        f"score {statistics.fmean(scores):.1f} ± {spread:.1f} ({per_seed}), "
        f"max of mean {max_of_mean:.1f}"
    )
    same = " ".join(f"{k}={v}" for k, v in trpo_equivalent(args.env_id).items())
    print(f"trpo with the same trust region: --set {same}")


if __name__ == "__main__":
    main()

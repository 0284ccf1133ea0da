"""The algorithm's numbers on recorded data, a reference that holds on any machine.

A batch recorded once per env (tests/golden/batch-ENV.safetensors: observations, actions,
old log-probabilities, scaled rewards, episode ends and the networks' initial weights)
goes through GAE, one policy step and one value fit, with fixed settings and seeded
generators; `numbers` are what comes out. A closed loop (collect, update, collect with the
new policy, ...) amplifies one rounding difference through the env and the sampling, so
whole runs are compared bit for bit on one machine only (test_golden_trace.py); these
numbers are compared across machines with `TOLERANCE`.

    python tests/golden_reference.py --record   # new batches (only if the data must change)
    python tests/golden_reference.py --write    # new expected numbers, after a deliberate
                                                # change to the math: say why in the commit
    python tests/golden_reference.py --spread   # how far the numbers move across CPU
                                                # dispatch settings (justifies TOLERANCE)
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import torch
from safetensors.torch import load_file, save_file

from trpo import TRPO
from trpo.config import Config
from trpo.functional import gae, normalize
from trpo.policies import MLPPolicy, MLPValue, action_dims
from trpo.update import fit_value, policy_step

GOLDEN = Path(__file__).parent / "golden"
EXPECTED_FILE = GOLDEN / "reference.json"
ENVS = ("CartPole-v1", "Pendulum-v1")
SETTINGS = {"seed": 0, "n_envs": 4, "steps_per_iter": 512, "eval_every": 0}
"""The run that recorded the batches."""
PINNED = {
    "algo": "trpo",
    "gamma": 0.99,
    "gae_lambda": 0.97,
    "max_kl": 0.01,
    "kl_scale": "joint",
    "kl_direction": "old_new",
    "damping": 0.1,
    "fvp_subsample": 1.0,
    "cg_iters": 10,
    "cg_residual_tol": 1e-10,
    "backtrack_coef": 0.8,
    "backtrack_iters": 10,
    "value_lr": 1e-3,
    "value_epochs": 5,
    "value_minibatch": 64,
}
"""Every setting the computation reads, so a change of a default leaves it as it is."""
TOLERANCE = 2e-6
"""Relative (and, near zero, absolute) tolerance of every number. `--spread` over all 20
combinations of MKL_CBWR (AUTO,STRICT; COMPATIBLE; SSE4_2; AVX; AVX2), ATEN_CPU_CAPABILITY
(default, i.e. no vectorisation; avx2) and NPY_DISABLE_CPU_FEATURES (none; AVX2 FMA3
AVX512F) moved no number by more than 1.25e-7 (relative) on an AMD EPYC with AVX2
(2026-11-29; MKL's COMPATIBLE branch moved most): 2e-6 leaves a factor of 16 for kernels
this machine cannot run (AVX-512). Small changes to the math move the numbers by more: one
more CG iteration by 4.2e-6, a δ or λ 1 % larger by 7.8e-5 and 5.5e-5."""


def record() -> None:
    """Collect one batch per env with its initial networks and save both."""
    GOLDEN.mkdir(exist_ok=True)
    for env_id in ENVS:
        agent = TRPO(env_id, **SETTINGS)
        trainer = agent.trainer
        batch = trainer.collector.collect(SETTINGS["steps_per_iter"] // SETTINGS["n_envs"])
        T, N = batch.rewards.shape
        tensors = {
            "obs": torch.from_numpy(batch.obs.reshape(T * N, -1)),
            "next_obs": torch.from_numpy(batch.next_obs.reshape(T * N, -1)),
            "actions": torch.from_numpy(batch.actions.reshape(T * N, *batch.actions.shape[2:])),
            "log_probs": torch.from_numpy(batch.log_probs.reshape(-1)),
            "rewards": torch.from_numpy(
                trainer.reward_scaler.scaled(batch.rewards, batch.reward_scale)
            ),
            "terminated": torch.from_numpy(batch.terminated),
            "truncated": torch.from_numpy(batch.truncated),
        }
        tensors.update({f"policy/{k}": v for k, v in agent.policy.state_dict().items()})
        tensors.update({f"value/{k}": v for k, v in agent.value_fn.state_dict().items()})
        save_file({k: v.contiguous() for k, v in tensors.items()}, batch_file(env_id))
        agent.close()


def batch_file(env_id: str) -> Path:
    return GOLDEN / f"batch-{env_id}.safetensors"


def checksum(module: torch.nn.Module) -> list[float]:
    flat = torch.cat([p.detach().reshape(-1).double() for p in module.parameters()])
    return [float(flat.sum()), float((flat**2).sum())]


def numbers(env_id: str) -> dict[str, float | list[float]]:
    """GAE, one policy step and one value fit on the recorded batch of ``env_id``."""
    data = load_file(batch_file(env_id))
    config = Config(env_id=env_id, **PINNED)
    env = gym.make(env_id)
    policy = MLPPolicy(data["obs"].shape[1], env.action_space)
    policy.load_state_dict({k[7:]: v for k, v in data.items() if k.startswith("policy/")})
    value_fn = MLPValue(data["obs"].shape[1])
    value_fn.load_state_dict({k[6:]: v for k, v in data.items() if k.startswith("value/")})
    T, N = data["rewards"].shape
    with torch.no_grad():
        values = value_fn(data["obs"]).reshape(T, N)
        next_values = value_fn(data["next_obs"]).reshape(T, N)
    advantages = gae(
        data["rewards"].numpy(),
        values.numpy(),
        next_values.numpy(),
        data["terminated"].numpy(),
        data["truncated"].numpy(),
        config.gamma,
        config.gae_lambda,
    )
    advantages = torch.from_numpy(advantages)
    targets = (advantages + values).reshape(-1)
    step = policy_step(
        policy,
        data["obs"],
        data["actions"],
        normalize(advantages.reshape(-1)),
        data["log_probs"],
        config,
        action_dims(env.action_space),
    )
    optimizer = torch.optim.Adam(value_fn.parameters(), lr=config.value_lr, fused=True)
    fit = fit_value(
        value_fn,
        optimizer,
        data["obs"],
        targets,
        values.reshape(-1),
        config.value_epochs,
        config.value_minibatch,
        torch.Generator().manual_seed(0),
    )
    return {
        "advantages": [float(advantages.sum()), float((advantages**2).sum())],
        "advantage_first": float(advantages[0, 0]),
        "kl": step.kl,
        "backtracks": step.backtracks,
        "surrogate_improvement": step.surrogate_improvement,
        "expected_improvement": step.expected_improvement,
        "entropy": step.entropy,
        "grad_norm": step.grad_norm,
        "policy": checksum(policy),
        "value_loss": fit.value_loss,
        "explained_variance": fit.explained_variance,
        "value": checksum(value_fn),
    }


def all_numbers() -> dict[str, dict]:
    return {env_id: numbers(env_id) for env_id in ENVS}


def relative_change(a, b) -> float:
    """Largest relative difference between two number trees (absolute near zero)."""
    if isinstance(a, list):
        return max(relative_change(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return max(relative_change(a[k], b[k]) for k in a)
    return abs(a - b) / max(abs(a), abs(b), 1.0)


SPREAD = {
    "MKL_CBWR": ("AUTO,STRICT", "COMPATIBLE", "SSE4_2", "AVX", "AVX2"),
    "ATEN_CPU_CAPABILITY": ("default", "avx2"),
    "NPY_DISABLE_CPU_FEATURES": ("", "AVX2 FMA3 AVX512F"),
}


def spread() -> None:
    """Recompute the numbers in fresh processes under every combination of `SPREAD`."""
    expected = json.loads(EXPECTED_FILE.read_text())
    worst = 0.0
    for values in itertools.product(*SPREAD.values()):
        env = {**os.environ, **dict(zip(SPREAD, values))}
        out = subprocess.run(
            [sys.executable, __file__, "--print"], env=env, capture_output=True, text=True
        )
        if out.returncode != 0:
            print(values, "failed:", out.stderr.strip().splitlines()[-1])
            continue
        change = relative_change(expected, json.loads(out.stdout))
        worst = max(worst, change)
        print(f"{dict(zip(SPREAD, values))}: largest relative change {change:.2e}")
    print(f"largest over all settings: {worst:.2e} (TOLERANCE {TOLERANCE:.0e})")


if __name__ == "__main__":
    if "--record" in sys.argv:
        record()
    if "--write" in sys.argv or "--record" in sys.argv:
        EXPECTED_FILE.write_text(json.dumps(all_numbers(), indent=1) + "\n")
        print(f"wrote {EXPECTED_FILE}")
    elif "--spread" in sys.argv:
        spread()
    else:
        print(json.dumps(all_numbers()))

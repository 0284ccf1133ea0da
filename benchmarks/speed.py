"""Wall-clock speed of trpo against sb3-contrib's TRPO, side by side, on matched settings.

    python benchmarks/speed.py            # CartPole-v1 100k and Hopper-v5 200k steps, 3 seeds
    python benchmarks/speed.py --envs CartPole-v1 --steps 20000 --repeats 1     # quick check
    python benchmarks/speed.py --envs Hopper-v5 --n-envs 16 --trpo-vec envpool  # envpool extra

For every env one dict of matched settings (trpo `Config` field names) gives both the trpo
agent and the sb3-contrib model; `check_matched` reads the settings back from the two built
objects (layer sizes, activations, optimiser, normaliser, ...) and stops on any difference.
Each repeat r trains both with seed r, in alternating order (A B, B A, ...), timing only the
`learn()` call: no periodic evaluation, no TensorBoard, no run directory, no callbacks, one
torch thread. Each trained policy is then evaluated the same way, trpo's trainer's way: 10
deterministic episodes from reset seeds r + EVAL_SEED_OFFSET + i, frozen observation
statistics, raw returns.

The trust region is matched on the KL each library bounds. trpo runs with
`kl_scale="joint"` (δ bounds the KL of the whole action; the default until 2026-11-29,
kept so that the benchmark's settings stay put). sb3-contrib's Gaussian and
Bernoulli KL is a mean over the A action coordinates, the joint KL / A, so for Box and
MultiBinary actions it is given target_kl = δ/A and cg_damping = λ/A: the same update
(tests/test_sb3_equivalence.py). Giving it δ and λ unchanged would run sb3 with a trust
region A times wider than trpo's (3× on Hopper). Discrete actions have A = 1.

Also measured: the raw throughput of the same vector env (Gymnasium SyncVectorEnv with
n_envs copies, random actions), the ceiling a trainer's steps/s can approach, and where
trpo's time goes (rollout, advantages, policy step, value fit). Results go to --out as JSON
and are printed as a Markdown table with the machine description. See docs/benchmarks.md.

With --trpo-vec envpool trpo steps EnvPool's envs while sb3 keeps DummyVecEnv, its fastest
vector env on this machine (its SubprocVecEnv, like Gymnasium's async one, is slower on 2
cores): every other setting stays matched, and the raw throughput is EnvPool's.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import inspect
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import SyncVectorEnv
from sb3_contrib import TRPO as SB3TRPO
from sb3_contrib.common.utils import conjugate_gradient_solver
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from torch import nn

from trpo import TRPO
from trpo.config import Config
from trpo.envs import env_factory, make_vector_env
from trpo.evaluate import EVAL_SEED_OFFSET
from trpo.metrics import IterationStats
from trpo.policies import ACTIVATIONS, action_dims
from trpo.update import trust_region

EVAL_EPISODES = 10
"""Evaluation episode i of a run with seed r starts from reset(seed=r + EVAL_SEED_OFFSET + i),
for both libraries, as trpo's trainer evaluates."""
ADAM_EPS = 1e-8
"""torch.optim.Adam's default, which trpo's value optimiser uses (sb3's default is 1e-5)."""
SB3_KL_DIRECTION = "new_old"
"""sb3-contrib's line search bounds KL(new ‖ old); trpo is set to check the same."""
PHASES = ("rollout", "advantage", "policy", "value", "wait_for_fit", "wait_for_rollout")
"""Where trpo's time goes (`IterationStats`): with `overlap` the value fit runs in a second
process beside the rollout, so the shares add up to more than the wall time."""
LIBRARIES = ("trpo", "serial", "sb3")
"""trpo as shipped (overlap=auto), trpo with overlap=off, sb3-contrib."""

BASE: dict[str, Any] = {
    "steps_per_iter": 1024,
    "policy_hidden": (64, 64),
    "value_hidden": (64, 64),
    "activation": "tanh",
    "log_std_init": 0.0,
    "max_kl": 0.01,
    "kl_scale": "joint",
    "kl_direction": SB3_KL_DIRECTION,
    "cg_iters": 10,
    "cg_residual_tol": 1e-10,
    "damping": 0.1,
    "backtrack_coef": 0.8,
    "backtrack_iters": 10,
    "value_epochs": 5,
    "value_minibatch": 64,
    "value_lr": 1e-3,
    "gamma": 0.99,
    "gae_lambda": 0.97,
    "normalize_advantages": True,
    "normalize_obs": True,
    "normalize_reward": False,
    "clip_obs": 10.0,
    "obs_norm_update": "step",
    "torch_threads": 1,
}
"""trpo's defaults as of 2026-11-26, written out so that the benchmark does not move when
they change (`kl_scale` has defaulted to per_dim since 2026-11-29), except the observation
statistics: updated every step, as sb3's VecNormalize does. trpo runs them without its
presets, so no setting missing here comes from one."""
ENVS: dict[str, tuple[int, dict[str, Any]]] = {
    "CartPole-v1": (100_000, {}),
    "Hopper-v5": (200_000, {"steps_per_iter": 2048}),
}
"""Env id -> (default training steps, changes to BASE); other ids get 100k steps and BASE."""


def env_defaults(env_id: str) -> tuple[int, dict[str, Any]]:
    return ENVS.get(env_id, (100_000, {}))


# -- one settings dict, two libraries ------------------------------------------------------
def matched_settings(env_id: str, n_envs: int, seed: int, vec: str = "sync") -> dict[str, Any]:
    changes = env_defaults(env_id)[1]
    return {**BASE, **changes, "env_id": env_id, "n_envs": n_envs, "seed": seed, "vec": vec}


def make_trpo(m: dict[str, Any]) -> TRPO:
    return TRPO(m["env_id"], preset=False, **m, eval_every=0, tensorboard=False)


def sb3_trust_region(m: dict[str, Any]) -> tuple[float, float]:
    """sb3-contrib's (target_kl, cg_damping) for trpo's settings ``m``: the (δ, λ) trpo's
    update uses on the joint KL (`trpo.update.trust_region`), divided by the A coordinates
    sb3 averages its KL over."""
    env = gym.make(m["env_id"])
    dims = action_dims(env.action_space)
    env.close()
    config = Config(max_kl=m["max_kl"], damping=m["damping"], kl_scale=m["kl_scale"])
    max_kl, damping = trust_region(config, dims)
    return max_kl / dims, damping / dims


def sb3_kwargs(m: dict[str, Any]) -> dict[str, Any]:
    """sb3-contrib TRPO constructor arguments for the matched settings ``m``."""
    target_kl, cg_damping = sb3_trust_region(m)
    return {
        "policy": "MlpPolicy",
        "n_steps": m["steps_per_iter"] // m["n_envs"],  # sb3 counts steps per env
        "batch_size": m["value_minibatch"],
        "learning_rate": m["value_lr"],
        "gamma": m["gamma"],
        "gae_lambda": m["gae_lambda"],
        "cg_max_steps": m["cg_iters"],
        "cg_damping": cg_damping,
        "line_search_shrinking_factor": m["backtrack_coef"],
        "line_search_max_iter": m["backtrack_iters"],
        "n_critic_updates": m["value_epochs"],
        "normalize_advantage": m["normalize_advantages"],
        "target_kl": target_kl,
        "sub_sampling_factor": 1,
        "policy_kwargs": {
            "net_arch": {"pi": list(m["policy_hidden"]), "vf": list(m["value_hidden"])},
            "activation_fn": ACTIVATIONS[m["activation"]],
            "log_std_init": m["log_std_init"],
            "ortho_init": True,
            "optimizer_kwargs": {"eps": ADAM_EPS},
        },
        "seed": m["seed"],
        "device": "cpu",
        "verbose": 0,
    }


def make_sb3(m: dict[str, Any]) -> SB3TRPO:
    venv = make_vec_env(m["env_id"], n_envs=m["n_envs"], seed=m["seed"], vec_env_cls=DummyVecEnv)
    venv = VecNormalize(
        venv,
        norm_obs=m["normalize_obs"],
        norm_reward=m["normalize_reward"],
        clip_obs=m["clip_obs"],
        gamma=m["gamma"],
    )
    return SB3TRPO(env=venv, **sb3_kwargs(m))


def layers(seq: nn.Sequential) -> list[int | str]:
    """Hidden layers as [width, activation, width, activation, ...]."""
    return [m.out_features if isinstance(m, nn.Linear) else type(m).__name__ for m in seq]


def adam(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    group = optimizer.param_groups[0]
    return {"type": type(optimizer).__name__, **{k: group[k] for k in ("lr", "betas", "eps")}}


def log_std(policy: nn.Module) -> list[float] | None:
    value = getattr(policy, "log_std", None)
    return None if value is None else value.detach().tolist()


def rounded(values: tuple[float, ...]) -> tuple[float, ...]:
    """To 12 significant digits: δ/A·A need not give δ back to the last bit."""
    return tuple(float(f"{v:.12g}") for v in values)


def check_matched(agent: TRPO, model: SB3TRPO) -> None:
    """Read each matched setting back from the two built objects; raise on a difference."""
    c, policy, venv = agent.config, model.policy, model.get_env()
    sb3_dims = action_dims(model.action_space)  # sb3's KL is the joint KL / sb3_dims
    cg_tol = inspect.signature(conjugate_gradient_solver).parameters["residual_tol"].default
    pairs = [
        ("env_id", c.env_id, venv.get_attr("spec")[0].id),
        (
            "vector env",
            c.vec == "envpool" or isinstance(agent.trainer.collector.envs, SyncVectorEnv),
            isinstance(venv.venv, DummyVecEnv),
        ),
        ("n_envs", c.n_envs, model.n_envs),
        ("steps per iteration", c.steps_per_iter, model.n_steps * model.n_envs),
        (
            "policy hidden layers",
            layers(agent.policy.net[:-1]),
            layers(policy.mlp_extractor.policy_net),
        ),
        (
            "value hidden layers",
            layers(agent.value_fn.net[:-1]),
            layers(policy.mlp_extractor.value_net),
        ),
        ("initial log std", log_std(agent.policy), log_std(policy)),
        ("orthogonal init", True, policy.ortho_init),
        (
            "trust region (δ, λ) on the joint KL",
            rounded(trust_region(c, action_dims(agent.action_space))),
            rounded((model.target_kl * sb3_dims, model.cg_damping * sb3_dims)),
        ),
        ("kl_direction", c.kl_direction, SB3_KL_DIRECTION),
        ("cg_iters", c.cg_iters, model.cg_max_steps),
        ("cg_residual_tol", c.cg_residual_tol, cg_tol),
        ("backtrack_coef", c.backtrack_coef, model.line_search_shrinking_factor),
        ("backtrack_iters", c.backtrack_iters, model.line_search_max_iter),
        ("value_epochs", c.value_epochs, model.n_critic_updates),
        ("value_minibatch", c.value_minibatch, model.batch_size),
        ("value optimiser", adam(agent.trainer.value_optimizer), adam(policy.optimizer)),
        ("gamma", c.gamma, model.gamma),
        ("gae_lambda", c.gae_lambda, model.gae_lambda),
        ("normalize_advantages", c.normalize_advantages, model.normalize_advantage),
        ("sub-sampling", 1, model.sub_sampling_factor),
        ("normalize_obs", c.normalize_obs, venv.norm_obs),
        ("observation statistics updated", c.obs_norm_update, "step" if venv.training else None),
        ("normalize_reward", c.normalize_reward, venv.norm_reward),
        ("clip_obs", c.clip_obs, venv.clip_obs),
        ("seed", c.seed, model.seed),
        ("device", "cpu", str(model.device)),
        ("torch threads", c.torch_threads, torch.get_num_threads()),
    ]
    differ = [
        f"{name}: trpo {ours!r} != sb3 {theirs!r}" for name, ours, theirs in pairs if ours != theirs
    ]
    if differ:
        raise AssertionError("settings differ: " + "; ".join(differ))


# -- measuring -----------------------------------------------------------------------------
def timed(learn: Callable[[], Any]) -> float:
    gc.collect()
    start = time.perf_counter()
    learn()
    return time.perf_counter() - start


def run_trpo(m: dict[str, Any], steps: int) -> dict[str, Any]:
    agent = make_trpo(m)
    phases = dict.fromkeys(PHASES, 0.0)

    def add(stats: IterationStats) -> None:
        row = stats.row()
        for phase in PHASES:
            phases[phase] += row[f"{phase}_sec"]

    wall = timed(lambda: agent.learn(steps, callback=add))
    returns = agent.evaluate(EVAL_EPISODES).returns  # from seed + EVAL_SEED_OFFSET
    agent.close()
    return {"wall_s": wall, "steps": agent.steps, "eval_returns": returns, "phases_s": phases}


def run_sb3(m: dict[str, Any], steps: int) -> dict[str, Any]:
    model = make_sb3(m)
    torch.set_num_threads(m["torch_threads"])
    wall = timed(lambda: model.learn(steps))
    returns = evaluate_sb3(model, m["env_id"], m["seed"])
    model.get_env().close()
    return {"wall_s": wall, "steps": model.num_timesteps, "eval_returns": returns}


def evaluate_sb3(model: SB3TRPO, env_id: str, seed: int) -> list[float]:
    """trpo's evaluation for sb3 trained with ``seed``: episode i from reset seed
    seed + EVAL_SEED_OFFSET + i, deterministic actions, frozen statistics (`normalize_obs`
    reads them without updating them), raw returns."""
    normalizer = model.get_env()
    env = gym.make(env_id)
    returns = []
    for i in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(normalizer.normalize_obs(obs[None]), deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action[0])
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def raw_throughput(env_id: str, n_envs: int, seconds: float, vec: str) -> float:
    """Steps/s of trpo's vector env under pre-sampled random actions."""
    envs = make_vector_env(env_factory(env_id), n_envs, vec, env_id)
    envs.reset(seed=0)
    envs.action_space.seed(0)
    actions = [envs.action_space.sample() for _ in range(256)]
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        envs.step(actions[steps // n_envs % len(actions)])
        steps += n_envs
    elapsed = time.perf_counter() - start
    envs.close()
    return steps / elapsed


def benchmark_env(env_id: str, steps: int, args: argparse.Namespace) -> dict[str, Any]:
    first = matched_settings(env_id, args.n_envs, 0, args.trpo_vec)
    agent, model = make_trpo(first), make_sb3(first)
    check_matched(agent, model)
    agent.close()
    model.get_env().close()
    raw = raw_throughput(env_id, args.n_envs, args.raw_seconds, args.trpo_vec)
    print(
        f"\n## {env_id}: {steps:,} steps, {args.n_envs} envs (trpo vec={args.trpo_vec}); "
        f"raw env {raw:,.0f} steps/s"
    )
    runners = {
        "trpo": run_trpo,
        "serial": lambda m, steps: run_trpo({**m, "overlap": "off"}, steps),
        "sb3": run_sb3,
    }
    pairs = []
    for seed in range(args.repeats):
        m = matched_settings(env_id, args.n_envs, seed, args.trpo_vec)
        order = LIBRARIES[seed % 3 :] + LIBRARIES[: seed % 3]  # each goes first in turn
        pair = {lib: runners[lib](m, steps) for lib in order}
        ours = pair["trpo"]
        pair["ratio_sb3_over_trpo"] = pair["sb3"]["wall_s"] / ours["wall_s"]
        pair["ratio_serial_over_trpo"] = pair["serial"]["wall_s"] / ours["wall_s"]
        times = ", ".join(
            f"{lib} {pair[lib]['wall_s']:.1f} s ({pair[lib]['steps'] / pair[lib]['wall_s']:,.0f}"
            " steps/s)"
            for lib in LIBRARIES
        )
        print(
            f"seed {seed} ({' then '.join(order)}): {times}; sb3/trpo "
            f"{pair['ratio_sb3_over_trpo']:.2f}, serial/trpo {pair['ratio_serial_over_trpo']:.2f}"
        )
        pairs.append(pair)
    summary = summarise(pairs, raw)
    for lib in LIBRARIES:
        print(f"{lib} eval return (mean ± std over seeds): {eval_text(summary[lib])}")
    print(f"median sb3/trpo: {summary['median_ratio']:.2f}")
    print(f"median serial/trpo (what the overlap gives): {summary['median_serial_ratio']:.2f}")
    shares = ", ".join(f"{k} {v:.0%}" for k, v in summary["trpo_time_shares"].items())
    print(f"trpo time in learn(): {shares}")
    print(f"trpo at {summary['trpo_fraction_of_raw']:.0%} of the raw env throughput")
    print(
        f"ceiling: sb3/trpo {summary['ceiling_ratio']:.2f} if trpo ran at the raw env "
        "throughput with a learner that cost nothing"
    )
    settings = {k: v for k, v in first.items() if k != "seed"}
    sb3 = {k: v for k, v in sb3_kwargs(first).items() if k != "seed"}
    return {
        "steps": steps,
        "settings": settings,
        "sb3_kwargs": sb3,
        "raw_steps_per_s": raw,
        "pairs": pairs,
        "summary": summary,
    }


def summarise(pairs: list[dict[str, Any]], raw: float) -> dict[str, Any]:
    def per_lib(lib: str) -> dict[str, Any]:
        runs = [p[lib] for p in pairs]
        means = [float(np.mean(r["eval_returns"])) for r in runs]
        return {
            "median_wall_s": statistics.median(r["wall_s"] for r in runs),
            "median_steps_per_s": statistics.median(r["steps"] / r["wall_s"] for r in runs),
            "eval_mean": float(np.mean(means)),
            "eval_std": float(np.std(means)),
        }

    ours = [p["trpo"] for p in pairs]
    wall = sum(r["wall_s"] for r in ours)
    shares = {k: sum(r["phases_s"][k] for r in ours) / wall for k in PHASES}
    summary = {lib: per_lib(lib) for lib in LIBRARIES}
    summary["median_ratio"] = statistics.median(p["ratio_sb3_over_trpo"] for p in pairs)
    summary["median_serial_ratio"] = statistics.median(p["ratio_serial_over_trpo"] for p in pairs)
    summary["trpo_time_shares"] = shares
    summary["trpo_fraction_of_raw"] = summary["trpo"]["median_steps_per_s"] / raw
    # The ratio a learner costing nothing would reach: sb3's time over the raw env's.
    summary["ceiling_ratio"] = raw / summary["sb3"]["median_steps_per_s"]
    return summary


# -- reporting -----------------------------------------------------------------------------
def eval_text(lib_summary: dict[str, Any]) -> str:
    return f"{lib_summary['eval_mean']:.1f} ± {lib_summary['eval_std']:.1f}"


def machine() -> dict[str, Any]:
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    versions = {"python": platform.python_version()}
    for package in ("torch", "gymnasium", "mujoco", "stable_baselines3", "sb3_contrib", "trpo"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "cpu": names[0] if names else platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "versions": versions,
    }


def markdown(results: dict[str, Any], info: dict[str, Any]) -> str:
    lines = [
        "| env | steps | trpo s | trpo serial s | sb3 s | median sb3/trpo | median serial/trpo "
        "| trpo eval | sb3 eval | trpo's time: rollout / policy step / value fit (beside) "
        "/ waited for the fit | trpo / raw env steps/s | ceiling sb3/trpo |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for env_id, r in results.items():
        s = r["summary"]
        share = s["trpo_time_shares"]
        lines.append(
            f"| {env_id} | {r['steps']:,} | {s['trpo']['median_wall_s']:.1f} "
            f"| {s['serial']['median_wall_s']:.1f} | {s['sb3']['median_wall_s']:.1f} "
            f"| {s['median_ratio']:.2f} | {s['median_serial_ratio']:.2f} "
            f"| {eval_text(s['trpo'])} | {eval_text(s['sb3'])} "
            f"| {share['rollout']:.0%} / {share['policy']:.0%} / {share['value']:.0%} "
            f"/ {share['wait_for_fit']:.0%} "
            f"| {s['trpo_fraction_of_raw']:.0%} | {s['ceiling_ratio']:.2f} |"
        )
    cores = f"{info['cores']} cores ({info['usable_cores']} usable)"
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    lines += [
        "",
        "Times are medians over seeds; eval is the mean ± std over seeds of each run's "
        f"{EVAL_EPISODES}-episode deterministic return. Ceiling: raw env steps/s over sb3's "
        "steps/s, the ratio a trpo whose learner cost nothing would reach.",
        f"Machine: {info['cpu']}, {cores}; {versions}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), help="Gymnasium env ids")
    parser.add_argument("--steps", type=int, help="training steps for every env")
    parser.add_argument("--repeats", type=int, default=3, help="seeds 0 .. repeats-1")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--raw-seconds", type=float, default=3.0, help="raw env stepping time")
    parser.add_argument("--trpo-vec", choices=("sync", "envpool"), default="sync")
    today = datetime.date.today().isoformat()
    default_out = Path(__file__).parent / "results" / f"speed-{today}.json"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args()

    torch.set_num_threads(BASE["torch_threads"])
    info = machine()
    results = {}
    for env_id in args.envs:
        steps = args.steps or env_defaults(env_id)[0]
        results[env_id] = benchmark_env(env_id, steps, args)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"machine": info, "args": {**vars(args), "out": str(args.out)}, "envs": results}
    args.out.write_text(
        json.dumps(report, indent=2, default=lambda o: getattr(o, "__name__", str(o))) + "\n"
    )
    print("\n" + markdown(results, info))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

"""trpo against sb3-contrib's TRPO on MinAtar, side by side: same envs, same CNN, same settings.

    python benchmarks/minatar_sb3.py                       # 5 games x seeds 0-4, 2M steps
    python benchmarks/minatar_sb3.py --games Breakout --seeds 0 --steps 20000   # quick check
    benchmarks/minatar_2m.sh            # the issue's 5 games x seeds 0-2, resumable per pair
    python benchmarks/minatar_sb3.py --merge DIR/*-s[0-9]*.json --out DIR/results.json

Time per run at 2M steps, learn() only, Breakout seed 0 on an otherwise idle 2-core AMD
EPYC (2026-12-07): trpo 513 s (its value fit on the second core), sb3-contrib 1241-1470 s
over two runs; evaluation adds seconds. The issue's 5 games x seeds 0-2 for both libraries
is then ~8 h: `benchmarks/minatar_2m.sh` runs it one pair at a time, since a second job
would slow the runs it times.
`--seeds` lists the seeds themselves; odd seeds train sb3-contrib first and even seeds trpo,
so the order alternates also when each seed runs in a process of its own.

What one run does. One settings dict (`matched_settings`: trpo `Config` names, trpo's
defaults as `speed.BASE` writes them out, then the env's trpo preset, i.e. `MINATAR`)
builds both the trpo agent and, through `speed.sb3_kwargs`, the sb3-contrib model:
n_envs and n_steps = steps_per_iter / n_envs, gamma, gae_lambda, max_kl -> target_kl,
damping -> cg_damping (a Categorical KL is per state, so sb3's mean over the distribution's
elements is trpo's joint KL: A = 1), cg_iters -> cg_max_steps, backtrack_coef/iters ->
line_search_shrinking_factor/max_iter, value_lr/epochs/minibatch -> learning_rate/
n_critic_updates/batch_size, Adam eps 1e-8, normalize_advantages, the whole batch in the
Fisher products (fvp_subsample 1 = sub_sampling_factor 1), and trpo's line search set to
sb3's KL(new || old). Both train on `trpo.atari.make_minatar_env(id, max_episode_steps=10_000)`
(sticky actions 0.1, minimal action set), sb3 through DummyVecEnv, trpo through Gymnasium's
SyncVectorEnv. Both run MinAtar's network, trpo's own module: `trpo.encoders.ImageFeatures`
(bool -> float scaled by the space's bounds, channel-last -> channel-first, then
`image_cnn("grid", C, 10, 10)`: Conv2d(C, 16, 3) + ReLU, Flatten, Linear(1024, 128) + ReLU)
is sb3's features extractor (`TrpoImageFeatures`), one for the policy and one for the value
(`share_features_extractor=False`, as trpo), with `normalize_images=False` and the heads
straight on the 128 features (`net_arch=dict(pi=[], vf=[])`, trpo's `policy_hidden=()`,
`value_hidden=()`); orthogonal init, gain sqrt 2 in the trunk, 0.01 on the logits, 1 on the
value, zero biases, in both. Neither normalises observations (trpo never normalises image
leaves; sb3 gets no VecNormalize) and sb3 does not transpose them (its VecTransposeImage
only takes uint8 images). `check_matched` reads all this back from the two built objects,
parameter counts and layer shapes included, and stops on any difference.

Each seed trains both, in alternating order, timing only `learn()` (one torch thread, no
evaluation, callbacks or logging during it). Each trained policy is then evaluated by the
same code, trpo's `Evaluator`: 10 episodes, episode i from reset seed seed + 1_000_000 + i,
deterministic (most probable) actions, raw game scores. Deterministic because that is how
trpo's trainer, `trpo benchmark` and `benchmarks/speed.py` evaluate (and sb3's
EvalCallback by default); every MinAtar game ends by itself (or at 10k steps) and the
sticky actions keep the 10 episodes apart. Per game: each library's mean score over seeds
with a 95 % bootstrap interval (`trpo.aggregate`), median wall-clock of learn() and the
median ratio sb3 seconds / trpo seconds; over games the mean of the per-game means with a
stratified-bootstrap interval. Results go to --out as JSON and print as a Markdown table,
with the issue's binding checks.

Not matched: the random streams (action sampling, weight draws, env seeds per copy) are
each library's own, so a seed gives different runs; trpo solves with the Gauss-Newton
Fisher product and starts CG from 0, sb3 differentiates the KL twice and starts CG from
1e-4 * randn (the same matrix for a Categorical, tests/test_sb3_equivalence.py); sb3's
advantage normalisation divides by the unbiased std; the vector envs differ as above.
With those streams taken out, the two are one algorithm: tests/test_minatar_sb3.py replays
sb3's sampled actions in trpo on the same env seeds, with sb3's weights copied in before
each iteration, and finds observations, values, advantages, the policy's step and the
value fit equal to float rounding (the step within 6e-6 of its length).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import SyncVectorEnv
from sb3_contrib import TRPO as SB3TRPO
from speed import (
    BASE,
    EVAL_EPISODES,
    SB3_KL_DIRECTION,
    adam,
    machine,
    make_trpo,
    rounded,
    run_trpo,
    sb3_kwargs,
    timed,
)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.preprocessing import is_image_space as sb3_is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    VecNormalize,
    VecTransposeImage,
    is_vecenv_wrapped,
)
from torch import nn

from trpo import TRPO
from trpo.aggregate import mean_score, stratified_bootstrap_ci
from trpo.atari import make_minatar_env
from trpo.encoders import ImageFeatures
from trpo.envs import register_family
from trpo.evaluate import EVAL_SEED_OFFSET, Evaluator
from trpo.policies import action_dims
from trpo.presets import preset_for
from trpo.update import trust_region

GAMES = ("Breakout", "SpaceInvaders", "Asterix", "Freeway", "Seaquest")
MAX_EPISODE_STEPS = 10_000
"""Both libraries' envs are truncated here (trpo's MinAtar default)."""
IMAGE_ENCODER = "grid"
"""MinAtar's one-convolution network (`trpo.encoders.image_cnn`)."""
CONFIDENCE = 0.95
BOOTSTRAP_REPS = 10_000
BINDING_RATIO = 2.0
"""The issue's bar: sb3 seconds / trpo seconds on every game."""
SB3_ATTRIBUTES = {
    "cg_iters": "cg_max_steps",
    "backtrack_coef": "line_search_shrinking_factor",
    "backtrack_iters": "line_search_max_iter",
    "value_epochs": "n_critic_updates",
    "value_minibatch": "batch_size",
    "gamma": "gamma",
    "gae_lambda": "gae_lambda",
    "normalize_advantages": "normalize_advantage",
    "seed": "seed",
}
"""trpo `Config` field -> the sb3-contrib TRPO attribute that holds the same setting."""
VERDICTS = {True: "PASS", False: "FAIL", None: "n/a (needs 2+ seeds)"}


def game_id(name: str) -> str:
    """``Breakout`` -> ``MinAtar/Breakout-v1``; full ids pass through."""
    return name if "/" in name else f"MinAtar/{name}-v1"


def minatar_factory(env_id: str):
    return partial(make_minatar_env, env_id, max_episode_steps=MAX_EPISODE_STEPS)


# -- one settings dict, two libraries ------------------------------------------------------
def matched_settings(env_id: str, seed: int) -> dict[str, Any]:
    """trpo's defaults (`speed.BASE`), then the env's preset (`MINATAR`) without its
    periodic evaluation, with sb3's KL direction and MinAtar's CNN named."""
    preset = {k: v for k, v in preset_for(env_id).items() if k != "eval_every"}
    named = dict(image_encoder=IMAGE_ENCODER, kl_direction=SB3_KL_DIRECTION, env_id=env_id)
    return {**BASE, **preset, **named, "seed": seed}


class TrpoImageFeatures(BaseFeaturesExtractor):
    """trpo's image trunk (`trpo.encoders.ImageFeatures`, the module trpo's policy and
    value run) as sb3's features extractor: sb3 hands it float 0/1 [B, 10, 10, C]
    (`preprocess_obs` casts the bool Box, `normalize_images=False`), which ImageFeatures
    scales by the space's bounds (a no-op for bool) and puts channel-first."""

    def __init__(self, observation_space: gym.spaces.Box, kind: str = IMAGE_ENCODER):
        super().__init__(observation_space, features_dim=1)
        # sb3's ortho_init then redraws these weights from its own seed, as trpo does.
        self.image = ImageFeatures(observation_space, kind, generator=None)
        self._features_dim = self.image.out_dim

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.image(observations)


def sb3_minatar_kwargs(m: dict[str, Any]) -> dict[str, Any]:
    """`speed.sb3_kwargs` (batch, trust region, value fit, heads, Adam) plus the CNN."""
    kwargs = sb3_kwargs(m)
    kwargs["policy_kwargs"] = {
        **kwargs["policy_kwargs"],
        "features_extractor_class": TrpoImageFeatures,
        "features_extractor_kwargs": {"kind": m["image_encoder"]},
        "normalize_images": False,
        "share_features_extractor": False,
    }
    return kwargs


def make_sb3(m: dict[str, Any]) -> SB3TRPO:
    venv = make_vec_env(
        minatar_factory(m["env_id"]), n_envs=m["n_envs"], seed=m["seed"], vec_env_cls=DummyVecEnv
    )
    return SB3TRPO(env=venv, **sb3_minatar_kwargs(m))


# -- reading the settings back -------------------------------------------------------------
def architecture(*modules: nn.Module) -> list[tuple[str, tuple[tuple[int, ...], ...]]]:
    """Every leaf layer of ``modules`` in order: its type and its parameters' shapes."""
    return [
        (type(layer).__name__, tuple(tuple(p.shape) for p in layer.parameters()))
        for module in modules
        for layer in module.modules()
        if not list(layer.children()) and not isinstance(layer, nn.Sequential)
    ]


def n_parameters(*modules: nn.Module) -> int:
    return sum(p.numel() for module in modules for p in module.parameters())


def scaling(image: ImageFeatures) -> tuple[Any, ...]:
    """How an ImageFeatures turns stored values into the CNN's input."""
    return (image.kind, image.shape, image.channels_last, float(image.low), float(image.scale))


def env_facts(env: gym.Env) -> tuple[Any, ...]:
    """What makes two MinAtar envs the same game under the same rules."""
    game = env.unwrapped.game
    return (
        env.spec.id,
        env.spec.max_episode_steps,
        game.sticky_action_prob,
        game.env_name,
        tuple(env.unwrapped.action_set),
        env.observation_space,
    )


def check_matched(agent: TRPO, model: SB3TRPO) -> None:
    """Read each matched setting back from the two built objects; raise on a difference."""
    c, policy, venv = agent.config, model.policy, model.get_env()
    (pi_image,) = agent.policy.features.images.values()
    (vf_image,) = agent.value_fn.features.images.values()
    sb3_pi, sb3_vf = policy.pi_features_extractor, policy.vf_features_extractor
    trpo_env, sb3_env = agent.get_env().envs[0], venv.envs[0]
    sb3_dims = action_dims(model.action_space)  # 1: a Categorical's KL is per state
    sb3_policy_layers = (sb3_pi, policy.mlp_extractor.policy_net, policy.action_net)
    sb3_value_layers = (sb3_vf, policy.mlp_extractor.value_net, policy.value_net)
    pairs = [
        ("training env", env_facts(trpo_env), env_facts(sb3_env)),
        ("max episode steps", MAX_EPISODE_STEPS, trpo_env.spec.max_episode_steps),
        ("n_envs", c.n_envs, model.n_envs),
        ("steps per iteration", c.steps_per_iter, model.n_steps * model.n_envs),
        (
            "vector env: copies stepped in turn, in process",
            isinstance(agent.get_env(), SyncVectorEnv),
            type(venv) is DummyVecEnv,
        ),
        ("policy layers", architecture(agent.policy), architecture(*sb3_policy_layers)),
        ("value layers", architecture(agent.value_fn), architecture(*sb3_value_layers)),
        ("policy parameters", n_parameters(agent.policy), n_parameters(*sb3_policy_layers)),
        ("value parameters", n_parameters(agent.value_fn), n_parameters(*sb3_value_layers)),
        (
            "sb3 has no other parameters",
            n_parameters(policy),
            n_parameters(*sb3_policy_layers) + n_parameters(*sb3_value_layers),
        ),
        ("policy input scaling", scaling(pi_image), scaling(sb3_pi.image)),
        ("value input scaling", scaling(vf_image), scaling(sb3_vf.image)),
        ("separate policy and value CNNs", True, sb3_pi is not sb3_vf),
        ("sb3 normalize_images", False, policy.normalize_images),
        ("sb3 sees no image (no /255)", False, sb3_is_image_space(model.observation_space)),
        ("sb3 VecTransposeImage", False, is_vecenv_wrapped(venv, VecTransposeImage)),
        ("sb3 VecNormalize", False, is_vecenv_wrapped(venv, VecNormalize)),
        ("trpo normalises no observation", False, bool(agent.agent.encoder.normalized.any())),
        ("orthogonal init", True, policy.ortho_init),
        (
            "trust region (δ, λ) on the joint KL",
            rounded(trust_region(c, action_dims(agent.action_space))),
            rounded((model.target_kl * sb3_dims, model.cg_damping * sb3_dims)),
        ),
        ("Discrete actions (KL per state)", "Discrete", type(model.action_space).__name__),
        ("kl_direction", c.kl_direction, SB3_KL_DIRECTION),
        ("Fisher on every state", c.fvp_subsample, float(model.sub_sampling_factor)),
        ("value optimiser", adam(agent.trainer.value_optimizer), adam(policy.optimizer)),
        ("device", "cpu", str(model.device)),
        ("torch threads", c.torch_threads, torch.get_num_threads()),
        *((key, getattr(c, key), getattr(model, attr)) for key, attr in SB3_ATTRIBUTES.items()),
    ]
    differ = "; ".join(f"{name}: trpo {a!r} != sb3 {b!r}" for name, a, b in pairs if a != b)
    if differ:
        raise AssertionError(f"settings differ: {differ}")


# -- measuring -----------------------------------------------------------------------------
class SB3Actor:
    """An sb3 model as trpo's `Evaluator` calls an agent: ``predict(batch) -> actions``."""

    def __init__(self, model: SB3TRPO):
        self.model = model

    def predict(self, obs: np.ndarray) -> np.ndarray:
        return self.model.predict(obs, deterministic=True)[0]


def run_sb3(m: dict[str, Any], steps: int) -> dict[str, Any]:
    """Train sb3 for ``steps`` (only learn() timed), then evaluate it as trpo evaluates."""
    model = make_sb3(m)
    torch.set_num_threads(m["torch_threads"])
    wall = timed(lambda: model.learn(steps))
    evaluator = Evaluator(minatar_factory(m["env_id"]), EVAL_EPISODES)
    try:
        returns = evaluator.run(SB3Actor(model), m["seed"] + EVAL_SEED_OFFSET).returns
    finally:
        evaluator.close()
        model.get_env().close()
    return {"wall_s": wall, "steps": model.num_timesteps, "eval_returns": returns}


def interval(scores: np.ndarray, rng: np.random.Generator) -> list[float]:
    """95 % stratified-bootstrap interval of the mean over tasks of each task's mean."""
    return stratified_bootstrap_ci(scores, mean_score, BOOTSTRAP_REPS, CONFIDENCE, rng).tolist()


def run_pair(m: dict[str, Any], steps: int, sb3_first: bool) -> dict[str, Any]:
    """Both libraries on the settings ``m``, one after the other; their learn() time ratio."""
    runs = [("trpo", run_trpo), ("sb3", run_sb3)]
    pair: dict[str, Any] = {"seed": m["seed"]}
    for lib, run in reversed(runs) if sb3_first else runs:
        pair[lib] = run(m, steps)
    ours, theirs = pair["trpo"], pair["sb3"]
    pair["ratio_sb3_over_trpo"] = theirs["wall_s"] / ours["wall_s"]
    first = "sb3" if sb3_first else "trpo"
    print(
        f"seed {m['seed']} ({first} first): trpo {ours['wall_s']:.1f} s, score "
        f"{np.mean(ours['eval_returns']):.2f}; sb3 {theirs['wall_s']:.1f} s, score "
        f"{np.mean(theirs['eval_returns']):.2f}; sb3/trpo {pair['ratio_sb3_over_trpo']:.2f}",
        flush=True,
    )
    return pair


def benchmark_game(env_id: str, seeds: list[int], steps: int) -> dict[str, Any]:
    register_family(env_id)
    first = matched_settings(env_id, seeds[0])
    agent, model = make_trpo(first), make_sb3(first)
    check_matched(agent, model)
    agent.close()
    model.get_env().close()
    print(f"\n## {env_id}: {steps:,} steps, seeds {seeds}; settings matched")
    pairs = [
        run_pair(matched_settings(env_id, seed), steps, sb3_first=seed % 2 == 1) for seed in seeds
    ]
    # The first seed's settings; the others differ only in their seed.
    return {"steps": steps, "settings": first, "sb3": sb3_minatar_kwargs(first), "pairs": pairs}


def scores(result: dict[str, Any], lib: str) -> np.ndarray:
    """[seeds] of each run's mean evaluation score."""
    return np.array([np.mean(p[lib]["eval_returns"]) for p in result["pairs"]])


def summarise(results: dict[str, dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Per game and over games: score means with 95 % intervals, times, and the verdicts."""
    rng = np.random.default_rng(seed)
    games = {}
    for env_id, r in results.items():
        game: dict[str, Any] = {}
        for lib in ("trpo", "sb3"):
            s = scores(r, lib)
            game[lib] = {
                "scores": s.tolist(),
                "mean": float(s.mean()),
                "ci95": interval(s[:, None], rng),
                "median_wall_s": statistics.median(p[lib]["wall_s"] for p in r["pairs"]),
            }
        ratios = [p["ratio_sb3_over_trpo"] for p in r["pairs"]]
        game["median_ratio"] = statistics.median(ratios)
        game["min_ratio"] = min(ratios)
        (lo_ours, hi_ours), (lo_theirs, hi_theirs) = game["trpo"]["ci95"], game["sb3"]["ci95"]
        game["sb3_better_separated"] = lo_theirs > hi_ours
        game["trpo_better_separated"] = lo_ours > hi_theirs
        games[env_id] = game
    overall = {}
    for lib in ("trpo", "sb3"):
        runs = max(len(r["pairs"]) for r in results.values())
        table = np.full((runs, len(results)), np.nan)  # [seeds, games]; NaN: a missing seed
        for j, r in enumerate(results.values()):
            s = scores(r, lib)
            table[: len(s), j] = s
        overall[lib] = {"mean": mean_score(table), "ci95": interval(table, rng)}
    binding = {
        "trpo mean over games >= sb3's": overall["trpo"]["mean"] >= overall["sb3"]["mean"],
        # One seed gives no interval (a point), so no verdict on separation.
        "no game where sb3 is better with separate 95 % intervals": None
        if any(len(r["pairs"]) < 2 for r in results.values())
        else not any(g["sb3_better_separated"] for g in games.values()),
        f"sb3/trpo wall-clock >= {BINDING_RATIO:g} on every game (median over seeds)": all(
            g["median_ratio"] >= BINDING_RATIO for g in games.values()
        ),
    }
    return {"games": games, "overall": overall, "binding": binding}


# -- reporting -----------------------------------------------------------------------------
def score_text(s: dict[str, Any]) -> str:
    lo, hi = s["ci95"]
    return f"{s['mean']:.2f} [{lo:.2f}, {hi:.2f}]"


def markdown(results: dict[str, Any], summary: dict[str, Any], info: dict[str, Any]) -> str:
    lines = [
        "| game | steps | seeds | trpo score [95 % CI] | sb3 score [95 % CI] | trpo s | sb3 s "
        "| sb3/trpo (median, min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for env_id, g in summary["games"].items():
        r = results[env_id]
        lines.append(
            f"| {env_id.split('/')[-1]} | {r['steps']:,} | {len(r['pairs'])} "
            f"| {score_text(g['trpo'])} | {score_text(g['sb3'])} "
            f"| {g['trpo']['median_wall_s']:.1f} | {g['sb3']['median_wall_s']:.1f} "
            f"| {g['median_ratio']:.2f}, {g['min_ratio']:.2f} |"
        )
    o = summary["overall"]
    lines.append(
        f"| mean over games | | | {score_text(o['trpo'])} | {score_text(o['sb3'])} | | | |"
    )
    lines += [
        "",
        f"Score: a run's mean over {EVAL_EPISODES} deterministic episodes after training, "
        "then mean over seeds with a 95 % bootstrap interval. Times: learn() only, medians "
        "over seeds.",
        f"Machine: {info['cpu']}, {info['usable_cores']} of {info['cores']} cores usable; "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        "",
        "Binding (issue):",
        *(f"- {VERDICTS[ok]}: {name}" for name, ok in summary["binding"].items()),
    ]
    return "\n".join(lines)


def merged(reports: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The games of several reports (by file name) as one report's: each game's pairs from
    every report, ordered by seed. Reports of one game must share its steps and settings
    (the seed apart) and not repeat a seed."""
    games: dict[str, dict[str, Any]] = {}
    for name, report in reports.items():
        for env_id, result in report["games"].items():
            game = games.setdefault(env_id, {**result, "pairs": []})
            same = {"steps": result["steps"], "settings": {**result["settings"], "seed": None}}
            if same != {"steps": game["steps"], "settings": {**game["settings"], "seed": None}}:
                raise ValueError(
                    f"{name}: {env_id} ran other steps or settings than its first report"
                )
            seeds = {p["seed"] for p in game["pairs"]}
            repeated = seeds & {p["seed"] for p in result["pairs"]}
            if repeated:
                raise ValueError(f"{name}: {env_id} seed {sorted(repeated)} is in two reports")
            game["pairs"] = sorted([*game["pairs"], *result["pairs"]], key=lambda p: p["seed"])
    return games


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", nargs="+", default=list(GAMES), help="names or MinAtar ids")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=2_000_000, help="training steps per run")
    parser.add_argument("--out", type=Path, help="JSON report (default: results/minatar-sb3-DATE)")
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="REPORT",
        help="train nothing: report these JSON reports' runs as one (benchmarks/minatar_2m.sh)",
    )
    args = parser.parse_args()
    results_dir = Path(__file__).parent / "results"
    args.out = args.out or results_dir / f"minatar-sb3-{datetime.date.today().isoformat()}.json"
    return args


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def main() -> None:
    args = arguments()
    if args.merge:
        reports = {path.name: json.loads(path.read_text()) for path in args.merge}
        results = merged(reports)
        machines = {json.dumps(r["machine"], sort_keys=True) for r in reports.values()}
        if len(machines) > 1:
            raise SystemExit(f"the reports come from {len(machines)} machines or versions")
        info = next(iter(reports.values()))["machine"]
    else:
        torch.set_num_threads(BASE["torch_threads"])
        info = machine()
        info["versions"]["minatar"] = package_version("minatar")
        results = {
            game_id(name): benchmark_game(game_id(name), args.seeds, args.steps)
            for name in args.games
        }
    summary = summarise(results)
    report = dict(machine=info, args={**vars(args), "out": str(args.out)}, games=results)
    text = json.dumps(
        {**report, "summary": summary}, indent=2, default=lambda o: getattr(o, "__name__", str(o))
    )
    table = markdown(results, summary, info)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    if args.merge:  # the report to read, beside its JSON
        args.out.with_suffix(".md").write_text(table + "\n")
    print(f"\n{table}\n\nwrote {args.out}")


if __name__ == "__main__":
    main()

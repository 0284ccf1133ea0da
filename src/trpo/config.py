"""One frozen, typed configuration for a run.

Every hyperparameter lives here with its default and a docstring saying when to change it.
`Config.with_overrides` turns ``key=value`` strings (the CLI's ``--set``) into typed values
and names the key and the expected type when a value does not fit.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

Algo = Literal["vpg", "npg", "kl_penalty", "trpo"]
"""From the plain gradient step to the trust region, the order in which they compare."""
KLDirection = Literal["old_new", "new_old"]
KLScale = Literal["joint", "per_dim"]
StatsUpdate = Literal["step", "iteration"]
"""When running normalisation statistics take in new data: every env step or every batch."""


class ConfigError(ValueError):
    """A setting that does not exist or whose value is not allowed."""


@dataclass(frozen=True)
class Config:
    """Hyperparameters of a run. Defaults follow the paper and solve CartPole-v1."""

    env_id: str = "CartPole-v1"
    """Gymnasium id of the training environment. With an env object or factory: the id in
    its spec, or `custom` when it has none."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments passed to `gymnasium.make` for the training and evaluation envs."""
    env_modules: tuple[str, ...] = ()
    """Python modules imported before any env is built, in every process that builds one
    (subprocesses, Ray actors, grid workers, evaluation), e.g. the package that registers
    your env ids (`trpo train --import mypkg.envs`)."""
    algo: Algo = "trpo"
    """`trpo` (CG direction + KL line search), `npg` (CG direction, fixed quadratic-model
    step, KL not enforced), `kl_penalty` (maximiser of the quadratic model of
    L − C·KL, C = `kl_penalty_coef`) or `vpg` (plain gradient step of size `vpg_lr`)."""
    seed: int = 0
    """Seeds the run's own random streams (initial weights, actions, value-fit shuffles) and
    the environments' resets: same seed, same run, bit for bit on one machine."""
    total_steps: int = 100_000
    """Environment steps to train for when `learn()` / `trpo train` is given no other number."""

    n_envs: int = 8
    """Environment copies stepped together; the policy runs once per step on all of them."""
    vec: Literal["sync", "async", "envpool"] = "sync"
    """`sync` steps the copies in this process; `async` in subprocesses (worth it only
    when one env step costs much more than a policy forward, e.g. heavy simulators);
    `envpool` in EnvPool's C++ thread pool (`pip install 'trpo[envpool]'`; the tasks
    EnvPool provides, such as CartPole-v1 and the MuJoCo v5 envs)."""
    backend: Literal["local", "ray"] = "local"
    """Where rollouts run: `local` in this process, `ray` on `ray_workers` Ray actors that
    each step a slice of the n_envs envs (`pip install 'trpo[ray]'`). Same seed and n_envs
    give the same batches on both."""
    ray_workers: int = 2
    """Ray actors collecting rollouts (`backend="ray"` only); at most n_envs."""
    ray_address: str = ""
    """Address of a running Ray cluster to join (`backend="ray"` only); empty starts a
    local one sized to this machine."""
    nonfinite_env: Literal["error", "drop"] = "error"
    """A NaN/Inf observation or reward from the env: `error` stops the run naming the env
    and step; `drop` leaves that transition out of the batch, starts a new episode in that
    env copy and counts it (`dropped` in the metrics)."""
    steps_per_iter: int = 1024
    """Transitions per policy update, summed over all envs (each env runs
    steps_per_iter / n_envs steps). Larger batches give less noisy but fewer updates."""

    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.97
    """GAE λ: 1 is Monte Carlo (unbiased, noisy), 0 is one-step TD (biased, smooth)."""
    normalize_advantages: bool = True
    """Standardise advantages for the policy step (never for the value targets)."""

    max_kl: float = 0.01
    """δ: the bound on the mean KL between consecutive policies (per action dimension
    with the default `kl_scale`)."""
    kl_direction: KLDirection = "old_new"
    """Which KL the line search checks: `old_new` = KL(π_old ‖ π_new) as in the paper,
    `new_old` = KL(π_new ‖ π_old) as in some notes and sb3-contrib. Same Fisher at θk."""
    damping: float = 0.1
    """λ in H = F + λI, used by conjugate gradient and in the step size. Raise it if
    CG residuals stay large or steps are rejected often."""
    kl_scale: KLScale = "per_dim"
    """What δ (`max_kl`) and λ (`damping`) are stated for. `per_dim` (the default): one
    action dimension; the update uses δ·A and λ·A, A = `trpo.policies.action_dims` of the
    action space (Box: its size, MultiBinary: its bits, Discrete and MultiDiscrete: 1), so
    one δ serves envs with different action sizes (a factorised policy's joint KL grows
    with A for the same change per coordinate). It is sb3-contrib's TRPO with target_kl=δ,
    cg_damping=λ, whose KL is averaged over Gaussian and Bernoulli coordinates, so
    sb3-contrib and rl-zoo settings carry over. `joint` (the paper's): δ and λ for the KL
    of the whole action distribution. The two differ only where A > 1 (docs/results.md,
    "Trust region per action dimension": level at 1M steps, sooner early)."""
    fvp_subsample: float = 1.0
    """Fraction of the batch's states on which the Fisher-vector products are computed
    (1.0: all). Smaller is faster per CG iteration but changes the algorithm: opt-in."""
    update_chunk: int = 0
    """States per chunk for the policy step's gradient and Fisher-vector products (0: the
    whole batch at once). Bounds the step's peak memory for large networks on big batches
    (CNNs: ~0.7 MB a state at once, docs/benchmarks.md) at the cost of a forward per chunk
    for every product; the step is the same up to float rounding."""
    cg_iters: int = 10
    """Conjugate-gradient iterations per update."""
    cg_residual_tol: float = 1e-10
    """CG stops early when the squared residual norm falls below this."""
    backtrack_coef: float = 0.8
    """Line-search shrink factor α: candidate j is θk + α^j · full_step."""
    backtrack_iters: int = 10
    """Line-search tries before the old parameters are kept."""
    vpg_lr: float = 1.0
    """Step size of the plain gradient step (`algo="vpg"` only); the default won a sweep on
    CartPole-v1 (docs/results.md, "How each preset was chosen")."""
    kl_penalty_coef: float = 1.0
    """C of the penalised objective L − C·KL (`algo="kl_penalty"` only): the step H⁻¹g / C."""

    policy_hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the policy MLP."""
    value_hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the value MLP."""
    activation: Literal["tanh", "relu", "elu", "silu"] = "tanh"
    """Hidden activation of both MLPs."""
    image_encoder: Literal["auto", "nature", "small", "grid"] = "auto"
    """CNN for image observations (`trpo.encoders.image_cnn`): nature (the DQN network, for
    Atari frames), small (OpenAI baselines' smaller Atari network, ~4x cheaper) or grid
    (MinAtar's, for small grids); auto: nature from 36 pixels a side, else grid. The policy
    and the value function each get their own, so the value fit never moves the policy
    (unless `share_encoder`)."""
    share_encoder: bool = False
    """One observation encoder (the CNN of image observations) for the policy and the value
    function instead of one each. The value fit then moves the policy too, outside the trust
    region, by the KL logged as value_fit_kl, and runs after the policy step (no overlap)."""
    log_std_init: float = 0.0
    """Initial log standard deviation of the Gaussian policy (Box actions)."""

    value_lr: float = 1e-3
    """Adam learning rate of the value function."""
    value_epochs: int = 5
    """Passes over the batch per iteration when fitting the value function."""
    value_minibatch: int = 64
    """Minibatch size of the value regression."""

    normalize_obs: bool = True
    """Running mean/std observation normalisation (Box observations only)."""
    obs_norm_update: StatsUpdate = "iteration"
    """When the observation statistics take in new observations: `step` at every env step,
    before they are normalised (as Stable-Baselines3's VecNormalize), so a batch is
    normalised with statistics that include it, and a step's next observation is
    normalised as the step after it is; `iteration` once per batch, after it is
    collected, so a batch is collected with one fixed transform. With `backend=ray` and
    `step`, each worker's statistics follow its own envs within an iteration."""
    clip_obs: float = 10.0
    """Normalised observations are clipped to ±clip_obs."""
    normalize_reward: bool = False
    """Divide rewards by the running std of the discounted return (training only)."""
    reward_norm_update: StatsUpdate = "iteration"
    """When the return statistics behind normalize_reward take in new returns: `step` at
    every env step, before that step's rewards are scaled (as Stable-Baselines3's
    VecNormalize); `iteration` once per batch, after it is collected, so one scale, from
    statistics that include the batch, covers all of it. With `backend=ray` and `step`,
    each worker's statistics follow its own envs within an iteration."""
    clip_reward: float = 10.0
    """Scaled rewards are clipped to ±clip_reward (normalize_reward only)."""

    eval_every: int = 5
    """Evaluate every this many iterations (0 disables periodic evaluation)."""
    eval_episodes: int = 10
    """Episodes per evaluation (deterministic actions, frozen normaliser, raw returns)."""
    checkpoint_every: int = 10
    """Write `last.safetensors` every this many iterations (0: only at the end)."""
    device: str = "cpu"
    """Where the update (policy step, value fit) runs: `cpu`, or `cuda` / `cuda:N` for a
    GPU, worth it for large networks or batches. Rollouts stay on the CPU, where a small
    batch's forward is fastest; the weights are copied there after each update."""
    torch_threads: int = 1
    """torch intra-op threads. One reproduces runs exactly and is fastest for small nets."""
    overlap: Literal["auto", "on", "off"] = "auto"
    """Fit the value function in a second process while the next batch is collected (the
    same run, bit for bit: `trpo.overlap`). auto: on Linux, with the local backend on the
    CPU, when two cores are free for it (`trpo benchmark`/`compare` workers that fill the
    cores switch it off)."""
    tensorboard: bool = True
    """Also write TensorBoard events to the run directory."""

    def __post_init__(self) -> None:
        _coerce_sequences(self)
        problems = list(_problems(self))
        if problems:
            raise ConfigError("; ".join(problems))

    # -- construction ---------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, **changes: Any) -> Config:
        from trpo.config_text import unknown_message  # it renders Config: imported late

        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise ConfigError(unknown_message(unknown))
        return dataclasses.replace(self, **changes)

    def with_overrides(self, pairs: dict[str, str]) -> Config:
        """Apply ``key -> string value`` overrides, parsing each value by the field's type."""
        from trpo.config_text import parse_value, unknown_message

        unknown = sorted(set(pairs) - set(self.field_names()))
        if unknown:
            raise ConfigError(unknown_message(unknown))
        hints = field_types()
        return self.replace(**{k: parse_value(k, v, hints[k]) for k, v in pairs.items()})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        from trpo.config_text import check_type, unknown_message

        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ConfigError(unknown_message(unknown))
        hints = field_types()
        for key, value in values.items():
            check_type(key, value, hints[key])
        return cls(**values)


def _coerce_sequences(config: Config) -> None:
    # JSON and TOML give lists where the config holds tuples; freeze them.
    for name in ("policy_hidden", "value_hidden", "env_modules"):
        value = getattr(config, name)
        if isinstance(value, list):
            object.__setattr__(config, name, tuple(value))


def _problems(c: Config) -> typing.Iterator[str]:
    positive = {
        "total_steps": c.total_steps,
        "n_envs": c.n_envs,
        "steps_per_iter": c.steps_per_iter,
        "max_kl": c.max_kl,
        "cg_iters": c.cg_iters,
        "backtrack_iters": c.backtrack_iters,
        "vpg_lr": c.vpg_lr,
        "kl_penalty_coef": c.kl_penalty_coef,
        "value_lr": c.value_lr,
        "value_epochs": c.value_epochs,
        "value_minibatch": c.value_minibatch,
        "eval_episodes": c.eval_episodes,
        "torch_threads": c.torch_threads,
        "ray_workers": c.ray_workers,
        "clip_obs": c.clip_obs,
        "clip_reward": c.clip_reward,
    }
    for name, value in positive.items():
        if not _finite_number(value) or value <= 0:
            yield f"{name} must be a positive number, got {value!r}"
    for name in ("gamma", "gae_lambda"):
        value = getattr(c, name)
        if not _finite_number(value) or not 0.0 <= value <= 1.0:
            yield f"{name} must be in [0, 1], got {value!r}"
    if not _finite_number(c.fvp_subsample) or not 0.0 < c.fvp_subsample <= 1.0:
        yield f"fvp_subsample must be in (0, 1], got {c.fvp_subsample!r}"
    if not _finite_number(c.backtrack_coef) or not 0.0 < c.backtrack_coef < 1.0:
        yield f"backtrack_coef must be in (0, 1), got {c.backtrack_coef!r}"
    for name in ("damping", "cg_residual_tol", "log_std_init"):
        if not _finite_number(getattr(c, name)):
            yield f"{name} must be a finite number, got {getattr(c, name)!r}"
    if _finite_number(c.damping) and c.damping < 0:
        yield f"damping must be >= 0, got {c.damping!r}"
    for name in ("eval_every", "checkpoint_every", "seed", "update_chunk"):
        value = getattr(c, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            yield f"{name} must be an integer >= 0, got {value!r}"
    # Env and evaluation seeds are seed + small offsets and must stay below 2**32.
    for name, limit in (("seed", 2**31), ("torch_threads", 1024), ("n_envs", 4096)):
        value = getattr(c, name)
        if isinstance(value, int) and value >= limit:
            yield f"{name} must be below {limit}, got {value!r}"
    if (
        isinstance(c.steps_per_iter, int)
        and isinstance(c.n_envs, int)
        and c.n_envs > 0
        and c.steps_per_iter % c.n_envs
    ):
        nearest = c.n_envs * max(1, (c.steps_per_iter + c.n_envs // 2) // c.n_envs)
        yield (
            f"steps_per_iter ({c.steps_per_iter}) must be a multiple of n_envs ({c.n_envs}); "
            f"try steps_per_iter={nearest}"
        )
    for name in ("policy_hidden", "value_hidden"):
        sizes = getattr(c, name)
        if not isinstance(sizes, tuple) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 < s <= 2**20 for s in sizes
        ):
            yield f"{name} must be a sequence of integers in [1, 2**20], got {sizes!r}"
    if c.overlap == "on" and not hasattr(os, "fork"):
        yield "overlap=on needs os.fork, which this platform lacks: use overlap=auto"
    if c.overlap == "on" and c.share_encoder is True:
        yield (
            "overlap=on fits the value function in a second process, which cannot move the "
            "encoder it shares with the policy (share_encoder=true): use overlap=auto"
        )
    if c.overlap == "on" and not overlap_possible(c):
        needs = " and ".join(f"{k}={v}" for k, v in OVERLAP_NEEDS.items())
        got = ", ".join(f"{k}={getattr(c, k)!r}" for k in OVERLAP_NEEDS)
        yield (
            f"overlap=on needs {needs} (the value fit's process computes on one CPU thread); "
            f"got {got}: use overlap=auto"
        )
    for name, hint in field_types().items():
        if hint is bool and not isinstance(getattr(c, name), bool):
            yield f"{name} must be true or false, got {getattr(c, name)!r}"
    for name, allowed in choices().items():
        if getattr(c, name) not in allowed:
            yield f"{name} must be one of {', '.join(allowed)}; got {getattr(c, name)!r}"
    if (
        c.backend == "ray"
        and isinstance(c.ray_workers, int)
        and isinstance(c.n_envs, int)
        and c.ray_workers > c.n_envs
    ):
        yield f"ray_workers ({c.ray_workers}) must be at most n_envs ({c.n_envs})"
    if not isinstance(c.device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", c.device):
        yield f"device must be cpu, cuda or cuda:N, got {c.device!r}"
    if not isinstance(c.env_kwargs, dict):
        yield f"env_kwargs must be a mapping, got {c.env_kwargs!r}"
    if not isinstance(c.env_modules, tuple) or not all(
        isinstance(m, str) and re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", m)
        for m in c.env_modules
    ):
        yield f"env_modules must be a sequence of module names, got {c.env_modules!r}"


@functools.cache
def field_types() -> dict[str, Any]:
    """Each setting's type, resolved from Config's annotations once (~0.5 ms a time, and
    every Config checks its values against them). Read it; do not change it."""
    return typing.get_type_hints(Config)


def choices() -> dict[str, tuple[str, ...]]:
    """The allowed values of every setting typed as a Literal, read from the type hints."""
    return {
        name: typing.get_args(hint)
        for name, hint in field_types().items()
        if typing.get_origin(hint) is Literal
    }


OVERLAP_NEEDS: dict[str, Any] = {"backend": "local", "device": "cpu", "torch_threads": 1}
"""The settings `overlap` works with: its forked process fits on one CPU thread."""


def overlap_possible(config: Config) -> bool:
    return all(getattr(config, name) == value for name, value in OVERLAP_NEEDS.items())


def _finite_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and value == value
        and abs(value) != float("inf")
    )


SettingSource = Literal["preset", "file", "set", "argument", "config"]
"""Where a setting's value came from: the env's preset, a settings file, ``--set``, a
keyword argument or flag, or a whole `Config` passed as such."""


@dataclass(frozen=True)
class Settings:
    """A resolved `Config` and how it was resolved: which env's preset applied (None: no
    preset, or opted out) and where every setting that is not a default came from.
    `TRPO.settings` holds it; a run directory keeps it as ``settings.json`` beside
    ``config.json`` (which stays a plain `Config.from_dict` table)."""

    config: Config
    preset: str | None = None
    """The `trpo.presets.PRESETS` key applied, or None."""
    sources: dict[str, SettingSource] = field(default_factory=dict)
    """Setting -> the layer that set it last; settings absent here are defaults."""

    @classmethod
    def of_config(cls, config: Config) -> Settings:
        """A `Config` passed whole: every setting counts as the user's, no preset."""
        return cls(config, None, dict.fromkeys(Config.field_names(), "config"))

    @property
    def user_set(self) -> set[str]:
        """Settings the user gave (keyword argument, flag, --set, file or whole Config)."""
        return {key for key, source in self.sources.items() if source != "preset"}

    @property
    def overrides(self) -> dict[str, Any]:
        """The user's settings and their resolved values."""
        values = self.config.to_dict()
        return {key: values[key] for key in sorted(self.user_set)}

    def replace(self, source: SettingSource = "argument", **changes: Any) -> Settings:
        """These settings with ``changes`` applied as coming from ``source``."""
        sources = {**self.sources, **dict.fromkeys(changes, source)}
        return Settings(self.config.replace(**changes), self.preset, sources)

    def to_dict(self) -> dict[str, Any]:
        from trpo.presets import preset_for

        return {
            "preset": self.preset,
            "preset_values": preset_for(self.preset) if self.preset else {},
            "overrides": self.overrides,
            "sources": dict(sorted(self.sources.items())),
        }

    def describe(self) -> str:
        """One line: the preset and the user's settings."""
        preset = f"preset {self.preset}" if self.preset else "no preset"
        user = ", ".join(f"{k}={v}" for k, v in self.overrides.items() if k != "env_id")
        return f"{preset}; user settings: {user or 'none'}"


def resolve_settings(
    env_id: str,
    *,
    preset: bool = True,
    file_values: dict[str, Any] | None = None,
    set_pairs: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> Settings:
    """A run's settings, each layer over the one before: the defaults < the env's preset
    (unless ``preset`` is False) < ``file_values`` (a settings file's table) <
    ``set_pairs`` (``key -> string`` overrides, parsed by type) < ``values`` (typed: keyword
    arguments, command-line flags); ``env_kwargs`` are added to the env keyword arguments
    the layers gave. The one resolution behind `TRPO(...)`, `trpo train`, `compare` and
    `benchmark`, so the same settings give the same Config wherever they are written."""
    from trpo.presets import has_preset, preset_for, preset_key

    settings = Settings(Config(env_id=env_id))
    key = preset_key(env_id)
    if preset and has_preset(key):
        settings = Settings(settings.config, key, {})
        settings = settings.replace("preset", **preset_for(key))
    if file_values is not None:
        unknown = sorted(set(file_values) - set(Config.field_names()))
        if unknown:
            from trpo.config_text import unknown_message

            raise ConfigError(unknown_message(unknown))
        checked = Config.from_dict({**settings.config.to_dict(), **file_values})
        settings = settings.replace("file", **{k: getattr(checked, k) for k in file_values})
    if set_pairs:
        parsed = settings.config.with_overrides(set_pairs)
        settings = settings.replace("set", **{k: getattr(parsed, k) for k in set_pairs})
    if values:
        settings = settings.replace("argument", **values)
    if env_kwargs:
        merged = {**settings.config.env_kwargs, **env_kwargs}
        settings = settings.replace("argument", env_kwargs=merged)
    return settings


def resolve_config(env_id: str, **layers: Any) -> Config:
    """`resolve_settings(env_id, **layers).config`."""
    return resolve_settings(env_id, **layers).config

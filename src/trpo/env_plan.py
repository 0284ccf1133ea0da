"""Where a run's envs come from: a user's env source (an id, a factory or an instance)
and an optional evaluation env become the factories of the training and evaluation envs,
with the settings adjusted to what the source allows and the rest refused up front."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym

from trpo.checkpoint import CheckpointError, same_space
from trpo.config import Config, ConfigError, Settings
from trpo.encoders import ObservationEncoder
from trpo.envs import (
    EnvError,
    EnvSource,
    check_env,
    copy_factory,
    env_factory,
    make_vector_env,
)
from trpo.resources import check_memory, head_size

log = logging.getLogger("trpo")


CUSTOM_ENV_ID = "custom"
"""`Config.env_id` of a run on an env without a registered Gymnasium id."""


def env_id_of(env: EnvSource | None) -> str | None:
    """The id an env source names: an id, an env's spec id, or its factory's env's."""
    if env is None or isinstance(env, str):
        return env
    if isinstance(env, gym.Env):
        return env.spec.id if env.spec is not None else None
    if callable(env):  # one env built to read its spec, then closed
        probe = env()
        try:
            return probe.spec.id if probe.spec is not None else None
        finally:
            probe.close()
    raise EnvError(f"expected a Gymnasium env id, env instance or factory, got {env!r}")


@dataclass
class EnvPlan:
    """Where a run's envs come from. ``first``: the factory of the first training env
    copy; ``copies``: of faithful further copies (None: there are none); the evaluation
    envs' factory (None: no evaluation) and how many copies of it may exist at once."""

    first: Callable[[], gym.Env]
    copies: Callable[[], gym.Env] | None
    eval_factory: Callable[[], gym.Env] | None
    eval_copies: int | None
    env_id: str | None

    def training_envs(self, config: Config) -> gym.vector.VectorEnv:
        n_envs = config.n_envs if config.backend == "local" else 1
        if self.copies is None or (config.vec == "sync" and self.first is not self.copies):
            fns = [self.first] + [self.copies] * (n_envs - 1)
        else:  # copies cross processes: the instance itself cannot
            fns = [self.copies] * n_envs
        return make_vector_env(fns, n_envs, config.vec, self.env_id, config.env_kwargs)


def plan_envs(
    env: EnvSource, eval_env: EnvSource | None, settings: Settings, user_set: set[str]
) -> tuple[Settings, EnvPlan]:
    """The env plan for ``env``, and ``settings`` adjusted to it; refuses what cannot work
    (``user_set``: the settings the user chose, which are never changed silently)."""
    config = settings.config
    if isinstance(env, gym.Env):
        copies = copy_factory(env)
        first = env_factory(env, modules=config.env_modules)
        if copies is None:
            settings = _single_copy(settings, user_set)
        plan = EnvPlan(first, copies, copies, None, None)
    else:
        factory = env_factory(env, config.env_kwargs, config.env_modules)
        evaluation = factory
        if isinstance(env, str):  # Atari evaluates whole games with raw scores
            evaluation = env_factory(env, config.env_kwargs, config.env_modules, training=False)
        plan = EnvPlan(factory, factory, evaluation, None, env if isinstance(env, str) else None)
    if eval_env is not None:
        plan.eval_factory, plan.eval_copies = _eval_envs(eval_env, env, settings.config)
    elif plan.eval_factory is None:
        settings = _no_evaluation(settings, user_set)
    return settings, plan


def _single_copy(settings: Settings, user_set: set[str]) -> Settings:
    """Settings for an env instance that cannot be copied: one env copy, in this process."""
    config = settings.config
    why = (
        "an env instance without a registered spec (or with a wrapper that does not record "
        "its arguments) cannot be copied"
    )
    way_out = "pass an env id or a zero-argument factory instead"
    if config.backend == "ray":
        raise EnvError(f"backend=ray builds its envs in worker processes, but {why}: {way_out}")
    if config.vec != "sync":
        raise EnvError(f"vec={config.vec} needs env copies, but {why}: {way_out}")
    if config.n_envs != 1:
        if "n_envs" in user_set:
            raise EnvError(f"n_envs={config.n_envs} needs env copies, but {why}: {way_out}")
        config = config.replace(n_envs=1)
        settings = Settings(config, settings.preset, settings.sources)
    return settings


def _no_evaluation(settings: Settings, user_set: set[str]) -> Settings:
    config = settings.config
    if config.eval_every == 0:
        return settings
    if "eval_every" in user_set:
        raise EnvError(
            f"eval_every={config.eval_every} needs evaluation envs, but the env instance "
            "cannot be copied: pass eval_env=... (an id, a factory or another instance), "
            "or eval_every=0"
        )
    log.warning(
        "no periodic evaluation: the env instance cannot be copied and no eval_env was "
        "given (pass eval_env=... to evaluate during training; the best checkpoint and "
        "the score need it)"
    )
    config = config.replace(eval_every=0)
    return Settings(config, settings.preset, settings.sources)


def _eval_envs(
    eval_env: EnvSource, env: EnvSource, config: Config
) -> tuple[Callable[[], gym.Env], int | None]:
    """The evaluation envs' factory and how many may exist at once (None: any number)."""
    if eval_env is env and not isinstance(env, str):
        raise EnvError("eval_env must be another env than the training env")
    if isinstance(eval_env, str):
        kwargs = config.env_kwargs if eval_env == config.env_id else None
        return env_factory(eval_env, kwargs, config.env_modules, training=False), None
    if isinstance(eval_env, gym.Env):
        copies = copy_factory(eval_env)
        if copies is not None:
            return copies, None
        return env_factory(eval_env), 1  # episodes one after another on the instance
    if callable(eval_env):
        return env_factory(eval_env, modules=config.env_modules), None
    raise EnvError(f"eval_env must be an env id, instance or factory, got {eval_env!r}")


def open_envs(
    env: EnvSource, eval_env: EnvSource | None, settings: Settings, force: bool
) -> tuple[Settings, EnvPlan, gym.vector.VectorEnv]:
    """The training envs of a new run, after the checks that must come first: an env id
    or factory built, reset and stepped once (`trpo.envs.check_env`), and, unless
    ``force``, the memory the settings need against what is available."""
    config = settings.config
    if not isinstance(env, gym.Env):  # refuse an env that cannot run before any output
        check_env(env_factory(env, config.env_kwargs, config.env_modules), config.env_kwargs)
    settings, plan = plan_envs(env, eval_env, settings, settings.user_set)
    envs = plan.training_envs(settings.config)
    if not force:
        try:
            encoder = ObservationEncoder(envs.single_observation_space)
            check_memory(settings.config, encoder, head_size(envs.single_action_space))
        except ConfigError:
            envs.close()
            raise
    return settings, plan, envs


def check_same_spaces(
    envs: gym.vector.VectorEnv, observation_space: gym.Space, action_space: gym.Space
) -> None:
    """Refuse (closing ``envs``) envs whose spaces are not those an agent was made for."""
    if not (
        same_space(envs.single_observation_space, observation_space)
        and same_space(envs.single_action_space, action_space)
    ):
        envs.close()
        raise CheckpointError(
            f"the agent was trained on observation space {observation_space} and action "
            f"space {action_space}, but the env has {envs.single_observation_space} and "
            f"{envs.single_action_space}"
        )

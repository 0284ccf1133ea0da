"""`TRPO`, what users import: ``TRPO(env, **settings).learn()``, ``predict``, ``save``,
``TRPO.load``. A thin facade over the `Agent` (acting), the `Trainer` (one iteration)
and the `Run` (the loop and its outputs), each reachable as an attribute."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from math import isnan
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from torch import nn

from trpo.agent import Agent
from trpo.checkpoint import Checkpoint, CheckpointError, load_checkpoint, same_space
from trpo.config import Config, ConfigError, Settings, resolve_settings
from trpo.envs import (
    EnvError,
    EnvSource,
    ObservationEncoder,
    check_env,
    copy_factory,
    env_factory,
    make_vector_env,
)
from trpo.evaluate import EvalResult
from trpo.metrics import Callback
from trpo.reproducibility import torch_threads
from trpo.resources import check_memory, head_size
from trpo.run import Run
from trpo.trainer import Trainer

log = logging.getLogger("trpo")

CUSTOM_ENV_ID = "custom"
"""`Config.env_id` of a run on an env without a registered Gymnasium id."""


SB3_POLICIES = {
    "MlpPolicy": None,
    "CnnPolicy": "image observations need a CNN encoder, which trpo does not have yet",
    "MultiInputPolicy": "Dict observations need one encoder per key, which trpo does not have yet",
}
"""Stable-Baselines3's policy names: accepted where SB3 takes them (MlpPolicy is trpo's
MLPs), or refused saying why (None: supported)."""


class TRPO:
    """Trust Region Policy Optimization on a Gymnasium environment.

    ``env`` is a Gymnasium id (``mypkg.envs:MyEnv-v0`` imports ``mypkg.envs`` first), a
    zero-argument factory returning an env, or an env instance. An instance that
    `trpo.envs.copy_factory` can copy faithfully (it came from `gymnasium.make` and every
    wrapper on it records its arguments) runs like its id: the same settings, n_envs
    copies (the instance is the first), evaluation on copies. Any other instance runs one
    env copy (n_envs=1), and is evaluated only on an ``eval_env``; without one periodic
    evaluation is off, with one log note. What cannot work (n_envs > 1, vec=async or
    backend=ray, or eval_every set, on an instance without copies) is refused here.

    ``eval_env`` (an id, a factory or an instance, as SB3's EvalCallback takes it): the
    env of periodic evaluation, instead of copies of the training env.

    Settings resolve as ``trpo train`` resolves them (`trpo.config.resolve_settings`): the
    defaults < the env's preset (``preset=False`` skips it) < keyword arguments. A whole
    ``config`` (`Config`) counts as set by you, every field: no preset is applied to it
    (a `trpo.config.Settings` is taken as resolved). `settings` says which preset and
    which of your settings made the run's config.

    ``policy`` / ``value_fn`` replace the default MLPs (see `trpo.policies` for their
    contract); SB3's ``TRPO("MlpPolicy", env)`` also works (the default MLPs). With
    ``run_dir`` the run writes metrics, TensorBoard events and checkpoints there.

    Before anything is built, an env given as an id or factory is built, reset and stepped
    once (`trpo.envs.check_env`), and the memory the settings need is estimated
    (`trpo.resources.memory_estimate`): a configuration that cannot fit in the memory
    available raises `InsufficientMemoryError` unless ``force=True``.
    """

    def __init__(
        self,
        env: EnvSource | None = None,
        config: Config | Settings | None = None,
        *,
        policy: nn.Module | str | None = None,
        value_fn: nn.Module | None = None,
        eval_env: EnvSource | None = None,
        preset: bool = True,
        run_dir: str | Path | None = None,
        force: bool = False,
        **overrides: Any,
    ):
        if isinstance(env, str) and env in SB3_POLICIES:  # SB3's TRPO("MlpPolicy", env)
            policy, env, config = env, config, None
        if isinstance(policy, str):
            _check_policy_name(policy)
            policy = None
        if config is not None and not isinstance(config, Config | Settings):
            raise TypeError(f"config must be a trpo Config, got {config!r}")
        settings = _resolve(env, config, preset, overrides)
        if env is None:
            env = settings.config.env_id
        config = settings.config
        if not isinstance(env, gym.Env):  # refuse an env that cannot run before any output
            check_env(env_factory(env, config.env_kwargs, config.env_modules), config.env_kwargs)
        settings, plan = _plan_envs(env, eval_env, settings, settings.user_set)
        envs = plan.training_envs(settings.config)
        spaces = envs.single_observation_space, envs.single_action_space
        if not force:
            try:
                encoded = ObservationEncoder(spaces[0]).dim
                check_memory(settings.config, encoded, head_size(spaces[1]))
            except ConfigError:
                envs.close()
                raise
        self.agent = Agent(*spaces, settings.config, policy, value_fn)
        self._env, self._run_dir, self._checkpoint = env, run_dir, None
        self._eval_env, self._settings, self._plan = eval_env, settings, plan
        self._run: Run | None = None
        self._timestep_base = 0
        self._start_run(envs)

    @classmethod
    def load(
        cls,
        path: str | Path,
        env: EnvSource | None = None,
        *,
        policy: nn.Module | None = None,
        value_fn: nn.Module | None = None,
        eval_env: EnvSource | None = None,
        run_dir: str | Path | None = None,
        **overrides: Any,
    ) -> TRPO:
        """A saved run: ``predict`` at once, with no env built; ``learn`` continues it on
        ``env`` (default: the checkpoint's env id), whose spaces must match the saved ones.
        ``overrides`` change settings that do not shape the networks (e.g. ``device``)."""
        checkpoint = load_checkpoint(path)
        agent = Agent.from_checkpoint(checkpoint, policy, value_fn, **overrides)
        if env is None and agent.config.env_id == CUSTOM_ENV_ID:
            raise CheckpointError(
                f"{path} was trained on an env without a Gymnasium id: pass it as "
                "TRPO.load(path, env=...) (an id, a factory or an instance)"
            )
        self = cls.__new__(cls)
        self.agent, self._env, self._run_dir = agent, env or agent.config.env_id, run_dir
        self._checkpoint, self._run, self._eval_env = checkpoint, None, eval_env
        self._settings = _saved_settings(checkpoint, agent.config)
        self._plan, self._timestep_base = None, 0
        return self

    def _start_run(self, envs: gym.vector.VectorEnv | None = None) -> Run:
        """Build the trainer and the run (and, for a loaded agent, continue its run)."""
        agent = self.agent
        if self._plan is None:  # a loaded run: its n_envs is fixed by the checkpoint
            fixed = {"n_envs"}
            settings, self._plan = _plan_envs(self._env, self._eval_env, self._settings, fixed)
            self.agent.config, self._settings = settings.config, settings
        config, plan = agent.config, self._plan
        envs = envs or plan.training_envs(config)
        if not (
            same_space(envs.single_observation_space, agent.observation_space)
            and same_space(envs.single_action_space, agent.action_space)
        ):
            envs.close()
            raise CheckpointError(
                f"the agent was trained on observation space {agent.observation_space} and "
                f"action space {agent.action_space}, but the env has "
                f"{envs.single_observation_space} and {envs.single_action_space}"
            )
        if config.backend == "ray":  # the local envs only told the spaces
            envs.close()
            envs = None
        trainer = Trainer(agent, config, envs, plan.copies or plan.first)
        self._run = Run(trainer, plan.eval_factory, self._run_dir, plan.eval_copies, self._settings)
        if self._checkpoint is not None:
            _restore(self._run, self._checkpoint)
        return self._run

    @property
    def run(self) -> Run:
        return self._run or self._start_run()

    @property
    def trainer(self) -> Trainer:
        return self.run.trainer

    def learn(
        self,
        total_steps: int | None = None,
        callback: Callback | None = None,
        progress: bool = False,
        *,
        total_timesteps: int | None = None,
        progress_bar: bool | None = None,
        reset_num_timesteps: bool | None = None,
    ) -> TRPO:
        """Train until the run has taken ``total_steps`` environment steps in all
        (default ``config.total_steps``), counting steps taken before a save/load.
        ``callback(stats)`` runs after every iteration; returning False stops training
        after that iteration. With ``progress`` a live progress bar is shown. torch runs on
        ``config.torch_threads`` threads during the call and as before it afterwards.

        Stable-Baselines3's names keep SB3's meaning: ``total_timesteps=N`` trains N more
        steps (whole iterations, so up to one batch more, as SB3's on-policy algorithms
        do); ``reset_num_timesteps`` (default True) restarts `num_timesteps` from 0 for
        this call, while `steps` (the run's total, in metrics and checkpoints) goes on;
        ``progress_bar`` is ``progress``. A positional count with ``reset_num_timesteps``
        given is read as SB3 reads it too."""
        sb3 = total_timesteps is not None or reset_num_timesteps is not None
        if total_timesteps is not None and total_steps is not None:
            raise TypeError("pass total_steps (the run's total) or total_timesteps (more)")
        if progress_bar is not None:
            progress = progress_bar
        _check_callback(callback)
        with torch_threads(self.config.torch_threads):
            run = self.run
            if sb3:
                more = total_timesteps if total_timesteps is not None else total_steps
                more = self.config.total_steps if more is None else more
                if not isinstance(more, int) or isinstance(more, bool) or more <= 0:
                    raise ValueError(f"total_timesteps must be a positive integer, got {more!r}")
                if reset_num_timesteps is not False:
                    self._timestep_base = run.trainer.steps
                total = run.trainer.steps + more
            else:
                total = self.config.total_steps if total_steps is None else total_steps
                if isinstance(total, int) and 0 < total <= run.trainer.steps:
                    log.warning(
                        "learn(%d): the run has already taken %d steps, so nothing is "
                        "trained (learn(total_steps) counts the run's steps in all; "
                        "learn(total_timesteps=N) trains N more)",
                        total,
                        run.trainer.steps,
                    )
            run.learn(total, callback, progress)
        return self

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """``(action(s), state)`` for raw observation(s), as Stable-Baselines3's
        ``predict`` returns them: ``state`` and ``episode_start`` are for recurrent
        policies, which trpo has not, so ``state`` comes back as given. Deterministic by
        default (the policy's mode, as evaluation and `trpo export` act; SB3's default is
        sampling, and its ``evaluate_policy`` asks for deterministic explicitly). The
        action alone: ``agent.agent.predict(obs)``."""
        return self.agent.predict(observation, deterministic), state

    def evaluate(self, episodes: int | None = None, seed: int | None = None) -> EvalResult:
        return self.run.evaluate(episodes, seed)

    def save(self, path: str | Path) -> None:
        self.run.save(path)

    def close(self) -> None:
        if self._run is not None:
            self._run.close()

    def get_env(self) -> gym.vector.VectorEnv | None:
        """The training envs (SB3's ``get_env``): a Gymnasium vector env (whose ``reset``
        returns ``(obs, info)``), or None when they live on Ray actors."""
        return getattr(self.trainer.collector, "envs", None)

    @property
    def num_timesteps(self) -> int:
        """SB3's counter: the steps taken since the last ``learn(...,
        reset_num_timesteps=True)`` (the run's total `steps` before any such call)."""
        return self.trainer.steps - self._timestep_base

    @property
    def settings(self) -> Settings:
        """How `config` was resolved: the preset used and the settings you gave."""
        return self._settings

    config = property(lambda self: self.agent.config, doc="The run's settings (`Config`).")
    observation_space = property(lambda self: self.agent.observation_space)
    action_space = property(lambda self: self.agent.action_space)
    policy = property(lambda self: self.agent.policy)
    value_fn = property(lambda self: self.agent.value_fn)
    steps = property(lambda self: self.trainer.steps, doc="Environment steps taken so far.")
    score = property(lambda self: self.run.score, doc="Mean of the last evaluations.")
    metrics = property(lambda self: self.run.metrics, doc="metrics.csv's rows.")

    @property
    def evaluations(self) -> list[tuple[int, float]]:
        """(steps, mean evaluation return) of every periodic evaluation so far."""
        rows = self.run.metrics
        return [(int(r["steps"]), r["eval_return"]) for r in rows if not isnan(r["eval_return"])]


def _check_policy_name(name: str) -> None:
    if name not in SB3_POLICIES:
        raise ValueError(
            f"unknown policy {name!r}: pass 'MlpPolicy' (trpo's MLPs) or an nn.Module "
            "(see trpo.policies)"
        )
    if SB3_POLICIES[name] is not None:
        raise ValueError(
            f"{name} is not supported yet: {SB3_POLICIES[name]} (they are coming). For now "
            "flatten the observations (gymnasium.wrappers.FlattenObservation) and use "
            "'MlpPolicy', or pass your own policy module (see trpo.policies)"
        )


def _check_callback(callback: Any) -> None:
    if callback is None:
        return
    if hasattr(callback, "init_callback") or isinstance(callback, list | tuple):
        raise TypeError(
            "callback must be a function of the iteration's stats (trpo.IterationStats) "
            "that may return False to stop, e.g. callback=lambda stats: stats.steps < 50_000; "
            "Stable-Baselines3 callback objects are not supported"
        )
    if not callable(callback):
        raise TypeError(f"callback must be callable, got {callback!r}")


def _resolve(
    env: EnvSource | None,
    config: Config | Settings | None,
    preset: bool,
    overrides: dict[str, Any],
) -> Settings:
    """The run's settings: a Settings as given, a whole Config as the user's, otherwise
    the defaults < the preset of the env's id (or its spec's) < ``overrides``."""
    if isinstance(config, Settings):
        settings = config.replace("argument", **overrides) if overrides else config
    elif isinstance(config, Config):
        settings = Settings.of_config(config).replace("config", **overrides)
    else:
        env_id = _env_id(env) or CUSTOM_ENV_ID
        return resolve_settings(env_id, preset=preset, values=overrides)
    if isinstance(env, str):
        settings = settings.replace("config", env_id=env)
    elif env is not None:
        settings = settings.replace("config", env_id=_env_id(env) or CUSTOM_ENV_ID)
    return settings


def _env_id(env: EnvSource | None) -> str | None:
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
class _EnvPlan:
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


def _plan_envs(
    env: EnvSource, eval_env: EnvSource | None, settings: Settings, user_set: set[str]
) -> tuple[Settings, _EnvPlan]:
    """The env plan for ``env``, and ``settings`` adjusted to it; refuses what cannot work
    (``user_set``: the settings the user chose, which are never changed silently)."""
    config = settings.config
    if isinstance(env, gym.Env):
        copies = copy_factory(env)
        first = env_factory(env, modules=config.env_modules)
        if copies is None:
            settings = _single_copy(settings, user_set)
        plan = _EnvPlan(first, copies, copies, None, None)
    else:
        factory = env_factory(env, config.env_kwargs, config.env_modules)
        plan = _EnvPlan(factory, factory, factory, None, env if isinstance(env, str) else None)
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
        return env_factory(eval_env, modules=config.env_modules), None
    if isinstance(eval_env, gym.Env):
        copies = copy_factory(eval_env)
        if copies is not None:
            return copies, None
        return env_factory(eval_env), 1  # episodes one after another on the instance
    if callable(eval_env):
        return env_factory(eval_env, modules=config.env_modules), None
    raise EnvError(f"eval_env must be an env id, instance or factory, got {eval_env!r}")


def _saved_settings(checkpoint: Checkpoint, config: Config) -> Settings:
    """The settings a checkpoint recorded (a whole Config where it recorded none)."""
    try:
        saved = checkpoint.component("run")[1].get("settings")
    except CheckpointError:
        saved = None
    if not isinstance(saved, dict) or not isinstance(saved.get("sources"), dict):
        return Settings.of_config(config)
    fields = set(Config.field_names())
    sources = {k: v for k, v in saved["sources"].items() if k in fields}
    preset = saved.get("preset") if isinstance(saved.get("preset"), str) else None
    return Settings(config, preset, sources)


def _restore(run: Run, checkpoint: Checkpoint) -> None:
    try:
        continued = run.restore(checkpoint)
    except (KeyError, RuntimeError, ValueError, TypeError, OverflowError) as err:
        raise CheckpointError(
            f"{checkpoint.path}: checkpoint contents do not fit the run ({err})"
        ) from None
    if not continued:
        log.warning(
            "the envs' internal state could not be saved or restored (env type outside "
            "classic control and MuJoCo, async envs, or another n_envs), so the resumed "
            "run starts new episodes: the continuation is not bit-identical"
        )

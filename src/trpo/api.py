"""`TRPO`, what users import: ``TRPO(env, **settings).learn()``, ``predict``, ``save``,
``TRPO.load``. A thin facade over the `Agent` (acting), the `Trainer` (one iteration)
and the `Run` (the loop and its outputs), each reachable as an attribute."""

from __future__ import annotations

import logging
from math import isnan
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from torch import nn

from trpo.agent import Agent
from trpo.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from trpo.config import Config, Settings, resolve_settings
from trpo.env_plan import CUSTOM_ENV_ID, check_same_spaces, env_id_of, open_envs, plan_envs
from trpo.envs import (
    EnvSource,
)
from trpo.evaluate import EvalResult
from trpo.metrics import Callback
from trpo.reproducibility import torch_threads
from trpo.run import Run
from trpo.sb3 import check_callback, sb3_arguments, target_steps
from trpo.trainer import Trainer

log = logging.getLogger("trpo")


class TRPO:
    """Trust Region Policy Optimization on a Gymnasium environment.

    ``env``: a Gymnasium id (``mypkg.envs:MyEnv-v0`` imports ``mypkg.envs`` first), a
    zero-argument factory, or an env instance (copied where that is faithful, else run as
    one copy: `trpo.env_plan`); ``eval_env``: the env of periodic evaluation (id, factory
    or instance, as SB3's EvalCallback takes it). Settings resolve as ``trpo train``
    resolves them: the defaults < the env's preset (``preset=False`` skips it) < keyword
    arguments; a whole ``config`` counts as yours, with no preset; `settings` says which
    preset and which of your settings made the run. ``policy`` / ``value_fn`` replace the
    default MLPs (`trpo.policies`; SB3's ``TRPO("MlpPolicy", env)`` works too). With
    ``run_dir`` the run writes metrics, TensorBoard events and checkpoints there.

    An env id or factory is built, reset and stepped once before anything else
    (`trpo.envs.check_env`), and settings whose memory estimate exceeds what is available
    raise `InsufficientMemoryError` unless ``force=True``.
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
        policy, env, config = sb3_arguments(policy, env, config)
        settings = _resolve(env, config, preset, overrides)
        env = settings.config.env_id if env is None else env
        settings, plan, envs = open_envs(env, eval_env, settings, force)
        spaces = envs.single_observation_space, envs.single_action_space
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
            settings, self._plan = plan_envs(self._env, self._eval_env, self._settings, fixed)
            self.agent.config, self._settings = settings.config, settings
        config, plan = agent.config, self._plan
        envs = envs or plan.training_envs(config)
        check_same_spaces(envs, agent.observation_space, agent.action_space)
        if config.backend == "ray":  # the local envs only told the spaces
            envs.close()
            envs = None
        trainer = Trainer(agent, config, envs, plan.copies or plan.first)
        self._run = Run(trainer, plan.eval_factory, self._run_dir, plan.eval_copies, self._settings)
        if self._checkpoint is not None:
            self._run.restore(self._checkpoint)
        return self._run

    run = property(lambda self: self._run or self._start_run(), doc="The `Run` (built on use).")
    trainer = property(lambda self: self.run.trainer, doc="The `Trainer` (built on use).")

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
        SB3's keywords keep SB3's meaning (`trpo.sb3.target_steps`): ``total_timesteps=N``
        trains N more; ``reset_num_timesteps`` restarts `num_timesteps` (not `steps`)."""
        if progress_bar is not None:
            progress = progress_bar
        check_callback(callback)
        with torch_threads(self.config.torch_threads):
            run = self.run
            done, wanted = run.trainer.steps, self.config.total_steps
            total = target_steps(done, wanted, total_steps, total_timesteps, reset_num_timesteps)
            sb3_call = total_timesteps is not None or reset_num_timesteps is not None
            if sb3_call and reset_num_timesteps is not False:
                self._timestep_base = done
            run.learn(total, callback, progress)
        return self

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """``(action(s), state)`` for raw observation(s), as SB3's ``predict`` returns
        them (``state`` comes back as given: no recurrent policies). Deterministic by
        default, as evaluation and `trpo export` act (SB3's default samples; its
        ``evaluate_policy`` asks explicitly). The action alone: ``agent.agent.predict``."""
        return self.agent.predict(observation, deterministic), state

    def evaluate(self, episodes: int | None = None, seed: int | None = None) -> EvalResult:
        return self.run.evaluate(episodes, seed)

    def save(self, path: str | Path) -> None:
        self.run.save(path)

    def close(self) -> None:
        if self._run is not None:
            self._run.close()

    def get_env(self) -> gym.vector.VectorEnv | None:
        """The training vector env (SB3's ``get_env``; None on Ray actors)."""
        return getattr(self.trainer.collector, "envs", None)

    num_timesteps = property(
        lambda self: self.trainer.steps - self._timestep_base,
        doc="SB3's counter: steps since the last ``learn(..., reset_num_timesteps=True)``.",
    )
    settings = property(lambda self: self._settings, doc="The preset and settings you gave.")

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
        env_id = env_id_of(env) or CUSTOM_ENV_ID
        return resolve_settings(env_id, preset=preset, values=overrides)
    if isinstance(env, str):
        settings = settings.replace("config", env_id=env)
    elif env is not None:
        settings = settings.replace("config", env_id=env_id_of(env) or CUSTOM_ENV_ID)
    return settings


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

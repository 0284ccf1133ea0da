"""`TRPO`, what users import: ``TRPO(env, **settings).learn()``, ``predict``, ``save``,
``TRPO.load``. A thin facade over the `Agent` (acting), the `Trainer` (one iteration)
and the `Run` (the loop and its outputs), each reachable as an attribute."""

from __future__ import annotations

import logging
from collections.abc import Callable
from math import isnan
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from torch import nn

from trpo.agent import Agent
from trpo.checkpoint import Checkpoint, CheckpointError, load_checkpoint, same_space
from trpo.config import Config, ConfigError
from trpo.envs import (
    EnvError,
    EnvSource,
    ObservationEncoder,
    check_env,
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


class TRPO:
    """Trust Region Policy Optimization on a Gymnasium environment.

    ``env`` is a Gymnasium id, a zero-argument factory returning an env, or an env instance
    (then ``n_envs`` must be 1). Settings are `Config` fields, given as ``config=`` and/or
    keyword arguments. ``policy`` / ``value_fn`` replace the default MLPs (see
    `trpo.policies` for their contract). With ``run_dir`` the run writes metrics,
    TensorBoard events and checkpoints there.

    Before anything is built, an env given as an id or factory is built, reset and stepped
    once (`trpo.envs.check_env`), and the memory the settings need is estimated
    (`trpo.resources.memory_estimate`): a configuration that cannot fit in the memory
    available raises `InsufficientMemoryError` unless ``force=True``.
    """

    def __init__(
        self,
        env: EnvSource | None = None,
        config: Config | None = None,
        *,
        policy: nn.Module | None = None,
        value_fn: nn.Module | None = None,
        run_dir: str | Path | None = None,
        force: bool = False,
        **overrides: Any,
    ):
        config = (config or Config()).replace(**overrides)
        if env is None:
            env = config.env_id
        elif isinstance(env, str):
            config = config.replace(env_id=env)
        if not isinstance(env, gym.Env):  # refuse an env that cannot run before any output
            check_env(env_factory(env, config.env_kwargs), config.env_kwargs)
        envs = _training_envs(env, config)
        if not isinstance(env, str):  # an env object or factory: name what it built
            spec = envs.get_attr("spec")[0]
            config = config.replace(env_id=spec.id if spec is not None else CUSTOM_ENV_ID)
        spaces = envs.single_observation_space, envs.single_action_space
        if not force:
            try:
                check_memory(config, ObservationEncoder(spaces[0]).dim, head_size(spaces[1]))
            except ConfigError:
                envs.close()
                raise
        self.agent = Agent(*spaces, config, policy, value_fn)
        self._env, self._run_dir, self._checkpoint = env, run_dir, None
        self._run: Run | None = None
        self._start_run(envs)

    @classmethod
    def load(
        cls,
        path: str | Path,
        env: EnvSource | None = None,
        *,
        policy: nn.Module | None = None,
        value_fn: nn.Module | None = None,
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
        self._checkpoint, self._run = checkpoint, None
        return self

    def _start_run(self, envs: gym.vector.VectorEnv | None = None) -> Run:
        """Build the trainer and the run (and, for a loaded agent, continue its run)."""
        config, agent = self.agent.config, self.agent
        envs = envs or _training_envs(self._env, config)
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
        factory = env_factory(self._env, config.env_kwargs)
        if config.backend == "ray":  # the local envs only told the spaces
            envs.close()
            envs = None
        trainer = Trainer(agent, config, envs, factory)
        self._run = Run(trainer, _eval_factory(self._env, factory), self._run_dir)
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
    ) -> TRPO:
        """Train until the run has taken ``total_steps`` environment steps in all
        (default ``config.total_steps``), counting steps taken before a save/load.
        ``callback(stats)`` runs after every iteration; returning False stops training
        after that iteration. With ``progress`` a live progress bar is shown. torch runs on
        ``config.torch_threads`` threads during the call and as before it afterwards."""
        total = self.config.total_steps if total_steps is None else total_steps
        with torch_threads(self.config.torch_threads):
            self.run.learn(total, callback, progress)
        return self

    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Action(s) for raw observation(s); see `Agent.predict`."""
        return self.agent.predict(obs, deterministic)

    def evaluate(self, episodes: int | None = None, seed: int | None = None) -> EvalResult:
        return self.run.evaluate(episodes, seed)

    def save(self, path: str | Path) -> None:
        self.run.save(path)

    def close(self) -> None:
        if self._run is not None:
            self._run.close()

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


def _training_envs(env: EnvSource, config: Config) -> gym.vector.VectorEnv:
    if config.backend == "ray" and isinstance(env, gym.Env):
        raise EnvError(
            "backend=ray builds the envs in its worker processes: pass an env id or a "
            "zero-argument factory, not an env instance"
        )
    n_envs = config.n_envs if config.backend == "local" else 1
    env_id = env if isinstance(env, str) else None
    factory = env_factory(env, config.env_kwargs)
    return make_vector_env(factory, n_envs, config.vec, env_id, config.env_kwargs)


def _eval_factory(env: EnvSource, factory: Callable[[], gym.Env]) -> Callable[[], gym.Env] | None:
    if isinstance(env, gym.Env):
        spec = env.spec
        return None if spec is None else lambda: gym.make(spec)
    return factory


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

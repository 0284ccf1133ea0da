"""Environments: building vector envs, encoding observations, sending actions, normalising.

Vector envs use Gymnasium's SAME_STEP autoreset: the step that ends an episode returns the
reset observation and puts the real final observation in ``info["final_obs"]``. With the
default NEXT_STEP mode the step after an episode ends would be a fake transition (an
ignored action and a reset); SAME_STEP never produces one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from trpo.config import Config
from trpo.policies import UnsupportedSpaceError, action_kind

EnvSource = str | gym.Env | Callable[[], gym.Env]


class EnvError(ValueError):
    """The environment cannot be built or returned something training cannot use."""


def env_factory(
    source: EnvSource, env_kwargs: dict[str, Any] | None = None
) -> Callable[[], gym.Env]:
    """A zero-argument callable building one env from an id, a factory or an env instance.

    An env instance can only be used once, so it is accepted for a single-env vector and
    for evaluation only through ``make_vector_env(..., n_envs=1)``.
    """
    kwargs = dict(env_kwargs or {})
    if isinstance(source, str):
        check_env_id(source)

        def make() -> gym.Env:
            try:
                return gym.make(source, **kwargs)
            except (TypeError, ValueError) as err:
                raise EnvError(
                    f"{source} does not accept these env keyword arguments {kwargs}: {err}"
                ) from None

        return make
    if isinstance(source, gym.Env):
        used = []

        def reuse() -> gym.Env:
            if used:
                raise EnvError(
                    "an env instance can back only one env copy: pass an env id or a "
                    "zero-argument factory to use n_envs > 1 or periodic evaluation"
                )
            used.append(True)
            return source

        return reuse
    if callable(source):
        return source
    raise EnvError(f"expected a Gymnasium env id, env instance or factory, got {source!r}")


def check_env_id(env_id: str) -> None:
    if env_id in gym.registry:
        return
    hint = _did_you_mean(env_id, gym.registry)
    if any(name in env_id for name in ("Hopper", "Walker", "Cheetah", "Ant", "Humanoid")):
        hint += " MuJoCo envs need `pip install 'trpo[mujoco]'`."
    raise EnvError(f"unknown environment id '{env_id}'.{hint}")


def _did_you_mean(name: str, known: Any) -> str:
    """' Did you mean: a, b?' naming the entries of ``known`` closest to ``name``, or ''."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def make_vector_env(
    factory: Callable[[], gym.Env],
    n_envs: int,
    mode: str = "sync",
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> VectorEnv:
    """``n_envs`` copies with SAME_STEP autoreset: Gymnasium's sync or async vector env over
    ``factory``, or (mode ``envpool``) EnvPool's task ``env_id``."""
    fns = [factory] * n_envs
    try:
        if mode == "envpool":
            if env_id is None:
                raise EnvError(
                    "vec=envpool builds its envs from a task id: pass an env id that EnvPool "
                    "provides, not an env object or factory"
                )
            envs = EnvPoolVectorEnv(env_id, n_envs, env_kwargs or {})
        elif mode == "async":
            envs = AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
        else:
            envs = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    except EnvError:
        raise
    except (TypeError, gym.error.Error) as err:
        raise EnvError(f"could not build the environment: {err}") from None
    check_spaces(envs.single_observation_space, envs.single_action_space)
    return envs


class EnvPoolVectorEnv(VectorEnv):
    """EnvPool's C++ vector env (`pip install 'trpo[envpool]'`) behind Gymnasium's
    VectorEnv interface with SAME_STEP autoreset, as the Gymnasium path uses.

    EnvPool itself resets an env on the step after its episode ended (that step's action
    ignored, reward 0): here the env is reset at once instead, and the episode's last
    observation is handed over in ``info["final_obs"]``, so no such fake transition
    reaches a batch. Env i of reset seed s is EnvPool's env i of pool seed s - i.
    """

    def __init__(self, env_id: str, n_envs: int, env_kwargs: dict[str, Any]):
        try:
            import envpool
        except ImportError:
            raise EnvError(
                "vec=envpool needs EnvPool, which is not installed: pip install 'trpo[envpool]'"
            ) from None
        tasks = envpool.list_all_envs()
        if env_id not in tasks:
            hint = _did_you_mean(env_id, tasks)
            raise EnvError(f"EnvPool has no task '{env_id}'.{hint} Use vec=sync for it.")

        def make(seed: int):
            try:
                with warnings.catch_warnings():  # Box casting EnvPool's float64 bounds
                    warnings.filterwarnings("ignore", ".*precision lowered by casting")
                    pool = envpool.make_gymnasium(env_id, num_envs=n_envs, seed=seed, **env_kwargs)
                    pool.observation_space, pool.action_space  # noqa: B018 - built and cached now
                    return pool
            except (TypeError, ValueError, RuntimeError) as err:
                raise EnvError(f"EnvPool cannot make {env_id} with {env_kwargs}: {err}") from None

        self._make = make
        self._seed = 0
        self.pool = make(self._seed)
        self.num_envs = n_envs
        self.single_observation_space = self.pool.observation_space
        self.single_action_space = self.pool.action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, n_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, n_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
        self._obs: np.ndarray | None = None

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        mask = (options or {}).get("reset_mask")
        if mask is not None:  # restart some envs only (their episodes are abandoned)
            ids = np.flatnonzero(mask)
            self._obs[ids] = self._pool_reset(ids)
            return self._obs.copy(), {}
        if seed is not None:
            first = seed if isinstance(seed, int) else int(seed[0])
            if not isinstance(seed, int) and list(seed) != [first + i for i in range(len(seed))]:
                raise ValueError(f"EnvPool seeds its envs consecutively, got seeds {seed}")
            if first != self._seed:
                self.pool.close()
                self.pool, self._seed = self._make(first), first
        self._obs = self._pool_reset(None)
        return self._obs.copy(), {}

    def step(self, actions: np.ndarray):
        obs, reward, terminated, truncated, info = self.pool.step(actions)
        order = np.argsort(info["env_id"])  # sync mode answers in env order; make sure
        obs, reward = np.array(obs[order]), np.asarray(reward)[order]
        terminated, truncated = np.asarray(terminated)[order], np.asarray(truncated)[order]
        ended = np.flatnonzero(terminated | truncated)
        info_out: dict[str, Any] = {}
        if ended.size:
            final = np.empty(self.num_envs, dtype=object)
            final[ended] = list(obs[ended])
            info_out = {"final_obs": final, "_final_obs": terminated | truncated}
            obs[ended] = self._pool_reset(ended)
        self._obs = obs
        return obs.copy(), reward, terminated, truncated, info_out

    def _pool_reset(self, ids: np.ndarray | None) -> np.ndarray:
        obs, info = self.pool.reset() if ids is None else self.pool.reset(ids)
        return np.array(obs)[np.argsort(info["env_id"])]

    def close_extras(self, **kwargs: Any) -> None:
        self.pool.close()


def check_spaces(obs_space: gym.Space, action_space: gym.Space) -> None:
    ObservationEncoder(obs_space)
    try:
        action_kind(action_space)
    except UnsupportedSpaceError as err:
        raise EnvError(str(err)) from None


class ObservationEncoder:
    """Turns a batch of observations (leading batch axis) into a float32 [B, D] array.

    Box: flattened. Discrete: one-hot. MultiDiscrete: concatenated one-hots.
    MultiBinary: 0/1 floats. Other spaces (Dict, Tuple, Text, Graph, …) are refused:
    wrap such envs with `gymnasium.wrappers.FlattenObservation` first.
    """

    def __init__(self, space: gym.Space):
        self.space = space
        if isinstance(space, gym.spaces.Box | gym.spaces.MultiBinary):
            self.dim = int(np.prod(space.shape))
        elif isinstance(space, gym.spaces.Discrete):
            self.dim = int(space.n)
        elif isinstance(space, gym.spaces.MultiDiscrete):
            self.nvec = np.asarray(space.nvec).reshape(-1)
            self.offsets = np.concatenate([[0], np.cumsum(self.nvec)[:-1]])
            self.dim = int(self.nvec.sum())
        else:
            raise EnvError(
                f"observation space {space} is not supported: trpo handles Box, Discrete, "
                "MultiDiscrete and MultiBinary observations. For Dict or Tuple observations "
                "wrap the env in gymnasium.wrappers.FlattenObservation."
            )
        self.is_box = isinstance(space, gym.spaces.Box)

    def __call__(self, obs: Any) -> np.ndarray:
        space = self.space
        if isinstance(space, gym.spaces.Discrete):
            index = np.asarray(obs, dtype=np.int64).reshape(-1) - int(space.start)
            return np.eye(self.dim, dtype=np.float32)[index]
        if isinstance(space, gym.spaces.MultiDiscrete):
            values = np.asarray(obs, dtype=np.int64).reshape(-1, len(self.nvec))
            start = np.asarray(space.start).reshape(-1)
            out = np.zeros((values.shape[0], self.dim), dtype=np.float32)
            rows = np.arange(values.shape[0])[:, None]
            out[rows, self.offsets + values - start] = 1.0
            return out
        obs = np.asarray(obs, dtype=np.float32)
        return obs.reshape(obs.shape[0], -1)


class ActionAdapter:
    """Turns policy samples (as numpy) into what the env accepts.

    Gaussian samples are clipped to the Box's finite bounds (only here, never in the batch);
    Discrete/MultiDiscrete samples are shifted by the space's ``start``.
    """

    def __init__(self, space: gym.Space):
        self.kind = action_kind(space)
        self.space = space
        if self.kind == "box":
            self.low = np.where(np.isfinite(space.low), space.low, -np.inf).astype(space.dtype)
            self.high = np.where(np.isfinite(space.high), space.high, np.inf).astype(space.dtype)
            self.clip = bool(np.isfinite(space.low).any() or np.isfinite(space.high).any())
        elif self.kind in ("discrete", "multidiscrete"):
            self.start = np.asarray(space.start, dtype=np.int64)

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        if self.kind == "box":
            actions = actions.reshape((-1, *self.space.shape)).astype(self.space.dtype)
            return np.clip(actions, self.low, self.high) if self.clip else actions
        if self.kind == "discrete":
            return actions + self.start
        if self.kind == "multidiscrete":
            return actions.reshape((-1, *self.space.shape)) + self.start
        return actions.reshape((-1, *self.space.shape)).astype(self.space.dtype)


@dataclass
class RunningMeanStd:
    """Running mean and variance over a stream of batches (Chan et al.'s parallel update,
    exact for any split of the data into batches)."""

    mean: np.ndarray
    var: np.ndarray
    count: float

    @classmethod
    def zeros(cls, shape: tuple[int, ...]) -> RunningMeanStd:
        return cls(np.zeros(shape, np.float64), np.ones(shape, np.float64), 0.0)

    @classmethod
    def of(cls, x: np.ndarray) -> RunningMeanStd:
        """Moments of a batch of samples (first axis)."""
        x = np.asarray(x, np.float64)
        return cls(x.mean(axis=0), x.var(axis=0), float(x.shape[0]))

    def merge(self, other: RunningMeanStd) -> RunningMeanStd:
        if other.count == 0:
            return self
        if self.count == 0:
            return RunningMeanStd(other.mean.copy(), other.var.copy(), other.count)
        total = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / total
        m2 = (
            self.var * self.count
            + other.var * other.count
            + delta**2 * self.count * other.count / total
        )
        return RunningMeanStd(mean, m2 / total, total)


class ObservationNormalizer:
    """(obs − mean) / std, clipped, with running statistics of the raw observations.

    A rollout passes each step's raw observations through `observe` and the batch's moments
    through `observe_batch`: with ``per_step`` the statistics take in every step before it
    is normalised, otherwise only whole batches, between iterations, so a batch is
    collected with one fixed transform. Calling the normaliser never changes it."""

    def __init__(self, dim: int, enabled: bool, clip: float, per_step: bool = False):
        self.enabled = enabled
        self.clip = clip
        self.per_step = per_step
        self.stats = RunningMeanStd.zeros((dim,))
        self._refresh()

    @classmethod
    def for_run(cls, encoder: ObservationEncoder, config: Config) -> ObservationNormalizer:
        """The normaliser a run's ``config`` asks for (Box observations only)."""
        return cls(
            encoder.dim,
            config.normalize_obs and encoder.is_box,
            config.clip_obs,
            per_step=config.obs_norm_update == "step",
        )

    def _refresh(self) -> None:
        self._mean = self.stats.mean.astype(np.float32)
        self._inv_std = (1.0 / np.sqrt(self.stats.var + 1e-8)).astype(np.float32)

    def update(self, batch_stats: RunningMeanStd) -> None:
        if self.enabled:
            self.stats = self.stats.merge(batch_stats)
            self._refresh()

    def observe(self, raw_obs: np.ndarray) -> np.ndarray:
        """One step's raw observations [n_envs, dim], normalised for the policy."""
        if self.per_step and self.enabled:
            self.update(RunningMeanStd.of(raw_obs))
        return self(raw_obs)

    def observe_batch(self, batch_stats: RunningMeanStd) -> None:
        """The moments of a collected batch's raw observations."""
        if not self.per_step:
            self.update(batch_stats)

    def set_stats(self, stats: RunningMeanStd) -> None:
        self.stats = stats
        self._refresh()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return obs
        return np.clip((obs - self._mean) * self._inv_std, -self.clip, self.clip)


def check_finite(name: str, values: np.ndarray, env_id: str, step: int) -> None:
    if not np.all(np.isfinite(values)):
        raise EnvError(
            f"{env_id} returned a non-finite {name} (NaN or Inf) at environment step {step}. "
            "Fix the environment, or wrap it to clip or replace such values."
        )

"""Running statistics and what is normalised with them: observations (for the policy and
value function) and rewards (for the update only). A rollout feeds both: each env step
through `ObservationNormalizer.observe` / `RewardScaler.step`, each finished batch
through `end_batch`; the local and the Ray collector call them the same way."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trpo.config import Config

if TYPE_CHECKING:
    from trpo.encoders import ObservationEncoder


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

    def state_dict(self, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {
            f"{prefix}/mean": torch.from_numpy(np.array(self.mean, np.float64, ndmin=1)),
            f"{prefix}/var": torch.from_numpy(np.array(self.var, np.float64, ndmin=1)),
        }
        return tensors, {"count": self.count}

    @classmethod
    def from_state(
        cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any], prefix: str, shape
    ) -> RunningMeanStd:
        mean = tensors[f"{prefix}/mean"].numpy().reshape(shape)
        var = tensors[f"{prefix}/var"].numpy().reshape(shape)
        return cls(mean.copy(), var.copy(), float(meta["count"]))


class ObservationNormalizer:
    """(obs − mean) / std, clipped, with running statistics of the raw observations, on the
    ``columns`` of the encoded rows that are float vectors (all of a vector observation;
    none of an image, a one-hot or bits, which pass through as they are).

    With ``per_step`` the statistics take in every step before it is normalised
    (`observe`), otherwise only whole batches, between iterations (`end_batch`), so a
    batch is collected with one fixed transform. Calling the normaliser never changes it."""

    def __init__(
        self,
        dim: int,
        enabled: bool,
        clip: float,
        per_step: bool = False,
        columns: np.ndarray | None = None,
    ):
        some = columns is not None and columns.any() and not columns.all()
        self.columns = np.flatnonzero(columns) if some else None
        self.enabled = enabled and (columns is None or bool(columns.any()))
        self.clip = clip
        self.per_step = per_step
        self.stats = RunningMeanStd.zeros((dim if self.columns is None else self.columns.size,))
        self._refresh()

    @classmethod
    def for_run(cls, encoder: ObservationEncoder, config: Config) -> ObservationNormalizer:
        """The normaliser a run's ``config`` asks for, on ``encoder``'s float vectors."""
        return cls(
            encoder.dim,
            config.normalize_obs,
            config.clip_obs,
            per_step=config.obs_norm_update == "step",
            columns=encoder.normalized,
        )

    def _refresh(self) -> None:
        self._mean = self.stats.mean.astype(np.float32)
        self._inv_std = (1.0 / np.sqrt(self.stats.var + 1e-8)).astype(np.float32)

    def update(self, batch_stats: RunningMeanStd) -> None:
        if self.enabled:
            self.stats = self.stats.merge(batch_stats)
            self._refresh()

    def moments(self, raw_obs: np.ndarray) -> RunningMeanStd:
        """The moments of raw encoded rows [B, D] on the normalised columns (none, and no
        work, when the normaliser is off)."""
        if not self.enabled:
            return RunningMeanStd.zeros(self.stats.mean.shape)
        return RunningMeanStd.of(raw_obs if self.columns is None else raw_obs[:, self.columns])

    def observe(self, raw_obs: np.ndarray) -> np.ndarray:
        """One step's raw observations [n_envs, dim], normalised for the policy."""
        if self.per_step and self.enabled:
            self.update(self.moments(raw_obs))
        return self(raw_obs)

    def ahead(self, raw_obs: np.ndarray) -> ObservationNormalizer:
        """The normaliser as `observe(raw_obs)` would leave it, this one unchanged."""
        ahead = copy.copy(self)
        if self.per_step:
            ahead.update(self.moments(raw_obs))
        return ahead

    def end_batch(self, batch_stats: RunningMeanStd) -> None:
        """The moments of a collected batch's raw observations (`moments`)."""
        if not self.per_step:
            self.update(batch_stats)

    def set_stats(self, stats: RunningMeanStd) -> None:
        self.stats = stats
        self._refresh()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return obs
        if self.columns is None:
            return np.clip((obs - self._mean) * self._inv_std, -self.clip, self.clip)
        out = obs.copy()
        cols = obs[..., self.columns]
        out[..., self.columns] = np.clip((cols - self._mean) * self._inv_std, -self.clip, self.clip)
        return out

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return self.stats.state_dict("obs_norm")

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        shape = self.stats.mean.shape
        self.set_stats(RunningMeanStd.from_state(tensors, meta, "obs_norm", shape))


class RewardScaler:
    """Divides rewards by the running std of the discounted return and clips them to ±clip
    (Stable-Baselines3's VecNormalize). The scaler follows each env's discounted return
    (`step`); with ``per_step`` the statistics take in every step's returns before its
    rewards are scaled, otherwise the whole batch's once it is collected (`end_batch`), so
    the first batch is already on the right scale."""

    def __init__(
        self, n_envs: int, gamma: float, enabled: bool, clip: float = 10.0, per_step: bool = False
    ):
        self.enabled = enabled
        self.gamma = gamma
        self.clip = clip
        self.per_step = per_step
        self.stats = RunningMeanStd.zeros(())
        self.discounted = np.zeros(n_envs, np.float64)

    @classmethod
    def for_run(cls, n_envs: int, config: Config) -> RewardScaler:
        """The scaler a run's ``config`` asks for, over ``n_envs`` envs."""
        return cls(
            n_envs,
            config.gamma,
            config.normalize_reward,
            config.clip_reward,
            per_step=config.reward_norm_update == "step",
        )

    def update(self, batch_stats: RunningMeanStd) -> None:
        if self.enabled:
            self.stats = self.stats.merge(batch_stats)

    def step(self, rewards: np.ndarray, done: np.ndarray) -> tuple[np.ndarray, float]:
        """One env step's rewards in each env: the discounted returns up to them and the
        scale of those rewards. Returns restart where ``done``."""
        self.discounted = self.discounted * self.gamma + rewards
        returns = self.discounted.copy()
        if self.per_step:
            self.update(RunningMeanStd.of(returns))
        self.discounted[done] = 0.0
        return returns, self.scale

    def end_batch(self, batch_stats: RunningMeanStd, reward_scale: np.ndarray) -> None:
        """The moments of a collected batch's discounted returns; without ``per_step`` they
        enter the statistics now and the batch's every reward takes the resulting scale."""
        if not self.per_step:
            self.update(batch_stats)
            reward_scale[:] = self.scale

    def reset(self) -> None:
        self.discounted[:] = 0.0

    @property
    def scale(self) -> float:
        return float(1.0 / np.sqrt(self.stats.var + 1e-8)) if self.enabled else 1.0

    def scaled(self, rewards: np.ndarray, reward_scale: np.ndarray) -> np.ndarray:
        """Rewards as the update sees them."""
        if not self.enabled:
            return rewards
        return np.clip(rewards * reward_scale, -self.clip, self.clip)

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return self.stats.state_dict("return_norm")

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.stats = RunningMeanStd.from_state(tensors, meta, "return_norm", ())

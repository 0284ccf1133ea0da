"""Rollout collection: step N envs with the current (frozen) policy and return a `Batch`.

`RolloutCollector` is the one component that touches the environments during training; a
distributed backend (`trpo.distributed`) replaces it by anything with the same
``collect(n_steps) -> Batch``, ``state()``, ``restore(state)`` and ``close()``, whose
``collect`` also leaves the observation normaliser's and the reward scaler's statistics
up to date and draws the actions from the trainer's rollout generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv
from torch import nn

from trpo.encoders import ObservationEncoder
from trpo.env_state import capture_vector, restore_vector
from trpo.envs import ActionAdapter, EnvError, check_finite
from trpo.normalization import ObservationNormalizer, RewardScaler, RunningMeanStd
from trpo.policies import sampler
from trpo.reproducibility import aligned_tensor


@dataclass
class Batch:
    """T steps of N envs. Index [t, i] is the transition of env i at step t.

    ``obs`` are the observations the policy saw (encoded and normalised as it saw them);
    ``next_obs`` the observation each transition led to: the env's final
    observation where the episode ended (terminated or truncated), never a reset one.
    """

    obs: np.ndarray  # [T, N, D] float32 (uint8 for images: the encoder's dtype)
    actions: np.ndarray  # [T, N, *action_shape]
    log_probs: np.ndarray  # [T, N] log π_θk(a_t | s_t), stored when the action was taken
    rewards: np.ndarray  # [T, N] float32, raw
    reward_scale: np.ndarray  # [T, N] float32: what the update multiplies each reward by
    terminated: np.ndarray  # [T, N] bool
    truncated: np.ndarray  # [T, N] bool
    next_obs: np.ndarray  # [T, N, D], as ``obs``
    obs_stats: RunningMeanStd  # moments of the raw observations' normalised columns
    return_stats: RunningMeanStd  # moments of the running discounted returns
    valid: np.ndarray
    """[T, N] bool: False where a transition was dropped (nonfinite_env=drop); the
    transition before it in that env is marked truncated."""
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)

    @property
    def dropped(self) -> int:
        return int((~self.valid).sum())

    @property
    def n_transitions(self) -> int:
        return int(self.rewards.size)

    @classmethod
    def join(cls, parts: list[Batch]) -> Batch:
        """The batches of disjoint env slices as one batch of all their envs, in order: the
        arrays side by side on the env axis, the moments merged (exact up to rounding)."""
        obs_stats, return_stats = parts[0].obs_stats, parts[0].return_stats
        for part in parts[1:]:
            obs_stats = obs_stats.merge(part.obs_stats)
            return_stats = return_stats.merge(part.return_stats)
        side_by_side = {
            name: np.concatenate([getattr(part, name) for part in parts], axis=1)
            for name in SIDE_BY_SIDE
        }
        return cls(
            **side_by_side,
            obs_stats=obs_stats,
            return_stats=return_stats,
            episode_returns=[r for part in parts for r in part.episode_returns],
            episode_lengths=[n for part in parts for n in part.episode_lengths],
        )


SIDE_BY_SIDE = (
    "obs",
    "actions",
    "log_probs",
    "rewards",
    "reward_scale",
    "terminated",
    "truncated",
    "next_obs",
    "valid",
)
"""`Batch` arrays indexed [t, env, ...]."""


class RolloutCollector:
    """Steps a vector env with a policy; keeps the envs' state between calls.

    ``share = (first, total)`` makes these envs the slice ``first:first + n_envs`` of a run
    with ``total`` envs (a distributed worker's share): reset seeds are ``seed + first + i``
    and each step's action draw covers all ``total`` rows (the other rows' observations
    zero), keeping this slice's rows. Actions then consume the torch random stream exactly
    as one collector with every env would, so the batches do not depend on the split.
    ``game_scores``: the episodes reported are games, scored by the env (`_episode_score`).
    """

    def __init__(
        self,
        envs: VectorEnv,
        policy: nn.Module,
        encoder: ObservationEncoder,
        normalizer: ObservationNormalizer,
        reward_scaler: RewardScaler,
        generator: torch.Generator,
        seed: int,
        env_id: str,
        nonfinite: str = "error",
        share: tuple[int, int] | None = None,
        game_scores: bool = False,
    ):
        self.envs = envs
        self.policy = policy
        self.generator = generator
        self.encoder = encoder
        self.normalizer = normalizer
        self.reward_scaler = reward_scaler
        self.adapter = ActionAdapter(envs.single_action_space)
        self.seed = seed
        self.env_id = env_id
        self.nonfinite = nonfinite
        self.game_scores = game_scores
        self.n_envs = envs.num_envs
        self.first, self.draw_rows = share or (0, self.n_envs)
        self.total_steps = 0
        self._raw_obs: np.ndarray | None = None
        self._episode_return = np.zeros(self.n_envs, np.float64)
        self._episode_length = np.zeros(self.n_envs, np.int64)

    def reset(self, seed: int | None = None) -> None:
        first = (self.seed if seed is None else seed) + self.first
        obs, _ = self.envs.reset(seed=[first + i for i in range(self.n_envs)])
        self._raw_obs = self._encode(obs)
        self._episode_return[:] = 0
        self._episode_length[:] = 0
        self.reward_scaler.reset()

    def state(self) -> dict[str, Any]:
        """Where the envs are: JSON-able, for checkpoints (see `restore`)."""
        return {
            "total_steps": self.total_steps,
            "raw_obs": None if self._raw_obs is None else self._raw_obs.tolist(),
            "episode_return": self._episode_return.tolist(),
            "episode_length": self._episode_length.tolist(),
            "discounted_return": self.reward_scaler.discounted.tolist(),
            "envs": capture_vector(self.envs) if self._raw_obs is not None else None,
        }

    def restore(self, state: dict[str, Any]) -> bool:
        """Continue from `state()`. Returns False when the envs' internal state cannot be
        restored (an env type `trpo.env_state` cannot capture, or another number or kind of
        envs): they then start new episodes, from reset seeds that depend on the step count."""
        self.total_steps = int(state["total_steps"])
        if state["raw_obs"] is None:  # never stepped: the first collect resets as usual
            return True
        if not restore_vector(self.envs, state["envs"]):
            self.reset(seed=self.seed + self.total_steps)
            return False
        self._raw_obs = np.asarray(state["raw_obs"], self.encoder.dtype).reshape(self.n_envs, -1)
        self._episode_return[:] = state["episode_return"]
        self._episode_length[:] = state["episode_length"]
        self.reward_scaler.discounted[:] = state["discounted_return"]
        return True

    def close(self) -> None:
        self.envs.close()

    def _encode(self, obs) -> np.ndarray:
        encoded = self.encoder(obs)
        check_finite("observation", encoded, self.env_id, self.total_steps)
        return encoded

    def collect(self, n_steps: int) -> Batch:
        """Run ``n_steps`` steps in each env (n_steps × n_envs transitions)."""
        if self._raw_obs is None:
            self.reset()
        n, dim, dtype = self.n_envs, self.encoder.dim, self.encoder.dtype
        # The raw rows are kept only for the normaliser's moments: not at all without one.
        raw_obs = np.empty((n_steps, n, dim) if self.normalizer.enabled else (n_steps, n, 0), dtype)
        obs_buf = np.empty((n_steps, n, dim), dtype)
        next_obs = np.empty((n_steps, n, dim), dtype)
        rewards = np.empty((n_steps, n), np.float32)
        reward_scale = np.empty((n_steps, n), np.float32)
        terminated = np.empty((n_steps, n), bool)
        truncated = np.empty((n_steps, n), bool)
        log_probs = np.empty((n_steps, n), np.float32)
        valid = np.ones((n_steps, n), bool)
        actions = None
        returns_seen = np.empty((n_steps, n), np.float64)
        episode_returns: list[float] = []
        episode_lengths: list[int] = []

        sample = sampler(self.policy)  # the policy stays fixed for the whole rollout
        # next_obs[t] is normalised with the statistics obs[t + 1] gets: an episode that
        # goes on then gives V(s_{t+1}) the same input in δ_t as in δ_{t+1}, as sb3's
        # VecNormalize does. Fixed statistics do it in one pass at the rollout's end.
        per_step = self.normalizer.per_step
        for t in range(n_steps):
            if self.normalizer.enabled:
                raw_obs[t] = self._raw_obs
            obs = self.normalizer.observe(self._raw_obs)
            obs_buf[t] = obs
            if per_step and t > 0:
                next_obs[t - 1] = self.normalizer(next_obs[t - 1])
            action_np, log_probs[t] = self._act(obs, sample)
            if actions is None:
                actions = np.empty((n_steps, *action_np.shape), action_np.dtype)
            actions[t] = action_np

            step_obs, reward, term, trunc, info = self.envs.step(self.adapter(action_np))
            self.total_steps += n
            reward = np.asarray(reward, np.float64)
            encoded = self.encoder(step_obs)
            final = encoded
            ended = np.flatnonzero(term | trunc)
            if ended.size:
                final = encoded.copy()
                final[ended] = self.encoder([info["final_obs"][i] for i in ended])
            finite = np.isfinite(reward).all() and np.isfinite(encoded).all()
            if not (finite and (final is encoded or np.isfinite(final[ended]).all())):
                finite_rows = np.isfinite(encoded).all(1) & np.isfinite(final).all(1)
                bad = ~(np.isfinite(reward) & finite_rows)
                encoded, final, reward = self._drop(bad, encoded, final, reward)
                term, trunc = term & ~bad, trunc | bad
                valid[t] = ~bad
                if t > 0:  # the episode ends at the last good transition, bootstrapped there
                    truncated[t - 1, bad] = True
            done = term | trunc
            next_obs[t] = final
            terminated[t] = term
            truncated[t] = trunc

            returns_seen[t], reward_scale[t] = self.reward_scaler.step(reward, done)
            rewards[t] = reward
            self._episode_return += reward
            self._episode_length += 1
            if done.any():
                for i in np.flatnonzero(done & valid[t]):
                    score = self._episode_score(info, i)
                    if score is not None:
                        episode_returns.append(score[0])
                        episode_lengths.append(score[1])
                self._episode_return[done] = 0.0
                self._episode_length[done] = 0
            self._raw_obs = encoded

        if per_step:  # with the statistics the next rollout's first `observe` will leave
            next_obs[-1] = self.normalizer.ahead(self._raw_obs)(next_obs[-1])
        else:
            next_obs = self.normalizer(next_obs)
        batch = Batch(
            obs=obs_buf,
            actions=actions,
            log_probs=log_probs,
            rewards=rewards,
            reward_scale=reward_scale,
            terminated=terminated,
            truncated=truncated,
            next_obs=next_obs,
            obs_stats=self.normalizer.moments(raw_obs.reshape(n_steps * n, -1)),
            return_stats=RunningMeanStd.of(returns_seen.reshape(-1)),
            episode_returns=episode_returns,
            episode_lengths=episode_lengths,
            valid=valid,
        )
        self.normalizer.end_batch(batch.obs_stats)
        self.reward_scaler.end_batch(batch.return_stats, batch.reward_scale)
        return batch

    def _episode_score(self, info: dict, i: int) -> tuple[float, int] | None:
        """The return and length of the episode env ``i`` just ended. With ``game_scores``
        (Atari's wrappers: `trpo.atari`), the raw score and length of the whole game from
        the env's final info, and None for a lost life that ended only a learning episode."""
        if not self.game_scores:
            return float(self._episode_return[i]), int(self._episode_length[i])
        final = info.get("final_info", {})
        if not final.get("_game_score", np.zeros(self.n_envs, bool))[i]:
            return None
        return float(final["game_score"][i]), int(final["game_length"][i])

    def _act(self, obs: np.ndarray, sample) -> tuple[np.ndarray, np.ndarray]:
        """Sampled actions and their log-probabilities under the frozen policy (``sample``,
        `trpo.policies.sampler`)."""
        drawn = aligned_tensor(obs)
        if self.draw_rows == self.n_envs:
            action, log_prob = sample(drawn, self.generator)
            return action.numpy(), log_prob.numpy()
        rows = slice(self.first, self.first + self.n_envs)
        drawn = torch.zeros((self.draw_rows, obs.shape[1]), dtype=drawn.dtype)
        drawn[rows] = torch.from_numpy(obs)
        action, log_prob = sample(drawn, self.generator)
        return action[rows].numpy(), log_prob[rows].numpy()

    def _drop(self, bad: np.ndarray, encoded: np.ndarray, final: np.ndarray, reward: np.ndarray):
        """Non-finite results in the envs marked ``bad``: an error, or (nonfinite_env=drop)
        those envs start new episodes and the transitions become finite placeholders that
        the batch marks invalid."""
        if self.nonfinite == "error":
            i = int(np.flatnonzero(bad)[0])
            what = "reward" if not np.isfinite(reward[i]) else "observation"
            raise EnvError(
                f"{self.env_id} returned a non-finite {what} (NaN or Inf) at environment step "
                f"{self.total_steps} (env copy {i}). Fix the environment, wrap it to clip or "
                "replace such values, or set nonfinite_env=drop to leave such transitions out."
            )
        obs, _ = self.envs.reset(options={"reset_mask": bad})
        encoded = np.where(bad[:, None], self._encode(obs), encoded)
        final = np.where(bad[:, None], final.dtype.type(0), final)
        return encoded, final, np.where(bad, 0.0, reward)

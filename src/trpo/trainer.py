"""The Trainer: one iteration top to bottom, and what lives as long as training does.

    collect a batch with π_θk -> GAE advantages -> policy step (TRPO/NPG/VPG) -> value fit

The collector (and its envs), the reward scaler, the value optimiser, the counters and the
random streams of the rollout, the value fit and the Fisher subsample are the trainer's;
the networks and the observation normaliser are the `Agent`'s.

With `overlap` the value fit runs in a second process (`trpo.overlap`) while this one
takes the policy step and collects the *next* iteration's batch: the fit needs only the
advantages' targets, the next rollout only the policy after the step. An iteration is then
policy step and rollout (of the next batch, unless it is the last) beside the value fit.
That batch is held until the next iteration, collected with copies of the normaliser and
the reward scaler, so that until then the trainer's state, and what evaluation and
checkpoints see, is exactly the serial path's after this iteration (`_Prefetched`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv

from trpo.agent import Agent
from trpo.atari import is_atari_id
from trpo.checkpoint import State, section
from trpo.config import Config, ConfigError
from trpo.functional import gae, normalize
from trpo.metrics import IterationStats, Overlap
from trpo.normalization import ObservationNormalizer, RewardScaler
from trpo.overlap import ValueFitProcess, overlap_on
from trpo.policies import action_dims, mean_kl
from trpo.reproducibility import aligned_tensor, seeded_generator
from trpo.rollout import Batch, RolloutCollector
from trpo.update import StepStats, ValueStats, fit_value, policy_step

log = logging.getLogger("trpo")

_STREAMS = ("rollout", "value_fit", "fisher")
"""The trainer's random streams, each its own `torch.Generator` (`seeded_generator`)."""


class Trainer:
    """Trains ``agent`` with ``config``: on ``envs`` in this process (backend local), or
    on Ray actors that each build their envs with ``factory`` (backend ray)."""

    def __init__(
        self,
        agent: Agent,
        config: Config,
        envs: VectorEnv | None,
        factory: Callable[[], gym.Env],
    ):
        self.agent = agent
        self.config = config
        self.device = _device(config.device)
        self.generators = {name: seeded_generator(config.seed, name) for name in _STREAMS}
        self.reward_scaler = RewardScaler.for_run(config.n_envs, config)
        self.collector = self._collector(envs, factory)
        if agent.shared and self.device.type != "cpu":
            raise ConfigError(
                f"device={config.device} trains a copy of the policy on the GPU, apart from "
                "the value function it shares parameters with: use device=cpu, or give each "
                "its own encoder"
            )
        agent.value_fn.to(self.device)
        self.learner_policy = agent.policy
        """The policy the update changes: the agent's, or its copy on the GPU."""
        if self.device.type != "cpu":
            self.learner_policy = copy.deepcopy(agent.policy).to(self.device)
        # fused: one kernel per step instead of a dozen foreach ops, ~28 % off a 64-row
        # value-fit step; it rounds differently from the default (by ~1e-7).
        self.value_optimizer = torch.optim.Adam(
            agent.value_fn.parameters(), lr=config.value_lr, fused=True
        )
        self.iteration = 0
        self.steps = 0
        self.episodes = 0
        if agent.shared and config.overlap == "on":
            raise ConfigError(
                "overlap=on fits the value function in a second process, which cannot move "
                "the parameters it shares with the policy: use overlap=auto"
            )
        self.overlapped = overlap_on(config) and not agent.shared
        """Whether the value fit runs in a second process beside the next rollout."""
        self._fitter: ValueFitProcess | None = None  # started by the first overlapped fit
        self._prefetched: _Prefetched | None = None

    def _collector(self, envs: VectorEnv | None, factory: Callable[[], gym.Env]):
        agent, config = self.agent, self.config
        if config.backend == "local":
            return RolloutCollector(
                envs,
                agent.policy,
                agent.encoder,
                agent.normalizer,
                self.reward_scaler,
                self.generators["rollout"],
                config.seed,
                config.env_id,
                config.nonfinite_env,
                game_scores=is_atari_id(config.env_id),
            )
        from trpo.distributed import RayCollector

        return RayCollector(factory, agent, self.reward_scaler, self.generators["rollout"], config)

    def iterate(self, more: bool = True) -> IterationStats:
        """One iteration and its stats (evaluation and wall time left for the run).
        ``more``: another iteration follows, so (with `overlap`) its batch is collected
        beside this one's value fit."""
        t0 = time.perf_counter()
        batch, rollout_sec = self._next_batch()
        t1 = time.perf_counter()
        obs, advantages, targets, values = self._advantages(batch)
        t2 = time.perf_counter()
        beside = self.overlapped and more
        if beside:
            self._start_fit(obs, targets, values)
        step = self._policy_step(batch, obs, advantages)
        t3 = time.perf_counter()
        if beside:
            value, value_sec, overlap = self._collect_beside_fit(busy_sec=t3 - t2)
        else:
            value, overlap = self._fit_value(obs, targets, values), Overlap()
            value_sec = time.perf_counter() - t3
        t4 = time.perf_counter()
        self.iteration += 1
        self.steps += batch.n_transitions
        self.episodes += len(batch.episode_returns)
        if step.zero_gradient:
            log.info(
                "iteration %d: zero policy gradient (all advantages 0), no step taken",
                self.iteration,
            )
        elif not step.accepted:
            log.log(
                logging.WARNING if step.nonfinite else logging.INFO,
                "iteration %d: step rejected%s, parameters unchanged",
                self.iteration,
                " (NaN/Inf in the gradient, step or KL)" if step.nonfinite else "",
            )
        seconds = (rollout_sec, t2 - t1, t3 - t2, value_sec, t4 - t0)
        return self._stats(batch, step, value, seconds, overlap)

    def _next_batch(self) -> tuple[Batch, float]:
        """This iteration's batch and the seconds its rollout took: the one collected
        beside the last value fit, whose statistics now become the trainer's, or a new one."""
        prefetched, self._prefetched = self._prefetched, None
        if prefetched is None:
            return self._collect()
        prefetched.adopt(self.agent.normalizer, self.reward_scaler)
        return prefetched.batch, prefetched.rollout_sec

    def _collect(self) -> tuple[Batch, float]:
        """A new batch and the seconds its rollout took."""
        t = time.perf_counter()
        batch = self.collector.collect(self.config.steps_per_iter // self.config.n_envs)
        return batch, time.perf_counter() - t

    def _start_fit(self, obs, targets, values) -> None:
        """Starts the value fit in the worker, to run beside the policy step and the rollout."""
        if self._fitter is None:
            config = self.config
            self._fitter = ValueFitProcess(
                self.agent.value_fn, config.value_lr, config.value_epochs, config.value_minibatch
            )
        self._fitter.start(*self._fit_objects(), obs, targets, values)

    def _fit_objects(self) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.Generator]:
        """What a value fit reads and changes: the value function, its optimiser and stream."""
        return self.agent.value_fn, self.value_optimizer, self.generators["value_fit"]

    def _collect_beside_fit(self, busy_sec: float) -> tuple[ValueStats, float, Overlap]:
        """Collects the next batch while the worker fits, then takes the fit's result.
        ``busy_sec``: what this process did beside the fit before (the policy step)."""
        seam = (self.collector.state(), self.generators["rollout"].get_state())
        collector = self.collector
        normalizer, scaler = collector.normalizer, collector.reward_scaler
        collector.normalizer, collector.reward_scaler = copy.deepcopy((normalizer, scaler))
        try:
            batch, rollout_sec = self._collect()
            t = time.perf_counter()
            value, fit_sec = self._fitter.result(*self._fit_objects())
            waited = time.perf_counter() - t
        finally:
            shadows = (collector.normalizer, collector.reward_scaler)
            collector.normalizer, collector.reward_scaler = normalizer, scaler
        self._prefetched = _Prefetched(batch, rollout_sec, *shadows, *seam)
        idle = max(0.0, busy_sec + rollout_sec + waited - fit_sec)
        return value, fit_sec, Overlap(wait_for_fit_sec=waited, wait_for_rollout_sec=idle)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return aligned_tensor(array).to(self.device)

    def _advantages(self, batch: Batch):
        T, N = batch.rewards.shape
        value_fn = self.agent.value_fn
        obs = self._tensor(batch.obs.reshape(T * N, -1))
        with torch.no_grad():
            values = value_fn(obs).reshape(T, N)
            next_values = value_fn(self._tensor(batch.next_obs.reshape(T * N, -1)))
        rewards = self.reward_scaler.scaled(batch.rewards, batch.reward_scale)
        advantages = gae(
            rewards,
            values.cpu().numpy(),
            next_values.reshape(T, N).cpu().numpy(),
            batch.terminated,
            batch.truncated,
            self.config.gamma,
            self.config.gae_lambda,
        )
        advantages = self._tensor(advantages)
        targets = (advantages + values).reshape(-1)
        keep = self._valid_rows(batch)
        return obs[keep], advantages.reshape(-1)[keep], targets[keep], values.reshape(-1)[keep]

    def _policy_step(self, batch: Batch, obs: torch.Tensor, advantages: torch.Tensor) -> StepStats:
        T, N = batch.rewards.shape
        keep = self._valid_rows(batch)
        actions = self._tensor(batch.actions.reshape(T * N, *batch.actions.shape[2:]))[keep]
        if self.config.normalize_advantages:
            advantages = normalize(advantages)
        old_log_probs = self._tensor(batch.log_probs.reshape(-1))[keep]
        step = policy_step(
            self.learner_policy,
            obs,
            actions,
            advantages,
            old_log_probs,
            self.config,
            action_dims(self.agent.action_space),  # A of kl_scale="per_dim"
            self.generators["fisher"],
        )
        if self.learner_policy is not self.agent.policy:
            self.agent.policy.load_state_dict(self.learner_policy.state_dict())
        return step

    def _fit_value(self, obs: torch.Tensor, targets: torch.Tensor, values: torch.Tensor):
        policy = self.agent.policy
        if self.agent.shared:
            with torch.no_grad():
                before = policy(obs)
        stats = fit_value(
            self.agent.value_fn,
            self.value_optimizer,
            obs,
            targets,
            values,
            self.config.value_epochs,
            self.config.value_minibatch,
            self.generators["value_fit"],
        )
        if not self.agent.shared:
            return stats
        with torch.no_grad():
            moved = mean_kl(before, policy(obs), self.config.kl_direction)
        return dataclasses.replace(stats, value_fit_kl=float(moved))

    def _valid_rows(self, batch: Batch) -> slice | torch.Tensor:
        """Index of the flattened transitions that enter the update (all but dropped ones)."""
        return slice(None) if batch.valid.all() else self._tensor(batch.valid.reshape(-1))

    def _stats(
        self,
        batch: Batch,
        step: StepStats,
        value: ValueStats,
        seconds: tuple[float, ...],
        overlap: Overlap,
    ) -> IterationStats:
        rollout_sec, advantage_sec, policy_sec, value_sec, iteration_sec = seconds
        returns, lengths = batch.episode_returns, batch.episode_lengths
        return IterationStats(
            iteration=self.iteration,
            steps=self.steps,
            episodes=self.episodes,
            episode_return=float(np.mean(returns)) if returns else math.nan,
            episode_length=float(np.mean(lengths)) if lengths else math.nan,
            dropped=batch.dropped,
            policy=step,
            value=value,
            eval_return=math.nan,
            eval_return_std=math.nan,
            fps=batch.n_transitions / iteration_sec,
            rollout_sec=rollout_sec,
            advantage_sec=advantage_sec,
            policy_sec=policy_sec,
            value_sec=value_sec,
            overlap=overlap,
            eval_sec=0.0,
            wall_sec=math.nan,
        )

    # -- persistence ----------------------------------------------------------------
    def state_dict(self) -> State:
        tensors: dict[str, torch.Tensor] = {}
        optim = self.value_optimizer.state_dict()
        for index, state in optim["state"].items():
            for key, value in state.items():
                tensors[f"value_optim/{index}/{key}"] = torch.as_tensor(value).cpu()
        scaler_tensors, scaler_meta = self.reward_scaler.state_dict()
        tensors.update(scaler_tensors)
        for name, generator in self.generators.items():
            tensors[f"rng/{name}"] = generator.get_state()
        if self._prefetched is None:
            collector = self.collector.state()
        else:  # where the envs and the rollout stream stood before the held batch
            collector = self._prefetched.collector_state
            tensors["rng/rollout"] = self._prefetched.rollout_rng
        meta = {
            "counters": {"iteration": self.iteration, "steps": self.steps},
            "episodes": self.episodes,
            "value_optim_param_groups": optim["param_groups"],
            "return_norm": scaler_meta,
            "collector": collector,
        }
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> bool:
        """Continue from `state_dict`. False when the envs' internal state could not be
        restored, so the continuation starts new episodes (see `RolloutCollector.restore`)."""
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, tensor in section(tensors, "value_optim").items():
            index, name = key.split("/", 1)
            state.setdefault(int(index), {})[name] = tensor
        self.value_optimizer.load_state_dict(
            {"state": state, "param_groups": meta["value_optim_param_groups"]}
        )
        if self.learner_policy is not self.agent.policy:
            self.learner_policy.load_state_dict(self.agent.policy.state_dict())
        self.reward_scaler.load_state_dict(tensors, meta["return_norm"])
        for name, generator in self.generators.items():
            generator.set_state(tensors[f"rng/{name}"])
        self._prefetched = None
        self.iteration = int(meta["counters"]["iteration"])
        self.steps = int(meta["counters"]["steps"])
        self.episodes = int(meta["episodes"])
        return self.collector.restore(meta["collector"])

    def close(self) -> None:
        if self._fitter is not None:
            self._fitter.close()
        self.collector.close()


@dataclass
class _Prefetched:
    """A batch collected beside the last value fit, for the next iteration: collected with
    copies of the normaliser and the reward scaler (their statistics become the trainer's
    when the batch is used), and the envs' state and rollout stream from before it (what a
    checkpoint taken meanwhile holds: the next iteration then collects the batch again)."""

    batch: Batch
    rollout_sec: float
    normalizer: ObservationNormalizer
    reward_scaler: RewardScaler
    collector_state: dict[str, Any]
    rollout_rng: torch.Tensor

    def adopt(self, normalizer: ObservationNormalizer, reward_scaler: RewardScaler) -> None:
        normalizer.set_stats(self.normalizer.stats)
        reward_scaler.stats = self.reward_scaler.stats
        reward_scaler.discounted = self.reward_scaler.discounted


def _device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device={name}, but torch sees no GPU (torch {torch.__version__}, "
            "torch.cuda.is_available() is False): use device=cpu, or a machine with a GPU "
            "and a CUDA build of torch"
        )
    return device

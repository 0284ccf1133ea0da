"""Rollouts on a Ray cluster: `RayCollector` stands in for `RolloutCollector`.

K actors (`RolloutWorker`) each own a vector env over a contiguous slice of the run's
envs and a copy of the policy. Every iteration the learner puts the policy weights in
Ray's object store once (all workers read that one copy), each worker collects its share
with the frozen weights, observation and return statistics and the state of the trainer's
rollout generator, and the learner joins the batches in worker order (`Batch.join`).

Same seed and same ``n_envs`` give the same batches as the local collector, whatever the
number of workers: a worker's envs get the reset seeds they would have locally and its
actions the same random numbers (`RolloutCollector`'s ``share``); the learner continues
from the random state the workers end on. A worker that dies is restarted by Ray and
re-collects its share from the env state it started the iteration in (captured each
iteration, `trpo.env_state`), so a fault changes no result where that state can be
captured, and otherwise only that share's episodes.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from trpo.atari import is_atari_id
from trpo.config import Config
from trpo.encoders import ObservationEncoder
from trpo.envs import make_vector_env
from trpo.normalization import ObservationNormalizer, RewardScaler, RunningMeanStd
from trpo.rollout import SIDE_BY_SIDE, Batch, RolloutCollector

log = logging.getLogger("trpo")

MAX_RESTARTS = 3
"""How often Ray restarts one worker (and the learner re-sends its share) before the run
stops with an error."""
RESTART_TIMEOUT = 120
"""Seconds to wait for Ray to bring a dead worker back."""
_PER_ENV = ("raw_obs", "episode_return", "episode_length", "discounted_return", "envs")
"""`RolloutCollector.state()` entries that hold one item per env."""


class BackendError(RuntimeError):
    """The distributed backend cannot start or lost a worker for good."""


@dataclass(frozen=True)
class Timing:
    """Where one distributed collection spent its time (for benchmarks/ray_scaling.py)."""

    broadcast_bytes: int
    """Size of the weights put in the object store (once, whatever the worker count)."""
    broadcast_sec: float
    gather_bytes: int
    """Size of the returned batches."""
    collect_sec: float
    """Wall-clock seconds from sending the work to holding every batch."""
    slowest_worker_sec: float
    """The longest time one worker spent collecting; the rest of collect_sec is overhead."""


class RolloutWorker:
    """One Ray actor's work: a `RolloutCollector` over envs ``first:first + n`` of the
    run's ``config.n_envs`` (``share = (first, n)``). Stateless between calls but for its
    envs."""

    def __init__(
        self,
        factory: Callable[[], gym.Env],
        policy: nn.Module,
        share: tuple[int, int],
        config: Config,
    ):
        torch.set_num_threads(config.torch_threads)
        first, n_envs = share
        envs = make_vector_env(factory, n_envs, config.vec, config.env_id, config.env_kwargs)
        encoder = ObservationEncoder(envs.single_observation_space)
        self.policy = policy
        self.normalizer = ObservationNormalizer.for_run(encoder, config)
        self.reward_scaler = RewardScaler.for_run(n_envs, config)
        self.generator = torch.Generator()
        self.collector = RolloutCollector(
            envs,
            policy,
            encoder,
            self.normalizer,
            self.reward_scaler,
            self.generator,
            config.seed,
            config.env_id,
            config.nonfinite_env,
            share=(first, config.n_envs),
            game_scores=is_atari_id(config.env_id),
        )

    def pid(self) -> int:
        return os.getpid()

    def restore(self, state: dict[str, Any]) -> bool:
        return self.collector.restore(state)

    def collect(
        self,
        weights: dict[str, np.ndarray],
        obs_stats: RunningMeanStd,
        return_stats: RunningMeanStd,
        rng_state: np.ndarray,
        n_steps: int,
    ) -> tuple[Batch, dict[str, Any], np.ndarray, float]:
        """The batch, the envs' state after it, the rollout generator's state after it, and
        the seconds spent."""
        start = time.perf_counter()
        self.policy.load_state_dict({k: torch.tensor(v) for k, v in weights.items()})
        self.normalizer.set_stats(obs_stats)
        self.reward_scaler.stats = return_stats
        self.generator.set_state(torch.from_numpy(rng_state.copy()))
        batch = self.collector.collect(n_steps)
        state = self.collector.state()
        return batch, state, self.generator.get_state().numpy(), time.perf_counter() - start


class RayCollector:
    """`RolloutCollector`'s interface over ``config.ray_workers`` Ray actors. Without
    ``config.ray_address`` Ray starts a local cluster sized to the machine; with one, the
    run joins that cluster."""

    def __init__(
        self,
        factory: Callable[[], gym.Env],
        agent,
        reward_scaler: RewardScaler,
        generator: torch.Generator,
        config: Config,
    ):
        n_envs, workers, address = config.n_envs, config.ray_workers, config.ray_address
        ray = _import_ray()
        _check_reachable(address)
        if not ray.is_initialized():
            try:
                ray.init(address=address or None, include_dashboard=False, logging_level="WARNING")
            except (ConnectionError, RuntimeError, ValueError) as err:
                where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
                raise BackendError(f"could not start or join {where}: {err}") from None
        self._ray = ray
        self.policy = agent.policy
        self.normalizer = agent.normalizer
        self.reward_scaler = reward_scaler
        self.generator = generator
        self.n_envs = n_envs
        self.sizes = [n_envs // workers + (k < n_envs % workers) for k in range(workers)]
        self.firsts = [sum(self.sizes[:k]) for k in range(workers)]
        cpus = min(1.0, ray.cluster_resources().get("CPU", 1.0) / workers)
        actor = ray.remote(RolloutWorker).options(
            max_restarts=MAX_RESTARTS, max_task_retries=0, num_cpus=cpus
        )
        self.workers = [
            actor.remote(factory, self.policy, (first, size), config)
            for first, size in zip(self.firsts, self.sizes, strict=True)
        ]
        self.total_steps = 0
        self.restarts = 0
        """Worker deaths survived so far."""
        self.timing: Timing | None = None
        self._states: list[dict[str, Any] | None] = [None] * workers
        """Each worker's env state at the start of the coming collection (None: fresh)."""

    def collect(self, n_steps: int) -> Batch:
        start = time.perf_counter()
        weights = {k: v.detach().numpy() for k, v in self.policy.state_dict().items()}
        weights_ref = self._ray.put(weights)
        broadcast_sec = time.perf_counter() - start
        args = (
            weights_ref,
            self.normalizer.stats,
            self.reward_scaler.stats,
            self.generator.get_state().numpy(),
            n_steps,
        )
        pending = [worker.collect.remote(*args) for worker in self.workers]
        results = [self._result(k, ref, args) for k, ref in enumerate(pending)]
        batches = [batch for batch, _, _, _ in results]
        self._states = [state for _, state, _, _ in results]
        self.generator.set_state(torch.from_numpy(results[0][2].copy()))
        batch = Batch.join(batches)
        # Every mode ends on the statistics of all that the workers saw, in a fixed order;
        # rewards scaled per iteration take the scale of all of them.
        self.normalizer.update(batch.obs_stats)
        self.reward_scaler.update(batch.return_stats)
        if not self.reward_scaler.per_step:
            batch.reward_scale[:] = self.reward_scaler.scale
        self.total_steps += batch.n_transitions
        self.timing = Timing(
            broadcast_bytes=sum(v.nbytes for v in weights.values()),
            broadcast_sec=broadcast_sec,
            gather_bytes=sum(_nbytes(b) for b in batches),
            collect_sec=time.perf_counter() - start,
            slowest_worker_sec=max(seconds for _, _, _, seconds in results),
        )
        return batch

    def _result(self, k: int, ref: Any, args: tuple[Any, ...]) -> Any:
        """Worker k's result; if it died, its share collected again by its restarted actor
        from the env state it started this iteration in."""
        lost = (self._ray.exceptions.RayActorError, self._ray.exceptions.ActorUnavailableError)
        for death in range(1, MAX_RESTARTS + 2):
            try:
                return self._ray.get(ref)
            except self._ray.exceptions.RayTaskError as err:  # raised in the worker's code
                raise err.cause from None  # e.g. EnvError: the env returned NaN
            except lost as err:
                if death > MAX_RESTARTS:
                    raise BackendError(
                        f"rollout worker {k} died {death} times in one iteration; last error: "
                        f"{str(err).splitlines()[0]}"
                    ) from None
                self.restarts += 1
                log.warning("rollout worker %d died: restarting it to collect its share again", k)
                worker = self._restarted(k)
                if self._states[k] is not None:
                    worker.restore.remote(self._states[k])
                ref = worker.collect.remote(*args)
        raise AssertionError("unreachable")

    def _restarted(self, k: int) -> Any:
        """Worker k once Ray has restarted it (calls made while it restarts fail)."""
        deadline = time.monotonic() + RESTART_TIMEOUT
        while True:
            try:
                self._ray.get(self.workers[k].pid.remote())
                return self.workers[k]
            except self._ray.exceptions.ActorUnavailableError:
                if time.monotonic() > deadline:
                    raise BackendError(
                        f"rollout worker {k} did not come back within {RESTART_TIMEOUT} s"
                    ) from None
                time.sleep(0.1)
            except self._ray.exceptions.RayActorError as err:  # out of restarts
                raise BackendError(
                    f"rollout worker {k} died and Ray could not restart it: "
                    f"{str(err).splitlines()[0]}"
                ) from None

    def state(self) -> dict[str, Any]:
        """The local collector's state format (`RolloutCollector.state`), every env in
        order, so a checkpoint resumes on either backend and with any worker count."""
        if any(state is None for state in self._states):
            return {"total_steps": self.total_steps, "raw_obs": None}
        joined: dict[str, Any] = {"total_steps": self.total_steps}
        for key in _PER_ENV:
            parts = [state[key] for state in self._states]
            joined[key] = None if any(p is None for p in parts) else sum(parts, [])
        return joined

    def restore(self, state: dict[str, Any]) -> bool:
        self.total_steps = int(state["total_steps"])
        if state["raw_obs"] is None:
            return True
        shares = []
        for first, size in zip(self.firsts, self.sizes, strict=True):
            share = {"total_steps": self.total_steps}
            for key in _PER_ENV:
                share[key] = None if state[key] is None else state[key][first : first + size]
            shares.append(share)
        if not all(len(share["raw_obs"]) == size for share, size in zip(shares, self.sizes)):
            shares = [{**share, "envs": None} for share in shares]  # another n_envs
        restored = self._ray.get(
            [w.restore.remote(share) for w, share in zip(self.workers, shares, strict=True)]
        )
        self._states = shares
        return all(restored)

    def close(self) -> None:
        for worker in self.workers:
            self._ray.kill(worker)


def _nbytes(batch: Batch) -> int:
    return sum(getattr(batch, name).nbytes for name in SIDE_BY_SIDE)


def _check_reachable(address: str) -> None:
    """Fail fast on a HOST:PORT nobody listens on (Ray itself retries for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # empty (local cluster), "auto", or a ray:// client address: Ray checks
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise BackendError(
            f"cannot reach a Ray cluster at {address} ({err.strerror or err}): start one "
            "with `ray start --head` there, or leave ray_address empty for a local cluster"
        ) from None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise BackendError(
            "backend=ray needs Ray, which is not installed: pip install 'trpo[ray]'"
        ) from None
    return ray

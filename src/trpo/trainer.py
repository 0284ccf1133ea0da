"""The training loop, one iteration top to bottom:

    collect a batch -> GAE advantages -> policy step (TRPO/NPG/VPG) -> value fit
    -> normaliser update -> evaluation -> log -> checkpoint

`TRPO` is the user-facing object: ``TRPO(env, **config).learn()``, ``predict``, ``save``,
``TRPO.load``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from trpo.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    provenance,
    rng_state,
    same_space,
    save_checkpoint,
    set_rng_state,
    space_from_dict,
    space_to_dict,
)
from trpo.config import Config, ConfigError
from trpo.distributed import RayCollector
from trpo.envs import (
    ActionAdapter,
    EnvError,
    EnvSource,
    ObservationEncoder,
    ObservationNormalizer,
    RunningMeanStd,
    env_factory,
    make_vector_env,
)
from trpo.evaluate import EvalResult, Evaluator
from trpo.functional import gae, normalize
from trpo.logger import METRICS_FILE, CSVLog, ProgressBar, TensorBoardLog
from trpo.policies import MLPPolicy, MLPValue, action_dims
from trpo.rollout import Batch, RewardScaler, RolloutCollector
from trpo.update import StepStats, ValueStats, fit_value, policy_step

log = logging.getLogger("trpo")

SCORE_WINDOW = 5
"""The run's score is the mean of its last this-many evaluations."""
CUSTOM_ENV_ID = "custom"
"""`Config.env_id` of a run on an env without a registered Gymnasium id."""
EVAL_SEED_OFFSET = 1_000_000
"""Evaluation episodes start from reset seeds apart from the training envs' seeds."""


@dataclass(frozen=True)
class IterationStats:
    """What happened in one iteration; `row()` is its line in metrics.csv."""

    iteration: int
    steps: int
    episodes: int
    episode_return: float
    """Mean raw return of the episodes that ended in this iteration (NaN if none did)."""
    episode_length: float
    dropped: int
    """Transitions left out for a NaN/Inf observation or reward (nonfinite_env=drop)."""
    policy: StepStats
    value: ValueStats
    eval_return: float
    """Mean deterministic evaluation return (NaN when no evaluation ran this iteration)."""
    eval_return_std: float
    fps: float
    """Environment steps per second of this iteration, evaluation excluded."""
    rollout_sec: float
    advantage_sec: float
    policy_sec: float
    value_sec: float
    eval_sec: float
    wall_sec: float
    """Seconds since training started (evaluation included)."""

    def row(self) -> dict[str, Any]:
        """Flat metrics, the policy step's and value fit's stats inlined."""
        flat: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            flat.update(
                dataclasses.asdict(value) if dataclasses.is_dataclass(value) else {f.name: value}
            )
        return flat

    @staticmethod
    def columns() -> list[str]:
        columns = []
        for f in dataclasses.fields(IterationStats):
            nested = {"policy": StepStats, "value": ValueStats}.get(f.name)
            columns += [g.name for g in dataclasses.fields(nested)] if nested else [f.name]
        return columns


Callback = Callable[[IterationStats], bool | None]


def run_score(rows: list[dict[str, Any]]) -> float:
    """A run's score from its metrics rows: the mean of its last `SCORE_WINDOW` evaluation
    returns (NaN before any)."""
    evals = [row["eval_return"] for row in rows if not math.isnan(row["eval_return"])]
    return float(np.mean(evals[-SCORE_WINDOW:])) if evals else math.nan


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class TRPO:
    """Trust Region Policy Optimization on a Gymnasium environment.

    ``env`` is a Gymnasium id, a zero-argument factory returning an env, or an env instance
    (then ``n_envs`` must be 1). Settings are `Config` fields, given as ``config=`` and/or
    keyword arguments. ``policy`` / ``value_fn`` replace the default MLPs (see
    `trpo.policies` for their contract). With ``run_dir`` the run writes metrics,
    TensorBoard events and checkpoints there.
    """

    def __init__(
        self,
        env: EnvSource | None = None,
        config: Config | None = None,
        *,
        policy: nn.Module | None = None,
        value_fn: nn.Module | None = None,
        run_dir: str | Path | None = None,
        **overrides: Any,
    ):
        config = (config or Config()).replace(**overrides)
        if env is None:
            env = config.env_id
        elif isinstance(env, str):
            config = config.replace(env_id=env)
        torch.set_num_threads(config.torch_threads)
        seed_everything(config.seed)

        factory = env_factory(env, config.env_kwargs)
        self._eval_factory = _evaluation_factory(env, factory)
        if config.backend == "ray" and isinstance(env, gym.Env):
            raise EnvError(
                "backend=ray builds the envs in its worker processes: pass an env id or a "
                "zero-argument factory, not an env instance"
            )
        # The local backend steps these envs; the Ray backend only reads the spaces here.
        self.envs = make_vector_env(
            factory,
            config.n_envs if config.backend == "local" else 1,
            config.vec,
            env if isinstance(env, str) else None,
            config.env_kwargs,
        )
        if not isinstance(env, str | None):  # an env object or factory: name what it built
            spec = self.envs.get_attr("spec")[0]
            config = config.replace(env_id=spec.id if spec is not None else CUSTOM_ENV_ID)
        self.config = config
        self.observation_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space
        self.adapter = ActionAdapter(self.action_space)
        self.encoder = ObservationEncoder(self.observation_space)
        self.normalizer = ObservationNormalizer.for_run(self.encoder, config)
        self.custom_modules = policy is not None or value_fn is not None
        self.policy = policy or MLPPolicy(
            self.encoder.dim,
            self.action_space,
            config.policy_hidden,
            config.activation,
            config.log_std_init,
        )
        self.value_fn = value_fn or MLPValue(
            self.encoder.dim, config.value_hidden, config.activation
        )
        self.device = _device(config.device)
        self.value_fn.to(self.device)
        self.learner_policy = self.policy
        """The policy the update changes: `policy` itself, or its copy on the GPU."""
        if self.device.type != "cpu":
            self.learner_policy = copy.deepcopy(self.policy).to(self.device)
        # fused: one kernel per step instead of a dozen foreach ops, ~28 % off a 64-row
        # value-fit step; it rounds differently from the default (by ~1e-7).
        self.value_optimizer = torch.optim.Adam(
            self.value_fn.parameters(), lr=config.value_lr, fused=True
        )
        self.reward_scaler = RewardScaler.for_run(config.n_envs, config)
        self.collector = self._collector(factory)
        self.iteration = 0
        self.steps = 0
        self.episodes = 0
        self.metrics: list[dict[str, Any]] = []
        """Every iteration's `IterationStats.row()` (metrics.csv's rows), kept in checkpoints."""
        self.best_eval = -math.inf
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._evaluator: Evaluator | None = None

    def _collector(self, factory: Callable[[], gym.Env]) -> RolloutCollector | RayCollector:
        config = self.config
        if config.backend == "local":
            return RolloutCollector(
                self.envs,
                self.policy,
                self.encoder,
                self.normalizer,
                self.reward_scaler,
                config.seed,
                config.env_id,
                config.nonfinite_env,
            )
        self.envs.close()
        self.envs = None
        return RayCollector(factory, self.policy, self.normalizer, self.reward_scaler, config)

    @classmethod
    def from_config(cls, config: Config, env: EnvSource | None = None, **kwargs: Any) -> TRPO:
        return cls(env, config, **kwargs)

    # -- training -------------------------------------------------------------------
    def learn(
        self,
        total_steps: int | None = None,
        callback: Callback | None = None,
        progress: bool = False,
    ) -> TRPO:
        """Train until the run has taken ``total_steps`` environment steps in all
        (default ``config.total_steps``), counting steps taken before a save/load.

        ``callback(stats)`` runs after every iteration; returning False stops training
        after that iteration. With ``progress`` a live progress bar is shown.
        """
        total = self.config.total_steps if total_steps is None else total_steps
        if not isinstance(total, int) or total <= 0:
            raise ValueError(f"total_steps must be a positive integer, got {total!r}")
        n_steps = self.config.steps_per_iter // self.config.n_envs
        outputs = _RunOutputs(self) if self.run_dir is not None else None
        bar = ProgressBar(total, self.steps) if progress else None
        start = time.perf_counter()
        ending = "failed"  # what the run directory records if the loop raises
        try:
            with _InterruptAfterIteration() as interrupt:
                while self.steps < total and not interrupt.requested:
                    stats = self._iteration(n_steps, start)
                    self.metrics.append(stats.row())
                    if outputs is not None:
                        outputs.write(stats, self.metrics[-1])
                    if bar is not None:
                        bar.update(self.steps, stats.fps, stats.episode_return, stats.policy.kl)
                    if callback is not None and callback(stats) is False:
                        break
                ending = "interrupted" if interrupt.requested else "finished"
        finally:
            if bar is not None:
                bar.close()
            if outputs is not None:
                outputs.close(ending)
        if ending == "interrupted":
            raise KeyboardInterrupt
        return self

    def _iteration(self, n_steps: int, start: float) -> IterationStats:
        t0 = time.perf_counter()
        batch = self.collector.collect(n_steps)
        t1 = time.perf_counter()
        obs, advantages, targets, values = self._advantages(batch)
        t2 = time.perf_counter()
        step = self._policy_step(batch, obs, advantages)
        t3 = time.perf_counter()
        value = fit_value(
            self.value_fn,
            self.value_optimizer,
            obs,
            targets,
            values,
            self.config.value_epochs,
            self.config.value_minibatch,
        )
        t4 = time.perf_counter()
        self.iteration += 1
        self.steps += batch.n_transitions
        self.episodes += len(batch.episode_returns)
        if not step.accepted:
            log.log(
                logging.WARNING if step.nonfinite else logging.INFO,
                "iteration %d: step rejected%s, parameters unchanged",
                self.iteration,
                " (NaN/Inf in the gradient or step)" if step.nonfinite else "",
            )
        evaluation = self._maybe_evaluate()
        t5 = time.perf_counter()
        return self._stats(batch, step, value, evaluation, (t0, t1, t2, t3, t4, t5), start)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(self.device)

    def _advantages(self, batch: Batch):
        T, N = batch.rewards.shape
        obs = self._tensor(batch.obs.reshape(T * N, -1))
        with torch.no_grad():
            values = self.value_fn(obs).reshape(T, N)
            next_values = self.value_fn(self._tensor(batch.next_obs.reshape(T * N, -1)))
        advantages = gae(
            self._tensor(self.reward_scaler.scaled(batch)),
            values,
            next_values.reshape(T, N),
            self._tensor(batch.terminated),
            self._tensor(batch.truncated),
            self.config.gamma,
            self.config.gae_lambda,
        )
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
        dims = action_dims(self.action_space)  # A of kl_scale="per_dim"
        step = policy_step(
            self.learner_policy, obs, actions, advantages, old_log_probs, self.config, dims
        )
        if self.learner_policy is not self.policy:
            self.policy.load_state_dict(self.learner_policy.state_dict())
        return step

    def _valid_rows(self, batch: Batch) -> slice | torch.Tensor:
        """Index of the flattened transitions that enter the update (all but dropped ones)."""
        if batch.valid is None or batch.valid.all():
            return slice(None)
        return self._tensor(batch.valid.reshape(-1))

    def _maybe_evaluate(self) -> EvalResult | None:
        every = self.config.eval_every
        if every == 0 or self.iteration % every:
            return None
        return self.evaluate(self.config.eval_episodes)

    def _stats(
        self,
        batch: Batch,
        step: StepStats,
        value: ValueStats,
        evaluation: EvalResult | None,
        times: tuple[float, ...],
        start: float,
    ) -> IterationStats:
        t0, t1, t2, t3, t4, t5 = times
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
            eval_return=evaluation.mean if evaluation else math.nan,
            eval_return_std=evaluation.std if evaluation else math.nan,
            fps=batch.n_transitions / (t4 - t0),
            rollout_sec=t1 - t0,
            advantage_sec=t2 - t1,
            policy_sec=t3 - t2,
            value_sec=t4 - t3,
            eval_sec=t5 - t4,
            wall_sec=t5 - start,
        )

    # -- using the policy -----------------------------------------------------------
    def evaluate(self, episodes: int | None = None, seed: int | None = None) -> EvalResult:
        """Deterministic episodes on a separate env with the frozen normaliser. Episode i
        starts from reset seed ``seed + i`` (default: the run's seed + EVAL_SEED_OFFSET, the
        same start states at every evaluation)."""
        episodes = episodes or self.config.eval_episodes
        if self._evaluator is None or self._evaluator.envs.num_envs != episodes:
            if self._eval_factory is None:
                raise EnvError(
                    "evaluation needs a second env: pass an env id or a factory, not an "
                    "instance without a registered spec (or set eval_every=0)"
                )
            if self._evaluator is not None:
                self._evaluator.close()
            self._evaluator = Evaluator(self._eval_factory, episodes)
        seed = self.config.seed + EVAL_SEED_OFFSET if seed is None else seed
        return self._evaluator.run(self.policy, self.encoder, self.normalizer, seed)

    @property
    def evaluations(self) -> list[tuple[int, float]]:
        """(steps, mean evaluation return) of every periodic evaluation so far."""
        return [
            (int(row["steps"]), row["eval_return"])
            for row in self.metrics
            if not math.isnan(row["eval_return"])
        ]

    @property
    def score(self) -> float:
        """Mean of the last `SCORE_WINDOW` evaluation returns (NaN before any)."""
        return run_score(self.metrics)

    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Action(s) for raw observation(s), as the env accepts them. Takes one observation
        or a batch; never updates the normaliser."""
        single = _is_single(self.observation_space, obs)
        batch = [obs] if single else obs
        with torch.inference_mode():
            dist = self.policy(torch.from_numpy(self.normalizer(self.encoder(batch))))
            action = dist.mode if deterministic else dist.sample()
        env_action = self.adapter(action.numpy())
        return env_action[0] if single else env_action

    # -- persistence ----------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write everything needed to predict and to continue training to ``path``."""
        tensors: dict[str, torch.Tensor] = {}
        tensors.update({f"policy/{k}": v for k, v in self.policy.state_dict().items()})
        tensors.update({f"value/{k}": v.cpu() for k, v in self.value_fn.state_dict().items()})
        optim = self.value_optimizer.state_dict()
        for index, state in optim["state"].items():
            for key, value in state.items():
                tensors[f"value_optim/{index}/{key}"] = torch.as_tensor(value).cpu()
        norm = self.normalizer.stats
        tensors["obs_norm/mean"] = torch.from_numpy(np.asarray(norm.mean, np.float64))
        tensors["obs_norm/var"] = torch.from_numpy(np.asarray(norm.var, np.float64))
        returns = self.reward_scaler.stats
        tensors["return_norm/moments"] = torch.tensor(
            [float(returns.mean), float(returns.var)], dtype=torch.float64
        )
        rng_tensors, rng_meta = rng_state()
        tensors.update(rng_tensors)
        meta = {
            "config": self.config.to_dict(),
            "observation_space": space_to_dict(self.observation_space),
            "action_space": space_to_dict(self.action_space),
            "custom_modules": self.custom_modules,
            "counters": {
                "iteration": self.iteration,
                "steps": self.steps,
                "episodes": self.episodes,
            },
            "metrics": self.metrics,
            "best_eval": self.best_eval if math.isfinite(self.best_eval) else None,
            "obs_norm_count": norm.count,
            "return_norm_count": returns.count,
            "value_optim_param_groups": optim["param_groups"],
            "rng": rng_meta,
            "collector": self.collector.state(),
            "provenance": provenance(),
        }
        save_checkpoint(path, tensors, meta)

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
        """Rebuild a run from a checkpoint; ``learn`` then continues it. ``env`` defaults to
        the checkpoint's env id; its spaces must match the checkpoint's."""
        checkpoint = load_checkpoint(path)
        meta = checkpoint.meta
        saved = meta.get("config")
        if env is None and isinstance(saved, dict) and saved.get("env_id") == CUSTOM_ENV_ID:
            raise CheckpointError(
                f"{path} was trained on an env without a Gymnasium id: pass it as "
                "TRPO.load(path, env=...) (an id, a factory or an instance)"
            )
        try:
            config = Config.from_dict(meta["config"]).replace(**overrides)
            obs_space = space_from_dict(meta["observation_space"])
            action_space = space_from_dict(meta["action_space"])
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
            raise CheckpointError(
                f"{path}: checkpoint metadata is incomplete or invalid ({err})"
            ) from None
        if meta.get("custom_modules") and (policy is None or value_fn is None):
            raise CheckpointError(
                f"{path} was trained with custom policy/value modules: pass the same module "
                "types as TRPO.load(path, policy=..., value_fn=...)"
            )
        agent = cls(env, config, policy=policy, value_fn=value_fn, run_dir=run_dir)
        if not (
            same_space(obs_space, agent.observation_space)
            and same_space(action_space, agent.action_space)
        ):
            agent.close()
            raise CheckpointError(
                f"{path} was trained on observation space {obs_space} and action space "
                f"{action_space}, but the env has {agent.observation_space} and "
                f"{agent.action_space}"
            )
        try:
            agent._restore(checkpoint)
        except (KeyError, RuntimeError, ValueError, TypeError, OverflowError) as err:
            raise CheckpointError(
                f"{path}: checkpoint contents do not fit the model ({err})"
            ) from None
        return agent

    def _restore(self, checkpoint: Checkpoint) -> None:
        meta = checkpoint.meta
        self.policy.load_state_dict(checkpoint.section("policy"))
        if self.learner_policy is not self.policy:
            self.learner_policy.load_state_dict(checkpoint.section("policy"))
        self.value_fn.load_state_dict(checkpoint.section("value"))
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, tensor in checkpoint.section("value_optim").items():
            index, name = key.split("/", 1)
            state.setdefault(int(index), {})[name] = tensor
        self.value_optimizer.load_state_dict(
            {"state": state, "param_groups": meta["value_optim_param_groups"]}
        )
        self.normalizer.set_stats(
            RunningMeanStd(
                checkpoint.tensors["obs_norm/mean"].numpy(),
                checkpoint.tensors["obs_norm/var"].numpy(),
                float(meta["obs_norm_count"]),
            )
        )
        mean, var = checkpoint.tensors["return_norm/moments"].tolist()
        self.reward_scaler.stats = RunningMeanStd(
            np.asarray(mean), np.asarray(var), float(meta["return_norm_count"])
        )
        counters = meta["counters"]
        self.iteration, self.steps, self.episodes = (
            int(counters["iteration"]),
            int(counters["steps"]),
            int(counters["episodes"]),
        )
        self.metrics = [dict(row) for row in meta["metrics"]]
        if len(self.metrics) != self.iteration:
            raise ValueError(f"{len(self.metrics)} metric rows for {self.iteration} iterations")
        self.best_eval = -math.inf if meta["best_eval"] is None else float(meta["best_eval"])
        set_rng_state(checkpoint.tensors, meta["rng"])
        if not self.collector.restore(meta["collector"]):
            log.warning(
                "the envs' internal state could not be saved or restored (env type outside "
                "classic control and MuJoCo, async envs, or another n_envs), so the resumed "
                "run starts new episodes: the continuation is not bit-identical"
            )

    def close(self) -> None:
        self.collector.close()
        if self._evaluator is not None:
            self._evaluator.close()


class _RunOutputs:
    """What a run writes to its directory: config, provenance, CSV, TensorBoard, checkpoints."""

    def __init__(self, agent: TRPO):
        self.agent = agent
        self.dir = agent.run_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.json").write_text(agent.config.to_json())
        (self.dir / "provenance.json").write_text(json.dumps(provenance(), indent=2))
        self.csv = CSVLog(self.dir / METRICS_FILE, IterationStats.columns(), agent.metrics)
        self.tensorboard = TensorBoardLog(self.dir / "tb") if agent.config.tensorboard else None

    def write(self, stats: IterationStats, row: dict[str, Any]) -> None:
        self.csv.write(row)
        if self.tensorboard is not None:
            self.tensorboard.write(row, stats.steps)
        agent = self.agent
        if not math.isnan(stats.eval_return) and stats.eval_return > agent.best_eval:
            agent.best_eval = stats.eval_return
            agent.save(self.dir / "best.safetensors")
        every = agent.config.checkpoint_every
        if every and agent.iteration % every == 0:
            agent.save(self.dir / "last.safetensors")

    def close(self, ending: str) -> None:
        """``ending``: finished (last + final checkpoints), interrupted (last: the state
        after the last whole iteration) or failed (nothing: the state may be mid-iteration,
        the previous periodic checkpoint stays)."""
        if ending in ("finished", "interrupted"):
            self.agent.save(self.dir / "last.safetensors")
        if ending == "finished":
            self.agent.save(self.dir / "final.safetensors")
        self.csv.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


class _InterruptAfterIteration:
    """The first Ctrl-C (SIGINT) lets the running iteration finish, so the run stops at
    a state a checkpoint can hold exactly; a second one interrupts at once. Only in the
    main thread, where Python delivers signals; elsewhere Ctrl-C behaves as usual."""

    def __init__(self):
        self.requested = False
        self._installed = False
        self._previous: Any = None

    def __enter__(self) -> _InterruptAfterIteration:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("interrupt: stopping after this iteration (Ctrl-C again to stop now)")

    def __exit__(self, *exc_info: Any) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)


def _device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device={name}, but torch sees no GPU (torch {torch.__version__}, "
            "torch.cuda.is_available() is False): use device=cpu, or a machine with a GPU "
            "and a CUDA build of torch"
        )
    return device


def _evaluation_factory(
    env: EnvSource, factory: Callable[[], gym.Env]
) -> Callable[[], gym.Env] | None:
    if isinstance(env, gym.Env):
        if env.spec is None:
            return None
        spec = env.spec
        return lambda: gym.make(spec)
    return factory


def _is_single(space: gym.Space, obs: Any) -> bool:
    shape = np.shape(obs)
    if isinstance(space, gym.spaces.Discrete):
        return shape == ()
    return shape == space.shape

"""A Run: the learn loop around a `Trainer`. Periodic evaluation, the run's records
(metrics rows, best evaluation), the run directory (config, provenance, metrics.csv,
TensorBoard, best/last/final checkpoints), interrupts and progress."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym

from trpo.agent import Agent
from trpo.checkpoint import State, provenance, save_checkpoint
from trpo.config import Settings
from trpo.envs import EnvError
from trpo.evaluate import EVAL_SEED_OFFSET, EvalResult, Evaluator
from trpo.logger import METRICS_FILE, CSVLog, ProgressBar, TensorBoardLog
from trpo.metrics import Callback, IterationStats, run_score
from trpo.trainer import Trainer

log = logging.getLogger("trpo")


class Run:
    """Trains ``trainer``'s agent, evaluating on envs from ``eval_factory`` (None: the env
    cannot be copied, so only ``eval_every=0`` works), on ``eval_copies`` of them at a time
    (None: one per episode); with ``run_dir`` it writes there. ``settings`` (how the config
    was resolved) is written beside the config and kept in checkpoints."""

    def __init__(
        self,
        trainer: Trainer,
        eval_factory: Callable[[], gym.Env] | None,
        run_dir: str | Path | None = None,
        eval_copies: int | None = None,
        settings: Settings | None = None,
    ):
        self.trainer = trainer
        self.agent: Agent = trainer.agent
        self.eval_factory = eval_factory
        self.eval_copies = eval_copies
        self.settings = settings or Settings.of_config(trainer.agent.config)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.metrics: list[dict[str, Any]] = []
        """Every iteration's `IterationStats.row()` (metrics.csv's rows), kept in checkpoints."""
        self.best_eval = -math.inf
        self._evaluator: Evaluator | None = None

    def learn(
        self, total_steps: int, callback: Callback | None = None, progress: bool = False
    ) -> None:
        """Train until the run has taken ``total_steps`` environment steps in all."""
        if not isinstance(total_steps, int) or total_steps <= 0:
            raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
        trainer = self.trainer
        outputs = _RunOutputs(self) if self.run_dir is not None else None
        bar = ProgressBar(total_steps, trainer.steps) if progress else None
        start = time.perf_counter()
        ending = "failed"  # what the run directory records if the loop raises
        try:
            with _InterruptAfterIteration() as interrupt:
                while trainer.steps < total_steps and not interrupt.requested:
                    stats = self._iteration(start)
                    self.metrics.append(stats.row())
                    if outputs is not None:
                        outputs.write(stats, self.metrics[-1])
                    if bar is not None:
                        bar.update(trainer.steps, stats.fps, stats.episode_return, stats.policy.kl)
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

    def _iteration(self, start: float) -> IterationStats:
        stats = self.trainer.iterate()
        evaluated: dict[str, float] = {}
        every = self.agent.config.eval_every
        if every and self.trainer.iteration % every == 0:
            t = time.perf_counter()
            result = self.evaluate()
            evaluated = {
                "eval_return": result.mean,
                "eval_return_std": result.std,
                "eval_sec": time.perf_counter() - t,
            }
        return dataclasses.replace(stats, **evaluated, wall_sec=time.perf_counter() - start)

    def evaluate(self, episodes: int | None = None, seed: int | None = None) -> EvalResult:
        """Deterministic episodes on separate envs with the frozen normaliser. Episode i
        starts from reset seed ``seed + i`` (default: the run's seed + EVAL_SEED_OFFSET, the
        same start states at every evaluation)."""
        config = self.agent.config
        episodes = episodes or config.eval_episodes
        if self._evaluator is None or self._evaluator.episodes != episodes:
            if self.eval_factory is None:
                raise EnvError(
                    "evaluation needs a second env: pass an env id or a factory, not an "
                    "instance without a registered spec (or set eval_every=0)"
                )
            if self._evaluator is not None:
                self._evaluator.close()
            self._evaluator = Evaluator(self.eval_factory, episodes, self.eval_copies)
        seed = config.seed + EVAL_SEED_OFFSET if seed is None else seed
        return self._evaluator.run(self.agent, seed)

    @property
    def score(self) -> float:
        return run_score(self.metrics)

    # -- persistence ----------------------------------------------------------------
    def state_dict(self) -> State:
        best = self.best_eval if math.isfinite(self.best_eval) else None
        meta = {"metrics": self.metrics, "best_eval": best, "settings": self.settings.to_dict()}
        return {}, meta

    def load_state_dict(self, tensors: dict, meta: dict[str, Any]) -> None:
        self.metrics = [dict(row) for row in meta["metrics"]]
        if len(self.metrics) != self.trainer.iteration:
            raise ValueError(
                f"{len(self.metrics)} metric rows for {self.trainer.iteration} iterations"
            )
        self.best_eval = -math.inf if meta["best_eval"] is None else float(meta["best_eval"])

    def save(self, path: str | Path) -> None:
        """Everything needed to predict and to continue training, in one checkpoint."""
        save_checkpoint(
            path,
            {
                "agent": self.agent.state_dict(),
                "trainer": self.trainer.state_dict(),
                "run": self.state_dict(),
            },
        )

    def restore(self, checkpoint) -> bool:
        """Continue the run saved in ``checkpoint`` (from `load_checkpoint`), whose agent
        this run's agent already is. False when the envs start new episodes."""
        continued = self.trainer.load_state_dict(*checkpoint.component("trainer"))
        self.load_state_dict(*checkpoint.component("run"))
        return continued

    def close(self) -> None:
        self.trainer.close()
        if self._evaluator is not None:
            self._evaluator.close()


class _RunOutputs:
    """What a run writes to its directory: config, provenance, CSV, TensorBoard, checkpoints."""

    def __init__(self, run: Run):
        self.run = run
        self.dir = run.run_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.json").write_text(run.agent.config.to_json())
        settings = json.dumps(run.settings.to_dict(), indent=2, default=str)
        (self.dir / "settings.json").write_text(settings)
        (self.dir / "provenance.json").write_text(json.dumps(provenance(), indent=2))
        self.csv = CSVLog(self.dir / METRICS_FILE, IterationStats.columns(), run.metrics)
        tensorboard = run.agent.config.tensorboard
        self.tensorboard = TensorBoardLog(self.dir / "tb") if tensorboard else None

    def write(self, stats: IterationStats, row: dict[str, Any]) -> None:
        self.csv.write(row)
        if self.tensorboard is not None:
            self.tensorboard.write(row, stats.steps)
        run = self.run
        if not math.isnan(stats.eval_return) and stats.eval_return > run.best_eval:
            run.best_eval = stats.eval_return
            run.save(self.dir / "best.safetensors")
        every = run.agent.config.checkpoint_every
        if every and run.trainer.iteration % every == 0:
            run.save(self.dir / "last.safetensors")

    def close(self, ending: str) -> None:
        """``ending``: finished (last + final checkpoints), interrupted (last: the state
        after the last whole iteration) or failed (nothing: the state may be mid-iteration,
        the previous periodic checkpoint stays)."""
        if ending in ("finished", "interrupted"):
            self.run.save(self.dir / "last.safetensors")
        if ending == "finished":
            self.run.save(self.dir / "final.safetensors")
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

"""A Run: the learn loop around a `Trainer`. Periodic evaluation, the run's records
(metrics rows, best evaluation), the run directory (config, provenance, metrics.csv,
TensorBoard, best/last/final checkpoints), interrupts and progress."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym

from trpo import rundir
from trpo.agent import Agent
from trpo.checkpoint import Checkpoint, CheckpointError, State, provenance, save_checkpoint
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
        self,
        total_steps: int,
        callback: Callback | None = None,
        progress: bool = False,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        """Train until the run has taken ``total_steps`` environment steps in all.
        ``stop()`` true after an iteration stops the run as Ctrl-C does (a grid's workers,
        which ignore signals, are stopped so by their parent).

        Ctrl-C (SIGINT) finishes the running iteration, saves ``last`` and raises
        KeyboardInterrupt; SIGTERM abandons the running iteration, saves ``last`` from the
        state after the last whole one and raises `Terminated` (see `_Signals`)."""
        if not isinstance(total_steps, int) or total_steps <= 0:
            raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
        trainer = self.trainer
        outputs = _RunOutputs(self) if self.run_dir is not None else None
        bar = ProgressBar(total_steps, trainer.steps) if progress else None
        start = time.perf_counter()
        ending = "failed"  # what the run directory records if the loop raises
        whole = self._snapshot() if outputs is not None else None
        try:
            with _Signals() as signals:
                try:
                    while trainer.steps < total_steps and not signals.interrupted:
                        if stop is not None and stop():
                            signals.interrupted = True
                            break
                        stats = self._iteration(start, total_steps)
                        with signals.deferred():  # a SIGTERM waits for the records
                            self.metrics.append(stats.row())
                            if outputs is not None:
                                new_best = outputs.note_best(stats)
                                whole = self._snapshot()
                                outputs.write(stats, self.metrics[-1], whole[1], new_best)
                        if bar is not None:
                            bar.update(
                                trainer.steps, stats.fps, stats.episode_return, stats.policy.kl
                            )
                        if callback is not None and callback(stats) is False:
                            break
                    ending = "interrupted" if signals.interrupted else "finished"
                except _TerminateNow:
                    ending = "terminated"
        finally:
            if bar is not None:
                bar.close()
            if outputs is not None:
                outputs.close(ending, whole)
        if ending == "interrupted":
            raise KeyboardInterrupt
        if ending == "terminated":
            saved = whole[1]["trainer"][1]["counters"] if whole is not None else None
            raise Terminated(saved)

    def _snapshot(self) -> tuple[Path, dict[str, State]]:
        """The state after the last whole iteration, copied, so that a SIGTERM can save
        it however far the next iteration has gone (it changes the weights, statistics,
        random streams and envs in place). Parameters are cloned: a copy of the networks
        per iteration, small beside the batch."""
        parts = self._components()
        tensors_run, meta_run = parts.pop("run")
        copied = {
            name: ({k: v.detach().clone() for k, v in t.items()}, copy.deepcopy(m))
            for name, (t, m) in parts.items()
        }
        copied["run"] = (tensors_run, {**meta_run, "metrics": list(meta_run["metrics"])})
        return self.run_dir / "last.safetensors", copied

    def _iteration(self, start: float, total_steps: int) -> IterationStats:
        trainer = self.trainer
        per_iteration = self.agent.config.steps_per_iter
        stats = trainer.iterate(more=trainer.steps + per_iteration < total_steps)
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
        save_checkpoint(path, self._components())

    def _components(self) -> dict[str, State]:
        return {
            "agent": self.agent.state_dict(),
            "trainer": self.trainer.state_dict(),
            "run": self.state_dict(),
        }

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue the run saved in ``checkpoint`` (from `load_checkpoint`), whose agent
        this run's agent already is; warns when the envs must start new episodes."""
        try:
            continued = self.trainer.load_state_dict(*checkpoint.component("trainer"))
            self.load_state_dict(*checkpoint.component("run"))
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

    def close(self) -> None:
        self.trainer.close()
        if self._evaluator is not None:
            self._evaluator.close()


class _RunOutputs:
    """What a run writes to its directory: config, provenance, CSV, TensorBoard, checkpoints."""

    def __init__(self, run: Run):
        self.run = run
        self.dir = run.run_dir
        rundir.acquire(self.dir)  # before anything is written: one writer per directory
        try:
            self._open()
        except BaseException:
            rundir.release(self.dir)
            raise

    def _open(self) -> None:
        run = self.run
        (self.dir / "config.json").write_text(run.agent.config.to_json())
        settings = json.dumps(run.settings.to_dict(), indent=2, default=str)
        (self.dir / "settings.json").write_text(settings)
        (self.dir / "provenance.json").write_text(json.dumps(provenance(), indent=2))
        self.csv = CSVLog(self.dir / METRICS_FILE, IterationStats.columns(), run.metrics)
        tensorboard = run.agent.config.tensorboard
        # a resumed run's events continue after its checkpoint's step: TensorBoard hides
        # those a killed process wrote after it
        purge = run.trainer.steps + 1 if run.trainer.steps else None
        self.tensorboard = TensorBoardLog(self.dir / "tb", purge) if tensorboard else None

    def note_best(self, stats: IterationStats) -> bool:
        """Whether this iteration's evaluation is the run's best so far (recorded as such)."""
        run = self.run
        if math.isnan(stats.eval_return) or stats.eval_return <= run.best_eval:
            return False
        run.best_eval = stats.eval_return
        return True

    def write(
        self, stats: IterationStats, row: dict[str, Any], state: dict[str, State], new_best: bool
    ) -> None:
        """The iteration's records, and its checkpoints from ``state`` (`Run._snapshot`,
        gathered once for the snapshot and every checkpoint of this iteration)."""
        self.csv.write(row)
        if self.tensorboard is not None:
            self.tensorboard.write(row, stats.steps)
        if new_best:
            save_checkpoint(self.dir / "best.safetensors", state)
        every = self.run.agent.config.checkpoint_every
        if every and self.run.trainer.iteration % every == 0:
            save_checkpoint(self.dir / "last.safetensors", state)

    def close(self, ending: str, whole: tuple[Path, dict[str, State]] | None = None) -> None:
        """``ending``: finished (last + final checkpoints), interrupted (last: the state
        after the last whole iteration), terminated (last from ``whole``, the snapshot of
        that state) or failed (nothing: the state may be mid-iteration, the previous
        periodic checkpoint stays). Frees the directory's lock in any case."""
        try:
            if ending in ("finished", "interrupted"):
                self.run.save(self.dir / "last.safetensors")
            if ending == "finished":
                self.run.save(self.dir / "final.safetensors")
            if ending == "terminated" and whole is not None:
                save_checkpoint(*whole)
            self.csv.close()
            if self.tensorboard is not None:
                self.tensorboard.close()
        finally:
            rundir.release(self.dir)


class Terminated(KeyboardInterrupt):
    """The run stopped on SIGTERM; ``last`` holds the state after its last whole
    iteration (``saved``: that state's counters, None without a run directory)."""

    def __init__(self, saved: dict[str, int] | None = None):
        super().__init__("terminated")
        self.saved = saved


class _TerminateNow(BaseException):
    """Raised by the SIGTERM handler in the middle of an iteration to abandon it."""


class _Signals:
    """Ctrl-C and SIGTERM during `Run.learn`, in the main thread (where Python delivers
    signals; elsewhere they behave as usual).

    SIGINT: the running iteration finishes, so the run stops at a state a checkpoint can
    hold exactly; a second one interrupts at once. SIGTERM (schedulers, SLURM, systemd,
    `docker stop`; a hard kill follows after ~30 s): the running iteration is abandoned
    at once, evaluation included, by raising out of it; the run then saves the snapshot
    of the state after the last whole iteration. Only the run's own writes (metrics row,
    checkpoints, snapshot) defer it until they are done (`deferred`). A signal the
    process ignores (SIG_IGN, as in trpo's grid workers) stays ignored."""

    def __init__(self):
        self.interrupted = False
        self.terminated = False
        self._deferring = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for signum, handler in (
                (signal.SIGINT, self._interrupt),
                (signal.SIGTERM, self._terminate),
            ):
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, handler)
        return self

    def _interrupt(self, signum: int, frame: Any) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        log.warning("interrupt: stopping after this iteration (Ctrl-C again to stop now)")

    def _terminate(self, signum: int, frame: Any) -> None:
        self.terminated = True
        if not self._deferring:
            raise _TerminateNow

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self.terminated:
            raise _TerminateNow

    def __exit__(self, *exc_info: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

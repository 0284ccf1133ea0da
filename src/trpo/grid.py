"""A grid of independent training runs (algorithms × seeds × envs) run in parallel
processes. Resumable: a cell whose run directory holds a final checkpoint is skipped, an
unfinished one continues from its last checkpoint (exactly, see `trpo.env_state`), so
rerunning the same command completes the grid with the results it would have had."""

from __future__ import annotations

import json
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trpo import rundir
from trpo.config import Config

FINAL_CHECKPOINT = "final.safetensors"


class GridError(Exception):
    """A grid that cannot run as asked (e.g. its directory holds runs of other settings)."""


@dataclass(frozen=True)
class Cell:
    config: Config
    run_dir: Path

    @property
    def finished(self) -> bool:
        return (self.run_dir / FINAL_CHECKPOINT).exists()

    @property
    def logged_to_the_end(self) -> bool:
        """Its metrics reach the config's total steps: a finished run, also where only its
        text files were kept (a results directory committed without checkpoints)."""
        from trpo.logger import METRICS_FILE, read_metrics

        metrics = self.run_dir / METRICS_FILE
        rows = read_metrics(metrics) if metrics.exists() else []
        return bool(rows) and rows[-1]["steps"] >= self.config.total_steps

    def saved_config(self) -> Config | None:
        path = self.run_dir / "config.json"
        return Config.from_dict(json.loads(path.read_text())) if path.exists() else None

    def settings_differ(self) -> list[str]:
        """Where the settings saved in the run directory differ from this cell's, as
        ``key=saved (now value)``; empty when none are saved or they are the same."""
        saved = self.saved_config()
        if saved is None or saved == self.config:
            return []
        now = self.config.to_dict()
        return [f"{k}={v!r} (now {now[k]!r})" for k, v in saved.to_dict().items() if now[k] != v]

    def check_settings(self) -> None:
        """Refuse to reuse a finished run trained with other settings than this cell's."""
        differ = self.settings_differ() if self.finished else []
        if differ:
            raise GridError(
                f"{self.run_dir} holds a finished run with other settings: {', '.join(differ)}; "
                "choose another output directory or pass --overwrite"
            )


@dataclass(frozen=True)
class CellResult:
    cell: Cell
    score: float
    seconds: float


def run_cell(cell: Cell) -> CellResult:
    """Train one cell to completion in its run directory, continuing an interrupted run
    of the same settings from its last checkpoint."""
    from trpo.api import TRPO
    from trpo.reproducibility import torch_threads

    started = time.perf_counter()
    with rundir.RunDirLock(cell.run_dir):  # no other process may write the cell meanwhile
        agent = _continued(cell)
        if agent is None:
            rundir.clear(cell.run_dir)
            agent = TRPO(config=cell.config, run_dir=cell.run_dir)
        try:
            with torch_threads(agent.config.torch_threads):
                agent.run.learn(agent.config.total_steps, stop=_stop_requested)
        finally:
            agent.close()
    return CellResult(cell, agent.score, time.perf_counter() - started)


_stop: Any = None
"""In a grid worker process: the parent's stop event (`_worker_init`)."""


def _worker_init(stop: Any, jobs: int) -> None:
    """A grid worker ignores SIGINT and SIGTERM (a terminal's Ctrl-C and a scheduler's
    SIGTERM reach every process of the group or job), so it never dies mid-write; its
    parent stops it through ``stop``, and it ends after its running iteration, saved.
    It shares the cores with ``jobs`` - 1 others (`overlap=auto` reads that)."""
    global _stop
    from trpo.overlap import share_cores

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    share_cores(jobs)
    _stop = stop


def _stop_requested() -> bool:
    return _stop is not None and _stop.is_set()


def _continued(cell: Cell):
    """The cell's interrupted run, loaded from its last checkpoint, if it has one of the
    cell's settings that loads."""
    from trpo.api import TRPO

    last = cell.run_dir / "last.safetensors"
    try:
        if last.exists() and cell.saved_config() == cell.config:
            return TRPO.load(last, run_dir=cell.run_dir)
    except ValueError:  # CheckpointError or ConfigError: unreadable, the run starts over
        pass
    return None


def run_grid(cells: list[Cell], workers: int, report: Callable[[str], None] = print) -> list[Cell]:
    """Run the unfinished cells, ``workers`` at a time (1: in this process). Returns the
    cells that ran. A failing cell stops the grid; finished cells stay on disk."""
    for cell in cells:
        cell.check_settings()
    todo = [cell for cell in cells if not cell.finished]
    if len(todo) < len(cells):
        report(f"{len(cells) - len(todo)} of {len(cells)} runs already finished: skipped")

    def done(index: int, result: CellResult) -> None:
        report(
            f"[{index}/{len(todo)}] {result.cell.run_dir.name}: score {result.score:.1f} "
            f"({result.seconds:.0f} s)"
        )

    if workers <= 1 or len(todo) <= 1:
        for index, cell in enumerate(todo, 1):
            done(index, run_cell(cell))
        return todo
    # spawn, not fork: each worker starts clean (no inherited torch threads or env handles).
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    jobs = min(workers, len(todo))
    pool = ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_worker_init, initargs=(stop, jobs)
    )
    with pool, _TerminateAsInterrupt():
        futures = [pool.submit(run_cell, cell) for cell in todo]
        try:
            for index, future in enumerate(as_completed(futures), 1):
                done(index, future.result())
        except BaseException:
            stop.set()  # the running cells save after their iteration and end
            for future in futures:
                future.cancel()
            raise
    return todo


class _TerminateAsInterrupt:
    """In the grid's parent (main thread): SIGTERM raises `Terminated`, so the parent
    stops its workers (which ignore signals) as on Ctrl-C, waits for them and exits."""

    def __enter__(self) -> _TerminateAsInterrupt:
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    @staticmethod
    def _handle(signum: int, frame: Any) -> None:
        from trpo.run import Terminated

        raise Terminated

    def __exit__(self, *exc_info: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

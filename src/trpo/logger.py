"""Run outputs: per-iteration CSV, TensorBoard events and a live progress bar.

Only the trainer logs; the math returns stats objects.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

METRICS_FILE = "metrics.csv"


class CSVLog:
    """Appends one row per iteration; flushed after each row so a crash loses nothing.

    Opening writes the header and ``rows`` (those a resumed run's checkpoint holds), so
    the file has every iteration exactly once, whatever a crash left in it."""

    def __init__(self, path: Path, columns: list[str], rows: Sequence[dict[str, Any]] = ()):
        self.path = path
        self.columns = columns
        self._file = path.open("w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=columns)
        self._writer.writeheader()
        self._file.flush()
        for row in rows:
            self.write(row)

    def write(self, row: dict[str, Any]) -> None:
        # rows from an older checkpoint may lack a newer column: left empty
        self._writer.writerow({k: _fmt(row.get(k, math.nan)) for k in self.columns})
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _fmt(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return value


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Rows of a metrics CSV as floats (empty cells become NaN). Damaged rows (a cell
    that is not a number, too few or too many cells, undecodable bytes: a disk or copy
    accident) are skipped with one warning naming how many."""
    text = path.read_bytes().decode("utf-8", errors="replace").replace("\0", "")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, [])
    rows, damaged = [], 0
    for cells in reader:
        if not cells:
            continue
        try:
            if len(cells) != len(header):
                raise ValueError
            rows.append({k: float(v) if v else math.nan for k, v in zip(header, cells)})
        except ValueError:
            damaged += 1
    if damaged:
        logging.getLogger("trpo").warning("%s: skipped %d damaged row(s)", path, damaged)
    return rows


class TensorBoardLog:
    """``purge_step``: a resumed run's first step; events at or after it that an earlier
    process wrote (after its last checkpoint) are hidden, so no step appears twice."""

    def __init__(self, directory: Path, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(directory), purge_step=purge_step)

    def write(self, row: dict[str, Any], step: int) -> None:
        for key, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                if not math.isnan(value):
                    self._writer.add_scalar(key, value, step)
            elif isinstance(value, bool):
                self._writer.add_scalar(key, float(value), step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class ProgressBar:
    """steps, fps, mean episode return, KL, ETA."""

    def __init__(self, total_steps: int, done_steps: int = 0):
        self._progress = Progress(
            TextColumn("[bold]trpo"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} steps"),
            TextColumn("{task.fields[fps]:>6} fps"),
            TextColumn("return {task.fields[ret]}"),
            TextColumn("kl {task.fields[kl]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            refresh_per_second=4,
        )
        self._task = self._progress.add_task(
            "train", total=total_steps, completed=done_steps, fps="-", ret="-", kl="-"
        )
        self._progress.start()

    def update(self, steps: int, fps: float, episode_return: float, kl: float) -> None:
        fields = {"fps": f"{fps:,.0f}", "kl": f"{kl:.4f}"}
        if not math.isnan(episode_return):
            fields["ret"] = f"{episode_return:.1f}"
        self._progress.update(self._task, completed=steps, **fields)

    def close(self) -> None:
        self._progress.stop()

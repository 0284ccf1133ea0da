"""The value fit on a second core, beside the next rollout (config `overlap`).

The rollout of iteration k+1 needs only the policy after step k; the value function is
next needed for iteration k+1's advantages. So while the trainer collects the next batch,
a worker process fits the value function on the last one: the same `fit_value`, on the
same weights, optimiser state and random stream, so the run is the same bit for bit (same
thread count, MKL's strict mode inherited, aligned operands). Threads would not do: the
GIL serialises the Python around every op (a value fit beside a rollout in two threads
was no faster than one after the other).

The worker is forked once per trainer and holds no state between fits: every request
carries the value function's weights, the optimiser's state and the generator's, and
every reply brings them back, so the trainer's objects stay the truth (checkpoints,
`predict`, resume). For an MLP that is a few kilobytes; for the Nature CNN ~20 MB each
way, small beside a pixel iteration.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import time
import traceback
import weakref
from typing import Any

import numpy as np
import torch
from torch import nn

from trpo.config import Config, overlap_possible
from trpo.reproducibility import aligned_tensor
from trpo.update import ValueStats, fit_value

_jobs_sharing_cores = 1
"""Training processes that share this machine's cores (`share_cores`)."""


def share_cores(jobs: int) -> None:
    """Tell ``auto`` that this process is one of ``jobs`` running side by side (a grid's
    workers), so that it leaves the overlap off unless each has two cores."""
    global _jobs_sharing_cores
    _jobs_sharing_cores = max(1, jobs)


def overlap_on(config: Config) -> bool:
    """Whether a run overlaps its value fit with its rollout. ``auto``: on Linux (where
    forking a process that has loaded torch is safe; macOS's system libraries are not
    fork-safe, Windows cannot fork), with the local backend, on the CPU, on one torch
    thread, when two cores are free for this run."""
    if config.overlap != "auto":
        return config.overlap == "on"
    free = available_cores() // _jobs_sharing_cores
    return sys.platform == "linux" and overlap_possible(config) and free >= 2


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ValueFitProcess:
    """A forked worker that runs `fit_value` on request (`start`, then `result`).

    Forked with `os.fork`, not `multiprocessing.Process`: the worker ignores SIGINT and
    SIGTERM (the trainer handles them for both), and multiprocessing ends its children at
    exit with a SIGTERM it would then wait on forever. The worker ends when its pipe
    closes: on `close`, when the trainer is collected, or when the trainer's process ends.
    A user's value network need not pickle. The worker computes on one thread: an OpenMP
    pool the parent may have started does not survive a fork (hence `overlap_on`)."""

    def __init__(self, value_fn: nn.Module, lr: float, epochs: int, minibatch: int):
        self._conn, child = multiprocessing.Pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                _close_inherited_files(keep=child.fileno())
                _serve(child, value_fn, lr, epochs, minibatch)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        child.close()
        self._pending = False
        self._finalizer = weakref.finalize(self, _end_worker, self._conn, pid)

    def start(
        self,
        value_fn: nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        obs: torch.Tensor,
        targets: torch.Tensor,
        old_values: torch.Tensor,
    ) -> None:
        if self._pending:  # the last fit's result was never taken (its iteration failed)
            self._conn.recv_bytes()
        state = (value_fn.state_dict(), optimizer.state_dict(), generator.get_state())
        data = (obs, targets, old_values)
        self._conn.send_bytes(_dumps((state, data)))
        self._pending = True

    def result(
        self, value_fn: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator
    ) -> tuple[ValueStats, float]:
        """Waits for the fit and loads its outcome into the trainer's objects; returns its
        stats and the seconds the worker spent fitting."""
        try:
            reply = self._conn.recv_bytes()
        except EOFError:
            raise RuntimeError(
                "the value-fit worker died (its error, if any, is printed above); "
                "set overlap=off to fit in the training process"
            ) from None
        self._pending = False
        (weights, optim_state, generator_state), stats, seconds = _loads(reply)
        value_fn.load_state_dict(weights)
        optimizer.load_state_dict(optim_state)
        generator.set_state(generator_state)
        return ValueStats(*stats), seconds

    def close(self) -> None:
        """Ends the worker; a fit still running is abandoned (its result was not wanted)."""
        self._finalizer()


def _close_inherited_files(keep: int) -> None:
    """Close every descriptor the fork copied but stdin/out/err and ``keep``: a copy would
    hold what the trainer lets go (a run directory's flock lasts until its last descriptor
    closes; an env worker's pipe would never read its end)."""
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))


def _end_worker(conn, pid: int) -> None:
    conn.close()  # an idle worker reads the end of its pipe and exits
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)  # one still fitting is not waited for
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _dumps(value: Any) -> bytes:
    """``value`` pickled with its tensors as NumPy arrays: for an MLP's few kilobytes
    ~5× faster than `torch.save` (measured: 0.26 ms against 1.2 ms, and 0.27 ms against
    1.3 ms for `_loads` against `torch.load`)."""
    return pickle.dumps(_convert(value, lambda t: t.detach().numpy()), pickle.HIGHEST_PROTOCOL)


def _loads(data: bytes) -> Any:
    """`_dumps`' value, its arrays as tensors in torch's aligned memory (as `torch.load`
    gives them: operands' alignment can change a kernel's rounding)."""
    return _convert(pickle.loads(data), lambda a: aligned_tensor(a).reshape(a.shape))


def _convert(value: Any, leaf) -> Any:
    """``value`` with ``leaf`` applied to every tensor or array inside dicts, lists and tuples."""
    if isinstance(value, torch.Tensor | np.ndarray):
        return leaf(value)
    if isinstance(value, dict):
        return {key: _convert(item, leaf) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_convert(item, leaf) for item in value)
    return value


def _serve(conn, value_fn: nn.Module, lr: float, epochs: int, minibatch: int):
    # Ctrl-C and SIGTERM reach the whole process group: the trainer handles them and
    # closes this worker itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(1)
    optimizer = torch.optim.Adam(value_fn.parameters(), lr=lr, fused=True)  # as the trainer's
    generator = torch.Generator()
    while True:
        try:
            request = conn.recv_bytes()
        except EOFError:  # the trainer closed the pipe or ended
            return
        (weights, optim_state, generator_state), data = _loads(request)
        value_fn.load_state_dict(weights)
        optimizer.load_state_dict(optim_state)
        generator.set_state(generator_state)
        obs, targets, old_values = data
        started = time.perf_counter()
        stats = fit_value(
            value_fn, optimizer, obs, targets, old_values, epochs, minibatch, generator
        )
        seconds = time.perf_counter() - started
        state = (value_fn.state_dict(), optimizer.state_dict(), generator.get_state())
        try:
            conn.send_bytes(_dumps((state, (stats.value_loss, stats.explained_variance), seconds)))
        except BrokenPipeError:  # the trainer no longer wants it
            return

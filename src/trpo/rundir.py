"""One writer per run directory: an exclusive `fcntl.flock` on ``run.lock`` inside it,
taken before anything else is written there and freed by the kernel when the holder's
process ends, however it ends (no stale lock after a crash or SIGKILL). The file names
the holder (host and PID) so that a second writer's error says who has the directory.

The file stays after the run (deleting a lock file races with a process that has just
opened it); the lock is the flock on it, not its existence. flock works on local
filesystems and, on Linux, on NFS (emulated with byte-range locks)."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

LOCK_FILE = "run.lock"

_held: dict[Path, tuple[int, int]] = {}
"""This process's locks: directory -> (file descriptor, nesting depth). The kernel keeps
the real state; this lets the CLI hold a directory across building and training it."""


class RunDirLockedError(Exception):
    """Another process is writing this run directory."""


def acquire(run_dir: str | Path) -> Path:
    """Create ``run_dir`` and take its lock (nested calls in one process just count).
    Raises `RunDirLockedError` naming the holder when another process has it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = run_dir.resolve()
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        return key
    fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunDirLockedError(
            f"run directory {run_dir} is in use by another trpo process ({holder}): "
            "wait for it to end or stop it, or choose another --run-dir"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"host {socket.gethostname()} pid {os.getpid()}\n".encode(), 0)
    _held[key] = (fd, 1)
    return key


def release(run_dir: str | Path) -> None:
    """Undo one `acquire`; the last one frees the lock."""
    key = Path(run_dir).resolve()
    fd, depth = _held[key]
    if depth > 1:
        _held[key] = (fd, depth - 1)
        return
    del _held[key]
    os.close(fd)  # closing the only descriptor releases the flock


class RunDirLock:
    """``with RunDirLock(run_dir):`` holds the directory for the block."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)

    def __enter__(self) -> RunDirLock:
        acquire(self.run_dir)
        return self

    def __exit__(self, *exc_info: object) -> None:
        release(self.run_dir)


def clear(run_dir: str | Path) -> None:
    """Delete everything in a run directory this process holds, but its lock file (a
    directory removed and recreated would let a second writer lock a new file)."""
    import shutil

    run_dir = Path(run_dir)
    if run_dir.resolve() not in _held:
        raise RuntimeError(f"clear({run_dir}) needs the directory's lock")
    for entry in run_dir.iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def has_content(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds anything but its lock file."""
    run_dir = Path(run_dir)
    return run_dir.is_dir() and any(p.name != LOCK_FILE for p in run_dir.iterdir())


def env_dir_name(env_id: str) -> str:
    """``env_id`` as one path component of a run directory's name: Gymnasium's namespace
    separator becomes a dash (``ALE/Pong-v5`` → ``ALE-Pong-v5``), so runs of namespaced
    envs sit beside the others instead of in a folder per namespace."""
    return env_id.replace("/", "-")

"""Checkpoints: one safetensors file holding every tensor of a run plus JSON metadata.

Format 4: the run's parts save themselves (``components``: the agent, the trainer, the
run's records; each a JSON object beside its tensors, whose names start with the part's
own prefixes), every tensor's SHA-256 is in the metadata and checked on load, and readers
ignore components and metric columns they do not know, so later versions can add them
without a new format. Nothing is unpickled on load, so a checkpoint from anywhere is safe
to open. Writes are atomic (temporary file, fsync, rename): a crash at any instant leaves
the previous file.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from trpo.encoders import is_text_space

FORMAT_VERSION = 4
_META_KEY = "trpo"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, is not ours, or does not fit the environment."""


State = tuple[dict[str, torch.Tensor], dict[str, Any]]
"""What a part of a run saves: its tensors (names under its own prefixes) and JSON."""


@dataclass
class Checkpoint:
    path: Path
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]

    def component(self, name: str) -> State:
        """The tensors (all of them: each part reads its own names) and the JSON of the
        part saved as ``name``."""
        components = self.meta.get("components")
        if not isinstance(components, dict) or not isinstance(components.get(name), dict):
            raise CheckpointError(f"{self.path} holds no '{name}' state")
        return self.tensors, components[name]


def section(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Tensors stored under ``prefix/`` with the prefix removed."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}


def tensor_checksum(tensor: torch.Tensor) -> str:
    data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    return hashlib.sha256(data.numpy().tobytes()).hexdigest()


def write_atomic(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; checkpoints are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint(path: str | Path, components: dict[str, State]) -> None:
    """Write the named parts' states, with provenance and a checksum of every tensor."""
    tensors: dict[str, torch.Tensor] = {}
    for name, (part, _) in components.items():
        clash = sorted(tensors.keys() & part.keys())
        if clash:
            raise ValueError(f"component '{name}' reuses tensor names {clash}")
        tensors.update({k: v.detach().cpu().contiguous() for k, v in part.items()})
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"refusing to write a checkpoint with non-finite '{name}'")
    meta = {
        "format_version": FORMAT_VERSION,
        "components": {name: part_meta for name, (_, part_meta) in components.items()},
        "checksums": {name: tensor_checksum(t) for name, t in tensors.items()},
        "provenance": provenance(),
    }
    write_atomic(path, save_bytes(tensors, metadata={_META_KEY: json.dumps(meta)}))


CHECKPOINT_NAMES = ("best", "final", "last")
"""A run directory's checkpoints, each `NAME.safetensors`: best (the best evaluation so far),
final (the end of training) and last (the latest whole iteration: what --resume continues)."""


def run_checkpoint(run_dir: Path, name: str) -> Path:
    """``name``: one of `CHECKPOINT_NAMES` in ``run_dir`` (best falls back to final, for a
    run too short to evaluate) or a checkpoint's own path."""
    if name not in CHECKPOINT_NAMES:
        return Path(name)
    path = run_dir / f"{name}.safetensors"
    if name == "best" and not path.exists():
        return run_dir / "final.safetensors"
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if path.is_dir():
        files = (path / f"{name}.safetensors" for name in CHECKPOINT_NAMES)
        held = [str(file) for file in files if file.exists()]
        raise CheckpointError(
            f"{path} is a directory; pass a .safetensors checkpoint file"
            + (f", such as {' or '.join(held)}" if held else "")
        )
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror}") from None
    try:
        tensors = load_bytes(data)
        meta = json.loads(_header_metadata(data)[_META_KEY])
    except (SafetensorError, ValueError, KeyError, TypeError, OverflowError, RuntimeError) as err:
        raise CheckpointError(
            f"{path} is not a readable trpo checkpoint (corrupt, truncated or foreign file): "
            f"{type(err).__name__}"
        ) from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version!r}; this trpo reads format {FORMAT_VERSION}"
        )
    _verify(path, tensors, meta.get("checksums"))
    return Checkpoint(path, tensors, meta)


def _verify(path: Path, tensors: dict[str, torch.Tensor], checksums: Any) -> None:
    """Every tensor as it was written (its SHA-256) and finite."""
    if not isinstance(checksums, dict) or checksums.keys() != tensors.keys():
        raise CheckpointError(f"{path}: the checksum list does not match the tensors it holds")
    for name, tensor in tensors.items():
        if tensor_checksum(tensor) != checksums[name]:
            raise CheckpointError(
                f"{path} is corrupt: tensor '{name}' does not match its checksum (the file "
                "was changed or damaged after it was written); use another checkpoint"
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor '{name}' holds NaN or Inf")


def _header_metadata(data: bytes) -> dict[str, str]:
    # safetensors layout: 8-byte little-endian header length, then a JSON header.
    size = int.from_bytes(data[:8], "little")
    if len(data) < 8 or size > len(data) - 8:
        raise ValueError("truncated header")
    header = json.loads(data[8 : 8 + size])
    return header["__metadata__"]


def space_to_dict(space: gym.Space) -> dict[str, Any]:
    """A JSON-able description of ``space`` (`space_from_dict` inverts it). Box bounds
    that are the same everywhere (images) are stored once, with the shape."""
    if isinstance(space, gym.spaces.Box):
        bounds = (space.low, space.high)
        uniform = space.low.size > 1 and all(np.all(b == b.flat[0]) for b in bounds)
        return {
            "type": "Box",
            "low": space.low.flat[0].item() if uniform else space.low.tolist(),
            "high": space.high.flat[0].item() if uniform else space.high.tolist(),
            "dtype": str(space.dtype),
            **({"shape": list(space.shape)} if uniform else {}),
        }
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist()}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_dict(v) for k, v in space.spaces.items()}}
    if isinstance(space, gym.spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_dict(v) for v in space.spaces]}
    if isinstance(space, gym.spaces.Text):
        return {
            "type": "Text",
            "min_length": space.min_length,
            "max_length": space.max_length,
            "charset": "".join(sorted(space.character_set)),
        }
    if is_text_space(space):
        # Another space of strings (MiniGrid's mission): the encoder drops it, so a Text
        # stands in for it, the same on both sides of a resume's comparison.
        return {"type": "Text", "min_length": 0, "max_length": 1024, "charset": None}
    raise CheckpointError(f"cannot store space {space}")


def space_from_dict(d: dict[str, Any]) -> gym.Space:
    kind = d["type"]
    if kind == "Box":
        dtype = np.dtype(d["dtype"])
        if "shape" in d:  # Box takes no Python bool bounds, so a bool grid's are 0 and 1
            low, high = (int(d[k]) if isinstance(d[k], bool) else d[k] for k in ("low", "high"))
            return gym.spaces.Box(low, high, tuple(d["shape"]), dtype=dtype)
        return gym.spaces.Box(np.array(d["low"], dtype), np.array(d["high"], dtype), dtype=dtype)
    if kind == "Discrete":
        return gym.spaces.Discrete(d["n"], start=d["start"])
    if kind == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(d["nvec"], start=d["start"])
    if kind == "MultiBinary":
        return gym.spaces.MultiBinary(d["n"])
    if kind == "Dict":
        return gym.spaces.Dict({k: space_from_dict(v) for k, v in d["spaces"].items()})
    if kind == "Tuple":
        return gym.spaces.Tuple([space_from_dict(v) for v in d["spaces"]])
    if kind == "Text":
        charset = {} if d["charset"] is None else {"charset": d["charset"]}
        return gym.spaces.Text(d["max_length"], min_length=d["min_length"], **charset)
    raise CheckpointError(f"unknown space type {kind!r} in checkpoint")


def same_space(a: gym.Space, b: gym.Space) -> bool:
    return space_to_dict(a) == space_to_dict(b)


def provenance() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("trpo", "torch", "gymnasium", "numpy", "safetensors"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
        "torch_threads": torch.get_num_threads(),
        "checkpoint_format": FORMAT_VERSION,
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None

"""Will a run fit in memory? An estimate of what a configuration needs, checked against
what the process may use, before any network or batch is allocated.

The estimate is a lower bound, deliberately simple: the parameters of both networks (CNNs
included, each network has its own) with their working copies (gradient; for the policy
the conjugate-gradient and line-search vectors; for the value function Adam's two
moments), one iteration's batch arrays (observation rows, uint8 for images, twice: as the
rollout stores them and as the update's tensors), and the activations of one forward and
backward pass over the whole batch, which the surrogate gradient and the Fisher-vector
products need. With `overlap`, a second batch (the next one, collected while the value fit
runs) and the value fit's process (its network, its copy of the rows) on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from trpo.config import Config, ConfigError
from trpo.encoders import ObservationEncoder, features_size, image_shape
from trpo.overlap import overlap_on

FLOAT = 4
"""Bytes per float32."""
POLICY_VECTORS = 10
"""Parameter-sized float32 vectors the policy step holds at once: θ, its gradient, θk,
g, x, r, p, Hp, the step and a line-search candidate."""
VALUE_VECTORS = 4
"""θ, its gradient and Adam's two moments."""
BATCH_SCALARS = 12
"""Per-transition scalars of a batch (rewards, scales, flags, log-probs, values, advantages,
targets, their tensor copies), at 4 or 8 bytes: counted as 12 float32s."""


class InsufficientMemoryError(ConfigError):
    """A configuration that cannot fit in the memory this process may use."""


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int
    """Bytes of the parameters and their working copies."""
    batch: int
    """Bytes of one iteration's batch arrays."""
    activations: int
    """Bytes of the activations of a pass over the whole batch (both networks)."""

    @property
    def total(self) -> int:
        return self.parameters + self.batch + self.activations


def mlp_parameters(sizes: list[int]) -> int:
    """Weights and biases of an MLP with layer widths ``sizes`` (input first)."""
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def memory_estimate(config: Config, encoder: ObservationEncoder, act_dim: int) -> MemoryEstimate:
    """What ``config`` needs at least, for observations encoded by ``encoder`` and a policy
    head of ``act_dim`` outputs (Box: the mean, plus as many log-stds; Discrete: the
    logits)."""
    cnn, cnn_widths, in_dim = features_size(encoder, config.image_encoder)
    policy = cnn + mlp_parameters([in_dim, *config.policy_hidden, act_dim]) + act_dim
    value = cnn + mlp_parameters([in_dim, *config.value_hidden, 1])
    parameters = FLOAT * (POLICY_VECTORS * policy + VALUE_VECTORS * value)
    n = config.steps_per_iter
    row = encoder.dim * encoder.dtype.itemsize
    batch = n * (4 * row + FLOAT * (2 * act_dim + BATCH_SCALARS))
    if overlap_on(config):  # the next batch, held; the fit's copy of the rows and its network
        parameters += FLOAT * VALUE_VECTORS * value
        batch *= 2
    widths = 2 * cnn_widths + sum(config.policy_hidden) + sum(config.value_hidden) + act_dim + 1
    activations = FLOAT * n * 3 * widths  # forward, its gradient, the Fisher product's
    return MemoryEstimate(parameters, batch, activations)


def available_memory() -> int | None:
    """Bytes this process may still allocate: the cgroup's limit less its usage where
    there is a limit (cgroup v2 memory.max, or v1 memory.limit_in_bytes), else (and at
    most) the kernel's MemAvailable. None where neither can be read (not Linux)."""
    candidates = []
    v1 = "/sys/fs/cgroup/memory/memory."
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (v1 + "limit_in_bytes", v1 + "usage_in_bytes"),
    ):
        limit = _read_int(limit_file)
        if limit is not None and limit < 2**60:  # v1 writes a huge number for "no limit"
            candidates.append(max(0, limit - (_read_int(usage_file) or 0)))
            break
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return min(candidates) if candidates else None


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def head_size(space: gym.Space) -> int:
    """Outputs of the policy head for ``space``: one per action coordinate (Box: the
    mean), per category (Discrete, MultiDiscrete) or per bit (MultiBinary)."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(np.sum(space.nvec))
    return int(np.prod(space.shape))


def check_memory(config: Config, encoder: ObservationEncoder, act_dim: int) -> None:
    """Raise `InsufficientMemoryError` when the estimate exceeds the memory available, naming both
    figures and the override (``force=True``, ``trpo train --force``)."""
    estimate = memory_estimate(config, encoder, act_dim)
    available = available_memory()
    if available is None or estimate.total <= available:
        return
    raise InsufficientMemoryError(
        f"this configuration needs at least {_gib(estimate.total)} of memory "
        f"(parameters {_gib(estimate.parameters)}, batch {_gib(estimate.batch)}, "
        f"activations {_gib(estimate.activations)}; policy_hidden={config.policy_hidden}, "
        f"steps_per_iter={config.steps_per_iter}) but {_gib(available)} is available: "
        f"reduce the networks or steps_per_iter{_resize_hint(encoder)}, or pass --force "
        "(force=True) to try anyway"
    )


def _resize_hint(encoder: ObservationEncoder) -> str:
    """Advice for images far larger than the CNNs were made for (84×84 Atari frames)."""
    sides = [max(image_shape(leaf.space)[1:]) for leaf in encoder.leaves if leaf.kind == "image"]
    if not sides or max(sides) <= 2 * 84:
        return ""
    return (
        ", or shrink the images (e.g. gymnasium.wrappers.ResizeObservation(env, (84, 84)); "
        "the CNN's first dense layer grows with the image's area)"
    )


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"

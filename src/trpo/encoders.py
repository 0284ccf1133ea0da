"""Observations to network inputs, in two halves.

`ObservationEncoder` (NumPy, in the rollout) turns a batch of observations of any supported
space into one flat row per observation, [B, D]: Box values flattened, Discrete and
MultiDiscrete one-hot, MultiBinary as 0/1, and for Dict and Tuple spaces each key (in the
space's order) one after the other, its `Leaf` saying where. Rows are uint8 when every
part fits (images, one-hots, bits), so a batch of Atari frames stays 1 byte a pixel; they
are float32 as soon as one part is a float vector.

`ObservationFeatures` (torch, the first layer of the default policy and value) reads those
rows back: each image leaf through a CNN of its own, scaled from its space's bounds, the
other leaves as they are, concatenated. A space without images needs no such layer: the
MLP takes the rows directly, exactly as before images were supported.

Which Box is an image (`is_image_space`) is decided from the space alone, as
Stable-Baselines3's ``is_image_space`` does, plus small binary grids such as MinAtar's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from trpo.policies import UnsupportedSpaceError

MIN_IMAGE_SIDE = 4
"""Images are at least this many pixels on each side: a smaller 2-D or 3-D Box is a
matrix of values, not a picture, and goes through the MLP."""

NATURE_MIN_SIDE = 36
"""The Nature CNN's three convolutions (8/4, 4/2, 3/1) need at least 36 pixels a side;
below that `image_encoder="auto"` takes the small-grid CNN."""


def is_image_space(space: gym.Space) -> bool:
    """A Box the networks should see as an image: 2-D (H, W) or 3-D (H, W, C) or (C, H, W),
    each spatial side at least `MIN_IMAGE_SIDE`, and either uint8 with bounds exactly
    [0, 255] (camera frames) or bool (binary grids such as MinAtar's ``Box(False, True,
    (10, 10, C), bool)``). Float Boxes are never images: their bounds say nothing of a
    pixel's scale, so they stay vectors, normalised by running statistics."""
    if not isinstance(space, gym.spaces.Box) or len(space.shape) not in (2, 3):
        return False
    if space.dtype == np.uint8:
        if not (np.all(space.low == 0) and np.all(space.high == 255)):
            return False
    elif space.dtype != np.bool_:
        return False
    return all(side >= MIN_IMAGE_SIDE for side in image_shape(space)[1:])


def image_shape(space: gym.spaces.Box) -> tuple[int, int, int]:
    """(C, H, W) of an image space. 2-D is one channel. A 3-D shape is channel-first when
    its first axis is strictly the smallest, otherwise channel-last (the usual layout, and
    MinAtar's (10, 10, 10) for Seaquest)."""
    shape = space.shape
    if len(shape) == 2:
        return (1, *shape)
    if _channels_first(shape):
        return shape
    return (shape[2], shape[0], shape[1])


def _channels_first(shape: tuple[int, ...]) -> bool:
    return shape[0] < shape[1] and shape[0] < shape[2]


@dataclass(frozen=True)
class Leaf:
    """One part of an observation and where its values lie in the flat row."""

    key: tuple[str | int, ...]  # the path into Dict/Tuple observations; () for a plain space
    space: gym.Space
    kind: str  # "vector" (float Box: normalised), "image", "onehot" or "binary"
    offset: int
    size: int

    @property
    def columns(self) -> slice:
        return slice(self.offset, self.offset + self.size)

    @property
    def name(self) -> str:
        return "/".join(str(k) for k in self.key) or "obs"

    @cached_property
    def index_offsets(self) -> np.ndarray:
        """MultiDiscrete leaves: `multidiscrete_offsets`, computed once, not every step."""
        return multidiscrete_offsets(self.space)


def multidiscrete_offsets(space: gym.spaces.MultiDiscrete) -> np.ndarray:
    """Value v of component j has the one-hot column v + offsets[j] (each component's
    first column, less its ``start``); components in flattened order."""
    nvec = np.asarray(space.nvec).reshape(-1)
    return np.concatenate([[0], np.cumsum(nvec)[:-1]]) - np.asarray(space.start).reshape(-1)


def _leaves(space: gym.Space, key: tuple, dropped: list[str]) -> list[tuple]:
    if isinstance(space, gym.spaces.Dict):
        return [
            leaf for k, sub in space.spaces.items() for leaf in _leaves(sub, (*key, k), dropped)
        ]
    if isinstance(space, gym.spaces.Tuple):
        return [
            leaf for i, sub in enumerate(space.spaces) for leaf in _leaves(sub, (*key, i), dropped)
        ]
    if is_text_space(space) and key:
        dropped.append("/".join(str(k) for k in key))
        return []
    if isinstance(space, gym.spaces.Box):
        if is_image_space(space):
            return [(key, space, "image", int(np.prod(space.shape)))]
        return [(key, space, "vector", int(np.prod(space.shape)))]
    if isinstance(space, gym.spaces.Discrete):
        return [(key, space, "onehot", int(space.n))]
    if isinstance(space, gym.spaces.MultiDiscrete):
        return [(key, space, "onehot", int(np.sum(space.nvec)))]
    if isinstance(space, gym.spaces.MultiBinary):
        return [(key, space, "binary", int(np.prod(space.shape)))]
    raise UnsupportedSpaceError(
        f"observation space {space} is not supported: trpo handles Box (vectors and images), "
        "Discrete, MultiDiscrete, MultiBinary, and Dict or Tuple spaces of these. Wrap the "
        "env so that its observation space is one of these."
    )


def is_text_space(space: gym.Space) -> bool:
    """Text, or another space of strings (MiniGrid's ``MissionSpace``): dtype ``<U``."""
    dtype = getattr(space, "dtype", None)
    return isinstance(space, gym.spaces.Text) or (dtype is not None and dtype.kind == "U")


class ObservationEncoder:
    """Turns a batch of observations (leading batch axis; for Dict and Tuple spaces a dict
    or tuple of such arrays, as vector envs return them, or a list of single observations)
    into a [B, D] array of `dtype`.

    Text parts of a Dict or Tuple (`gymnasium.spaces.Text`, MiniGrid's mission) are dropped
    (named in `dropped`; the agent logs them once): their strings need a tokenizer no
    default network has. Dropped parts are not stored anywhere."""

    def __init__(self, space: gym.Space):
        self.space = space
        self.dropped: list[str] = []
        parts = _leaves(space, (), self.dropped)
        if not parts:
            raise UnsupportedSpaceError(
                f"observation space {space} is not supported: it has nothing but text"
            )
        self.leaves: list[Leaf] = []
        offset = 0
        for key, sub, kind, size in parts:
            self.leaves.append(Leaf(key, sub, kind, offset, size))
            offset += size
        self.dim = offset
        kinds = {leaf.kind for leaf in self.leaves}
        self.has_images = "image" in kinds
        # Bytes only where images are: without them rows stay float32, as they always were.
        self.dtype = np.dtype(np.uint8 if self.has_images and "vector" not in kinds else np.float32)
        self.normalized = np.zeros(self.dim, bool)
        for leaf in self.leaves:
            if leaf.kind == "vector":
                self.normalized[leaf.columns] = True
        self.structured = not (
            isinstance(space, gym.spaces.Box | gym.spaces.MultiBinary) and len(space.shape) <= 1
        ) and not isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete)

    def __call__(self, obs: Any) -> np.ndarray:
        parts = [_encode(leaf, _values(obs, leaf.key), self.dtype) for leaf in self.leaves]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def batch_of_one(self, obs: Any) -> Any:
        """One observation as a batch of one."""
        if isinstance(self.space, gym.spaces.Dict | gym.spaces.Tuple):
            return [obs]
        return np.asarray(obs)[None]

    def batch_size(self, obs: Any) -> int | None:
        """None for one observation of the space, B for a batch of B; ValueError otherwise."""
        sizes = set()
        for leaf in self.leaves:
            shape = np.shape(_values(obs, leaf.key, stack=False))
            one = () if isinstance(leaf.space, gym.spaces.Discrete) else tuple(leaf.space.shape)
            if shape == one:
                sizes.add(None)
            elif len(shape) >= 1 and shape[0] >= 1 and tuple(shape[1:]) == one:
                sizes.add(shape[0])
            else:
                sizes.add("bad")
        if len(sizes) == 1 and "bad" not in sizes:
            return sizes.pop()
        if len(self.leaves) == 1 and not self.leaves[0].key:
            one = tuple(self.space.shape or ())
            batch = "(B" + "".join(f", {n}" for n in one) + ")"
            raise ValueError(
                f"predict expects one observation of shape {one} or a batch of shape {batch}, "
                f"got shape {np.shape(obs)}"
            )
        raise ValueError(
            f"predict expects one observation of {self.space} or a batch of them (a leading "
            f"batch axis on every part), got {_describe(obs)}"
        )

    def unflatten(self, rows: Tensor) -> Any:
        """[B, D] rows back in the space's structure: a tensor per leaf with shape
        (B, *leaf shape), in nested dicts and tuples like the space. One-hot and binary
        parts stay as encoded. What a user's own policy or value module receives."""
        if not self.structured:
            return rows
        tree: dict = {}
        for leaf in self.leaves:
            part = rows[:, leaf.columns]
            if isinstance(leaf.space, gym.spaces.Box | gym.spaces.MultiBinary):
                part = part.reshape(rows.shape[0], *leaf.space.shape)
            node = tree
            for k in leaf.key[:-1]:
                node = node.setdefault(k, {})
            node[leaf.key[-1] if leaf.key else None] = part
        return _as_space(self.space, tree.get(None, tree))


def _as_space(space: gym.Space, node: Any) -> Any:
    if isinstance(space, gym.spaces.Dict):
        return {k: _as_space(sub, node[k]) for k, sub in space.spaces.items() if k in node}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_as_space(sub, node[i]) for i, sub in enumerate(space.spaces) if i in node)
    return node


def _values(obs: Any, key: tuple, stack: bool = True) -> Any:
    if isinstance(obs, list) and key:  # single structured observations, one per row
        return (
            np.stack([_values(o, key, stack) for o in obs])
            if stack
            else [_values(o, key, stack) for o in obs]
        )
    for k in key:
        obs = obs[k]
    return obs


def _describe(obs: Any) -> str:
    if isinstance(obs, Mapping):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in obs.items()) + "}"
    return f"shape {np.shape(obs)}"


def _encode(leaf: Leaf, values: Any, dtype: np.dtype) -> np.ndarray:
    space = leaf.space
    if isinstance(space, gym.spaces.Discrete):
        index = np.asarray(values, dtype=np.int64).reshape(-1) - int(space.start)
        return np.eye(leaf.size, dtype=dtype)[index]
    if isinstance(space, gym.spaces.MultiDiscrete):
        offsets = leaf.index_offsets
        values = np.asarray(values, dtype=np.int64).reshape(-1, offsets.size)
        out = np.zeros((values.shape[0], leaf.size), dtype=dtype)
        rows = np.arange(values.shape[0])[:, None]
        out[rows, values + offsets] = 1
        return out
    values = np.asarray(values, dtype=dtype)
    return values.reshape(values.shape[0], -1)


# -- torch: the networks' first layers -----------------------------------------------------


def image_cnn(kind: str, channels: int, height: int, width: int) -> tuple[nn.Sequential, str]:
    """The convolutional trunk for an image of (C, H, W), and its name.

    ``nature``: Mnih et al. 2015's DQN trunk (32 8×8/4, 64 4×4/2, 64 3×3/1, ReLU) and a
    512-unit layer: the standard Atari network. ``small``: the smaller Atari network of
    OpenAI baselines' TRPO (16 8×8/4, 32 4×4/2, 256 units), ~4× cheaper per frame.
    ``grid``: MinAtar's (Young & Tian 2019) one 16-filter 3×3 convolution and 128 units,
    for small grids. ``auto``: ``nature`` when both sides are at least `NATURE_MIN_SIDE`,
    else ``grid``."""
    if kind == "auto":
        kind = "nature" if min(height, width) >= NATURE_MIN_SIDE else "grid"
    convs = {
        "nature": [(32, 8, 4), (64, 4, 2), (64, 3, 1)],
        "small": [(16, 8, 4), (32, 4, 2)],
        "grid": [(16, 3, 1)],
    }[kind]
    hidden = {"nature": 512, "small": 256, "grid": 128}[kind]
    layers: list[nn.Module] = []
    for out, k, s in convs:
        if height < k or width < k:
            raise UnsupportedSpaceError(
                f"a {height}×{width} image is too small for the {kind!r} CNN; set "
                "image_encoder=grid"
            )
        layers += [nn.Conv2d(channels, out, k, s), nn.ReLU()]
        channels, height, width = out, (height - k) // s + 1, (width - k) // s + 1
    layers += [nn.Flatten(), nn.Linear(channels * height * width, hidden), nn.ReLU()]
    return nn.Sequential(*layers), kind


class ImageFeatures(nn.Module):
    """Flat image values [B, H·W·C] (as stored) → features [B, F]: cast to float, scaled to
    [0, 1] by the space's bounds ((x − low) / (high − low), so /255 only for 0..255 bytes),
    put channel-first, then the CNN."""

    def __init__(self, space: gym.spaces.Box, kind: str, generator: torch.Generator | None):
        super().__init__()
        self.channels, self.height, self.width = image_shape(space)
        self.shape = tuple(space.shape)
        self.channels_last = len(self.shape) == 3 and not _channels_first(self.shape)
        low = np.asarray(space.low, np.float64)
        span = np.asarray(space.high, np.float64) - low
        if np.ptp(low) or np.ptp(span):
            raise UnsupportedSpaceError(
                f"image observation {space} has bounds that differ between pixels: scale it "
                "in a wrapper, or make it a float Box to have it normalised as a vector"
            )
        self.register_buffer("low", torch.tensor(float(low.flat[0])))
        self.register_buffer("scale", torch.tensor(1.0 / float(span.flat[0])))
        self.cnn, self.kind = image_cnn(kind, self.channels, self.height, self.width)
        init_orthogonal(self.cnn, generator)
        self.out_dim = self.cnn[-2].out_features

    def forward(self, values: Tensor) -> Tensor:
        x = (values.float() - self.low) * self.scale
        x = x.reshape(values.shape[0], *self.shape)
        if len(self.shape) == 2:
            x = x.unsqueeze(1)
        elif self.channels_last:
            # a permuted (channels-last) input left the convolution's gradients in mixed
            # memory formats: MinAtar's policy step ran 18 % slower
            x = x.permute(0, 3, 1, 2).contiguous()
        return self.cnn(x)


def init_orthogonal(module: nn.Module, generator: torch.Generator | None) -> None:
    """Orthogonal weights with gain √2 (ReLU layers) drawn from ``generator``, zero biases:
    the initialisation of the MLPs, so no layer draws from torch's global stream."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            nn.init.orthogonal_(layer.weight, gain=math.sqrt(2), generator=generator)
            nn.init.zeros_(layer.bias)


class ObservationFeatures(nn.Module):
    """Flat rows [B, D] → features [B, F]: every image leaf through its own `ImageFeatures`,
    the other leaves' columns as they are (normalised vectors, one-hots, bits), in the
    encoder's order."""

    def __init__(self, encoder: ObservationEncoder, kind: str, generator: torch.Generator | None):
        super().__init__()
        self.leaves = encoder.leaves
        self.images = nn.ModuleDict(
            {
                str(i): ImageFeatures(leaf.space, kind, generator)
                for i, leaf in enumerate(self.leaves)
                if leaf.kind == "image"
            }
        )
        self.out_dim = sum(
            self.images[str(i)].out_dim if leaf.kind == "image" else leaf.size
            for i, leaf in enumerate(self.leaves)
        )

    def forward(self, rows: Tensor) -> Tensor:
        parts = [
            self.images[str(i)](rows[:, leaf.columns])
            if leaf.kind == "image"
            else rows[:, leaf.columns].float()
            for i, leaf in enumerate(self.leaves)
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def observation_features(
    encoder: ObservationEncoder, kind: str, generator: torch.Generator | None
) -> ObservationFeatures | None:
    """The first layer the default networks need for ``encoder``'s rows: None without image
    leaves (the MLP reads the rows as they are)."""
    return ObservationFeatures(encoder, kind, generator) if encoder.has_images else None


def features_size(encoder: ObservationEncoder, kind: str) -> tuple[int, int, int]:
    """(parameters, activations per row, output width) of `observation_features`, counted
    on torch's meta device (no memory, no arithmetic); (0, 0, D) without images."""
    with torch.device("meta"):
        features = observation_features(encoder, kind, None)
        if features is None:
            return 0, 0, encoder.dim
        sizes: list[int] = []
        for layer in features.modules():
            if not list(layer.children()):
                layer.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel()))
        features(torch.empty(1, encoder.dim, dtype=torch.uint8))
    parameters = sum(p.numel() for p in features.parameters())
    return parameters, sum(sizes) + encoder.dim, features.out_dim  # + the rows cast to float


class ShapedObservations(nn.Module):
    """A user's own policy or value module, given observations in the space's shape (a dict
    for Dict spaces) instead of flat rows. Its parameters and state dict are the module's
    own, so checkpoints read the same with or without this wrapper."""

    def __init__(self, module: nn.Module, encoder: ObservationEncoder):
        super().__init__()
        self.module = module
        self.encoder = encoder

    def forward(self, rows: Tensor) -> Any:
        return self.module(self.encoder.unflatten(rows))

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)

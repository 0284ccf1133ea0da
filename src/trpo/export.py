"""Export a trained agent's deterministic policy for deployment, as one self-contained
TorchScript or ONNX graph: raw observations in, env actions out.

The graph holds everything `trpo.agent.Agent.predict` does with ``deterministic=True``:
the observation encoding (flattening, one-hots), the observation normaliser with its
frozen statistics (``clip((x − mean) / std, ±clip_obs)``), the policy's mode, and the action
adaptation (clipping to the Box's finite bounds, adding a Discrete / MultiDiscrete
``start``). A runtime needs neither trpo nor its normaliser: TorchScript loads with
``torch.jit.load``, ONNX with ``onnxruntime`` (``pip install 'trpo[export]'``).

Input: a batch of raw observations, [B, *obs_shape] float32 for Box, [B] int64 for
Discrete, [B, *shape] int64 for MultiDiscrete and MultiBinary. Output: [B, *action_shape]
in the action space's dtype (int64 for Discrete and MultiDiscrete).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from trpo.agent import Agent
from trpo.encoders import multidiscrete_offsets
from trpo.policies import MLPPolicy

Format = Literal["torchscript", "onnx"]
SUFFIXES = {"torchscript": ".pt", "onnx": ".onnx"}


class ExportError(ValueError):
    """The agent cannot be exported as asked (a policy module of the user's own, no onnx)."""


class DeployedPolicy(nn.Module):
    """``agent``'s deterministic policy as one module of tensors: encoder, frozen
    normaliser, the MLP's mode and the action adapter, equal to ``agent.predict(obs)``."""

    def __init__(self, agent: Agent):
        super().__init__()
        if not isinstance(agent.policy, MLPPolicy):
            raise ExportError(
                "export covers trpo's MLP policies; for a policy module of your own, export "
                "it with torch.onnx / torch.jit and apply agent.normalizer and agent.adapter "
                "around it as trpo.export.DeployedPolicy does"
            )
        obs_space, action_space = agent.observation_space, agent.action_space
        if agent.encoder.has_images or isinstance(obs_space, gym.spaces.Dict | gym.spaces.Tuple):
            raise ExportError(
                "export covers flat observations (vectors, Discrete, MultiDiscrete, "
                "MultiBinary); for images or Dict/Tuple observations, export agent.policy "
                "with torch.onnx / torch.jit: it takes agent.observation_tensor(obs) rows"
            )
        self.obs_kind = _space_kind(obs_space)
        self.obs_dim = agent.encoder.dim
        if self.obs_kind == "discrete":
            self.register_buffer("obs_start", torch.tensor(int(obs_space.start)))
            self.register_buffer("eye", torch.eye(self.obs_dim))
        elif self.obs_kind == "multidiscrete":
            nvec = np.asarray(obs_space.nvec).reshape(-1)
            offsets = multidiscrete_offsets(obs_space)
            self.register_buffer("obs_offsets", torch.as_tensor(offsets, dtype=torch.int64))
            self.register_buffer("eye", torch.eye(int(nvec.sum())))
        normalizer = agent.normalizer
        self.normalize = bool(normalizer.enabled)
        self.clip_obs = float(normalizer.clip)
        self.register_buffer("obs_mean", torch.from_numpy(normalizer._mean.copy()))
        self.register_buffer("obs_inv_std", torch.from_numpy(normalizer._inv_std.copy()))

        self.net = _copy_net(agent.policy.net)
        self.action_kind = agent.policy.kind
        self.action_shape = tuple(action_space.shape or ())
        self.nvec = tuple(getattr(agent.policy, "nvec", ()))
        adapter = agent.adapter
        if self.action_kind == "box":
            self.action_dtype = torch.from_numpy(np.zeros(0, action_space.dtype)).dtype
            self.clip_action = bool(adapter.clip)
            self.register_buffer("low", torch.from_numpy(adapter.low.astype(np.float32)))
            self.register_buffer("high", torch.from_numpy(adapter.high.astype(np.float32)))
        elif self.action_kind in ("discrete", "multidiscrete"):
            self.register_buffer("action_start", torch.as_tensor(adapter.start).reshape(-1))
        else:
            self.action_dtype = torch.from_numpy(np.zeros(0, action_space.dtype)).dtype

    def forward(self, obs: Tensor) -> Tensor:
        x = self._encode(obs)
        if self.normalize:
            x = torch.clamp((x - self.obs_mean) * self.obs_inv_std, -self.clip_obs, self.clip_obs)
        out = self.net(x)
        batch = out.shape[0]
        if self.action_kind == "discrete":
            return out.argmax(-1) + self.action_start
        if self.action_kind == "multidiscrete":
            parts = torch.split(out, list(self.nvec), dim=-1)
            modes = torch.stack([p.argmax(-1) for p in parts], dim=-1) + self.action_start
            return modes.reshape((batch, *self.action_shape))
        if self.action_kind == "multibinary":
            return (out > 0).to(self.action_dtype).reshape((batch, *self.action_shape))
        action = out.reshape((batch, *self.action_shape))
        if self.clip_action:
            low = self.low.reshape(self.action_shape)
            high = self.high.reshape(self.action_shape)
            action = torch.maximum(torch.minimum(action, high), low)
        return action.to(self.action_dtype)

    def _encode(self, obs: Tensor) -> Tensor:
        if self.obs_kind == "discrete":
            return self.eye[obs.reshape(-1).to(torch.int64) - self.obs_start]
        if self.obs_kind == "multidiscrete":
            index = obs.reshape(obs.shape[0], -1).to(torch.int64) + self.obs_offsets
            return self.eye[index].sum(1)
        return torch.flatten(obs.to(torch.float32), 1)


def example_observations(space: gym.Space, batch: int = 2, seed: int = 0) -> np.ndarray:
    """A batch of observations from ``space``, as the exported graph takes them."""
    space = _seeded_copy(space, seed)
    obs = np.stack([space.sample() for _ in range(batch)])
    return obs.astype(np.float32 if isinstance(space, gym.spaces.Box) else np.int64)


def export_policy(agent: Agent, path: str | Path, format: Format = "torchscript") -> Path:
    """Write ``agent``'s deployed policy (`DeployedPolicy`) to ``path`` as ``format``."""
    path = Path(path)
    module = DeployedPolicy(agent).eval()
    example = torch.from_numpy(example_observations(agent.observation_space))
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(module, (example,), check_trace=False)
        traced.save(str(path))
    elif format == "onnx":
        try:
            import onnx  # noqa: F401 - torch.onnx needs it
        except ImportError:
            raise ExportError(
                "ONNX export needs onnx: pip install -c constraints.txt -e '.[export]'"
            ) from None
        with torch.no_grad():
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=False,
                input_names=["obs"],
                output_names=["action"],
                dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}},
            )
    else:
        raise ExportError(f"format must be torchscript or onnx, got {format!r}")
    return path


def _copy_net(net: nn.Module) -> nn.Module:
    import copy

    net = copy.deepcopy(net).cpu().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _space_kind(space: gym.Space) -> str:
    for kind, cls in (
        ("discrete", gym.spaces.Discrete),
        ("multidiscrete", gym.spaces.MultiDiscrete),
        ("multibinary", gym.spaces.MultiBinary),
    ):
        if isinstance(space, cls):
            return kind
    return "box"


def _seeded_copy(space: gym.Space, seed: int) -> gym.Space:
    import copy

    space = copy.deepcopy(space)
    space.seed(seed)
    return space

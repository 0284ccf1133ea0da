"""The Agent: what acting needs and nothing of training. The spaces, the observation
encoder and normaliser, the policy, the value function and the action adapter; it saves
and loads its own state, and `Agent.load` rebuilds it from a checkpoint without an env."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from trpo.checkpoint import (
    CheckpointError,
    State,
    load_checkpoint,
    section,
    space_from_dict,
    space_to_dict,
)
from trpo.config import Config, ConfigError
from trpo.encoders import ObservationEncoder, ShapedObservations, observation_features
from trpo.envs import ActionAdapter
from trpo.normalization import ObservationNormalizer
from trpo.policies import MLPPolicy, MLPValue, sample_action
from trpo.reproducibility import aligned_tensor, seeded_generator

log = logging.getLogger("trpo")


def shared_tensors(module: nn.Module, other: nn.Module) -> dict[str, str]:
    """{``module``'s state-dict key: ``other``'s} of every tensor the two both hold."""
    keys = {id(t): k for k, t in other.state_dict(keep_vars=True).items()}
    return {k: keys[id(t)] for k, t in module.state_dict(keep_vars=True).items() if id(t) in keys}


class Agent:
    """Acts in ``observation_space`` / ``action_space`` with the networks ``config``
    describes, or with a user's own ``policy`` / ``value_fn`` (see `trpo.policies` for
    their contract). Initial weights come from the ``init`` stream of ``config.seed``;
    sampled actions (`predict` with ``deterministic=False``) from the agent's own
    generator, so nothing here touches torch's global random state."""

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        config: Config,
        policy: nn.Module | None = None,
        value_fn: nn.Module | None = None,
    ):
        self.observation_space = observation_space
        self.action_space = action_space
        self.config = config
        self.encoder = encoder = ObservationEncoder(observation_space)
        if encoder.dropped:
            log.warning(
                "the observation's text parts %s are dropped: trpo's networks do not read "
                "text (encode them in a wrapper to use them)",
                ", ".join(encoder.dropped),
            )
        self.normalizer = ObservationNormalizer.for_run(encoder, config)
        self.adapter = ActionAdapter(action_space)
        self.custom_modules = policy is not None or value_fn is not None
        init = seeded_generator(config.seed, "init")
        if config.share_encoder and self.custom_modules:
            raise ConfigError(
                "share_encoder=true shares trpo's own CNN between its policy and value "
                "networks; your own policy/value_fn share whatever parameters they hold in "
                "common: leave it false"
            )
        self.policy = self._shaped(policy) or MLPPolicy(
            encoder.dim,
            action_space,
            config.policy_hidden,
            config.activation,
            config.log_std_init,
            generator=init,
            features=observation_features(encoder, config.image_encoder, init),
        )
        if config.share_encoder and self.policy.features is None:
            raise ConfigError(
                "share_encoder=true shares the CNN of image observations between the policy "
                f"and the value function, and these observations ({observation_space}) have "
                "no image to encode: leave it false"
            )
        self.value_fn = self._shaped(value_fn) or MLPValue(
            encoder.dim,
            config.value_hidden,
            config.activation,
            generator=init,
            features=self.policy.features
            if config.share_encoder
            else observation_features(encoder, config.image_encoder, init),
        )
        self.shared = shared_tensors(self.value_fn, self.policy)
        """{value state-dict key: policy key} of the tensors both networks hold (a shared
        encoder): the value fit moves the policy too, and checkpoints store them once."""
        if self.shared and not config.share_encoder:
            log.warning(
                "policy and value_fn share %d tensors (%s): the value fit moves the policy "
                "outside the trust region (logged as value_fit_kl) and runs after the policy "
                "step, without overlap",
                len(self.shared),
                ", ".join(list(self.shared.values())[:3])
                + (", ..." if len(self.shared) > 3 else ""),
            )
        self.generator = seeded_generator(config.seed, "predict")

    def _shaped(self, module: nn.Module | None) -> nn.Module | None:
        """A user's module, given observations in the space's shape where that is not the
        flat row (images, matrices, Dict and Tuple spaces)."""
        if module is None or not self.encoder.structured:
            return module
        return ShapedObservations(module, self.encoder)

    def observation_tensor(self, obs: Any) -> torch.Tensor:
        """A batch of raw observations as the networks take them: encoded, normalised
        with the current statistics (never updated here), [B, D] rows of the encoder's
        dtype (float32, or uint8 for images)."""
        return aligned_tensor(self.normalizer(self.encoder(obs)))

    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Action(s) for raw observation(s), as the env accepts them. Takes one observation
        or a batch; never updates the normaliser. Raises ValueError when ``obs`` has
        neither the space's shape nor a batch of it."""
        single = self.encoder.batch_size(obs) is None
        batch = self.encoder.batch_of_one(obs) if single else obs
        with torch.inference_mode():
            x = self.observation_tensor(batch)
            if deterministic:
                action = self.policy(x).mode
            else:
                action, _ = sample_action(self.policy, x, self.generator)
        env_action = self.adapter(action.numpy())
        return env_action[0] if single else env_action

    # -- persistence ----------------------------------------------------------------
    def state_dict(self) -> State:
        tensors = {f"policy/{k}": v for k, v in self.policy.state_dict().items()}
        tensors.update(
            {f"value/{k}": v for k, v in self.value_fn.state_dict().items() if k not in self.shared}
        )
        norm_tensors, norm_meta = self.normalizer.state_dict()
        tensors.update(norm_tensors)
        tensors["predict_rng"] = self.generator.get_state()
        meta = {
            "config": self.config.to_dict(),
            "observation_space": space_to_dict(self.observation_space),
            "action_space": space_to_dict(self.action_space),
            "custom_modules": self.custom_modules,
            "obs_norm": norm_meta,
        }
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        policy = section(tensors, "policy")
        self.policy.load_state_dict(policy)
        shared = {key: policy[of_policy] for key, of_policy in self.shared.items()}
        self.value_fn.load_state_dict({**shared, **section(tensors, "value")})
        self.normalizer.load_state_dict(tensors, meta["obs_norm"])
        self.generator.set_state(tensors["predict_rng"])

    @classmethod
    def load(
        cls,
        path: str | Path,
        policy: nn.Module | None = None,
        value_fn: nn.Module | None = None,
        **overrides: Any,
    ) -> Agent:
        """The agent saved in a checkpoint, ready to act; builds no env. ``overrides``
        change settings that do not shape the networks (e.g. ``device``)."""
        return cls.from_checkpoint(load_checkpoint(path), policy, value_fn, **overrides)

    @classmethod
    def from_checkpoint(cls, checkpoint, policy=None, value_fn=None, **overrides: Any) -> Agent:
        path = checkpoint.path
        tensors, meta = checkpoint.component("agent")
        try:
            config = Config.from_dict(meta["config"]).replace(**overrides)
            obs_space = space_from_dict(meta["observation_space"])
            action_space = space_from_dict(meta["action_space"])
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
            raise CheckpointError(
                f"{path}: checkpoint metadata is incomplete or invalid ({err})"
            ) from None
        if meta.get("custom_modules") and (policy is None or value_fn is None):
            raise CheckpointError(
                f"{path} was trained with custom policy/value modules: pass the same module "
                "types as load(path, policy=..., value_fn=...)"
            )
        agent = cls(obs_space, action_space, config, policy, value_fn)
        try:
            agent.load_state_dict(tensors, meta)
        except (KeyError, RuntimeError, ValueError, TypeError, OverflowError) as err:
            raise CheckpointError(
                f"{path}: checkpoint contents do not fit the model ({err})"
            ) from None
        return agent

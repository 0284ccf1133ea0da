"""Deterministic evaluation: frozen normaliser, mode actions, raw (unscaled) returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from trpo.envs import ActionAdapter, ObservationEncoder, ObservationNormalizer, make_vector_env


@dataclass(frozen=True)
class EvalResult:
    returns: list[float]
    lengths: list[int]

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


class Evaluator:
    """Runs ``episodes`` episodes at once, one per env copy, from fixed reset seeds, so
    every evaluation of a run starts from the same states and is comparable."""

    def __init__(self, factory: Callable[[], gym.Env], episodes: int, seed: int):
        self.envs = make_vector_env(factory, episodes)
        self.seeds = [seed + i for i in range(episodes)]

    def run(
        self,
        policy: nn.Module,
        encoder: ObservationEncoder,
        normalizer: ObservationNormalizer,
        deterministic: bool = True,
    ) -> EvalResult:
        adapter = ActionAdapter(self.envs.single_action_space)
        n = self.envs.num_envs
        obs, _ = self.envs.reset(seed=self.seeds)
        returns = np.zeros(n)
        lengths = np.zeros(n, np.int64)
        running = np.ones(n, bool)
        while running.any():
            with torch.inference_mode():
                dist = policy(torch.from_numpy(normalizer(encoder(obs))))
                action = dist.mode if deterministic else dist.sample()
            obs, reward, terminated, truncated, _ = self.envs.step(adapter(action.numpy()))
            returns += np.where(running, reward, 0.0)
            lengths += running
            running &= ~(terminated | truncated)
        return EvalResult([float(r) for r in returns], [int(n) for n in lengths])

    def close(self) -> None:
        self.envs.close()

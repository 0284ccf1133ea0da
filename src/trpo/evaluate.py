"""Deterministic evaluation: frozen normaliser, mode actions, raw (unscaled) returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from trpo.envs import EnvError, make_vector_env

EVAL_SEED_OFFSET = 1_000_000
"""Evaluation episodes start from reset seeds apart from the training envs' seeds."""


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
    """Runs ``episodes`` episodes from fixed reset seeds, so every evaluation of a run
    starts from the same states and is comparable: at once on one env copy per episode,
    or with ``copies`` (e.g. 1 for an env instance that cannot be copied) in rounds of
    ``copies`` episodes. The episodes, and so the result, are the same either way."""

    def __init__(self, factory: Callable[[], gym.Env], episodes: int, copies: int | None = None):
        self.episodes = episodes
        self.envs = make_vector_env(factory, min(copies or episodes, episodes))

    def run(self, agent, seed: int) -> EvalResult:
        """``agent``'s deterministic actions (`trpo.agent.Agent.predict`); episode i starts
        from ``reset(seed=seed + i)``."""
        returns: list[float] = []
        lengths: list[int] = []
        n = self.envs.num_envs
        for first in range(0, self.episodes, n):
            round_returns, round_lengths = self._round(agent, seed + first)
            keep = min(n, self.episodes - first)
            returns += [float(r) for r in round_returns[:keep]]
            lengths += [int(k) for k in round_lengths[:keep]]
        return EvalResult(returns, lengths)

    def _round(self, agent, seed: int) -> tuple[np.ndarray, np.ndarray]:
        n = self.envs.num_envs
        obs, _ = self.envs.reset(seed=[seed + i for i in range(n)])
        returns = np.zeros(n)
        lengths = np.zeros(n, np.int64)
        running = np.ones(n, bool)
        while running.any():
            obs, reward, terminated, truncated, _ = self.envs.step(agent.predict(obs))
            returns += np.where(running, reward, 0.0)
            lengths += running
            running &= ~(terminated | truncated)
        return returns, lengths

    def close(self) -> None:
        self.envs.close()


def play(agent, episodes: int, seed: int, render: bool, video_dir: Path | None) -> EvalResult:
    """Watch or record ``episodes`` deterministic episodes one after another."""
    from trpo.envs import env_factory

    kwargs = dict(agent.config.env_kwargs)
    kwargs["render_mode"] = "human" if render else "rgb_array"
    env = env_factory(agent.config.env_id, kwargs, agent.config.env_modules, training=False)()
    if video_dir is not None:
        try:
            import moviepy  # noqa: F401 - RecordVideo needs it
        except ImportError:
            raise EnvError(
                "recording video needs moviepy: pip install -c constraints.txt -e '.[video]' "
                "(or pip install moviepy)"
            ) from None
        env = gym.wrappers.RecordVideo(env, str(video_dir), episode_trigger=lambda _: True)
    returns, lengths = [], []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            total, length, done = 0.0, 0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(agent.predict(obs))
                total += float(reward)
                length += 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(length)
    finally:
        env.close()
    return EvalResult(returns, lengths)

"""What several test files share: run settings sized to finish in seconds, small envs
with known behaviour, and helpers that read a run's parameters or observations.

`import trpo` comes first: it asks MKL for strict mode, which only takes effect before the
process's first matrix product (see trpo.reproducibility), so no test file may run one
before trpo is imported.
"""

import trpo  # noqa: I001  (first: see above)

import gymnasium as gym
import numpy as np
import torch

TINY = {"n_envs": 2, "steps_per_iter": 256, "eval_every": 0}
"""2 envs x 128 steps per iteration, no evaluation: an iteration takes well under a second."""
SMALL = {"n_envs": 2, "steps_per_iter": 512, "eval_every": 0}
"""2 envs x 256 steps per iteration, no evaluation."""
SMALL_EVAL = {"n_envs": 2, "steps_per_iter": 512, "eval_every": 2, "eval_episodes": 2}
"""2 envs x 256 steps per iteration, an evaluation on 2 episodes every 2 iterations."""
EVAL_EACH = {"n_envs": 2, "steps_per_iter": 128, "eval_every": 1, "eval_episodes": 2}
"""2 envs x 64 steps per iteration, an evaluation on 2 episodes after each."""


def set_pairs(settings: dict) -> list[str]:
    """``settings`` as the command line's ``--set KEY=VALUE`` arguments (the flag left
    out), with TensorBoard off."""
    pairs = {**settings, "tensorboard": False}
    return [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in pairs.items()]


CLASSIC_ENVS = ["CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCarContinuous-v0"]
"""Classic-control envs, whose internal state trpo saves (trpo.env_state)."""
EPISODE_LENGTHS = (3, 5, 2, 4)


class CountingEnv(gym.Env):
    """Episode k lasts EPISODE_LENGTHS[k % 4] steps; obs = [k, t]; reward r_t = t after the
    t-th step. Odd episodes end by termination, even ones by truncation."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.episode = -1
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        ended = self.t == EPISODE_LENGTHS[self.episode % len(EPISODE_LENGTHS)]
        odd = self.episode % 2 == 1
        return self._obs(), float(self.t), ended and odd, ended and not odd, {}

    def _obs(self):
        return np.array([self.episode, self.t], np.float32)


def parameters(agent: trpo.TRPO) -> list[torch.Tensor]:
    """Copies of the policy's and the value function's parameters, in order."""
    return [p.detach().clone() for p in [*agent.policy.parameters(), *agent.value_fn.parameters()]]


def raw_observations(env_id: str, n: int = 16) -> np.ndarray:
    """Raw observations from n seeded resets plus a few random steps."""
    env = gym.make(env_id)
    env.action_space.seed(0)
    out = []
    for seed in range(n):
        obs, _ = env.reset(seed=seed)
        for _ in range(seed % 5):
            obs, *_ = env.step(env.action_space.sample())
        out.append(obs)
    env.close()
    return np.stack(out)

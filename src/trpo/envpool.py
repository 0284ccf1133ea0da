"""EnvPool's C++ vector envs behind Gymnasium's VectorEnv interface (`vec=envpool`)."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from trpo.envs import EnvError, did_you_mean


class EnvPoolVectorEnv(VectorEnv):
    """EnvPool's C++ vector env (`pip install 'trpo[envpool]'`) behind Gymnasium's
    VectorEnv interface with SAME_STEP autoreset, as the Gymnasium path uses.

    EnvPool itself resets an env on the step after its episode ended (that step's action
    ignored, reward 0): here the env is reset at once instead, and the episode's last
    observation is handed over in ``info["final_obs"]``, so no such fake transition
    reaches a batch. Env i of reset seed s is EnvPool's env i of pool seed s - i.
    """

    def __init__(self, env_id: str, n_envs: int, env_kwargs: dict[str, Any]):
        try:
            import envpool
        except ImportError:
            raise EnvError(
                "vec=envpool needs EnvPool, which is not installed: pip install 'trpo[envpool]'"
            ) from None
        tasks = envpool.list_all_envs()
        if env_id not in tasks:
            hint = did_you_mean(env_id, tasks)
            raise EnvError(f"EnvPool has no task '{env_id}'.{hint} Use vec=sync for it.")

        def make(seed: int):
            try:
                with warnings.catch_warnings():  # Box casting EnvPool's float64 bounds
                    warnings.filterwarnings("ignore", ".*precision lowered by casting")
                    pool = envpool.make_gymnasium(env_id, num_envs=n_envs, seed=seed, **env_kwargs)
                    pool.observation_space, pool.action_space  # noqa: B018 - built and cached now
                    return pool
            except (TypeError, ValueError, RuntimeError) as err:
                raise EnvError(f"EnvPool cannot make {env_id} with {env_kwargs}: {err}") from None

        self._make = make
        self._seed = 0
        self.pool = make(self._seed)
        self.num_envs = n_envs
        self.single_observation_space = self.pool.observation_space
        self.single_action_space = self.pool.action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, n_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, n_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
        self._obs: np.ndarray | None = None

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        mask = (options or {}).get("reset_mask")
        if mask is not None:  # restart some envs only (their episodes are abandoned)
            ids = np.flatnonzero(mask)
            self._obs[ids] = self._pool_reset(ids)
            return self._obs.copy(), {}
        if seed is not None:
            first = seed if isinstance(seed, int) else int(seed[0])
            if not isinstance(seed, int) and list(seed) != [first + i for i in range(len(seed))]:
                raise ValueError(f"EnvPool seeds its envs consecutively, got seeds {seed}")
            if first != self._seed:
                self.pool.close()
                self.pool, self._seed = self._make(first), first
        self._obs = self._pool_reset(None)
        return self._obs.copy(), {}

    def step(self, actions: np.ndarray):
        obs, reward, terminated, truncated, info = self.pool.step(actions)
        order = np.argsort(info["env_id"])  # sync mode answers in env order; make sure
        obs, reward = np.array(obs[order]), np.asarray(reward)[order]
        terminated, truncated = np.asarray(terminated)[order], np.asarray(truncated)[order]
        ended = np.flatnonzero(terminated | truncated)
        info_out: dict[str, Any] = {}
        if ended.size:
            final = np.empty(self.num_envs, dtype=object)
            final[ended] = list(obs[ended])
            info_out = {"final_obs": final, "_final_obs": terminated | truncated}
            obs[ended] = self._pool_reset(ended)
        self._obs = obs
        return obs.copy(), reward, terminated, truncated, info_out

    def _pool_reset(self, ids: np.ndarray | None) -> np.ndarray:
        obs, info = self.pool.reset() if ids is None else self.pool.reset(ids)
        return np.array(obs)[np.argsort(info["env_id"])]

    def close_extras(self, **kwargs: Any) -> None:
        self.pool.close()

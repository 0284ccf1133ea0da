"""EnvPool's C++ vector envs behind Gymnasium's VectorEnv interface (`vec=envpool`).

Atari ids (``ALE/Breakout-v5``, ``BreakoutNoFrameskip-v4``) run EnvPool's Atari task of
the same game, configured from the run's `trpo.atari.AtariSettings` as `make_atari_env`
preprocesses (no-op starts, frame skip with a max over the last two frames, grayscale
84×84 by area resize, frame stack, episodic life, FIRE after a reset and a lost life,
clipped rewards, sticky actions as the id has them, the time limit in raw frames), and
report raw game scores in ``info["final_info"]`` as the Gymnasium path does. Differences
that remain: EnvPool draws 1..noop_max no-ops also after a lost life (the Gymnasium path
continues the game directly), and it runs grayscale only.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from trpo.atari import is_atari_id, split_settings
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
        self._games = is_atari_id(env_id)
        if self._games:
            env_id, env_kwargs = atari_task(env_id, env_kwargs)
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
        self._game_score = np.zeros(n_envs, np.float64)  # raw, over lives (Atari)
        self._game_length = np.zeros(n_envs, np.int64)

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
        self._game_score[:], self._game_length[:] = 0.0, 0
        return self._obs.copy(), {}

    def step(self, actions: np.ndarray):
        obs, reward, terminated, truncated, info = self.pool.step(actions)
        order = np.argsort(info["env_id"])  # sync mode answers in env order; make sure
        obs, reward = np.array(obs[order]), np.asarray(reward)[order]
        terminated, truncated = np.asarray(terminated)[order], np.asarray(truncated)[order]
        if self._games:  # the raw reward, over the game's lives
            self._game_score += np.asarray(info["reward"], np.float64)[order]
            self._game_length += 1
        ended = np.flatnonzero(terminated | truncated)
        info_out: dict[str, Any] = {}
        if ended.size:
            final = np.empty(self.num_envs, dtype=object)
            final[ended] = list(obs[ended])
            info_out = {"final_obs": final, "_final_obs": terminated | truncated}
            if self._games:
                game_over = np.asarray(info["terminated"], bool)[order] | truncated
                info_out["final_info"] = self._games_ended(game_over)
            obs[ended] = self._pool_reset(ended)
        self._obs = obs
        return obs.copy(), reward, terminated, truncated, info_out

    def _games_ended(self, game_over: np.ndarray) -> dict[str, np.ndarray]:
        """`trpo.atari`'s final info for the envs whose whole game ended (not a life)."""
        final_info = {
            "game_score": np.where(game_over, self._game_score, 0.0),
            "_game_score": game_over,
            "game_length": np.where(game_over, self._game_length, 0),
            "_game_length": game_over,
        }
        self._game_score[game_over], self._game_length[game_over] = 0.0, 0
        return final_info

    def _pool_reset(self, ids: np.ndarray | None) -> np.ndarray:
        if ids is not None and self._games:
            # EnvPool's reset(ids) restarts the whole game; the step after an episode's end
            # resets as its own autoreset does, which continues the game after a lost life.
            obs, *_, info = self.pool.step(np.zeros(len(ids), np.int64), ids)
        else:
            obs, info = self.pool.reset() if ids is None else self.pool.reset(ids)
        return np.array(obs)[np.argsort(info["env_id"])]

    def close_extras(self, **kwargs: Any) -> None:
        self.pool.close()


def atari_task(env_id: str, env_kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """EnvPool's task and options for an ALE id with ``env_kwargs`` (`AtariSettings`
    fields, and ALE options such as ``full_action_space``), preprocessed as
    `trpo.atari.make_atari_env` does."""
    settings, ale_kwargs = split_settings(env_kwargs)
    if not settings.grayscale:
        raise EnvError(
            "vec=envpool runs Atari in grayscale only (EnvPool stacks colour frames in "
            "another channel order): set grayscale=True, or use vec=sync for colour"
        )
    if settings.noop_max < 1:
        raise EnvError(
            "vec=envpool cannot turn the no-op starts off (EnvPool draws 1..noop_max): "
            "use vec=sync for noop_max=0"
        )
    registered = env_id.rpartition(":")[2]
    game = registered.removeprefix("ALE/").split("-")[0].removesuffix("NoFrameskip")
    sticky = settings.repeat_action_probability
    if sticky is None:  # the id's own: 0.25 for ALE/*-v5, 0 for the legacy ids
        spec = gym.registry.get(registered)
        sticky = spec.kwargs.get("repeat_action_probability", 0.0) if spec else 0.25
    frames = settings.max_episode_steps
    options = {
        "noop_max": settings.noop_max,
        "frame_skip": settings.frame_skip,
        "img_height": settings.screen_size,
        "img_width": settings.screen_size,
        "stack_num": settings.frame_stack,
        "gray_scale": True,
        "episodic_life": settings.episodic_life,
        "reward_clip": settings.clip_rewards,
        "use_fire_reset": settings.fire_reset,
        "repeat_action_probability": float(sticky),
        # EnvPool counts agent steps; the setting counts raw frames (None: no limit)
        "max_episode_steps": frames // settings.frame_skip if frames else 2**31 - 1,
        **ale_kwargs,
    }
    return f"{game}-v5", options

"""Atari (ALE) and MinAtar envs, preprocessed the way published Atari results are measured.

`make_atari_env` builds one env as this stack of wrappers, bottom (the emulator) to top:

1. The ALE env from `gymnasium.make`, with ``frameskip=1``: Gymnasium's `AtariPreprocessing`
   refuses a base env that skips frames itself, and skipping there would skip twice. The
   time limit is the ALE's own ``max_num_frames_per_episode`` (raw frames, as the published
   protocol counts them); the ALE reports reaching it as truncation, not termination.
2. `GameScore`: sums the raw rewards of a whole game, beneath everything that clips rewards
   or cuts a game into lives, and puts ``info["game_score"]`` and ``info["game_length"]``
   into the info of the step at which the game really ends (game over or time limit).
   Metrics report these; the learner sees the clipped, per-life rewards above.
3. `AtariPreprocessing` (Gymnasium): random 1..``noop_max`` no-ops after a reset (varied
   starts), ``frame_skip`` repeats of each action with a max over the last two frames (the
   ALE flickers), grayscale, resize to ``screen_size``. Its ``terminal_on_life_loss`` is
   left off: it ends the whole game, where the protocol only ends the learner's episode.
4. `EpisodicLife` (training only): a lost life ends the learner's episode
   (``terminated=True``) but not the game; the next ``reset()`` continues the same game.
   Values then stop bootstrapping through a death, which speeds up learning.
5. `FireReset` (games with a FIRE action): presses FIRE after each reset and each lost
   life, because games like Breakout do nothing until FIRE is pressed.
6. `SignReward` (training only): the reward becomes its sign, so one step size suits games
   whose scores differ by orders of magnitude.
7. `FrameStackObservation` (Gymnasium): the last ``frame_stack`` frames, so a policy sees
   motion. Observations are ``uint8`` in [0, 255], channel-first: ``(frame_stack, 84, 84)``
   in grayscale, ``(3 * frame_stack, 84, 84)`` in colour (`ChannelsFirst`).
8. `CountAgentSteps`: counts the steps of the whole stack so ``game_length`` is in agent
   steps (one per action the learner chose), not in raw frames.

With ``training=False`` (evaluation) layers 4 and 6 are left out: episodes are whole games
and rewards are raw game scores. Everything else is the same, so a policy sees the same
observations in both.

Every layer records its constructor arguments, so ``gymnasium.make(env.spec)`` rebuilds the
same stack (in another process, say).

In a `gymnasium.vector` env with ``AutoresetMode.SAME_STEP`` (`make_atari_vec_env`), the
step that ends an env's episode resets it at once, and that env's own info goes under
``info["final_info"]``: ``info["final_info"]["game_score"]`` (float array) and
``["game_length"]`` (int array), with the mask ``info["final_info"]["_game_score"]`` naming
the envs whose *game* ended (a lost life ends an episode without ending the game).

`make_minatar_env` builds MinAtar envs (10x10 boolean images, no preprocessing needed).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

ATARI_ENTRY_POINT = "ale_py.env:AtariEnv"
MINATAR_DEFAULT_MAX_STEPS = 10_000
"""Agent steps before a MinAtar episode is truncated. MinAtar games have no time limit of
their own, and a policy that stalls (never releases the ball, never dies) would otherwise run
forever. 10k steps is far beyond the length of games of learning agents, so it cuts off only
stalled or near-perfect play, and it is what gym-minatar's registrations use."""


@dataclass(frozen=True)
class AtariSettings:
    """How `make_atari_env` preprocesses an Atari game; stored in checkpoints (`to_dict`).

    The defaults are the DQN-era preprocessing with the ALE's v5 sticky actions. The
    protocol of most published tables (the ``NoFrameskip-v4`` semantics: no sticky actions,
    up to 30 no-op starts, 4-frame skip, 108k-frame games) is these defaults with
    ``repeat_action_probability=0.0``; use it to compare with those tables. Leave the
    default (``None``: 0.25 on ``ALE/*-v5``) to follow Machado et al. (2018), whose sticky
    actions make memorising one action sequence useless.

    Fields:
        noop_max: at most this many no-ops after a reset (a random number, at least one),
            so games do not always start in the same state; 0 turns it off.
        frame_skip: emulator frames per agent step, the action repeated on each.
        screen_size: side of the square observation in pixels.
        frame_stack: frames stacked in one observation. 1 for a recurrent policy.
        grayscale: grayscale (one channel per frame) instead of RGB (three).
        episodic_life: in training, a lost life ends the learner's episode (not the game).
            Turn off for games where losing a life is part of good play, or to learn from
            whole games.
        clip_rewards: in training, rewards become their sign (-1, 0, 1). Turn off when
            the magnitude of rewards matters more than one step size for all games.
        fire_reset: press FIRE after a reset in games that have a FIRE action (needed in
            Breakout-like games, where nothing happens until FIRE).
        repeat_action_probability: chance that the emulator repeats the previous action
            instead of the chosen one, on each frame (sticky actions). ``None`` keeps the
            env id's own value: 0.25 for ``ALE/*-v5``, 0.0 for ``*-v4``.
        max_episode_steps: a game is truncated after this many *raw frames* (108k frames
            = 27k agent steps with ``frame_skip=4`` = 30 minutes of play). ``None``: no
            limit.
    """

    noop_max: int = 30
    frame_skip: int = 4
    screen_size: int = 84
    frame_stack: int = 4
    grayscale: bool = True
    episodic_life: bool = True
    clip_rewards: bool = True
    fire_reset: bool = True
    repeat_action_probability: float | None = None
    max_episode_steps: int | None = 108_000

    def __post_init__(self) -> None:
        for name in ("frame_skip", "screen_size", "frame_stack"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"AtariSettings.{name} must be at least 1, got {getattr(self, name)}"
                )
        if self.noop_max < 0:
            raise ValueError(f"AtariSettings.noop_max must be at least 0, got {self.noop_max}")
        p = self.repeat_action_probability
        if p is not None and not 0.0 <= p <= 1.0:
            raise ValueError(f"AtariSettings.repeat_action_probability must be in [0, 1], got {p}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ValueError(
                f"AtariSettings.max_episode_steps must be at least 1 (raw frames) or None, "
                f"got {self.max_episode_steps}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-able dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AtariSettings:
        """Settings from `to_dict`'s dict; fields it lacks take their defaults, so older
        checkpoints still load. Unknown keys are refused rather than silently dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown AtariSettings fields {unknown}; known: {sorted(known)}")
        return cls(**data)


def is_atari_id(env_id: str) -> bool:
    """Whether ``env_id`` names an ALE game: ``ALE/Breakout-v5``, or one of the legacy ids
    ale-py registers (``Breakout-v0``, ``Breakout-v4``, ``BreakoutNoFrameskip-v0``,
    ``BreakoutNoFrameskip-v4``). Legacy ids are told apart from other ``Name-v4`` ids by
    their registered entry point, so they are recognised only when ale-py is installed; any
    ``ALE/`` id is recognised by its name. A ``module:`` prefix is ignored."""
    env_id = env_id.rpartition(":")[2]
    if env_id.startswith("ALE/"):
        return True
    _register_ale()
    spec = gym.registry.get(env_id)
    return spec is not None and spec.entry_point == ATARI_ENTRY_POINT


def is_minatar_id(env_id: str) -> bool:
    """Whether ``env_id`` names a MinAtar game (``MinAtar/Breakout-v1``)."""
    return env_id.rpartition(":")[2].startswith("MinAtar/")


# make_kwargs that would fight a setting, and the setting to use instead.
_OWNED_KWARGS = {
    "frameskip": "AtariSettings.frame_skip (AtariPreprocessing skips frames; the base env "
    "must not)",
    "repeat_action_probability": "AtariSettings.repeat_action_probability",
    "max_num_frames_per_episode": "AtariSettings.max_episode_steps (in raw frames)",
    "max_episode_steps": "AtariSettings.max_episode_steps (in raw frames)",
    "obs_type": "AtariSettings.grayscale (the preprocessing reads the screen itself)",
}


def split_settings(kwargs: dict[str, Any]) -> tuple[AtariSettings, dict[str, Any]]:
    """`AtariSettings` from the fields named in ``kwargs`` (a run's ``env_kwargs``, e.g.
    ``--env-kwargs repeat_action_probability=0``), and the rest for `gymnasium.make`."""
    fields = {f.name for f in dataclasses.fields(AtariSettings)}
    settings = AtariSettings(**{k: v for k, v in kwargs.items() if k in fields})
    return settings, {k: v for k, v in kwargs.items() if k not in fields}


def make_atari_env(
    env_id: str,
    settings: AtariSettings = AtariSettings(),
    training: bool = True,
    **make_kwargs: Any,
) -> gym.Env:
    """One preprocessed Atari env (the stack in this module's docstring).

    ``training=False`` builds the evaluation env: no episodic life and no reward clipping,
    so an episode is a whole game and its return the game score. ``make_kwargs`` go to
    `gymnasium.make` (``render_mode``, ``full_action_space``, ``mode``, ...); the ones a
    setting controls (``frameskip``, ``repeat_action_probability``, the time limit,
    ``obs_type``) are refused with the setting to use.

    Turning one setting off leaves the other layers in place; for the bare ALE env use
    `gymnasium.make`.
    """
    if is_minatar_id(env_id):
        raise ValueError(f"{env_id!r} is a MinAtar id: use make_minatar_env")
    if not _register_ale():
        raise gym.error.DependencyNotInstalled(
            f"{env_id} needs ale-py (which ships the ROMs): pip install 'trpo[atari]'"
        )
    if not is_atari_id(env_id):
        raise ValueError(f"{env_id!r} is not an ALE Atari env id (ALE/Name-v5, NameNoFrameskip-v4)")
    for key, setting in _OWNED_KWARGS.items():
        if key in make_kwargs:
            raise ValueError(
                f"make_atari_env does not take {key}={make_kwargs[key]!r}: set {setting}"
            )
    base_kwargs: dict[str, Any] = {
        "frameskip": 1,
        "obs_type": "grayscale" if settings.grayscale else "rgb",
        # ALE reads 0 as "no limit"; the registered ids set 108k frames, so None must say 0.
        "max_num_frames_per_episode": settings.max_episode_steps or 0,
    }
    if settings.repeat_action_probability is not None:
        base_kwargs["repeat_action_probability"] = settings.repeat_action_probability
    env = gym.make(env_id.rpartition(":")[2], **base_kwargs, **make_kwargs)

    env = GameScore(env)
    env = AtariPreprocessing(
        env,
        noop_max=settings.noop_max,
        frame_skip=settings.frame_skip,
        screen_size=settings.screen_size,
        terminal_on_life_loss=False,
        grayscale_obs=settings.grayscale,
        scale_obs=False,
    )
    if training and settings.episodic_life:
        env = EpisodicLife(env)
    if settings.fire_reset and "FIRE" in env.unwrapped.get_action_meanings():
        env = FireReset(env)
    if training and settings.clip_rewards:
        env = SignReward(env)
    env = FrameStackObservation(env, settings.frame_stack)
    if not settings.grayscale:
        env = ChannelsFirst(env)
    return CountAgentSteps(env)


def make_atari_vec_env(
    env_id: str,
    n_envs: int,
    seed: int | None = None,
    settings: AtariSettings = AtariSettings(),
    training: bool = True,
    **make_kwargs: Any,
) -> SyncVectorEnv:
    """``n_envs`` copies of `make_atari_env` in one `SyncVectorEnv`, for your own loops.

    Autoreset is ``SAME_STEP``: the step that ends an env's episode returns its reset
    observation, and that step's own info is under ``info["final_info"]`` (with
    ``game_score``/``game_length`` when the game ended; see the module docstring). With a
    ``seed`` the envs are reset here with seeds ``seed + i``; a later ``reset()`` without a
    seed continues from those seeded states, so the run is reproducible.
    """
    if n_envs < 1:
        raise ValueError(f"n_envs must be at least 1, got {n_envs}")
    make_one = partial(make_atari_env, env_id, settings, training, **make_kwargs)
    envs = SyncVectorEnv([make_one] * n_envs, autoreset_mode=AutoresetMode.SAME_STEP)
    if seed is not None:
        envs.reset(seed=[seed + i for i in range(n_envs)])
    return envs


def make_minatar_env(
    env_id: str, max_episode_steps: int | None = MINATAR_DEFAULT_MAX_STEPS, **kwargs: Any
) -> gym.Env:
    """A MinAtar env, truncated after ``max_episode_steps`` agent steps (None: never).

    Observations are ``Box(False, True, (10, 10, C), bool)``, channel-last, C from 4
    (Breakout) to 10 (Seaquest); the ``-v1`` ids use each game's minimal action set, the
    ``-v0`` ids all 6 actions. MinAtar uses sticky actions by default: with probability
    0.1 the previous action is repeated (as in the MinAtar paper); pass
    ``sticky_action_prob=0.0`` to turn them off, ``difficulty_ramping=False`` to keep the
    difficulty fixed. ``kwargs`` go to `gymnasium.make`.
    """
    if not is_minatar_id(env_id):
        raise ValueError(f"{env_id!r} is not a MinAtar env id (MinAtar/Name-v0 or -v1)")
    env_id = env_id.rpartition(":")[2]
    if env_id not in gym.registry:
        try:
            import minatar.gym
        except ImportError:
            raise gym.error.DependencyNotInstalled(
                f"{env_id} needs MinAtar: pip install 'trpo[minatar]'"
            ) from None
        minatar.gym.register_envs()
    return gym.make(env_id, max_episode_steps=max_episode_steps, **kwargs)


def _register_ale() -> bool:
    """Register ale-py's ids with Gymnasium; False when ale-py is not installed."""
    if "ALE/Pong-v5" in gym.registry:
        return True
    try:
        import ale_py
    except ImportError:
        return False
    gym.register_envs(ale_py)
    return True


class GameScore(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Reports the raw score and length of each whole game, at the step it ends.

    Put it directly on the ALE env, beneath every wrapper that clips rewards or ends
    episodes on a lost life, so it sees the game as the emulator plays it. At the step where
    the game ends (game over or time limit) ``info`` gets ``game_score`` (float, the sum of
    raw rewards, no-ops and FIRE presses included) and ``game_length`` (int): agent steps
    when a `CountAgentSteps` above counts them, otherwise the steps taken here. A game that
    ends before the learner took any step (during the reset's no-ops) is not reported.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self.counted_outside = False
        self.agent_steps = 0  # advanced by CountAgentSteps
        self._score = 0.0
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._score, self._steps, self.agent_steps = 0.0, 0, 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._score += float(reward)
        self._steps += 1
        length = self.agent_steps if self.counted_outside else self._steps
        if (terminated or truncated) and length > 0:
            info = {**info, "game_score": self._score, "game_length": int(length)}
        return obs, reward, terminated, truncated, info


class CountAgentSteps(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """The outermost wrapper: tells the `GameScore` below of each step the learner takes.

    The steps `GameScore` itself sees are raw frames and include the resets' no-ops and
    FIRE presses; only the top of the stack sees one step per chosen action.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._game = _find_wrapper(env, GameScore)
        self._game.counted_outside = True

    def step(self, action):
        self._game.agent_steps += 1
        return self.env.step(action)


class EpisodicLife(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """A lost life ends the episode (``terminated=True``) but not the game.

    After such an episode, ``reset()`` takes one no-op step and continues the same game;
    the game is really reset only when it is over (game over or time limit), or when
    ``reset`` gets a seed or options. Lives come from ``env.unwrapped.ale.lives()``. The
    life counter dropping to 0 does not count: some games (Q*bert) show 0 lives for a few
    frames before the game over, which then ends the episode.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._lives = 0
        self._game_goes_on = False

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self.env.unwrapped.ale.lives()
        life_lost = 0 < lives < self._lives
        self._lives = lives
        self._game_goes_on = life_lost and not (terminated or truncated)
        return obs, reward, terminated or life_lost, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if self._game_goes_on and seed is None and options is None:
            self._game_goes_on = False
            obs, _, terminated, truncated, info = self.env.step(0)
            # The no-op can end the game only by hitting the time limit in its few frames;
            # that game's score is then not reported, as its last episode already ended.
            if not (terminated or truncated):
                self._lives = self.env.unwrapped.ale.lives()
                return obs, info
        obs, info = self.env.reset(seed=seed, options=options)
        self._lives = self.env.unwrapped.ale.lives()
        self._game_goes_on = False
        return obs, info


class FireReset(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Presses FIRE after each reset and each lost life, for games that wait for FIRE to
    start a ball (Breakout).

    Without it a policy must first learn that FIRE starts the game, and can stall a whole
    game by never pressing it. Above `EpisodicLife` (training) a lost life ends the episode
    and the next reset presses FIRE; without it (evaluation) the step that loses a life
    presses FIRE once more, adding that frame's reward. Either way the policy never has to
    press FIRE itself, so it is evaluated in the game it was trained in, instead of
    stalling until the time limit the first time it loses a life.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._fire = env.unwrapped.get_action_meanings().index("FIRE")
        self._lives = 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self.env.unwrapped.ale.lives()
        if lives < self._lives and not (terminated or truncated):
            obs, fire_reward, terminated, truncated, info = self.env.step(self._fire)
            reward += fire_reward
        self._lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        _, info = self.env.reset(seed=seed, options=options)
        obs, _, terminated, truncated, _ = self.env.step(self._fire)
        if terminated or truncated:  # pressing FIRE ended it (never seen): start over once
            obs, info = self.env.reset()
        self._lives = self.env.unwrapped.ale.lives()
        return obs, info


class SignReward(gym.RewardWrapper, gym.utils.RecordConstructorArgs):
    """The reward becomes its sign: -1.0, 0.0 or 1.0.

    Gymnasium's `ClipReward` clips to [-1, 1] instead, which keeps a reward of 0.5 as 0.5.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.RewardWrapper.__init__(self, env)

    def reward(self, reward):
        return float(np.sign(reward))


class ChannelsFirst(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Stacked RGB frames ``(k, H, W, 3)`` as one channel-first image ``(3k, H, W)``, the
    layout grayscale stacks ``(k, H, W)`` already have, so one CNN takes either."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        k, h, w, c = env.observation_space.shape
        self.observation_space = Box(0, 255, (k * c, h, w), np.uint8)

    def observation(self, observation):
        k, h, w, c = observation.shape
        return np.ascontiguousarray(observation.transpose(0, 3, 1, 2).reshape(k * c, h, w))


def _find_wrapper(env: gym.Env, kind: type[gym.Wrapper]) -> gym.Wrapper:
    """The first wrapper of type ``kind`` below ``env`` (``env`` included)."""
    inner = env
    while isinstance(inner, gym.Wrapper):
        if isinstance(inner, kind):
            return inner
        inner = inner.env
    raise ValueError(f"no {kind.__name__} wrapper below {env}")

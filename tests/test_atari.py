"""trpo.atari: the Atari preprocessing stack and MinAtar envs.

Each test plays a few hundred seeded random steps, so the suite takes seconds. Raw game
facts are read from the emulator itself (``env.unwrapped.ale``) or from a recorder put
directly on the ALE env, beneath every wrapper of the stack, so a wrapper in the wrong
place shows up as a mismatch.
"""

import json

import gymnasium as gym
import numpy as np
import pytest

from trpo.atari import (
    AtariSettings,
    GameScore,
    is_atari_id,
    is_minatar_id,
    make_atari_env,
    make_atari_vec_env,
    make_minatar_env,
)

BREAKOUT = "ALE/Breakout-v5"
MINATAR_BREAKOUT = "MinAtar/Breakout-v1"
SPACE_INVADERS = "ALE/SpaceInvaders-v5"  # rewards of 5 to 30 points: clipping shows


@pytest.fixture(autouse=True)
def needs_the_family(request):
    """Skips a test whose env family is not installed (MinAtar tests say so in their name)."""
    if "minatar" in request.node.name:
        pytest.importorskip("minatar", reason="MinAtar tests need minatar: pip install minatar")
    else:
        pytest.importorskip("ale_py", reason="Atari tests need ale-py: pip install 'trpo[atari]'")
        pytest.importorskip("cv2", reason="AtariPreprocessing needs opencv-python-headless")


class RawGame(gym.Wrapper):
    """Records what the emulator does: each raw reward, and where games really end."""

    def __init__(self, env):
        super().__init__(env)
        self.rewards = []  # raw rewards of the current game
        self.game_scores = []  # sums of raw rewards of the games that ended

    def reset(self, **kwargs):
        self.rewards = []
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.rewards.append(float(reward))
        if terminated or truncated:
            self.game_scores.append(sum(self.rewards))
        return obs, reward, terminated, truncated, info


def with_recorder(env):
    """Puts a `RawGame` between the ALE env and the `GameScore` of ``env``; returns it."""
    inner = env
    while not isinstance(inner, GameScore):
        inner = inner.env
    inner.env = recorder = RawGame(inner.env)
    return recorder


def ale(env):
    return env.unwrapped.ale


def test_observation_space_is_uint8_channel_first():
    env = make_atari_env(BREAKOUT)
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (4, 84, 84)
    colour = make_atari_env(BREAKOUT, AtariSettings(grayscale=False, frame_stack=2))
    assert colour.observation_space == gym.spaces.Box(0, 255, (6, 84, 84), np.uint8)
    assert colour.reset(seed=0)[0].shape == (6, 84, 84)


def wrapper_names(env):
    """The names of ``env``'s wrappers, outermost first."""
    names = []
    while isinstance(env, gym.Wrapper):
        names.append(type(env).__name__)
        env = env.env
    return names


def test_wrapper_order():
    make_checkers = wrapper_names(gym.make(BREAKOUT))  # what gymnasium.make puts on the ALE env
    training = [
        "CountAgentSteps", "FrameStackObservation", "SignReward", "FireReset", "EpisodicLife",
        "AtariPreprocessing", "GameScore",
    ]  # fmt: skip
    evaluation = [n for n in training if n not in ("SignReward", "EpisodicLife")]
    assert wrapper_names(make_atari_env(BREAKOUT)) == training + make_checkers
    assert wrapper_names(make_atari_env(BREAKOUT, training=False)) == evaluation + make_checkers
    # Freeway has no FIRE action (NOOP, UP, DOWN), so nothing to press.
    no_fire = [n for n in training if n != "FireReset"]
    assert wrapper_names(make_atari_env("ALE/Freeway-v5")) == no_fire + make_checkers
    # Every layer records its constructor arguments, so the env's spec rebuilds the stack.
    assert wrapper_names(gym.make(make_atari_env(BREAKOUT).spec)) == training + make_checkers


def test_settings_reach_the_emulator():
    env = make_atari_env(BREAKOUT)
    assert ale(env).getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert ale(env).getInt("max_num_frames_per_episode") == 108_000
    protocol = AtariSettings(repeat_action_probability=0.0, max_episode_steps=None)
    env = make_atari_env(BREAKOUT, protocol)
    assert ale(env).getFloat("repeat_action_probability") == 0.0
    assert ale(env).getInt("max_num_frames_per_episode") == 0  # the ALE's "no limit"


@pytest.mark.parametrize(
    "kwarg, setting",
    [
        ({"frameskip": 4}, "AtariSettings.frame_skip"),
        ({"repeat_action_probability": 0.0}, "AtariSettings.repeat_action_probability"),
        ({"max_num_frames_per_episode": 10}, "AtariSettings.max_episode_steps"),
    ],
)
def test_make_kwargs_owned_by_a_setting_are_refused(kwarg, setting):
    with pytest.raises(ValueError, match=setting):
        make_atari_env(BREAKOUT, **kwarg)


def test_make_kwargs_reach_gym_make():
    env = make_atari_env(BREAKOUT, render_mode="rgb_array")
    env.reset(seed=0)
    assert env.render().shape == (210, 160, 3)


def test_settings_round_trip_through_json():
    settings = AtariSettings(repeat_action_probability=0.0, max_episode_steps=None, noop_max=0)
    assert AtariSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    assert AtariSettings.from_dict({"frame_skip": 3}) == AtariSettings(frame_skip=3)
    with pytest.raises(ValueError, match="unknown AtariSettings fields"):
        AtariSettings.from_dict({"frameskip": 3})
    with pytest.raises(ValueError, match="frame_skip"):
        AtariSettings(frame_skip=0)


def test_ids():
    assert is_atari_id(BREAKOUT) and is_atari_id("BreakoutNoFrameskip-v4")
    assert is_atari_id("Breakout-v4") and is_atari_id("PongNoFrameskip-v0")
    assert not is_atari_id("CartPole-v1") and not is_atari_id("MinAtar/Breakout-v1")
    assert is_minatar_id("MinAtar/Breakout-v1") and not is_minatar_id(BREAKOUT)
    with pytest.raises(ValueError, match="make_minatar_env"):
        make_atari_env("MinAtar/Breakout-v1")
    with pytest.raises(ValueError, match="not an ALE Atari env id"):
        make_atari_env("CartPole-v1")
    # A legacy id gets the same stack: its own frame skip is replaced by frame_skip.
    legacy = make_atari_env("Breakout-v4")
    assert legacy.unwrapped._frameskip == 1
    assert legacy.observation_space.shape == (4, 84, 84)


def test_episodic_life_ends_episodes_not_games():
    env = make_atari_env(BREAKOUT)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    start_lives = ale(env).lives()
    lives_lost = 0
    for _ in range(2000):
        lives = ale(env).lives()
        _, _, terminated, truncated, info = env.step(int(rng.integers(4)))
        if not (terminated or truncated):
            continue
        if "game_score" in info:  # game over: the next reset starts a new game
            assert ale(env).lives() == 0
            env.reset()
            assert ale(env).lives() == start_lives
            assert ale(env).getEpisodeFrameNumber() < 200  # no-ops and FIRE only
            break
        lives_lost += 1
        assert terminated and ale(env).lives() == lives - 1 > 0
        frames = ale(env).getEpisodeFrameNumber()
        env.reset()
        assert ale(env).lives() == lives - 1  # the same game goes on
        assert ale(env).getEpisodeFrameNumber() > frames
    else:
        pytest.fail("no game over in 2000 steps")
    assert lives_lost == start_lives - 1


def test_fire_starts_each_life_in_training():
    # Breakout waits for FIRE; a policy that only ever does NOOP loses a life only if
    # FIRE was pressed for it after the reset and after each lost life.
    env = make_atari_env(BREAKOUT)
    env.reset(seed=0)
    for life in range(3):
        for _ in range(300):
            _, _, terminated, _, _ = env.step(0)
            if terminated:
                break
        assert terminated, f"life {life + 1} never started: FIRE was not pressed"
        env.reset()
    assert ale(env).lives() == 2


def test_fire_starts_each_life_in_evaluation_too():
    # Trained with FIRE pressed for it, a policy never learns to press it: evaluation must
    # press it too, or the game stalls after the first lost life until the time limit.
    env = make_atari_env(BREAKOUT, training=False)
    env.reset(seed=0)
    for _ in range(2000):
        _, _, terminated, truncated, info = env.step(0)
        if terminated or truncated:
            break
    assert terminated and "game_score" in info, "no game over after 2000 NOOP steps"


def play(env, n_steps, seed, on_step=None):
    """Random play for ``n_steps``, resetting after each episode: the rewards, terminated,
    truncated and infos of each step."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    steps = []
    for _ in range(n_steps):
        step = env.step(int(rng.integers(env.action_space.n)))[1:]
        steps.append(step)
        if on_step:
            on_step(*step)
        if step[1] or step[2]:
            env.reset()
    return steps


@pytest.mark.parametrize("training", [True, False])
def test_game_score_is_the_raw_score_of_the_whole_game(training):
    # A 1600-frame limit (400 agent steps) makes games end by truncation as well.
    env = make_atari_env(SPACE_INVADERS, AtariSettings(max_episode_steps=1600), training)
    recorder = with_recorder(env)
    reported = []

    def check(reward, terminated, truncated, info):
        if "game_score" in info:
            reported.append((info["game_score"], info["game_length"]))
            assert recorder.game_scores and info["game_score"] == recorder.game_scores[-1]
            assert isinstance(info["game_score"], float) and isinstance(info["game_length"], int)
            assert terminated or truncated

    steps = play(env, 1200, seed=1, on_step=check)
    assert len(reported) == len(recorder.game_scores) >= 2
    assert any(truncated for _, _, truncated, _ in steps)  # the time limit was hit
    assert max(score for score, _ in reported) > 30  # several alien kills: not clipped
    # game_length counts the steps of this loop from a game's first step to its last.
    ends = [t + 1 for t, (*_, info) in enumerate(steps) if "game_score" in info]
    assert [length for _, length in reported] == np.diff([0, *ends]).tolist()


def test_training_clips_rewards_and_evaluation_keeps_them():
    # Until the first lost life both envs play the same game (same seed, same actions).
    train_rewards, eval_rewards = [], []
    for training, rewards in ((True, train_rewards), (False, eval_rewards)):
        env = make_atari_env(SPACE_INVADERS, training=training)
        env.reset(seed=3)
        rng = np.random.default_rng(3)
        for _ in range(300):
            _, reward, terminated, truncated, _ = env.step(int(rng.integers(6)))
            rewards.append(reward)
            if terminated or truncated:
                break
    assert set(train_rewards) <= {-1.0, 0.0, 1.0}
    assert max(eval_rewards) > 1
    n = min(len(train_rewards), len(eval_rewards))
    assert train_rewards[:n] == [float(np.sign(r)) for r in eval_rewards[:n]]


def test_evaluation_episodes_are_whole_games():
    env = make_atari_env(BREAKOUT, training=False)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    episode_return, length = 0.0, 0
    for _ in range(2000):
        _, reward, terminated, truncated, info = env.step(int(rng.integers(4)))
        episode_return += reward
        length += 1
        if terminated or truncated:
            break
    assert ale(env).lives() == 0 and ale(env).game_over()
    assert info["game_score"] == episode_return and info["game_length"] == length


def test_vector_env_reports_games_in_final_info():
    n = 2
    envs = make_atari_vec_env(BREAKOUT, n, seed=0)
    obs, _ = envs.reset()
    assert obs.shape == (n, 4, 84, 84) and obs.dtype == np.uint8
    rng = np.random.default_rng(0)
    steps_in_game = np.zeros(n, int)
    episodes, games = 0, 0
    for _ in range(300):
        obs, _, terminated, truncated, info = envs.step(rng.integers(4, size=n))
        steps_in_game += 1
        assert "game_score" not in info  # reset infos of autoreset envs never carry it
        ended = terminated | truncated
        episodes += ended.sum()
        if not ended.any():
            continue
        final = info["final_info"]
        assert np.array_equal(info["_final_info"], ended)
        game_over = final.get("_game_score", np.zeros(n, bool))
        assert not (game_over & ~ended).any()
        for i in np.flatnonzero(game_over):
            games += 1
            assert final["game_length"][i] == steps_in_game[i]
            assert final["game_score"].dtype == np.float64
            steps_in_game[i] = 0
    envs.close()
    assert games >= 2 and episodes > games  # lost lives end episodes, not games


def test_minatar_observations_and_time_limit():
    env = make_minatar_env("MinAtar/Breakout-v1", max_episode_steps=5)
    assert env.observation_space == gym.spaces.Box(0, 1, (10, 10, 4), np.bool_)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.bool_ and obs.shape == (10, 10, 4)
    for t in range(1, 6):
        _, _, terminated, truncated, _ = env.step(0)
        assert not terminated
        assert truncated == (t == 5)
    with pytest.raises(ValueError, match="MinAtar"):
        make_minatar_env(BREAKOUT)


def small_run(env_id, tmp_path, **settings):
    """trpo on ``env_id`` with its family's preset, sized for a test."""
    from trpo import TRPO

    return TRPO(env_id, n_envs=2, tensorboard=False, run_dir=tmp_path / "run", **settings)


def test_trpo_trains_on_an_atari_id_reporting_whole_games(tmp_path):
    model = small_run(BREAKOUT, tmp_path, steps_per_iter=256, eval_every=1, eval_episodes=1)
    assert model.agent.config.image_encoder == "small"  # the Atari preset
    assert model.agent.observation_space.shape == (4, 84, 84)
    batch = model.trainer.collector.collect(1200)
    assert batch.obs.dtype == np.uint8
    games = len(batch.episode_returns)
    assert games >= 1 and batch.terminated.sum() > games  # lost lives end episodes, not games
    assert all(length > 100 for length in batch.episode_lengths)
    model.learn(total_steps=256)
    row = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    header, last = row[0].split(","), row[-1].split(",")
    assert last[header.index("eval_return")] != ""  # a whole game, evaluated
    assert float(last[header.index("eval_return")]) >= 0


def test_minatar_id_trains_with_its_preset(tmp_path):
    model = small_run(MINATAR_BREAKOUT, tmp_path, steps_per_iter=128, eval_every=0)
    assert model.agent.policy.features.images["0"].kind == "grid"
    model.learn(total_steps=256)

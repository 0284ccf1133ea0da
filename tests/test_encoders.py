"""Observation encoders: which spaces are images, flat rows and their structure, the CNNs,
and a Dict env with an image key and a vector key that trpo learns end to end."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.spaces import Box, Dict, Discrete, MultiBinary, Text, Tuple

from trpo import TRPO
from trpo.agent import Agent
from trpo.checkpoint import load_checkpoint
from trpo.config import Config, ConfigError
from trpo.encoders import (
    ObservationEncoder,
    ObservationFeatures,
    image_cnn,
    image_shape,
    is_image_space,
    observation_features,
)
from trpo.normalization import ObservationNormalizer
from trpo.policies import MLPValue
from trpo.reproducibility import seeded_generator

ATARI = Box(0, 255, (4, 84, 84), np.uint8)
MINATAR = Box(0, 1, (10, 10, 4), bool)


@pytest.mark.parametrize(
    "space, image",
    [
        (ATARI, True),
        (Box(0, 255, (84, 84, 3), np.uint8), True),
        (Box(0, 255, (84, 84), np.uint8), True),  # one grey channel
        (MINATAR, True),
        (Box(0, 255, (7, 7, 3), np.uint8), True),  # MiniGrid's grid encoding
        (Box(0, 10, (7, 7, 3), np.uint8), False),  # bytes, but not pixel values
        (Box(0.0, 1.0, (84, 84, 3), np.float32), False),  # floats are never images
        (Box(0, 255, (3, 3), np.uint8), False),  # too small to be a picture
        (Box(0, 255, (84,), np.uint8), False),
        (Box(0, 255, (2, 84, 84, 3), np.uint8), False),
        (Discrete(4), False),
    ],
)
def test_which_spaces_are_images(space, image):
    assert is_image_space(space) is image


@pytest.mark.parametrize(
    "shape, chw",
    [
        ((4, 84, 84), (4, 84, 84)),
        ((84, 84, 3), (3, 84, 84)),
        ((10, 10, 10), (10, 10, 10)),
        ((10, 10, 4), (4, 10, 10)),
        ((84, 84), (1, 84, 84)),
    ],
)
def test_image_layout_is_channel_first_only_when_the_first_axis_is_smallest(shape, chw):
    assert image_shape(Box(0, 255, shape, np.uint8)) == chw


def test_vector_spaces_encode_as_before_float32_normalised():
    encoder = ObservationEncoder(Box(-1, 1, (3,), np.float32))
    rows = encoder(np.ones((2, 3), np.float32))
    assert rows.dtype == np.float32 and rows.shape == (2, 3)
    assert encoder.normalized.all() and not encoder.has_images and not encoder.structured


def test_images_stay_bytes_and_are_not_normalised():
    encoder = ObservationEncoder(ATARI)
    frames = np.random.default_rng(0).integers(0, 256, (5, 4, 84, 84), dtype=np.uint8)
    rows = encoder(frames)
    assert rows.dtype == np.uint8 and rows.shape == (5, 4 * 84 * 84)
    normalizer = ObservationNormalizer.for_run(encoder, Config())
    assert not normalizer.enabled and normalizer(rows) is rows


def test_dict_rows_keep_each_key_in_order_and_normalise_only_vectors():
    space = Dict(
        {
            "grid": Box(0, 255, (7, 7, 3), np.uint8),
            "direction": Discrete(4),
            "speed": Box(-np.inf, np.inf, (2,), np.float32),
            "mission": Text(20),
        }
    )
    encoder = ObservationEncoder(space)
    assert encoder.dropped == ["mission"]
    obs = [space.sample() for _ in range(3)]
    rows = encoder(obs)
    assert rows.dtype == np.float32 and rows.shape == (3, 147 + 4 + 2)
    # Gymnasium's Dict keeps its keys sorted; the rows follow the space's order.
    assert [leaf.name for leaf in encoder.leaves] == ["direction", "grid", "speed"]
    np.testing.assert_array_equal(rows[:, :4], np.eye(4)[[o["direction"] for o in obs]])
    np.testing.assert_array_equal(rows[:, 4:151], [o["grid"].reshape(-1) for o in obs])
    assert np.flatnonzero(encoder.normalized).tolist() == [151, 152]

    normalizer = ObservationNormalizer.for_run(encoder, Config(clip_obs=5.0))
    normalizer.update(normalizer.moments(rows))
    out = normalizer(rows)
    np.testing.assert_array_equal(out[:, :151], rows[:, :151])  # pixels never clipped to ±5
    assert not np.allclose(out[:, 151:], rows[:, 151:])
    assert normalizer.stats.mean.shape == (2,)

    # A vector env's batch (a dict of stacked arrays) gives the same rows.
    stacked = {k: np.stack([o[k] for o in obs]) for k in ("grid", "direction", "speed")}
    np.testing.assert_array_equal(encoder(stacked), rows)


def test_the_agent_names_dropped_text_once(caplog):
    space = Dict({"v": Box(-1, 1, (2,)), "mission": Text(10)})
    with caplog.at_level("WARNING", logger="trpo"):
        Agent(space, Discrete(2), Config())
    # trpo's own records: another library's late log (Ray's, from an earlier test) may land here
    assert [r.getMessage() for r in caplog.records if r.name == "trpo"] == [
        "the observation's text parts mission are dropped: trpo's networks do not read text "
        "(encode them in a wrapper to use them)"
    ]


def test_unflatten_gives_a_users_module_the_spaces_shapes():
    space = Dict({"image": MINATAR, "pair": Tuple((Discrete(3), Box(-1, 1, (2, 2))))})
    encoder = ObservationEncoder(space)
    assert encoder.dtype == np.float32  # a float vector part makes the rows float
    obs = space.sample()
    tree = encoder.unflatten(torch.from_numpy(encoder([obs])))
    assert tree["image"].shape == (1, 10, 10, 4)
    np.testing.assert_array_equal(tree["image"][0].numpy(), obs["image"])
    assert tree["pair"][0].shape == (1, 3) and tree["pair"][1].shape == (1, 2, 2)


def test_batch_size_tells_one_observation_from_a_batch_and_names_bad_shapes():
    encoder = ObservationEncoder(Dict({"image": MINATAR, "v": Box(-1, 1, (2,))}))
    one = {"image": np.zeros((10, 10, 4), bool), "v": np.zeros(2, np.float32)}
    assert encoder.batch_size(one) is None
    assert encoder.batch_size({k: np.stack([v] * 3) for k, v in one.items()}) == 3
    with pytest.raises(ValueError, match="predict expects one observation of Dict"):
        encoder.batch_size({"image": np.zeros((10, 10, 4), bool), "v": np.zeros(3)})


@pytest.mark.parametrize(
    "kind, features, parameters",
    [
        ("nature", 512, 32 * 4 * 64 + 32 + 64 * 32 * 16 + 64 + 64 * 64 * 9 + 64 + 3136 * 512 + 512),
        ("small", 256, 16 * 4 * 64 + 16 + 32 * 16 * 16 + 32 + 2592 * 256 + 256),
    ],
)
def test_atari_cnns_have_their_published_sizes(kind, features, parameters):
    cnn, _ = image_cnn(kind, 4, 84, 84)
    assert cnn(torch.zeros(2, 4, 84, 84)).shape == (2, features)
    assert sum(p.numel() for p in cnn.parameters()) == parameters


def test_auto_picks_the_grid_cnn_for_small_grids_and_scales_from_the_bounds():
    grid, kind = image_cnn("auto", 4, 10, 10)
    assert kind == "grid" and isinstance(grid[0], torch.nn.Conv2d) and grid[0].kernel_size == (3, 3)
    bytes_ = ObservationFeatures(
        ObservationEncoder(Box(0, 255, (10, 10, 4), np.uint8)), "auto", None
    )
    bools = ObservationFeatures(ObservationEncoder(MINATAR), "auto", None)
    bools.load_state_dict(bytes_.state_dict() | {"images.0.scale": bools.images["0"].scale})
    grid = np.random.default_rng(1).integers(0, 2, (3, 10, 10, 4))
    # 255 in a byte image and True in a bool grid are both the brightest value: 1 to the CNN.
    a = bytes_(torch.from_numpy((grid * 255).astype(np.uint8).reshape(3, -1)))
    b = bools(torch.from_numpy(grid.astype(np.uint8).reshape(3, -1)))
    torch.testing.assert_close(a, b)


def test_image_agent_gives_policy_and_value_their_own_cnns():
    agent = Agent(ATARI, Discrete(4), Config(policy_hidden=(), value_hidden=()))
    policy_cnn = agent.policy.features.images["0"].cnn
    value_cnn = agent.value_fn.features.images["0"].cnn
    assert policy_cnn[0].weight.data_ptr() != value_cnn[0].weight.data_ptr()
    assert not torch.equal(policy_cnn[0].weight, value_cnn[0].weight)
    frames = np.zeros((4, 84, 84), np.uint8)
    assert agent.predict(frames) in range(4)


class SideEnv(gym.Env):
    """One-step episodes that need both keys: the action that pays is the side of the
    bright pixel in the image XOR the sign of the vector's first entry."""

    observation_space = Dict(
        {"image": Box(0, 255, (8, 8, 1), np.uint8), "vector": Box(-1, 1, (2,), np.float32)}
    )
    action_space = Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._draw()
        return self._obs(), {}

    def _draw(self):
        self.side, self.flip = (int(v) for v in self.np_random.integers(2, size=2))

    def _obs(self):
        image = np.zeros((8, 8, 1), np.uint8)
        image[self.np_random.integers(8), self.side * 4 + self.np_random.integers(4), 0] = 255
        vector = np.array([1.0 if self.flip else -1.0, self.np_random.normal()], np.float32)
        return {"image": image, "vector": vector}

    def answer(self) -> int:
        return self.side ^ self.flip

    def step(self, action):
        reward = float(action == self.answer())
        self._draw()
        return self._obs(), reward, True, False, {}


def accuracy(predict, episodes=200) -> float:
    env = SideEnv()
    env.reset(seed=123)
    hits = 0
    for _ in range(episodes):
        hits += int(predict(env._obs()) == env.answer())
        env._draw()
    return hits / episodes


def test_share_encoder_gives_both_networks_one_cnn_and_saves_it_once(tmp_path):
    moved = []
    model = TRPO(SideEnv, share_encoder=True, n_envs=2, steps_per_iter=64, tensorboard=False)
    assert model.value_fn.features is model.policy.features
    assert not model.trainer.overlapped  # the fit must run after the policy step, here
    model.learn(total_steps=128, callback=lambda s: moved.append(s.value.value_fit_kl))
    assert len(moved) == 2 and all(kl > 0 for kl in moved)
    model.save(tmp_path / "shared.safetensors")
    tensors = load_checkpoint(tmp_path / "shared.safetensors").component("agent")[0]
    assert not any(k.startswith("value/features") for k in tensors)
    loaded = Agent.load(tmp_path / "shared.safetensors")
    assert loaded.value_fn.features is loaded.policy.features
    obs = SideEnv().reset(seed=0)[0]
    x = loaded.observation_tensor(loaded.encoder.batch_of_one(obs))
    torch.testing.assert_close(loaded.value_fn(x), model.value_fn(x))


def test_a_users_policy_alone_builds_no_cnn_for_it():
    # Only the default value function draws from the init stream, as its first draws.
    agent = Agent(MINATAR, Discrete(3), Config(), policy=SharedTrunkPolicy(torch.nn.Identity()))
    init = seeded_generator(0, "init")
    encoder = ObservationEncoder(MINATAR)
    features = observation_features(encoder, "auto", init)
    value = MLPValue(encoder.dim, (64, 64), "tanh", generator=init, features=features)
    for ours, expected in zip(agent.value_fn.parameters(), value.parameters(), strict=True):
        torch.testing.assert_close(ours, expected, rtol=0, atol=0)


def test_separate_encoders_leave_the_policy_where_the_step_put_it():
    moved = []
    model = TRPO(SideEnv, n_envs=2, steps_per_iter=64, overlap="off", tensorboard=False)
    model.learn(total_steps=64, callback=lambda s: moved.append(s.value.value_fit_kl))
    assert moved == [0.0]


@pytest.mark.parametrize(
    ("env", "settings", "problem"),
    [
        ("CartPole-v1", {}, "no image to encode"),
        (SideEnv, {"overlap": "on"}, "cannot move the encoder it shares"),
    ],
)
def test_share_encoder_is_refused_where_it_cannot_work(env, settings, problem):
    with pytest.raises(ConfigError, match=problem):
        TRPO(env, share_encoder=True, **settings, tensorboard=False)


class SharedTrunkPolicy(torch.nn.Module):
    def __init__(self, trunk):
        super().__init__()
        self.trunk, self.head = trunk, torch.nn.Linear(8, 2)

    def forward(self, obs):
        return torch.distributions.Categorical(logits=self.head(self.trunk(obs)))


class SharedTrunkValue(torch.nn.Module):
    def __init__(self, trunk):
        super().__init__()
        self.trunk, self.head = trunk, torch.nn.Linear(8, 1)

    def forward(self, obs):
        return self.head(self.trunk(obs)).squeeze(-1)


def shared_trunk_modules():
    trunk = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh())
    return {"policy": SharedTrunkPolicy(trunk), "value_fn": SharedTrunkValue(trunk)}


def test_a_users_modules_may_share_a_trunk(tmp_path, caplog):
    model = TRPO("CartPole-v1", **shared_trunk_modules(), n_envs=2, steps_per_iter=64)
    assert "share 2 tensors (trunk.0.weight, trunk.0.bias)" in caplog.text
    assert not model.trainer.overlapped
    model.learn(total_steps=64)
    model.save(tmp_path / "trunk.safetensors")  # safetensors refuses a tensor saved twice
    loaded = TRPO.load(tmp_path / "trunk.safetensors", **shared_trunk_modules())
    assert loaded.value_fn.trunk is loaded.policy.trunk
    torch.testing.assert_close(loaded.policy.trunk[0].weight, model.policy.trunk[0].weight)
    with pytest.raises(ConfigError, match="cannot move the parameters it shares"):
        TRPO("CartPole-v1", **shared_trunk_modules(), overlap="on")


def test_dict_env_with_an_image_and_a_vector_learns_and_reloads(tmp_path):
    model = TRPO(SideEnv, n_envs=4, steps_per_iter=256, eval_every=0, tensorboard=False)
    assert accuracy(lambda o: model.predict(o)[0]) < 0.8
    model.learn(total_steps=256 * 30)
    assert accuracy(lambda o: model.predict(o)[0]) >= 0.95
    model.save(tmp_path / "side.safetensors")
    loaded = Agent.load(tmp_path / "side.safetensors")  # no env built
    assert loaded.observation_space == SideEnv.observation_space
    assert accuracy(loaded.predict) >= 0.95


class DictPolicy(torch.nn.Module):
    """A user's policy that reads the keys by name."""

    def __init__(self):
        super().__init__()
        self.seen: list = []
        self.head = torch.nn.Linear(2, 2)

    def forward(self, obs):
        self.seen.append({k: tuple(v.shape) for k, v in obs.items()})
        return torch.distributions.Categorical(logits=self.head(obs["vector"]))


class DictValue(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(2, 1)

    def forward(self, obs):
        return self.head(obs["vector"]).squeeze(-1)


def test_a_users_policy_receives_a_dict_with_the_spaces_shapes(tmp_path):
    policy = DictPolicy()
    model = TRPO(
        SideEnv,
        policy=policy,
        value_fn=DictValue(),
        n_envs=2,
        steps_per_iter=32,
        eval_every=0,
        tensorboard=False,
    )
    model.learn(total_steps=32)
    assert policy.seen[0] == {"image": (2, 8, 8, 1), "vector": (2, 2)}
    model.save(tmp_path / "user.safetensors")
    loaded = Agent.load(tmp_path / "user.safetensors", policy=DictPolicy(), value_fn=DictValue())
    torch.testing.assert_close(loaded.policy.module.head.weight, policy.head.weight)


def test_minatar_sized_bool_grids_train(tmp_path):
    class GridEnv(gym.Env):
        observation_space = Box(0, 1, (10, 10, 3), bool)
        action_space = Discrete(3)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), float(action == 1), False, False, {}

    model = TRPO(GridEnv, n_envs=2, steps_per_iter=64, eval_every=0, tensorboard=False)
    batch = model.trainer.collector.collect(8)
    assert batch.obs.dtype == np.uint8 and batch.obs.shape == (8, 2, 300)
    model.learn(total_steps=128)
    assert model.agent.policy.features.images["0"].kind == "grid"


def test_multibinary_and_tuple_observations_are_flat_rows():
    encoder = ObservationEncoder(Tuple((MultiBinary(3), Discrete(2))))
    rows = encoder([(np.array([1, 0, 1]), 1), (np.array([0, 0, 0]), 0)])
    np.testing.assert_array_equal(rows, [[1, 0, 1, 0, 1], [0, 0, 0, 1, 0]])
    assert rows.dtype == np.float32 and not encoder.normalized.any()

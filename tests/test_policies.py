"""Tests of trpo.policies: the distributions' KL and entropy against Monte Carlo, shapes,
modes, refused action spaces and the initialisation."""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import kl_divergence
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from trpo.policies import (
    MLPPolicy,
    MLPValue,
    UnsupportedSpaceError,
    action_dims,
    action_kind,
    categorical_draw,
    mean_kl,
    mlp,
    sample_action,
    sampler,
)

OBS_DIM = 3
BATCH = 4
MC_SAMPLES = 200_000
MC_SIGMAS = 5.0  # a true formula fails this with probability ~1e-6 per state

ACTION_SPACES = {
    "discrete": gym.spaces.Discrete(3),
    "box": gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
    "multidiscrete": gym.spaces.MultiDiscrete([3, 2, 4]),
    "multibinary": gym.spaces.MultiBinary(3),
}
# Shape of one sampled action batch of size BATCH.
ACTION_SHAPES = {
    "discrete": (BATCH,),
    "box": (BATCH, 2),
    "multidiscrete": (BATCH, 3),
    "multibinary": (BATCH, 3),
}


def random_policy(space_name: str, seed: int) -> MLPPolicy:
    """An MLPPolicy with all parameters redrawn from N(0, 0.7²).

    The real init (output gain 0.01, log-std 0) makes every distribution nearly uniform /
    standard, where a wrong KL or entropy formula can still come out right; random
    parameters give skewed probabilities and unequal standard deviations.
    """
    torch.manual_seed(seed)
    policy = MLPPolicy(OBS_DIM, ACTION_SPACES[space_name], hidden=(8,)).double()
    n_params = sum(p.numel() for p in policy.parameters())
    vector_to_parameters(0.7 * torch.randn(n_params, dtype=torch.float64), policy.parameters())
    return policy


def perturbed(policy: MLPPolicy, scale: float, seed: int) -> MLPPolicy:
    """A copy of ``policy`` with N(0, scale²) noise added to every parameter."""
    torch.manual_seed(seed)
    other = copy.deepcopy(policy)
    theta = parameters_to_vector(other.parameters())
    vector_to_parameters(theta + scale * torch.randn_like(theta), other.parameters())
    return other


def observations(seed: int = 123) -> torch.Tensor:
    return torch.randn(
        BATCH, OBS_DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )


def assert_within_standard_errors(samples: torch.Tensor, expected: torch.Tensor) -> None:
    """``samples`` [S, B]: the per-state sample mean is within MC_SIGMAS standard errors."""
    estimate = samples.mean(0)
    standard_error = samples.std(0) / math.sqrt(samples.shape[0])
    assert expected.shape == estimate.shape
    assert torch.all((estimate - expected).abs() <= MC_SIGMAS * standard_error + 1e-12), (
        f"analytic {expected.tolist()} vs Monte Carlo {estimate.tolist()} "
        f"± {standard_error.tolist()}"
    )


@pytest.mark.parametrize("space_name", ACTION_SPACES)
@pytest.mark.parametrize("second_policy", ["perturbed", "independent"])
def test_analytic_kl_matches_monte_carlo(space_name, second_policy):
    old_policy = random_policy(space_name, seed=0)
    if second_policy == "perturbed":
        new_policy = perturbed(old_policy, scale=0.3, seed=1)
    else:
        new_policy = random_policy(space_name, seed=2)
    obs = observations()
    torch.manual_seed(3)

    with torch.no_grad():
        old, new = old_policy(obs), new_policy(obs)
        actions = old.sample((MC_SAMPLES,))
        log_ratio = old.log_prob(actions) - new.log_prob(actions)  # [S, B]
        analytic = kl_divergence(old, new)

    assert analytic.min() > 1e-3  # the two policies really differ in every state
    assert_within_standard_errors(log_ratio, analytic)


@pytest.mark.parametrize("space_name", ACTION_SPACES)
def test_analytic_entropy_matches_monte_carlo(space_name):
    policy = random_policy(space_name, seed=4)
    torch.manual_seed(5)

    with torch.no_grad():
        dist = policy(observations())
        surprise = -dist.log_prob(dist.sample((MC_SAMPLES,)))  # [S, B]
        entropy = dist.entropy()

    assert_within_standard_errors(surprise, entropy)


@pytest.mark.parametrize("space_name", ACTION_SPACES)
@pytest.mark.parametrize("direction", ["old_new", "new_old"])
def test_mean_kl_is_exactly_zero_at_theta_k(space_name, direction):
    policy = random_policy(space_name, seed=6)
    obs = observations()
    with torch.no_grad():
        old = policy(obs)

    kl = mean_kl(old, policy(obs), direction)

    assert kl.item() == 0.0
    assert kl.requires_grad  # the new side stays attached to the parameters


@pytest.mark.parametrize("space_name", ACTION_SPACES)
def test_mean_kl_direction_selects_the_argument_order(space_name):
    obs = observations()
    with torch.no_grad():
        old = random_policy(space_name, seed=7)(obs)
        new = random_policy(space_name, seed=8)(obs)

    old_new = mean_kl(old, new, "old_new")
    new_old = mean_kl(old, new, "new_old")

    torch.testing.assert_close(old_new, kl_divergence(old, new).mean())
    torch.testing.assert_close(new_old, kl_divergence(new, old).mean())
    assert not torch.isclose(old_new, new_old)  # KL is asymmetric, so the order shows


def test_mean_kl_rejects_unknown_direction():
    dist = random_policy("discrete", seed=0)(observations())

    with pytest.raises(ValueError, match="'sideways'"):
        mean_kl(dist, dist, "sideways")


@pytest.mark.parametrize("space_name", ACTION_SPACES)
def test_sample_log_prob_and_entropy_shapes(space_name):
    dist = random_policy(space_name, seed=9)(observations())

    actions = dist.sample()

    assert dist.batch_shape == (BATCH,)
    assert actions.shape == ACTION_SHAPES[space_name]
    assert dist.log_prob(actions).shape == (BATCH,)
    assert dist.entropy().shape == (BATCH,)


@pytest.mark.parametrize("space_name", ACTION_SPACES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sample_shortcut_draws_what_the_distribution_draws(space_name, dtype):
    policy = random_policy(space_name, seed=12).to(dtype)
    obs = observations().to(dtype)
    torch.manual_seed(13)
    dist = policy(obs)
    expected_action = dist.sample()
    expected_log_prob = dist.log_prob(expected_action)
    expected_next_draw = torch.rand(1)
    global_state = torch.get_rng_state()
    generator = torch.Generator().manual_seed(13)

    action, log_prob = sample_action(policy, obs, generator)

    assert torch.equal(action, expected_action)
    assert torch.equal(log_prob, expected_log_prob)
    # the same random numbers consumed, from the generator, none from the global stream
    assert torch.equal(torch.rand(1, generator=generator), expected_next_draw)
    assert torch.equal(torch.get_rng_state(), global_state)


@pytest.mark.parametrize("space_name", ACTION_SPACES)
@pytest.mark.parametrize("activation", ["tanh", "relu", "elu", "silu"])
def test_the_rollout_sampler_draws_what_sample_draws(space_name, activation):
    torch.manual_seed(14)
    policy = MLPPolicy(OBS_DIM, ACTION_SPACES[space_name], (8, 8), activation, log_std_init=-0.3)
    reference, drawing = (torch.Generator().manual_seed(15) for _ in range(2))

    for _ in range(3):
        obs = torch.randn(BATCH, OBS_DIM)
        with torch.inference_mode():
            expected = policy.sample(obs, reference)
        action, log_prob = sampler(policy)(obs, drawing)  # one per rollout, as the collector

        assert torch.equal(action, expected[0]) and torch.equal(log_prob, expected[1])
        assert not log_prob.requires_grad
        with torch.no_grad():  # the next rollout's policy, updated in place
            for p in policy.parameters():
                p.add_(0.1 * torch.randn_like(p))
    assert torch.equal(reference.get_state(), drawing.get_state())


@pytest.mark.parametrize("classes", [2, 3, 18])
def test_categorical_draw_is_torch_multinomial(classes):
    # the same draws from the same random numbers: the golden traces depend on it
    probs = torch.randn(4096, classes, generator=torch.Generator().manual_seed(17)).softmax(-1)
    probs[0] = torch.eye(classes)[classes - 1]  # a certain outcome, and zero probabilities
    reference, drawing = (torch.Generator().manual_seed(18) for _ in range(2))

    expected = torch.multinomial(probs, 1, True, generator=reference)

    assert torch.equal(categorical_draw(probs, drawing), expected)
    assert torch.equal(reference.get_state(), drawing.get_state())
    assert len(expected.unique()) == classes


def test_the_rollout_sampler_of_a_policy_of_your_own_draws_from_its_distribution():
    class Own(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.logits = torch.nn.Linear(OBS_DIM, 3)

        def forward(self, obs):
            return torch.distributions.Categorical(logits=self.logits(obs))

    policy, obs = Own(), torch.randn(BATCH, OBS_DIM)
    expected = sample_action(policy, obs, torch.Generator().manual_seed(16))

    action, log_prob = sampler(policy)(obs, torch.Generator().manual_seed(16))

    assert torch.equal(action, expected[0]) and torch.equal(log_prob, expected[1])
    assert not log_prob.requires_grad


@pytest.mark.parametrize("space_name", ["discrete", "multidiscrete", "multibinary"])
def test_sampled_actions_lie_in_the_action_space(space_name):
    space = ACTION_SPACES[space_name]
    dist = random_policy(space_name, seed=10)(observations())
    torch.manual_seed(11)

    actions = dist.sample((50,)).reshape(-1, *ACTION_SHAPES[space_name][1:]).long().numpy()

    assert all(space.contains(a.astype(space.dtype)) for a in actions)


def test_mode_of_discrete_policy_is_argmax_of_logits():
    policy = random_policy("discrete", seed=12)
    obs = observations()

    mode = policy(obs).mode

    torch.testing.assert_close(mode, policy.net(obs).argmax(-1))


def test_mode_of_box_policy_is_mean():
    policy = random_policy("box", seed=13)
    obs = observations()

    mode = policy(obs).mode

    torch.testing.assert_close(mode, policy.net(obs))


def test_mode_of_multidiscrete_policy_is_argmax_per_component():
    policy = random_policy("multidiscrete", seed=14)
    obs = observations()

    mode = policy(obs).mode

    logits = policy.net(obs)
    expected = torch.stack([chunk.argmax(-1) for chunk in logits.split([3, 2, 4], dim=-1)], -1)
    torch.testing.assert_close(mode, expected)


def test_mode_of_multibinary_policy_thresholds_logits_at_zero():
    policy = random_policy("multibinary", seed=15)
    obs = observations()

    mode = policy(obs).mode

    torch.testing.assert_close(mode, (policy.net(obs) > 0).to(mode.dtype))


def test_mode_of_multibinary_policy_is_defined_at_zero_logits():
    # Fresh init has zero biases, so obs = 0 gives logits exactly 0.
    policy = MLPPolicy(OBS_DIM, ACTION_SPACES["multibinary"])

    mode = policy(torch.zeros(2, OBS_DIM)).mode

    assert not torch.isnan(mode).any()


# ---------------------------------------------------------------------------------------
# action_kind
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("space_name", ACTION_SPACES)
def test_action_kind_of_supported_spaces(space_name):
    # ACTION_SPACES is keyed by the kind each space should map to.
    assert action_kind(ACTION_SPACES[space_name]) == space_name


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Dict({"move": gym.spaces.Discrete(2)}),
        gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3))),
    ],
    ids=["dict", "tuple"],
)
def test_action_kind_refuses_composite_spaces_naming_them(space):
    with pytest.raises(UnsupportedSpaceError) as error:
        action_kind(space)

    assert str(space) in str(error.value)
    with pytest.raises(UnsupportedSpaceError):
        MLPPolicy(OBS_DIM, space)


def test_action_kind_refuses_integer_box_naming_it():
    space = gym.spaces.Box(0, 10, shape=(2,), dtype=np.int64)

    with pytest.raises(UnsupportedSpaceError) as error:
        action_kind(space)

    assert "Box" in str(error.value)
    assert "int64" in str(error.value)


def test_unsupported_space_error_is_a_value_error():
    assert issubclass(UnsupportedSpaceError, ValueError)


@pytest.mark.parametrize(
    "space, dims",
    [
        (gym.spaces.Box(-1.0, 1.0, (6,)), 6),
        (gym.spaces.Box(-1.0, 1.0, (2, 3)), 6),
        (gym.spaces.MultiBinary(5), 5),
        (gym.spaces.MultiBinary([2, 3]), 6),
        (gym.spaces.Discrete(4), 1),
        (gym.spaces.MultiDiscrete([3, 4, 5]), 1),
    ],
    ids=["box", "box-2d", "multibinary", "multibinary-2d", "discrete", "multidiscrete"],
)
def test_action_dims_counts_the_coordinates_sb3_averages_the_kl_over(space, dims):
    # Gaussian and Bernoulli coordinates are averaged by sb3-contrib; categoricals are one
    # KL each and MultiDiscrete's are summed, so per_dim leaves them joint.
    assert action_dims(space) == dims


# ---------------------------------------------------------------------------------------
# initialisation
# ---------------------------------------------------------------------------------------


def test_mlp_uses_orthogonal_init_with_given_gains_and_zero_biases():
    torch.manual_seed(0)
    net = mlp([5, 16, 16, 3], "tanh", output_gain=0.01)

    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert [type(m).__name__ for m in net] == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    # Hidden weights [out, in] with out >= in: orthogonal columns scaled by √2 (WᵀW = 2I).
    for linear in linears[:2]:
        w = linear.weight.detach()
        torch.testing.assert_close(w.T @ w, 2.0 * torch.eye(w.shape[1]), atol=1e-5, rtol=0)
    # Output weights [3, 16]: orthogonal rows scaled by the output gain (WWᵀ = 0.01² I).
    w = linears[-1].weight.detach()
    torch.testing.assert_close(w @ w.T, 1e-4 * torch.eye(3), atol=1e-8, rtol=0)
    for linear in linears:
        assert torch.equal(linear.bias, torch.zeros_like(linear.bias))


@pytest.mark.parametrize("space_name", ACTION_SPACES)
def test_policy_output_layer_starts_small(space_name):
    # Gain 0.01 keeps the initial policy close to uniform / zero-mean, so early updates are
    # driven by the data rather than by a random initial preference.
    torch.manual_seed(0)
    policy = MLPPolicy(OBS_DIM, ACTION_SPACES[space_name])

    output = policy.net[-1]
    row_norms = output.weight.detach().norm(dim=1)
    torch.testing.assert_close(row_norms, torch.full_like(row_norms, 0.01))
    hidden = policy.net[0].weight.detach()
    assert hidden.norm(dim=1).max() > 0.1  # hidden layers are not scaled down


def test_box_policy_log_std_starts_at_log_std_init():
    policy = MLPPolicy(OBS_DIM, ACTION_SPACES["box"], log_std_init=-0.5)

    assert torch.equal(policy.log_std.detach(), torch.full((2,), -0.5))
    std = policy(torch.zeros(1, OBS_DIM)).base_dist.scale
    torch.testing.assert_close(std, torch.full((1, 2), math.exp(-0.5)))


def test_value_function_returns_one_value_per_state():
    value_fn = MLPValue(OBS_DIM, hidden=(8,))

    assert value_fn(torch.zeros(BATCH, OBS_DIM)).shape == (BATCH,)

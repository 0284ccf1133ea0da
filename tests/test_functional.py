"""Tests of trpo.functional against ground truth: numpy solves, explicit Hessians,
hand-unrolled GAE recursions and the line-search contract."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from trpo.functional import (
    backtracking_line_search,
    conjugate_gradient,
    explained_variance,
    fisher_vector_product,
    gae,
    gauss_newton_fisher_vector_product,
    normalize,
)
from trpo.policies import MLPPolicy, mean_kl

# ---------------------------------------------------------------------------------------
# conjugate_gradient
# ---------------------------------------------------------------------------------------


def random_spd(n: int, rng: np.random.Generator) -> np.ndarray:
    """A = Q diag(eigs) Qᵀ with eigenvalues in [1, 100]: SPD with condition number ≤ 100."""
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eigs = rng.uniform(1.0, 100.0, size=n)
    return (q * eigs) @ q.T


@settings(max_examples=30, deadline=None, derandomize=True)
@given(n=st.integers(min_value=2, max_value=30), seed=st.integers(0, 2**32 - 1))
def test_conjugate_gradient_matches_numpy_solve(n, seed):
    rng = np.random.default_rng(seed)
    a_np = random_spd(n, rng)
    b_np = rng.standard_normal(n)
    a = torch.from_numpy(a_np)

    # In exact arithmetic CG solves an n×n SPD system in n steps.
    result = conjugate_gradient(lambda v: a @ v, torch.from_numpy(b_np), n, residual_tol=1e-24)

    expected = np.linalg.solve(a_np, b_np)
    np.testing.assert_allclose(result.x.numpy(), expected, rtol=1e-7, atol=1e-9)
    assert result.iterations <= n


def test_conjugate_gradient_starts_from_zero():
    # From x₀ = 0 the first residual and direction are b, so one step is the exact line
    # minimiser along b: x₁ = (bᵀb / bᵀAb) b. A random start would give something else.
    rng = np.random.default_rng(0)
    a = torch.from_numpy(random_spd(5, rng))
    b = torch.from_numpy(rng.standard_normal(5))

    result = conjugate_gradient(lambda v: a @ v, b, max_iters=1)

    expected = (b @ b) / (b @ a @ b) * b
    torch.testing.assert_close(result.x, expected, rtol=1e-12, atol=1e-12)
    assert result.iterations == 1


def test_conjugate_gradient_returns_zero_without_products_when_b_is_zero():
    calls = []

    def matvec(v):
        calls.append(v)
        return v

    result = conjugate_gradient(matvec, torch.zeros(4, dtype=torch.float64), max_iters=10)

    assert result.iterations == 0
    assert calls == []
    assert torch.equal(result.x, torch.zeros(4, dtype=torch.float64))


def test_conjugate_gradient_stops_once_residual_is_below_tolerance():
    # H = 3I is solved exactly by the first step; the remaining 9 iterations must be skipped.
    b = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)

    result = conjugate_gradient(lambda v: 3.0 * v, b, max_iters=10, residual_tol=1e-10)

    assert result.iterations == 1
    torch.testing.assert_close(result.x, b / 3.0)


# ---------------------------------------------------------------------------------------
# fisher_vector_product
# ---------------------------------------------------------------------------------------

ACTION_SPACES = {
    "discrete": gym.spaces.Discrete(3),
    "box": gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
    "multidiscrete": gym.spaces.MultiDiscrete([3, 2]),
    "multibinary": gym.spaces.MultiBinary(2),
}


def tiny_policy(space: gym.Space, seed: int = 0) -> MLPPolicy:
    """A float64 MLPPolicy with few enough parameters for an explicit Hessian.

    All parameters are redrawn from N(0, 0.5²): the 0.01 output gain of the real init makes
    every distribution nearly uniform, which would shrink the Fisher of the hidden layers to
    ~1e-4 and let a wrong product slip under the tolerance.
    """
    torch.manual_seed(seed)
    policy = MLPPolicy(obs_dim=3, action_space=space, hidden=(4,)).double()
    n_params = sum(p.numel() for p in policy.parameters())
    vector_to_parameters(0.5 * torch.randn(n_params, dtype=torch.float64), policy.parameters())
    return policy


def kl_hessian(policy: MLPPolicy, obs: torch.Tensor, direction: str) -> torch.Tensor:
    """Explicit Hessian of the mean KL between the detached policy at θk and policy(θ),
    over the flat parameter vector, at θ = θk."""
    with torch.no_grad():
        old = policy(obs)
    names = [name for name, _ in policy.named_parameters()]
    shapes = [p.shape for p in policy.parameters()]
    sizes = [p.numel() for p in policy.parameters()]

    def kl_at(theta: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(theta, sizes)
        params = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
        return mean_kl(old, functional_call(policy, params, (obs,)), direction)

    theta_k = parameters_to_vector(policy.parameters()).detach()
    return torch.autograd.functional.hessian(kl_at, theta_k)


def double_backprop_product(policy: MLPPolicy, obs: torch.Tensor, damping: float):
    with torch.no_grad():
        old = policy(obs)
    return fisher_vector_product(
        mean_kl(old, policy(obs), "old_new"), list(policy.parameters()), damping
    )


def gauss_newton_product(policy: MLPPolicy, obs: torch.Tensor, damping: float):
    z = policy.distribution_parameters(obs)
    old = policy.distribution(*(part.detach() for part in z))
    return gauss_newton_fisher_vector_product(
        z,
        lambda z_new: mean_kl(old, policy.distribution(*z_new), "old_new"),
        list(policy.parameters()),
        damping,
    )


@pytest.mark.parametrize("space_name", ACTION_SPACES)
@pytest.mark.parametrize("make_product", [double_backprop_product, gauss_newton_product])
def test_fisher_vector_product_matches_explicit_kl_hessian(space_name, make_product):
    policy = tiny_policy(ACTION_SPACES[space_name])
    obs = torch.randn(6, 3, dtype=torch.float64)
    damping = 0.1

    fvp = make_product(policy, obs, damping)

    fisher = kl_hessian(policy, obs, "old_new")
    # Guard against a vacuous comparison: the Fisher is a non-trivial PSD matrix.
    assert torch.linalg.eigvalsh(fisher).min() > -1e-10
    assert torch.linalg.matrix_norm(fisher) > 1e-2
    damped = fisher + damping * torch.eye(len(fisher), dtype=torch.float64)
    # Several products from one fvp: its graph must survive repeated use.
    for v in torch.randn(3, len(fisher), dtype=torch.float64):
        torch.testing.assert_close(fvp(v), damped @ v, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("space_name", ACTION_SPACES)
def test_both_kl_directions_have_the_same_fisher_at_theta_k(space_name):
    policy = tiny_policy(ACTION_SPACES[space_name], seed=1)
    obs = torch.randn(6, 3, dtype=torch.float64)

    old_new = kl_hessian(policy, obs, "old_new")
    new_old = kl_hessian(policy, obs, "new_old")

    assert torch.linalg.matrix_norm(old_new) > 1e-2
    torch.testing.assert_close(new_old, old_new, rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------------------------------
# gae
# ---------------------------------------------------------------------------------------

GAMMA, LAM = 0.9, 0.8  # γλ = 0.72

# Two parallel envs, T = 5; each list is one env's trajectory (column of the [T, N] block).
# Env 0 terminates at t=1 (its final observation has value 10, which must be ignored),
# is truncated by a time limit at t=3 (final observation value 5, which must be used; the
# reset observation at t=4 has value 1.5) and runs into the batch boundary at t=4.
# Env 1 runs through the whole block and bootstraps from V = -1 at the boundary.
REWARDS = [[1.0, 2.0, 0.5, -1.0, 3.0], [0.0, 1.0, 1.0, 2.0, -0.5]]
VALUES = [[0.5, 1.0, 0.2, 0.4, 1.5], [1.0, 0.0, 0.5, -0.5, 2.0]]
NEXT_VALUES = [[1.0, 10.0, 0.4, 5.0, 2.0], [0.0, 0.5, -0.5, 2.0, -1.0]]
TERMINATED = [[0, 1, 0, 0, 0], [0, 0, 0, 0, 0]]
TRUNCATED = [[0, 0, 0, 1, 0], [0, 0, 0, 0, 0]]

# δ_t = r_t + γ (1 − term_t) V(s_{t+1}) − V(s_t);  A_t = δ_t + γλ (1 − done_t) A_{t+1}
#
# env 0 | δ_t                          | A_t
# t=4   | 3   + 0.9·2.0  − 1.5 = 3.3   | 3.3                  (batch boundary)
# t=3   | −1  + 0.9·5.0  − 0.4 = 3.1   | 3.1                  (truncated: bootstrap, stop)
# t=2   | 0.5 + 0.9·0.4  − 0.2 = 0.66  | 0.66 + 0.72·3.1 = 2.892
# t=1   | 2   + 0        − 1.0 = 1.0   | 1.0                  (terminated: no bootstrap, stop)
# t=0   | 1   + 0.9·1.0  − 0.5 = 1.4   | 1.4 + 0.72·1.0 = 2.12
#
# env 1 | δ_t                            | A_t
# t=4   | −0.5 + 0.9·(−1.0) − 2.0 = −3.4 | −3.4                (batch boundary)
# t=3   | 2    + 0.9·2.0 + 0.5    = 4.3  | 4.3  + 0.72·(−3.4)      = 1.852
# t=2   | 1    + 0.9·(−0.5) − 0.5 = 0.05 | 0.05 + 0.72·1.852       = 1.38344
# t=1   | 1    + 0.9·0.5  − 0.0   = 1.45 | 1.45 + 0.72·1.38344     = 2.4460768
# t=0   | 0    + 0.9·0.0  − 1.0   = −1.0 | −1.0 + 0.72·2.4460768   = 0.761175296
EXPECTED_ADVANTAGES = [
    [2.12, 1.0, 2.892, 3.1, 3.3],
    [0.761175296, 2.4460768, 1.38344, 1.852, -3.4],
]


def as_block(rows) -> np.ndarray:
    """Per-env lists -> a [T, N] float64 array."""
    return np.array(rows, dtype=np.float64).T


def gae_inputs(**changes) -> dict[str, np.ndarray]:
    inputs = {
        "rewards": as_block(REWARDS),
        "values": as_block(VALUES),
        "next_values": as_block(NEXT_VALUES),
        "terminated": as_block(TERMINATED).astype(bool),
        "truncated": as_block(TRUNCATED).astype(bool),
    }
    inputs.update(changes)
    return inputs


def test_gae_matches_hand_worked_table():
    advantages = gae(**gae_inputs(), gamma=GAMMA, lam=LAM)

    assert advantages.shape == (5, 2)
    np.testing.assert_allclose(advantages, as_block(EXPECTED_ADVANTAGES), rtol=0, atol=1e-12)


def test_gae_accepts_float_done_flags():
    inputs = gae_inputs(
        terminated=as_block(TERMINATED), truncated=as_block(TRUNCATED)
    )  # 0./1. instead of bool

    advantages = gae(**inputs, gamma=GAMMA, lam=LAM)

    np.testing.assert_allclose(advantages, as_block(EXPECTED_ADVANTAGES), rtol=0, atol=1e-12)


def test_gae_does_not_bootstrap_after_termination():
    # The value of env 0's terminal observation (t=1) must not matter.
    next_values = as_block(NEXT_VALUES)
    next_values[1, 0] = -1000.0

    advantages = gae(**gae_inputs(next_values=next_values), gamma=GAMMA, lam=LAM)

    np.testing.assert_allclose(advantages, as_block(EXPECTED_ADVANTAGES), rtol=0, atol=1e-12)


def test_gae_bootstraps_from_final_observation_at_truncation():
    # Raising V(final obs) of env 0's truncated step (t=3) by 1 raises δ_3 by γ: A_3 by γ,
    # A_2 by γλ·γ, and nothing before the termination at t=1.
    next_values = as_block(NEXT_VALUES)
    next_values[3, 0] += 1.0

    change = gae(**gae_inputs(next_values=next_values), gamma=GAMMA, lam=LAM) - as_block(
        EXPECTED_ADVANTAGES
    )

    expected_change = np.zeros((5, 2))
    expected_change[3, 0] = GAMMA
    expected_change[2, 0] = GAMMA * LAM * GAMMA
    np.testing.assert_allclose(change, expected_change, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "done_step, later_step", [(1, 2), (3, 4)], ids=["termination", "truncation"]
)
def test_gae_recursion_stops_at_episode_end(done_step, later_step):
    # A reward after the end of an episode must not leak into the episode's advantages.
    rewards = as_block(REWARDS)
    rewards[later_step, 0] += 100.0

    advantages = gae(**gae_inputs(rewards=rewards), gamma=GAMMA, lam=LAM)

    expected = as_block(EXPECTED_ADVANTAGES)
    np.testing.assert_allclose(advantages[: done_step + 1], expected[: done_step + 1], atol=1e-12)
    assert advantages[later_step, 0] == pytest.approx(expected[later_step, 0] + 100.0)


def test_gae_bootstraps_from_next_values_at_batch_boundary():
    # Raising the boundary bootstrap of env 1 by 1 raises A_t by γ (γλ)^(4−t) all the way
    # back, since env 1 has no episode end in the block.
    next_values = as_block(NEXT_VALUES)
    next_values[4, 1] += 1.0

    change = gae(**gae_inputs(next_values=next_values), gamma=GAMMA, lam=LAM) - as_block(
        EXPECTED_ADVANTAGES
    )

    expected_env1 = np.array([GAMMA * (GAMMA * LAM) ** (4 - t) for t in range(5)])
    np.testing.assert_allclose(change[:, 1], expected_env1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(change[:, 0], np.zeros(5), rtol=0, atol=1e-12)


@pytest.mark.parametrize("bad_input", ["values", "next_values", "terminated", "truncated"])
def test_gae_rejects_mismatched_shapes(bad_input):
    inputs = gae_inputs()
    inputs[bad_input] = inputs[bad_input][:4]  # [4, 2] against [5, 2]

    with pytest.raises(ValueError, match=bad_input):
        gae(**inputs, gamma=GAMMA, lam=LAM)


# ---------------------------------------------------------------------------------------
# backtracking_line_search
# ---------------------------------------------------------------------------------------

THETA_OLD = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
FULL_STEP = torch.tensor([0.3, 0.4, 0.0], dtype=torch.float64)  # ‖step‖² = 0.25


class QuadraticModel:
    """evaluate(θ) = (g·d − q‖d‖², c‖d‖²) with d = θ − θk; records every candidate."""

    def __init__(self, g, q: float = 0.0, c: float = 1.0):
        self.g = torch.as_tensor(g, dtype=torch.float64)
        self.q, self.c = q, c
        self.candidates: list[torch.Tensor] = []

    def __call__(self, theta: torch.Tensor) -> tuple[float, float]:
        self.candidates.append(theta.clone())
        d = theta - THETA_OLD
        return float(self.g @ d - self.q * d @ d), float(self.c * d @ d)


def test_line_search_accepts_full_step_when_it_qualifies():
    model = QuadraticModel(g=[1.0, 1.0, 0.0])  # improvement 0.7·α, KL 0.25·α²

    result = backtracking_line_search(model, THETA_OLD, FULL_STEP, max_kl=0.25)

    assert result.accepted
    assert result.backtracks == 0
    assert result.step_fraction == 1.0
    assert result.kl == pytest.approx(0.25)  # KL == max_kl still qualifies
    assert result.improvement == pytest.approx(0.7)
    assert len(model.candidates) == 1


def test_line_search_picks_the_first_qualifying_fraction():
    # KL(α) = 0.25 α²; with max_kl = 0.25·0.8⁶ exactly the fractions 0.8^j for j >= 3 fit.
    model = QuadraticModel(g=[1.0, 1.0, 0.0])
    max_kl = 0.25 * 0.8**6 * (1 + 1e-9)

    result = backtracking_line_search(
        model, THETA_OLD, FULL_STEP, max_kl=max_kl, backtrack_coef=0.8, max_backtracks=10
    )

    assert result.accepted
    assert result.backtracks == 3
    assert result.step_fraction == pytest.approx(0.8**3)
    # Candidates were tried largest first and the search stopped at the first fit.
    tried = [(c - THETA_OLD).norm().item() / FULL_STEP.norm().item() for c in model.candidates]
    assert tried == pytest.approx([1.0, 0.8, 0.8**2, 0.8**3])


def test_line_search_keeps_theta_old_when_nothing_qualifies():
    model = QuadraticModel(g=[-1.0, -1.0, 0.0])  # every candidate makes the surrogate worse

    result = backtracking_line_search(model, THETA_OLD, FULL_STEP, max_kl=1.0, max_backtracks=7)

    assert not result.accepted
    assert result.step_fraction == 0.0 and not result.accepted
    assert result.backtracks == 7
    assert (result.step_fraction, result.kl, result.improvement) == (0.0, 0.0, 0.0)
    assert len(model.candidates) == 7


def test_line_search_requires_strict_improvement():
    result = backtracking_line_search(
        lambda theta: (0.0, 0.0), THETA_OLD, FULL_STEP, max_kl=1.0, max_backtracks=5
    )

    assert not result.accepted


def test_line_search_treats_non_finite_values_as_not_qualifying():
    outcomes = iter(
        [
            (1.0, math.nan),  # j=0: NaN KL
            (math.nan, 0.001),  # j=1: NaN improvement
            (1.0, math.inf),  # j=2: infinite KL
            (math.inf, 0.001),  # j=3: infinite improvement
            (-math.inf, 0.001),  # j=4: surrogate -inf
            (0.5, 0.001),  # j=5: the first finite, qualifying candidate
        ]
    )

    result = backtracking_line_search(
        lambda theta: next(outcomes), THETA_OLD, FULL_STEP, max_kl=0.01
    )

    assert result.accepted
    assert result.backtracks == 5
    assert (result.improvement, result.kl) == (0.5, 0.001)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    g=st.lists(st.floats(-5, 5), min_size=3, max_size=3),
    curvature=st.floats(0.0, 10.0),
    kl_scale=st.floats(0.01, 100.0),
    max_kl=st.floats(1e-4, 1.0),
    backtrack_coef=st.floats(0.1, 0.95),
    max_backtracks=st.integers(1, 15),
)
def test_line_search_never_accepts_a_violating_step(
    g, curvature, kl_scale, max_kl, backtrack_coef, max_backtracks
):
    model = QuadraticModel(g=g, q=curvature, c=kl_scale)

    result = backtracking_line_search(
        model, THETA_OLD, FULL_STEP, max_kl, backtrack_coef, max_backtracks
    )

    # Recompute every candidate's outcome independently of the search.
    def qualifies(j: int) -> bool:
        improvement, kl = QuadraticModel(g, curvature, kl_scale)(
            THETA_OLD + backtrack_coef**j * FULL_STEP
        )
        return kl <= max_kl and improvement > 0

    first = next((j for j in range(max_backtracks) if qualifies(j)), None)
    if first is None:
        assert not result.accepted
        assert result.step_fraction == 0.0 and not result.accepted
    else:
        assert result.accepted
        assert result.backtracks == first
        assert result.kl <= max_kl
        assert result.improvement > 0
        torch.testing.assert_close(result.step_fraction, backtrack_coef**first)


# ---------------------------------------------------------------------------------------
# explained_variance, normalize
# ---------------------------------------------------------------------------------------

TARGET = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)


@pytest.mark.parametrize(
    "predicted, expected",
    [
        (TARGET, 1.0),  # perfect
        (torch.full((4,), 2.5, dtype=torch.float64), 0.0),  # the mean: no better than it
        (-TARGET, -3.0),  # Var[2·target] / Var[target] = 4
        # Residual [0, 0, 0, −1]: sample variance 0.25 against 5/3 -> 1 − 0.15.
        (torch.tensor([1.0, 2.0, 3.0, 5.0], dtype=torch.float64), 0.85),
    ],
    ids=["perfect", "mean", "negated", "one-off"],
)
def test_explained_variance(predicted, expected):
    assert explained_variance(predicted, TARGET) == pytest.approx(expected, abs=1e-12)


def test_explained_variance_is_nan_for_constant_target():
    target = torch.full((4,), 3.0)

    assert math.isnan(explained_variance(torch.zeros(4), target))


def test_normalize_standardises_with_population_std():
    # mean 2, population std √(2/3)
    normalized = normalize(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))

    expected = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64) * math.sqrt(1.5)
    torch.testing.assert_close(normalized, expected, rtol=1e-7, atol=1e-7)


def test_normalize_maps_constant_input_to_zero():
    assert torch.equal(normalize(torch.tensor([5.0])), torch.tensor([0.0]))
    assert torch.equal(normalize(torch.full((3,), -2.0)), torch.zeros(3))

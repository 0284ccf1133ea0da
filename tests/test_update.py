"""The policy step on real batches: the trust region holds, the full step is taken when the
quadratic model is good, NPG shares TRPO's direction, VPG is a plain gradient step."""

import copy

import numpy as np
import pytest
import torch
from gymnasium.spaces import Box, Dict, Discrete
from torch.distributions import kl_divergence
from torch.nn.utils import parameters_to_vector

from trpo import TRPO, update
from trpo.agent import Agent
from trpo.config import Config
from trpo.encoders import ObservationEncoder
from trpo.functional import flat_grad, normalize
from trpo.policies import action_dims
from trpo.update import policy_step

ENVS = ["CartPole-v1", "Pendulum-v1"]


def real_batch(env_id: str, seed: int = 0, **settings):
    """A fresh agent and the flat tensors of one collected batch."""
    agent = TRPO(env_id, seed=seed, n_envs=4, steps_per_iter=2048, **settings)
    batch = agent.trainer.collector.collect(512)
    obs, advantages, _, _ = agent.trainer._advantages(batch)
    actions = torch.from_numpy(batch.actions.reshape(2048, *batch.actions.shape[2:]))
    old_log_probs = torch.from_numpy(batch.log_probs.reshape(-1))
    return agent, obs, actions, normalize(advantages), old_log_probs


def step(agent, obs, actions, advantages, old_log_probs):
    """`policy_step` on the agent's policy as the trainer calls it."""
    dims = action_dims(agent.action_space)
    return policy_step(agent.policy, obs, actions, advantages, old_log_probs, agent.config, dims)


@pytest.mark.parametrize("env_id", ENVS)
@pytest.mark.parametrize("direction", ["old_new", "new_old"])
def test_accepted_step_stays_within_the_kl_bound(env_id, direction):
    agent, obs, actions, adv, old_lp = real_batch(env_id, kl_direction=direction)
    old_policy = copy.deepcopy(agent.policy)
    stats = step(agent, obs, actions, adv, old_lp)

    assert stats.accepted
    with torch.no_grad():
        old, new = old_policy(obs), agent.policy(obs)
        measured = kl_divergence(old, new) if direction == "old_new" else kl_divergence(new, old)
    assert float(measured.mean()) == pytest.approx(stats.kl, rel=1e-5)
    assert float(measured.mean()) <= agent.config.max_kl * (1 + 1e-6)
    assert stats.surrogate_improvement > 0


@pytest.mark.parametrize("env_id", ENVS)
def test_well_conditioned_batch_takes_the_full_step(env_id):
    # At a fresh policy the quadratic model of the KL is accurate, so the full step
    # sqrt(2δ / xᵀHx)·x lands close to the bound: no backtracking, KL in [δ/2, δ].
    agent, obs, actions, adv, old_lp = real_batch(env_id)
    stats = step(agent, obs, actions, adv, old_lp)
    delta = agent.config.max_kl
    assert stats.accepted and stats.backtracks == 0
    assert 0.5 * delta <= stats.kl <= delta


def test_rejected_line_search_restores_theta_k(monkeypatch):
    # Candidates are evaluated by writing them into the policy; when every one fails
    # (here: reported as lowering the surrogate) the policy must be back at θk.
    real_search = update.backtracking_line_search

    def never_improving(evaluate, *args, **kwargs):
        return real_search(lambda theta: (-1.0, evaluate(theta)[1]), *args, **kwargs)

    monkeypatch.setattr(update, "backtracking_line_search", never_improving)
    agent, obs, actions, adv, old_lp = real_batch("CartPole-v1")
    theta = parameters_to_vector(agent.policy.parameters()).clone()
    stats = step(agent, obs, actions, adv, old_lp)
    assert not stats.accepted
    assert stats.backtracks == agent.config.backtrack_iters
    assert stats.kl == 0.0 and stats.expected_improvement == 0.0
    assert torch.equal(parameters_to_vector(agent.policy.parameters()), theta)


def test_npg_and_trpo_share_the_direction():
    steps = {}
    for algo in ("trpo", "npg"):
        agent, obs, actions, adv, old_lp = real_batch("Pendulum-v1", algo=algo)
        before = parameters_to_vector(agent.policy.parameters()).clone()
        stats = step(agent, obs, actions, adv, old_lp)
        steps[algo] = (parameters_to_vector(agent.policy.parameters()) - before, stats)
    trpo_step, trpo_stats = steps["trpo"]
    npg_step, _ = steps["npg"]
    # Same batch, same CG direction: TRPO's step is NPG's scaled by α^j.
    fraction = 0.8**trpo_stats.backtracks
    torch.testing.assert_close(trpo_step, fraction * npg_step, rtol=1e-4, atol=1e-7)


def test_kl_penalty_takes_the_cg_direction_divided_by_c():
    steps = {}
    for algo, coef in (("npg", 1.0), ("kl_penalty", 1.0), ("kl_penalty", 0.5)):
        agent, obs, actions, adv, old_lp = real_batch(
            "Pendulum-v1", algo=algo, kl_penalty_coef=coef
        )
        before = parameters_to_vector(agent.policy.parameters()).clone()
        step(agent, obs, actions, adv, old_lp)
        steps[algo, coef] = parameters_to_vector(agent.policy.parameters()) - before
    npg, penalty = steps["npg", 1.0], steps["kl_penalty", 1.0]
    scale = torch.dot(penalty, npg) / torch.dot(npg, npg)
    assert scale > 0
    torch.testing.assert_close(penalty, scale * npg, rtol=1e-4, atol=1e-7)  # same direction
    torch.testing.assert_close(steps["kl_penalty", 0.5], 2 * penalty)  # length 1/C


def test_fvp_subsample_keeps_the_trust_region():
    # A Fisher from a quarter of the states gives another direction, but the line search
    # still checks the exact KL on the whole batch.
    full_agent, obs, actions, adv, old_lp = real_batch("Pendulum-v1")
    agent, *_ = real_batch("Pendulum-v1", fvp_subsample=0.25)
    full = step(full_agent, obs, actions, adv, old_lp)
    sub = step(agent, obs, actions, adv, old_lp)
    assert sub.accepted and sub.kl <= agent.config.max_kl
    assert sub.cg_residual != full.cg_residual


class OpaquePolicy(torch.nn.Module):
    """A policy that only returns distributions, as a user's own module may."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, obs):
        return self.inner(obs)


@pytest.mark.parametrize("env_id", ENVS)
def test_fisher_product_through_distribution_parameters_equals_double_backprop(env_id):
    agent, obs, *_ = real_batch(env_id)
    mlp = agent.policy
    opaque = OpaquePolicy(mlp)
    v = torch.randn(sum(p.numel() for p in mlp.parameters()))

    through_z = update.fisher_product(mlp, obs, list(mlp.parameters()), 0.1)(v)
    double_backprop = update.fisher_product(opaque, obs, list(opaque.parameters()), 0.1)(v)

    torch.testing.assert_close(through_z, double_backprop, rtol=1e-4, atol=1e-6)


IMAGE_SPACES = {
    "grid": Box(0, 1, (6, 6, 3), bool),
    "strided": Box(0, 255, (2, 36, 36), np.uint8),
    "two images": Dict({"a": Box(0, 1, (5, 5, 2), bool), "b": Box(0, 255, (2, 36, 36), np.uint8)}),
}


@pytest.mark.parametrize("name", IMAGE_SPACES)
def test_image_fisher_product_takes_the_first_convolution_forward(name):
    # The convolution that reads the observation (one per image) enters J v by its forward
    # tangent; the product is the one the backward-only graph and double backprop give.
    space = IMAGE_SPACES[name]
    config = Config(
        env_id="x", policy_hidden=(8,), image_encoder="small" if name == "strided" else "auto"
    )
    policy = Agent(space, Discrete(4), config).policy
    width = ObservationEncoder(space).dim
    generator = torch.Generator().manual_seed(0)
    obs = torch.randint(0, 2, (64, width), generator=generator, dtype=torch.uint8) * 200
    params = list(policy.parameters())
    v = torch.randn(sum(p.numel() for p in params), generator=generator)

    traced = update.traced_distribution_parameters(policy, obs, params)
    convolutions = [m for m in policy.modules() if isinstance(m, torch.nn.Conv2d)]
    firsts = {id(layer.params[0]) for layer in traced.forward_layers}
    assert firsts == {id(conv.weight) for conv in convolutions if conv.in_channels in (2, 3)}
    assert len(firsts) == len(space.spaces) if isinstance(space, Dict) else len(firsts) == 1

    forward = update.fisher_product(policy, obs, params, 0.1, traced=traced)(v)
    all_backward = update.TracedForward(traced.z, forward_layers=[])
    backward = update.fisher_product(policy, obs, params, 0.1, traced=all_backward)(v)
    double_backprop = update.fisher_product(OpaquePolicy(policy), obs, params, 0.1)(v)
    torch.testing.assert_close(forward, backward, rtol=1e-5, atol=1e-7)
    # float32 images: double backprop's extra terms (zero at θk) round differently
    torch.testing.assert_close(forward, double_backprop, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "conv",
    [
        dict(in_channels=4, out_channels=16, kernel_size=3),  # MinAtar's
        dict(in_channels=2, out_channels=8, kernel_size=4, stride=2, padding=1),
        dict(in_channels=3, out_channels=5, kernel_size=(2, 3), dilation=2, bias=False),
    ],
)
@pytest.mark.parametrize("patches_limit", [update.PATCHES_LIMIT_BYTES, 0])
def test_a_convolution_on_the_observation_is_linear_in_its_parameters(
    conv, patches_limit, monkeypatch
):
    # Its tangent is J v and its transpose Jᵀ u, with its patches or PyTorch's backward.
    monkeypatch.setattr(update, "PATCHES_LIMIT_BYTES", patches_limit)
    layer = torch.nn.Conv2d(**conv)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(6, layer.in_channels, 11, 9, generator=generator)
    output = layer(x)
    linear = update.ConvOnObservation(layer, x, output)
    assert (linear.patches is None) == (patches_limit == 0)
    params = tuple(layer.parameters())
    v = [torch.randn(p.shape, generator=generator) for p in params]
    u = torch.randn(output.shape, generator=generator)
    _, jv = torch.func.jvp(
        lambda *p: torch.func.functional_call(layer, dict(zip(["weight", "bias"], p)), x),
        params,
        tuple(v),
    )
    torch.testing.assert_close(linear.tangent(*v), jv)
    expected = torch.autograd.grad(output, params, u, retain_graph=True)
    for got, want in zip(linear.transpose(u), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_vpg_is_a_plain_gradient_step():
    agent, obs, actions, adv, old_lp = real_batch("CartPole-v1", algo="vpg", vpg_lr=0.1)
    params = list(agent.policy.parameters())
    before = parameters_to_vector(params).clone()
    surrogate = (torch.exp(agent.policy(obs).log_prob(actions) - old_lp) * adv).mean()
    gradient = flat_grad(surrogate, params)
    step(agent, obs, actions, adv, old_lp)
    torch.testing.assert_close(parameters_to_vector(params) - before, 0.1 * gradient)


def test_non_finite_gradient_is_rejected_and_parameters_kept():
    agent, obs, actions, adv, old_lp = real_batch("CartPole-v1")
    theta = parameters_to_vector(agent.policy.parameters()).clone()
    adv = adv.clone()
    adv[0] = float("nan")
    stats = step(agent, obs, actions, adv, old_lp)
    assert stats.nonfinite and not stats.accepted
    assert torch.equal(parameters_to_vector(agent.policy.parameters()), theta)


def test_per_dim_scale_is_the_joint_step_with_a_times_delta_and_lambda():
    # kl_scale="per_dim" states δ and λ per action dimension: on Reacher-v5 (A = 2) it takes
    # the step of kl_scale="joint" with max_kl·A and damping·A, bit for bit.
    per_dim, obs, actions, adv, old_lp = real_batch("Reacher-v5", kl_scale="per_dim")
    dims = action_dims(per_dim.action_space)
    joint, *_ = real_batch("Reacher-v5", kl_scale="joint", max_kl=0.01 * dims, damping=0.1 * dims)
    assert dims == 2 and (per_dim.config.max_kl, per_dim.config.damping) == (0.01, 0.1)
    per_dim_stats = step(per_dim, obs, actions, adv, old_lp)
    joint_stats = step(joint, obs, actions, adv, old_lp)

    assert per_dim_stats == joint_stats and per_dim_stats.accepted
    for a, b in zip(per_dim.policy.parameters(), joint.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    assert per_dim_stats.kl_per_dim == per_dim_stats.kl / dims
    assert 0.5 * 0.01 <= per_dim_stats.kl_per_dim <= 0.01  # the full step, as stated per dim


def test_trust_region_scales_only_with_per_dim():
    config = Config(max_kl=0.02, damping=0.1, kl_scale="joint")
    assert update.trust_region(config, 6) == (0.02, 0.1)
    assert update.trust_region(config.replace(kl_scale="per_dim"), 6) == (0.02 * 6, 0.1 * 6)
    assert update.trust_region(config.replace(kl_scale="per_dim"), 1) == (0.02, 0.1)


@pytest.mark.parametrize("env_id", ENVS)
def test_a_chunked_update_takes_the_same_step(env_id):
    # 2048 states in chunks of 300 (the last one shorter): the same g, F and step up to
    # float rounding, built one chunk's graph at a time.
    whole, obs, actions, adv, old_lp = real_batch(env_id)
    chunked, *_ = real_batch(env_id, update_chunk=300)
    params = list(whole.policy.parameters())
    v = torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        update.fisher_product(whole.policy, obs, params, 0.1, chunk=300)(v),
        update.fisher_product(whole.policy, obs, params, 0.1)(v),
        rtol=1e-5,
        atol=1e-7,
    )
    theta_k = parameters_to_vector(params).detach().clone()
    a = step(whole, obs, actions, adv, old_lp)
    b = step(chunked, obs, actions, adv, old_lp)
    assert a.accepted and b.accepted and a.backtracks == b.backtracks
    assert b.grad_norm == pytest.approx(a.grad_norm, rel=1e-5)
    assert b.kl == pytest.approx(a.kl, rel=1e-3)
    # CG's ten iterations carry the rounding differences into the step, a little.
    step_a = parameters_to_vector(whole.policy.parameters()) - theta_k
    step_b = parameters_to_vector(chunked.policy.parameters()) - theta_k
    assert float((step_b - step_a).norm()) <= 1e-3 * float(step_a.norm())


def test_chunks_cover_the_rows_once():
    assert update.chunks(7, 3) == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert update.chunks(6, 6) == [slice(0, 6)]

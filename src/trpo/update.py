"""The policy update (TRPO, with NPG and VPG as the comparisons it is built on) and the
value-function fit. Paper: Schulman et al., "Trust Region Policy Optimization", 2015.

    g  = ∇θ L(θk, θ) at θk,            L = mean[ π_θ(a|s) / π_θk(a|s) · Â ]
    x  ≈ H⁻¹ g by conjugate gradient,  H = F + λI,  F = ∇²θ mean KL(π_θk ‖ π_θ) at θk
    Δ  = sqrt(2δ / xᵀHx) · x           (the step whose quadratic-model KL is δ)
    trpo: θ = θk + α^j Δ for the smallest j with exact KL ≤ δ and L improving, else θk
    npg:  θ = θk + Δ                   (no line search: the KL is not enforced)
    kl_penalty: θ = θk + x / C         (maximises the quadratic model of L − C·KL; the
                                        theory's penalised form, its KL is not bounded)
    vpg:  θ = θk + lr · g              (plain gradient ascent)

δ and λ are `max_kl` and `damping`, or A times them with `kl_scale="per_dim"` (A action
dimensions, `trust_region`): sb3-contrib's KL is a mean over the action's coordinates too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils import parameters_to_vector

from trpo.config import Config
from trpo.functional import (
    ForwardLayer,
    backtracking_line_search,
    conjugate_gradient,
    explained_variance,
    fisher_vector_product,
    flat_grad,
    gauss_newton_fisher_vector_product,
)
from trpo.policies import MLPPolicy, mean_kl
from trpo.reproducibility import assign_flat


@dataclass(frozen=True)
class StepStats:
    accepted: bool
    """False when the step was rejected and θk kept (line search failed or non-finite)."""
    backtracks: int
    kl: float
    """Exact mean joint KL between θk and the new policy, in the configured direction
    (bounded by max_kl·A with `kl_scale="per_dim"`)."""
    kl_per_dim: float
    """kl / A, A the action dimensions (`trpo.policies.action_dims`): the KL sb3-contrib
    reports and bounds by target_kl (bounded by max_kl with `kl_scale="per_dim"`)."""
    expected_improvement: float
    """g · (θ − θk): the linear model's surrogate improvement for the step taken."""
    surrogate_improvement: float
    """L(θk, θ) − L(θk, θk), measured."""
    cg_residual: float
    """‖Hx − g‖² when CG stopped (NaN for vpg)."""
    cg_iterations: int
    entropy: float
    """Mean policy entropy over the batch's states at θk."""
    grad_norm: float
    nonfinite: bool
    """True when g, x, the step or its KL was NaN/Inf and the step was rejected for it."""
    zero_gradient: bool = False
    """True when g was exactly zero (e.g. every advantage 0: all episodes alike): there is
    no direction to step in, so no step was taken (accepted is False, θ is θk)."""


def policy_step(
    policy: nn.Module,
    obs: Tensor,
    actions: Tensor,
    advantages: Tensor,
    old_log_probs: Tensor,
    config: Config,
    action_dims: int,
    generator: torch.Generator | None = None,
) -> StepStats:
    """One policy update on a batch; changes ``policy``'s parameters in place.
    ``action_dims`` is A = `trpo.policies.action_dims(action_space)` (see `trust_region`);
    ``generator`` draws the states of ``config.fvp_subsample`` (when below 1)."""
    max_kl, damping = trust_region(config, action_dims)
    params = [p for p in policy.parameters() if p.requires_grad]
    theta_old = parameters_to_vector(params).detach()
    chunked = bool(config.update_chunk) and obs.shape[0] > config.update_chunk
    traced = None  # MLPPolicy's distribution parameters at θk, with the graph to θ
    if isinstance(policy, MLPPolicy) and not chunked:
        # one forward serves the ratio's fixed side, the gradient and the Fisher product
        traced = traced_distribution_parameters(policy, obs, params)
        z = traced.z
        old_dist = policy.distribution(*(part.detach() for part in z))
    else:
        with torch.no_grad():
            old_dist = policy(obs)  # θk, detached: the fixed side of the KL and of the ratio
    with torch.no_grad():
        entropy = float(old_dist.entropy().mean())

    def surrogate(dist, rows: slice = slice(None)) -> Tensor:
        ratio = torch.exp(dist.log_prob(actions[rows]) - old_log_probs[rows])
        return (ratio * advantages[rows]).mean()

    def evaluate(theta: Tensor) -> tuple[float, float]:
        assign_flat(theta, params)
        with torch.no_grad():
            dist = policy(obs)
            improvement = surrogate(dist) - surrogate_old
            kl = mean_kl(old_dist, dist, config.kl_direction)
        return float(improvement), float(kl)

    if chunked:
        surrogate_old = surrogate(old_dist)  # the same numbers as L at θk with its graph
        g = sum(
            flat_grad(surrogate(policy(obs[rows]), rows) * _share(rows, obs), params)
            for rows in chunks(obs.shape[0], config.update_chunk)
        )
    else:
        surrogate_at_old = surrogate(policy(obs) if traced is None else policy.distribution(*z))
        surrogate_old = surrogate_at_old.detach()
        g = flat_grad(surrogate_at_old, params, retain_graph=traced is not None)
    if bool(torch.isfinite(g).all()) and not bool(g.any()):
        # CG would return x = 0 and sqrt(2δ / xᵀHx)·x would be 0/0: no step, reported as such
        return StepStats(
            accepted=False,
            backtracks=0,
            kl=0.0,
            kl_per_dim=0.0,
            expected_improvement=0.0,
            surrogate_improvement=0.0,
            cg_residual=0.0,
            cg_iterations=0,
            entropy=entropy,
            grad_norm=0.0,
            nonfinite=False,
            zero_gradient=True,
        )

    if config.algo == "vpg":
        step = config.vpg_lr * g
        cg_residual, cg_iterations = math.nan, 0
    else:
        fisher_obs, fisher_traced = obs, traced
        if config.fvp_subsample < 1.0:  # opt-in: F estimated on a random subset of states
            n = obs.shape[0]
            kept = max(1, round(config.fvp_subsample * n))
            fisher_obs = obs[torch.randperm(n, generator=generator)[:kept].to(obs.device)]
            fisher_traced = None
        fvp = fisher_product(
            policy, fisher_obs, params, damping, config.update_chunk, fisher_traced
        )
        cg = conjugate_gradient(fvp, g, config.cg_iters, config.cg_residual_tol)
        x, hx = cg.x, fvp(cg.x)
        if config.algo == "kl_penalty":
            step = x / config.kl_penalty_coef
        else:
            step = torch.sqrt(2 * max_kl / torch.dot(x, hx)) * x
        cg_residual, cg_iterations = float(torch.sum((hx - g) ** 2)), cg.iterations

    nonfinite = not bool(torch.isfinite(g).all() and torch.isfinite(step).all())
    if nonfinite:
        accepted, backtracks, improvement, kl = False, 0, 0.0, 0.0
    elif config.algo == "trpo":
        search = backtracking_line_search(
            evaluate, theta_old, step, max_kl, config.backtrack_coef, config.backtrack_iters
        )
        accepted, backtracks = search.accepted, search.backtracks
        improvement, kl = search.improvement, search.kl
        step = search.step_fraction * step
    else:  # npg, kl_penalty and vpg take the step whatever it does to the KL
        accepted, backtracks = True, 0
        improvement, kl = evaluate(theta_old + step)
        if not (math.isfinite(kl) and math.isfinite(improvement)):  # the step overflowed
            accepted, nonfinite = False, True
    assign_flat(theta_old + step if accepted else theta_old, params)

    return StepStats(
        accepted=accepted,
        backtracks=backtracks,
        kl=kl,
        kl_per_dim=kl / action_dims,
        expected_improvement=float(torch.dot(g, step)) if accepted else 0.0,
        surrogate_improvement=improvement,
        cg_residual=cg_residual,
        cg_iterations=cg_iterations,
        entropy=entropy,
        grad_norm=float(g.norm()),
        nonfinite=nonfinite,
    )


def trust_region(config: Config, action_dims: int) -> tuple[float, float]:
    """(δ, λ) the step uses: (max_kl, damping) with `kl_scale="joint"`; A times both with
    `kl_scale="per_dim"`, A = ``action_dims``. sb3-contrib's Gaussian and Bernoulli KL is
    a mean over B·A coordinates, KL/A, so it solves (F/A + λI) x = g and bounds KL/A ≤ δ:
    the same step as (F + AλI) x = g with KL ≤ Aδ. (`kl_penalty_coef` stays joint.)"""
    scale = action_dims if config.kl_scale == "per_dim" else 1
    return config.max_kl * scale, config.damping * scale


def fisher_product(
    policy: nn.Module,
    obs: Tensor,
    params: list[Tensor],
    damping: float,
    chunk: int = 0,
    traced: TracedForward | None = None,
) -> Callable[[Tensor], Tensor]:
    """v ↦ (F + λI) v on the states ``obs`` at the current parameters θk: through the
    distribution parameters where the policy exposes them (`MLPPolicy`; ``traced``, when
    given, is `traced_distribution_parameters(policy, obs, params)`, computed already),
    else by double backprop through any policy. Either KL direction has F as its Hessian at
    θk; both products differentiate KL(old ‖ new). With ``chunk`` (< the states), F is the
    mean of the chunks' Fisher matrices, each product rebuilding one chunk's graph at a
    time."""
    if chunk and obs.shape[0] > chunk:
        parts = [(rows, _share(rows, obs)) for rows in chunks(obs.shape[0], chunk)]

        def product(v: Tensor) -> Tensor:
            fv = (
                share * fisher_product(policy, obs[rows], params, 0.0)(v) for rows, share in parts
            )
            return sum(fv) + damping * v

        return product
    if isinstance(policy, MLPPolicy):
        if traced is None:
            traced = traced_distribution_parameters(policy, obs, params)
        old = policy.distribution(*(part.detach() for part in traced.z))

        def mean_kl_of(z_new):
            return mean_kl(old, policy.distribution(*z_new), "old_new")

        return gauss_newton_fisher_vector_product(
            traced.z, mean_kl_of, params, damping, traced.forward_layers
        )
    with torch.no_grad():
        old = policy(obs)
    return fisher_vector_product(mean_kl(old, policy(obs), "old_new"), params, damping)


@dataclass(frozen=True)
class TracedForward:
    z: tuple[Tensor, ...]
    """`MLPPolicy.distribution_parameters` with its graph to θ."""
    forward_layers: list[ForwardLayer]
    """Its convolutions that read the observation, for the Fisher product."""


def traced_distribution_parameters(
    policy: MLPPolicy, obs: Tensor, params: list[Tensor]
) -> TracedForward:
    """``policy``'s distribution parameters on ``obs``, and each convolution of ``params``
    met on the way whose input does not depend on θ (the CNN's first, on the observation)."""
    trainable = {id(p) for p in params}
    layers: list[ForwardLayer] = []

    def record(conv: nn.Conv2d, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        conv_params = tuple(conv.parameters())
        reads_observation = not inputs[0].requires_grad and conv.padding_mode == "zeros"
        if reads_observation and all(id(p) in trainable for p in conv_params):
            linear = ConvOnObservation(conv, inputs[0], output)
            layers.append(ForwardLayer(conv_params, output, linear.tangent, linear.transpose))

    hooks = [m.register_forward_hook(record) for m in policy.modules() if isinstance(m, nn.Conv2d)]
    try:
        z = policy.distribution_parameters(obs)
    finally:
        for hook in hooks:
            hook.remove()
    return TracedForward(z, layers)


PATCHES_LIMIT_BYTES = 64 * 2**20
"""The most memory `ConvOnObservation` keeps the observation's patches in: MinAtar's take
19-47 MB at batch 2048; an Atari frame's, 420 MB at batch 1024, are left to PyTorch."""


class ConvOnObservation:
    """``conv`` on the observation ``x``, a linear map of (weight, bias) to ``output``:
    J v is the convolution with v's parts, and the transpose (the gradient of weight and
    bias from the output's) one matrix product with x's patches, unfolded once per update
    (while they fit in `PATCHES_LIMIT_BYTES`; else PyTorch's convolution backward, which
    spends ~9-11 ms on MinAtar's 16 filters of 3×3×C at batch 2048, the product ~4 ms)."""

    def __init__(self, conv: nn.Conv2d, x: Tensor, output: Tensor):
        self.conv, self.x, self.output = conv, x, output

    @cached_property
    def patches(self) -> Tensor | None:
        """[N·L, C·kh·kw]: each output position's input patch, a row (None past the limit).
        Unfolded at the first transpose: the θk forward of an update that takes none (vpg,
        or a Fisher matrix on a subsample of the states) never pays for them."""
        conv, x = self.conv, self.x
        size = conv.weight[0].numel() * self.output[:, 0].numel() * x.element_size()
        if conv.groups != 1 or not isinstance(conv.padding, tuple) or size > PATCHES_LIMIT_BYTES:
            return None
        unfolded = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)
        return unfolded.transpose(1, 2).reshape(-1, unfolded.shape[1])

    def tangent(self, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        c = self.conv
        return F.conv2d(self.x, weight, bias, c.stride, c.padding, c.dilation, c.groups)

    def transpose(self, output_grad: Tensor) -> tuple[Tensor, ...]:
        params = tuple(self.conv.parameters())
        if self.patches is None:
            return torch.autograd.grad(self.output, params, output_grad, retain_graph=True)
        by_filter = output_grad.transpose(0, 1).reshape(output_grad.shape[1], -1)  # [O, N·L]
        weight = (by_filter @ self.patches).view_as(self.conv.weight)
        return (weight, by_filter.sum(1)) if len(params) == 2 else (weight,)


def chunks(n: int, size: int) -> list[slice]:
    """Consecutive slices of at most ``size`` of ``n`` rows."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def _share(rows: slice, obs: Tensor) -> float:
    """The fraction of the batch in ``rows``: a chunk's mean weighs this much in the batch's."""
    return (rows.stop - rows.start) / obs.shape[0]


@dataclass(frozen=True)
class ValueStats:
    value_loss: float
    """Mean squared error on the batch after fitting."""
    explained_variance: float
    """Of the targets by the values *before* fitting (how well V predicted this batch)."""
    value_fit_kl: float = 0.0
    """Mean KL (in `Config.kl_direction`) by which the fit moved the policy: 0 unless the
    two share parameters (`Config.share_encoder`), when the trust region bounds only the
    policy step."""


def fit_value(
    value_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    obs: Tensor,
    targets: Tensor,
    old_values: Tensor,
    epochs: int,
    minibatch: int,
    generator: torch.Generator | None = None,
) -> ValueStats:
    """Regress V(s) on ``targets`` (GAE advantages + old values) with minibatch Adam, the
    minibatches shuffled by ``generator``."""
    n = obs.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(obs.device)
        for start in range(0, n, minibatch):
            index = order[start : start + minibatch]
            loss = torch.mean((value_fn(obs[index]) - targets[index]) ** 2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        final_loss = float(torch.mean((value_fn(obs) - targets) ** 2))
    return ValueStats(final_loss, explained_variance(old_values, targets))

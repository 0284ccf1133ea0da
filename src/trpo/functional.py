"""Pure math of TRPO: free functions of tensors and callables, each tested against ground truth.

Notation follows Schulman et al. (2015): θk the parameters that collected the batch, g the
policy gradient, F the Fisher matrix (Hessian of the mean KL at θk), H = F + λI, δ = max_kl.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    lam: float,
) -> np.ndarray:
    """Generalised advantage estimates A_t for a [T, N] block of N parallel trajectories.

    Index t is the step in which action a_t was taken in state s_t:
    ``rewards[t]`` = r_t, ``values[t]`` = V(s_t), ``next_values[t]`` = V(s_{t+1}) where
    s_{t+1} is the state the env returned for that step (the *final* observation when the
    episode ended there, never the reset observation).

    δ_t = r_t + γ (1 − terminated_t) V(s_{t+1}) − V(s_t)
    A_t = δ_t + γ λ (1 − done_t) A_{t+1},   done_t = terminated_t or truncated_t

    A termination does not bootstrap (the true value after it is 0); a time-limit truncation
    bootstraps from V(final observation). The λ-recursion stops at both, and after the last
    row (the batch boundary, where ``next_values`` carries the bootstrap).

    NumPy arrays, as the rollout's are: the recursion's T small steps cost a fifth of what
    they cost as tensor ops, with the same float32 (or float64) arithmetic.
    """
    if not (rewards.shape == values.shape == next_values.shape == terminated.shape):
        raise ValueError(
            f"gae: shapes differ: rewards {rewards.shape}, values {values.shape}, "
            f"next_values {next_values.shape}, terminated {terminated.shape}"
        )
    if truncated.shape != rewards.shape:
        raise ValueError(f"gae: truncated {truncated.shape} != {rewards.shape}")
    not_terminated = 1.0 - terminated.astype(rewards.dtype)
    not_done = not_terminated * (1.0 - truncated.astype(rewards.dtype))
    deltas = rewards + gamma * not_terminated * next_values - values
    advantages = np.zeros_like(rewards)
    running = np.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * lam * not_done[t] * running
        advantages[t] = running
    return advantages


@dataclass(frozen=True)
class CGResult:
    x: Tensor
    iterations: int


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    max_iters: int = 10,
    residual_tol: float = 1e-10,
) -> CGResult:
    """Approximately solve H x = b for symmetric positive-definite H given only x ↦ Hx.

    Starts from x₀ = 0 (so the first residual is b and the first direction the gradient);
    stops after ``max_iters`` or when ‖r‖² < ``residual_tol``.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    r_dot_r = torch.dot(r, r)
    iterations = 0
    for _ in range(max_iters):
        if r_dot_r < residual_tol:
            break
        hp = matvec(p)
        alpha = r_dot_r / torch.dot(p, hp)
        x += alpha * p
        r -= alpha * hp
        new_r_dot_r = torch.dot(r, r)
        p = r + (new_r_dot_r / r_dot_r) * p
        r_dot_r = new_r_dot_r
        iterations += 1
    return CGResult(x=x, iterations=iterations)


def flat_grad(output: Tensor, params: Sequence[Tensor], **kwargs) -> Tensor:
    """∂output/∂params as one flat vector (zeros for parameters output does not touch)."""
    grads = torch.autograd.grad(output, params, allow_unused=True, **kwargs)
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)]
    )


def fisher_vector_product(
    mean_kl: Tensor, params: Sequence[Tensor], damping: float
) -> Callable[[Tensor], Tensor]:
    """Return v ↦ (F + λI) v, with F the Hessian of ``mean_kl`` w.r.t. ``params`` at θk.

    ``mean_kl`` must be the mean KL between a *detached* copy of the current policy and the
    policy as a function of ``params``: its value and gradient are zero at θk, its Hessian
    is the Fisher matrix. The KL gradient graph is built once and reused by every product
    (double backprop), so each product costs one backward pass.
    """
    kl_grad = flat_grad(mean_kl, params, create_graph=True)

    def product(v: Tensor) -> Tensor:
        hv = flat_grad(torch.dot(kl_grad, v), params, retain_graph=True)
        return hv + damping * v

    return product


@dataclass(frozen=True)
class ForwardLayer:
    """A layer of the policy that reads no θ-dependent input (a convolution on the
    observation), linear in its ``params``: its output's J v is the layer applied to v's
    parts for them, ``tangent(*v_parts)``, and the gradient of its params given the
    output's, ``transpose(output_grad)``, its adjoint. Its parameters must be used by no
    other layer."""

    params: tuple[Tensor, ...]
    output: Tensor
    """The layer's output in the graph of the distribution parameters."""
    tangent: Callable[..., Tensor]
    transpose: Callable[[Tensor], Sequence[Tensor]]


def gauss_newton_fisher_vector_product(
    dist_params: Sequence[Tensor],
    mean_kl_of: Callable[[Sequence[Tensor]], Tensor],
    params: Sequence[Tensor],
    damping: float,
    forward_layers: Sequence[ForwardLayer] = (),
) -> Callable[[Tensor], Tensor]:
    """Return v ↦ (F + λI) v as Jᵀ M J v + λv, where J = ∂z/∂θ for the distribution
    parameters z = ``dist_params`` (logits, or mean and log-std: functions of ``params``)
    and M is the Hessian in z of ``mean_kl_of(z)``, the mean KL from the detached θk
    distribution, at z(θk).

    The KL's gradient in z is zero at θk, so this is the same Hessian that
    `fisher_vector_product` takes by double backprop, whose extra terms are multiplied by
    that zero gradient; skipping them makes a product cost ~1.4 gradients instead of ~2.
    J v comes from a graph of Jᵀu, linear in a dummy u, built once; M acts elementwise in
    z; Jᵀ(M J v) is one backward pass through the retained forward graph.

    ``forward_layers`` (a subset of the layers of ``params``) enter J v by their forward
    tangent and Jᵀ by their transpose instead: both graphs stop at their outputs. For a
    convolution this skips the transposed convolution PyTorch's double backward computes
    for the layer's input and J v never uses (about a quarter of a MinAtar CNN's product);
    the product is the same.
    """
    params = list(params)
    forward = {id(p) for layer in forward_layers for p in layer.params}
    backward = [p for p in params if id(p) not in forward]
    z_at = [z.detach().requires_grad_() for z in dist_params]
    kl_grad_z = torch.autograd.grad(mean_kl_of(z_at), z_at, create_graph=True)
    dummy = [torch.zeros_like(z, requires_grad=True) for z in dist_params]
    outputs = [layer.output for layer in forward_layers]
    jt_dummy = torch.autograd.grad(dist_params, backward + outputs, dummy, create_graph=True)
    sizes = [p.numel() for p in params]
    position = {id(p): i for i, p in enumerate(params)}

    def product(v: Tensor) -> Tensor:
        v_parts = [part.view_as(p) for part, p in zip(torch.split(v, sizes), params)]
        tangents = [v_parts[position[id(p)]] for p in backward] + [
            layer.tangent(*(v_parts[position[id(p)]] for p in layer.params))
            for layer in forward_layers
        ]
        jv = torch.autograd.grad(jt_dummy, dummy, tangents, retain_graph=True)
        mjv = torch.autograd.grad(kl_grad_z, z_at, jv, retain_graph=True)
        grads = torch.autograd.grad(dist_params, backward + outputs, mjv, retain_graph=True)
        fv = dict(zip(map(id, backward), grads))
        for layer, output_grad in zip(forward_layers, grads[len(backward) :]):
            fv.update(zip(map(id, layer.params), layer.transpose(output_grad)))
        return torch.cat([fv[id(p)].reshape(-1) for p in params]) + damping * v

    return product


@dataclass(frozen=True)
class LineSearchResult:
    accepted: bool
    backtracks: int
    """Shrinks applied to the accepted step (backtrack_iters when none was accepted)."""
    step_fraction: float
    """α^j of the accepted step (0 when none was accepted)."""
    kl: float
    """Exact mean KL of the accepted candidate (0 when none was accepted)."""
    improvement: float
    """Surrogate improvement L(θ) − L(θk) of the accepted candidate (0 when none)."""


def backtracking_line_search(
    evaluate: Callable[[Tensor], tuple[float, float]],
    theta_old: Tensor,
    full_step: Tensor,
    max_kl: float,
    backtrack_coef: float = 0.8,
    max_backtracks: int = 10,
) -> LineSearchResult:
    """Accept the first θk + α^j · full_step (j = 0, 1, …) whose exact KL ≤ δ and whose
    surrogate improves; keep θk when none of ``max_backtracks`` candidates does.

    ``evaluate(θ)`` returns ``(surrogate_improvement, mean_kl)`` for candidate θ. Non-finite
    values never qualify.
    """
    for j in range(max_backtracks):
        fraction = backtrack_coef**j
        candidate = theta_old + fraction * full_step
        improvement, kl = evaluate(candidate)
        if _finite(improvement) and _finite(kl) and kl <= max_kl and improvement > 0:
            return LineSearchResult(True, j, fraction, kl, improvement)
    return LineSearchResult(False, max_backtracks, 0.0, 0.0, 0.0)


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def explained_variance(predicted: Tensor, target: Tensor) -> float:
    """1 − Var[target − predicted] / Var[target]: 1 is perfect, 0 no better than the mean,
    negative worse. NaN when the target is constant."""
    var_target = torch.var(target)
    if var_target == 0:
        return float("nan")
    return float(1.0 - torch.var(target - predicted) / var_target)


def normalize(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Standardise to zero mean and unit std (population std; a single value maps to 0)."""
    return (x - x.mean()) / (x.std(correction=0) + eps)

"""Policies map a batch of (encoded) observations to a fresh `torch.distributions` object.

A policy is any `nn.Module` whose ``forward(obs_bd)`` returns a Distribution with batch
shape [B] that supports ``log_prob``, ``entropy``, ``mode``, ``sample`` and
``torch.distributions.kl_divergence``. The MLP policies here cover every Gymnasium action
space TRPO can handle; users may pass their own module of the same contract.
A value function is any `nn.Module` mapping ``obs_bd`` to values of shape [B].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Independent,
    Normal,
    constraints,
    register_kl,
)
from torch.distributions import kl_divergence as _kl

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}


class UnsupportedSpaceError(ValueError):
    """A Gymnasium space this library cannot build a policy or encoder for."""


def mlp(
    sizes: Sequence[int],
    activation: str,
    output_gain: float,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """Linear layers with ``activation`` between them; orthogonal init (gain √2 for hidden
    layers, ``output_gain`` for the last) drawn from ``generator``, zero biases."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.utils.skip_init(nn.Linear, n_in, n_out)  # no draw from torch's global RNG
        last = i == len(sizes) - 2
        gain = output_gain if last else math.sqrt(2)
        nn.init.orthogonal_(linear.weight, gain=gain, generator=generator)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MultiCategorical(Distribution):
    """Independent categoricals over the components of a MultiDiscrete action."""

    arg_constraints = {}
    has_enumerate_support = False

    def __init__(self, logits: Tensor, nvec: Sequence[int]):
        self.nvec = tuple(int(n) for n in nvec)
        self.parts = [
            Categorical(logits=chunk, validate_args=False)
            for chunk in torch.split(logits, self.nvec, dim=-1)
        ]
        super().__init__(logits.shape[:-1], torch.Size([len(self.nvec)]), validate_args=False)

    @property
    def support(self):
        return constraints.independent(constraints.nonnegative_integer, 1)

    def sample(self, sample_shape=torch.Size()) -> Tensor:
        return torch.stack([p.sample(sample_shape) for p in self.parts], dim=-1)

    def log_prob(self, value: Tensor) -> Tensor:
        return sum(p.log_prob(value[..., i]) for i, p in enumerate(self.parts))

    def entropy(self) -> Tensor:
        return sum(p.entropy() for p in self.parts)

    @property
    def mode(self) -> Tensor:
        return torch.stack([p.logits.argmax(-1) for p in self.parts], dim=-1)


class IndependentBernoulli(Independent):
    """Independent Bernoullis (MultiBinary) whose mode is 1 where p > 0.5 and 0 elsewhere
    (torch's Bernoulli mode is NaN at p = 0.5, i.e. at every freshly initialised policy)."""

    def __init__(self, logits: Tensor):
        super().__init__(Bernoulli(logits=logits, validate_args=False), 1, validate_args=False)

    @property
    def mode(self) -> Tensor:
        return (self.base_dist.logits > 0).to(self.base_dist.logits.dtype)


@register_kl(MultiCategorical, MultiCategorical)
def _kl_multi_categorical(p: MultiCategorical, q: MultiCategorical) -> Tensor:
    return sum(_kl(a, b) for a, b in zip(p.parts, q.parts))


class OnFeatures(nn.Module):
    """A network that reads ``features(obs)`` where it has ``features`` (the CNN front of
    image observations, `trpo.encoders.ObservationFeatures`), else the rows themselves."""

    def __init__(self, features: nn.Module | None):
        super().__init__()
        self.features = features

    def input_width(self, obs_dim: int) -> int:
        return obs_dim if self.features is None else self.features.out_dim

    def _input(self, obs: Tensor) -> Tensor:
        return obs if self.features is None else self.features(obs)


class MLPPolicy(OnFeatures):
    """MLP policy for Discrete, Box, MultiDiscrete and MultiBinary action spaces.

    Box actions use a diagonal Gaussian with a state-independent log-std (the paper's
    choice); sampled actions are unbounded and clipped only when sent to the env.
    ``features`` (e.g. a CNN, `trpo.encoders.ObservationFeatures`) maps the observation
    rows to the MLP's input of ``features.out_dim``; without it the MLP reads the rows.
    """

    def __init__(
        self,
        obs_dim: int,
        action_space: gym.Space,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        log_std_init: float = 0.0,
        generator: torch.Generator | None = None,
        features: nn.Module | None = None,
    ):
        super().__init__(features)
        self.kind = action_kind(action_space)
        if self.kind == "discrete":
            out_dim = int(action_space.n)
        elif self.kind == "multidiscrete":
            self.nvec = tuple(int(n) for n in np.asarray(action_space.nvec).reshape(-1))
            out_dim = sum(self.nvec)
        else:  # box, multibinary
            out_dim = int(np.prod(action_space.shape))
        self.net = mlp([self.input_width(obs_dim), *hidden, out_dim], activation, 0.01, generator)
        if self.kind == "box":
            self.log_std = nn.Parameter(torch.full((out_dim,), float(log_std_init)))

    def forward(self, obs: Tensor) -> Distribution:
        return self.distribution(*self.distribution_parameters(obs))

    def distribution_parameters(self, obs: Tensor) -> tuple[Tensor, ...]:
        """z, what the action distribution is built from: the network's output (logits or
        the Gaussian's mean) and, for Box actions, the log-std. The update's Fisher-vector
        product works through z (`gauss_newton_fisher_vector_product`)."""
        out = self.net(self._input(obs))
        return (out, self.log_std) if self.kind == "box" else (out,)

    def distribution(self, out: Tensor, log_std: Tensor | None = None) -> Distribution:
        """The action distribution of `distribution_parameters`' z."""
        if self.kind == "discrete":
            return Categorical(logits=out, validate_args=False)
        if self.kind == "box":
            std = log_std.exp().expand_as(out)
            return Independent(Normal(out, std, validate_args=False), 1, validate_args=False)
        if self.kind == "multidiscrete":
            return MultiCategorical(out, self.nvec)
        return IndependentBernoulli(out)

    def sample(self, obs: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """A sampled action per row and its log-probability: the numbers, and the random
        draws, of ``dist = self(obs); a = dist.sample(); dist.log_prob(a)`` with
        ``generator``'s state, without building distribution objects, which cost ~25 % of
        a rollout step's policy call."""
        out = self.net(self._input(obs))
        if self.kind == "box":
            return _draw_gaussian(out, _GaussianTerms(self.log_std, out.shape), generator)
        return self._draw(out, generator)

    def sampler(self) -> Callable[[Tensor, torch.Generator], tuple[Tensor, Tensor]]:
        """`sample` at the parameters as they are now, for a rollout, which holds them
        fixed: the same numbers and draws for about two thirds of the time per call on a
        small MLP (measured at 8 rows: 110 µs against 153), as it calls no modules,
        records nothing for autograd and computes the Gaussian's std terms once. It holds
        for as long as the parameters do not change: take a new one for each rollout."""
        forward = None if self.features is not None else frozen_forward(self.net)
        if forward is None:
            return _without_autograd(self.sample)
        if self.kind != "box":
            return lambda obs, generator: self._draw(forward(obs), generator)
        log_std = self.log_std.detach()
        terms: list[_GaussianTerms] = []  # for the one batch shape a rollout uses

        def sample(obs: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
            out = forward(obs)
            if not terms or terms[0].shape != out.shape:
                terms[:] = [_GaussianTerms(log_std, out.shape)]
            return _draw_gaussian(out, terms[0], generator)

        return sample

    def _draw(self, out: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """`sample`'s draw from the network's output ``out``, for actions that are not Box."""
        if self.kind == "discrete":
            logits = out - out.logsumexp(-1, keepdim=True)
            action = categorical_draw(logits.softmax(-1), generator)
            return action.squeeze(-1), logits.gather(-1, action).squeeze(-1)
        return draw(self.distribution(out), generator)


class _GaussianTerms:
    """The std-only terms of a diagonal Gaussian's sample and log-density, at the batch
    shape they are used at: computed on the expanded std, exactly as per call before."""

    def __init__(self, log_std: Tensor, shape: torch.Size):
        self.shape = shape
        self.std = log_std.exp().expand(shape)
        self.two_var = 2 * self.std**2
        self.log_std = self.std.log()


def _draw_gaussian(
    mean: Tensor, terms: _GaussianTerms, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    action = torch.normal(mean, terms.std, generator=generator)
    log_density = -((action - mean) ** 2) / terms.two_var - terms.log_std - _LOG_SQRT_2PI
    return action, log_density.sum(-1)


_ACTIVATION_FUNCTIONS = {nn.Tanh: torch.tanh, nn.ReLU: torch.relu, nn.SiLU: F.silu}


def frozen_forward(net: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """``net``'s forward as plain functions of its parameters as they are now (detached:
    nothing is recorded for autograd), or None when ``net`` is not a Sequential of Linear
    layers and the activations `mlp` builds."""
    if type(net) is not nn.Sequential:
        return None
    steps: list[Callable[[Tensor], Tensor]] = []
    for layer in net:
        if type(layer) is nn.Linear:
            bias = None if layer.bias is None else layer.bias.detach()
            steps.append(partial(F.linear, weight=layer.weight.detach(), bias=bias))
        elif type(layer) is nn.ELU:
            steps.append(partial(F.elu, alpha=layer.alpha))
        elif type(layer) in _ACTIVATION_FUNCTIONS:
            steps.append(_ACTIVATION_FUNCTIONS[type(layer)])
        else:
            return None

    def forward(x: Tensor) -> Tensor:
        for step in steps:
            x = step(x)
        return x

    return forward


def _without_autograd(sample: Callable[..., tuple[Tensor, Tensor]]):
    def sample_in_inference_mode(obs: Tensor, generator: torch.Generator):
        with torch.inference_mode():
            return sample(obs, generator)

    return sample_in_inference_mode


class MLPValue(OnFeatures):
    """V(s) of shape [B]: an MLP, after ``features`` as in `MLPPolicy`."""

    def __init__(
        self,
        obs_dim: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        generator: torch.Generator | None = None,
        features: nn.Module | None = None,
    ):
        super().__init__(features)
        self.net = mlp([self.input_width(obs_dim), *hidden, 1], activation, 1.0, generator)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(self._input(obs)).squeeze(-1)


def sample_action(
    policy: nn.Module, obs: Tensor, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Sampled actions for a batch of observations and their log-probabilities, drawn
    from ``generator``, through `MLPPolicy.sample`'s shortcut where it applies."""
    if isinstance(policy, MLPPolicy):
        return policy.sample(obs, generator)
    return draw(policy(obs), generator)


def sampler(policy: nn.Module) -> Callable[[Tensor, torch.Generator], tuple[Tensor, Tensor]]:
    """`sample_action` for a rollout that holds ``policy``'s parameters fixed, with no
    autograd bookkeeping (`MLPPolicy.sampler` where it applies)."""
    if isinstance(policy, MLPPolicy):
        return policy.sampler()
    return _without_autograd(lambda obs, generator: draw(policy(obs), generator))


def categorical_draw(probs: Tensor, generator: torch.Generator) -> Tensor:
    """One index per row of ``probs`` [B, K], shaped [B, 1]: what
    ``torch.multinomial(probs, 1, generator=generator)`` draws, from the same random numbers
    (torch draws one sample as argmax(p / q), q ~ Exp(1)), without its validity checks on
    ``probs``, which cost two thirds of its time at rollout sizes. A softmax's
    probabilities pass them whenever the logits are finite."""
    race = torch.empty_like(probs).exponential_(1, generator=generator)
    return torch.argmax(probs / race, -1, keepdim=True)


def draw(dist: Distribution, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``dist.sample()`` and its log-probability with ``generator``'s random state.
    `Distribution.sample` takes no generator, so the draw runs on torch's global stream
    with ``generator``'s state swapped in, and the global state is put back after it."""
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(generator.get_state())
        action = dist.sample()
        generator.set_state(torch.get_rng_state())
    return action, dist.log_prob(action)


def action_kind(space: gym.Space) -> str:
    """'discrete', 'box', 'multidiscrete' or 'multibinary'; anything else is refused."""
    if isinstance(space, gym.spaces.Discrete):
        return "discrete"
    if isinstance(space, gym.spaces.Box):
        if not np.issubdtype(space.dtype, np.floating):
            raise UnsupportedSpaceError(
                f"Box action space with integer dtype {space.dtype} is not supported: "
                "use Discrete or MultiDiscrete actions for integers."
            )
        return "box"
    if isinstance(space, gym.spaces.MultiDiscrete):
        return "multidiscrete"
    if isinstance(space, gym.spaces.MultiBinary):
        return "multibinary"
    raise UnsupportedSpaceError(
        f"action space {space} is not supported: trpo handles Discrete, Box, MultiDiscrete "
        "and MultiBinary actions. Wrap the env so that its action space is one of these."
    )


def action_dims(space: gym.Space) -> int:
    """A, the action dimensions a `kl_scale="per_dim"` δ and λ are stated for: the
    coordinates of a factorised distribution over which sb3-contrib averages the KL.

    Box: prod(shape), one Gaussian per coordinate; MultiBinary: prod(n), one Bernoulli per
    bit. Discrete and MultiDiscrete: 1. A Discrete action is one categorical, and
    sb3-contrib sums, not averages, a MultiDiscrete action's categorical KLs, so its
    target_kl bounds their joint KL; A = 1 keeps `per_dim` equal to sb3-contrib's settings
    on every space. From the space alone, so it holds for a policy module of your own."""
    kind = action_kind(space)
    if kind in ("box", "multibinary"):
        return int(np.prod(space.shape))
    return 1


def mean_kl(old: Distribution, new: Distribution, direction: str) -> Tensor:
    """Mean over states of KL(old ‖ new) (``direction='old_new'``, the paper's constraint)
    or KL(new ‖ old) (``'new_old'``)."""
    if direction == "old_new":
        return _kl(old, new).mean()
    if direction == "new_old":
        return _kl(new, old).mean()
    raise ValueError(f"kl direction must be 'old_new' or 'new_old', got {direction!r}")

"""Stable-Baselines3 habits that `trpo.TRPO` accepts, or refuses saying what to write."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("trpo")

SB3_POLICIES = ("MlpPolicy", "CnnPolicy", "MultiInputPolicy")
"""Stable-Baselines3's policy names, all accepted: each means trpo's default networks, whose
first layers follow the observation space (`trpo.encoders`: an MLP on vectors, a CNN per
image, one part per Dict key), so the name need not say it."""


def check_policy_name(name: str) -> None:
    if name not in SB3_POLICIES:
        raise ValueError(
            f"unknown policy {name!r}: pass one of {', '.join(SB3_POLICIES)} (trpo's default "
            "networks, chosen from the observation space) or an nn.Module (see trpo.policies)"
        )


def check_callback(callback: Any) -> None:
    if callback is None:
        return
    if hasattr(callback, "init_callback") or isinstance(callback, list | tuple):
        raise TypeError(
            "callback must be a function of the iteration's stats (trpo.IterationStats) "
            "that may return False to stop, e.g. callback=lambda stats: stats.steps < 50_000; "
            "Stable-Baselines3 callback objects are not supported"
        )
    if not callable(callback):
        raise TypeError(f"callback must be callable, got {callback!r}")


def target_steps(
    done: int,
    default: int,
    total_steps: int | None,
    total_timesteps: int | None,
    reset_num_timesteps: bool | None,
) -> int:
    """The run's step count that a ``learn`` call trains to, ``done`` steps taken so far:
    ``total_steps`` is trpo's run total (``default``: the config's); SB3's
    ``total_timesteps=N`` means N more, and a positional count given with SB3's
    ``reset_num_timesteps`` is read as SB3 reads it too."""
    if total_timesteps is not None and total_steps is not None:
        raise TypeError("pass total_steps (the run's total) or total_timesteps (more)")
    if total_timesteps is not None or reset_num_timesteps is not None:
        more = total_timesteps if total_timesteps is not None else total_steps
        more = default if more is None else more
        if not isinstance(more, int) or isinstance(more, bool) or more <= 0:
            raise ValueError(f"total_timesteps must be a positive integer, got {more!r}")
        return done + more
    total = default if total_steps is None else total_steps
    if isinstance(total, int) and 0 < total <= done:
        log.warning(
            "learn(%d): the run has already taken %d steps, so nothing is trained "
            "(learn(total_steps) counts the run's steps in all; learn(total_timesteps=N) "
            "trains N more)",
            total,
            done,
        )
    return total


def sb3_arguments(policy: Any, env: Any, config: Any) -> tuple[Any, Any, Any]:
    """``(policy, env, config)`` as trpo takes them from what an SB3 user wrote:
    ``TRPO("MlpPolicy", env)`` moves the env to its place, a policy name becomes the
    default networks (None), and a ``config`` must be trpo's."""
    from trpo.config import Config, Settings

    if isinstance(env, str) and env in SB3_POLICIES:  # SB3's TRPO("MlpPolicy", env)
        policy, env, config = env, config, None
    if isinstance(policy, str):
        check_policy_name(policy)
        policy = None
    if config is not None and not isinstance(config, Config | Settings):
        raise TypeError(f"config must be a trpo Config, got {config!r}")
    return policy, env, config

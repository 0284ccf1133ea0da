"""How the policy update scales with the network: one TRPO step (CG with Fisher-vector
products + line search) on a fixed batch as the policy grows from ~10k to ~10M parameters,
and the cost of one Fisher-vector product relative to one surrogate gradient.

    python benchmarks/update_scaling.py                  # batch 2048, Hopper-sized spaces
    python benchmarks/update_scaling.py --fvp-subsample 0.25

Times are medians of --repeats runs in this process, so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import torch

from trpo.config import Config
from trpo.functional import flat_grad
from trpo.policies import MLPPolicy, action_dims
from trpo.update import fisher_product, policy_step

OBS_DIM, ACT_DIM = 11, 3  # Hopper-v5
WIDTHS = [96, 300, 1000, 3160]  # two hidden layers: ~11k, ~95k, ~1M, ~10M parameters


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(width: int, batch: int, repeats: int, fvp_subsample: float) -> dict[str, float]:
    torch.manual_seed(0)
    action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,))
    policy = MLPPolicy(OBS_DIM, action_space, (width, width), "tanh", 0.0)
    params = list(policy.parameters())
    obs = torch.randn(batch, OBS_DIM)
    with torch.no_grad():
        old = policy(obs)
        actions = old.sample()
        old_log_probs = old.log_prob(actions)
    advantages = torch.randn(batch)
    config = Config(fvp_subsample=fvp_subsample)
    dims = action_dims(action_space)

    def gradient() -> torch.Tensor:
        dist = policy(obs)
        surrogate = (torch.exp(dist.log_prob(actions) - old_log_probs) * advantages).mean()
        return flat_grad(surrogate, params)

    fvp = fisher_product(policy, obs, params, config.damping)  # the product the update uses
    v = torch.randn(sum(p.numel() for p in params))
    theta = [p.detach().clone() for p in params]

    def update() -> None:
        policy_step(policy, obs, actions, advantages, old_log_probs, config, dims)
        with torch.no_grad():
            for p, t in zip(params, theta, strict=True):
                p.copy_(t)

    gradient_s = median_seconds(gradient, repeats)
    fvp_s = median_seconds(lambda: fvp(v), repeats)
    return {
        "parameters": float(v.numel()),
        "gradient_ms": 1e3 * gradient_s,
        "fvp_ms": 1e3 * fvp_s,
        "fvp_per_gradient": fvp_s / gradient_s,
        "update_ms": 1e3 * median_seconds(update, max(1, repeats // 2)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fvp-subsample", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"batch {args.batch}, fvp_subsample {args.fvp_subsample}, {args.threads} thread(s)")
    print("| parameters | gradient ms | FVP ms | FVP / gradient | update ms | ms per 1M params |")
    print("|---|---|---|---|---|---|")
    for width in WIDTHS:
        r = measure(width, args.batch, args.repeats, args.fvp_subsample)
        per_million = r["update_ms"] / (r["parameters"] / 1e6)
        print(
            f"| {r['parameters']:,.0f} | {r['gradient_ms']:.2f} | {r['fvp_ms']:.2f} "
            f"| {r['fvp_per_gradient']:.2f} | {r['update_ms']:.1f} | {per_million:.1f} |"
        )


if __name__ == "__main__":
    main()

"""How the policy update scales with the network: one TRPO step (CG with Fisher-vector
products + line search) on a fixed batch as the policy grows, and the cost of one
Fisher-vector product relative to one surrogate gradient.

    python benchmarks/update_scaling.py                  # MLPs of ~10k to ~10M parameters
    python benchmarks/update_scaling.py --fvp-subsample 0.25
    python benchmarks/update_scaling.py --cnn            # the image CNNs, with peak memory
    python benchmarks/update_scaling.py --cnn --repeats 3 --atari-batches 256 --minatar-batches 1024

Default mode: a tanh Gaussian MLP (11 → w → w → 3, Hopper-sized) on a batch of --batch
states, all widths in this process.

--cnn: the Atari-sized CNN policies (`hidden=()`, the CNN straight into the logits, as the
Atari presets build them) on Discrete(6) actions: "nature" (DQN) and "small" (OpenAI
baselines) on Box(0, 255, (4, 84, 84), uint8) frames at each of --atari-batches, "grid"
(MinAtar) on Box(0, 1, (10, 10, 6), bool) at each of --minatar-batches, and the Nature CNN
once more at the largest Atari batch with its FVPs on a fraction of the states
(--fvp-subsample, default 0.1 here). Observations are what the rollout stores: uint8 rows
from `ObservationEncoder` of random frames from a seeded NumPy generator; the CNN casts and
scales them itself. Each row runs in a fresh spawned process, so its memory is its own.

Columns: gradient ms, the surrogate's gradient g over the batch; FVP ms, one Fisher-vector
product (F + λI) v as the update computes it (`trpo.update.fisher_product`, on the
subsampled states when F states < batch), not counting the forward pass it is built on;
FVP / gradient, their ratio; update ms, one whole `policy_step` (Config defaults: 10 CG
iterations, line search), parameters restored after. Times are medians of --repeats runs
(the update of max(1, repeats // 2)) after a warm-up; ratios compare like with like.
FVP peak MiB (--cnn): on CPU, the process's peak RSS (`ru_maxrss`) after building one
product and applying it once, minus the RSS just before (policy and batch already in
memory): the extra memory one product needs, its retained graph included. Update peak MiB:
the same after one `policy_step`, the product's graph freed first: the most the update
adds at any moment. "≤ N": the process had already been N MiB above that RSS (setting
up, the warm-up) and this step never went higher, so its growth is at most N. On CUDA
both are `torch.cuda.max_memory_allocated` above what was allocated before (tensors only,
not the caching allocator's reserve). CPU memory is Linux-only (/proc/self/statm), nan
elsewhere.

--device cuda runs everything on the GPU (synchronising around each timed call); it is
written for a machine with one but has only been run on CPU.
"""

from __future__ import annotations

import argparse
import gc
import math
import multiprocessing
import os
import resource
import statistics
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from trpo.config import Config
from trpo.encoders import ObservationEncoder, observation_features
from trpo.functional import flat_grad
from trpo.policies import MLPPolicy, action_dims
from trpo.update import fisher_product, policy_step

OBS_DIM, ACT_DIM = 11, 3  # Hopper-v5
WIDTHS = [96, 300, 1000, 3160]  # two hidden layers: ~11k, ~95k, ~1M, ~10M parameters
ATARI = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
MINATAR = gym.spaces.Box(0, 1, (10, 10, 6), np.bool_)
CNN_SPACES = {"nature": ATARI, "small": ATARI, "grid": MINATAR}


class PeakMemory:
    """Bytes added at peak since construction: RSS on CPU, allocated tensors on CUDA."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            self.start = torch.cuda.memory_allocated(device)
        elif os.path.exists("/proc/self/statm"):
            with open("/proc/self/statm") as f:
                self.start = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        else:
            self.start = math.nan
        self.device = device
        self.floor = max_rss()

    def peak(self) -> tuple[float, bool]:
        """(bytes, exact). On CPU, while the process's peak is still one from before the
        start, the growth is only known to be at most that peak minus the start: not exact."""
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) - self.start, True
        return max(max_rss(), self.floor) - self.start, max_rss() > self.floor


def max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_update(
    policy: MLPPolicy,
    obs: torch.Tensor,
    action_space: gym.Space,
    repeats: int,
    fvp_subsample: float,
    device: torch.device,
    chunk: int = 0,
) -> dict[str, float]:
    """Times (and peak memory) of g, one FVP and one `policy_step` of ``policy`` on ``obs``
    (g on the whole batch; the FVP and the step in chunks of ``chunk`` states if set)."""
    policy.to(device)
    obs = obs.to(device)
    params = list(policy.parameters())
    with torch.no_grad():  # in chunks: a full-batch pass would set a peak RSS of its own
        olds = [policy(chunk) for chunk in obs.split(64)]
        actions = torch.cat([old.sample() for old in olds])
        old_log_probs = torch.cat([o.log_prob(a) for o, a in zip(olds, actions.split(64))])
    advantages = torch.randn(obs.shape[0], device=device)
    config = Config(fvp_subsample=fvp_subsample, update_chunk=chunk)
    dims = action_dims(action_space)
    kept = max(1, round(fvp_subsample * obs.shape[0]))
    fisher_obs = obs[torch.randperm(obs.shape[0])[:kept].to(device)]  # as policy_step draws
    v = torch.randn(sum(p.numel() for p in params), device=device)
    theta = [p.detach().clone() for p in params]

    def gradient() -> torch.Tensor:
        dist = policy(obs)
        surrogate = (torch.exp(dist.log_prob(actions) - old_log_probs) * advantages).mean()
        return flat_grad(surrogate, params)

    def update() -> None:
        policy_step(policy, obs, actions, advantages, old_log_probs, config, dims)
        with torch.no_grad():
            for p, t in zip(params, theta, strict=True):
                p.copy_(t)

    # Warm-up on two states: one-time set-up stays out of the figures, and a full-batch
    # pass would already raise ru_maxrss.
    flat_grad(policy(obs[:2]).log_prob(actions[:2]).sum(), params)
    memory = PeakMemory(device)
    fvp = fisher_product(policy, fisher_obs, params, config.damping, chunk)
    fvp(v)
    fvp_peak = memory.peak()
    del fvp
    gc.collect()
    update_s = median_seconds(update, max(1, repeats // 2), device)
    update_peak = memory.peak()
    gradient_s = median_seconds(gradient, repeats, device)
    fvp = fisher_product(policy, fisher_obs, params, config.damping, chunk)  # as the update
    fvp_s = median_seconds(lambda: fvp(v), repeats, device)
    return {
        "parameters": float(v.numel()),
        "fisher_states": float(kept),
        "gradient_ms": 1e3 * gradient_s,
        "fvp_ms": 1e3 * fvp_s,
        "fvp_per_gradient": fvp_s / gradient_s,
        "update_ms": 1e3 * update_s,
        "fvp_peak_mib": fvp_peak[0] / 2**20,
        "fvp_peak_exact": float(fvp_peak[1]),
        "update_peak_mib": update_peak[0] / 2**20,
        "update_peak_exact": float(update_peak[1]),
    }


def measure_mlp(width: int, batch: int, repeats: int, fvp_subsample: float, device: str):
    torch.manual_seed(0)
    action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,))
    policy = MLPPolicy(OBS_DIM, action_space, (width, width), "tanh", 0.0)
    obs = torch.randn(batch, OBS_DIM)
    return measure_update(policy, obs, action_space, repeats, fvp_subsample, torch.device(device))


def measure_cnn(
    kind: str, batch: int, repeats: int, fvp_subsample: float, device: str, threads: int, chunk: int
):
    """One --cnn row; run in a fresh process (ru_maxrss only ever grows)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    space, action_space = CNN_SPACES[kind], gym.spaces.Discrete(6)
    encoder = ObservationEncoder(space)
    features = observation_features(encoder, kind, torch.Generator().manual_seed(0))
    policy = MLPPolicy(encoder.dim, action_space, (), features=features)
    # Drawn as bytes: an int64 draw would set a peak RSS above the update's own.
    frames = np.random.default_rng(0).integers(0, 256, (batch, *space.shape), np.uint8)
    obs = torch.from_numpy(encoder(frames if space.dtype == np.uint8 else frames < 128))
    device_ = torch.device(device)
    return measure_update(policy, obs, action_space, repeats, fvp_subsample, device_, chunk)


def mlp_table(args: argparse.Namespace) -> None:
    subsample = args.fvp_subsample or 1.0
    print(f"batch {args.batch}, fvp_subsample {subsample}, {args.threads} thread(s), {args.device}")
    print("| parameters | gradient ms | FVP ms | FVP / gradient | update ms | ms per 1M params |")
    print("|---|---|---|---|---|---|")
    for width in WIDTHS:
        r = measure_mlp(width, args.batch, args.repeats, subsample, args.device)
        per_million = r["update_ms"] / (r["parameters"] / 1e6)
        print(
            f"| {r['parameters']:,.0f} | {r['gradient_ms']:.2f} | {r['fvp_ms']:.2f} "
            f"| {r['fvp_per_gradient']:.2f} | {r['update_ms']:.1f} | {per_million:.1f} |"
        )


def mib(r: dict[str, float], key: str) -> str:
    return f"{'' if r[key + '_exact'] else '≤ '}{r[key + '_mib']:,.0f}"


def cnn_table(args: argparse.Namespace) -> None:
    cases = [(kind, b, 1.0, 0) for kind in ("nature", "small") for b in args.atari_batches]
    cases += [("grid", b, 1.0, 0) for b in args.minatar_batches]
    cases.append(("nature", max(args.atari_batches), args.fvp_subsample or 0.1, 0))
    cases.append(("nature", max(args.atari_batches), 1.0, args.chunk))
    print(f"Discrete(6) actions, {args.threads} thread(s), {args.device}, one process per row")
    print(
        "| network | observation | parameters | batch | F states | chunk | gradient ms | FVP ms "
        "| FVP / gradient | update ms | FVP peak MiB | update peak MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    spawn = multiprocessing.get_context("spawn")  # fresh memory, and safe with CUDA
    for kind, batch, subsample, chunk in cases:
        with spawn.Pool(1) as pool:
            r = pool.apply(
                measure_cnn,
                (kind, batch, args.repeats, subsample, args.device, args.threads, chunk),
            )
        space = CNN_SPACES[kind]
        observation = f"{'×'.join(map(str, space.shape))} {space.dtype}"
        print(
            f"| {kind} | {observation} | {r['parameters']:,.0f} | {batch} "
            f"| {r['fisher_states']:.0f} | {chunk or '-'} | {r['gradient_ms']:.0f} "
            f"| {r['fvp_ms']:.0f} "
            f"| {r['fvp_per_gradient']:.2f} | {r['update_ms']:,.0f} "
            f"| {mib(r, 'fvp_peak')} | {mib(r, 'update_peak')} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cnn", action="store_true", help="the image CNNs instead of MLPs")
    parser.add_argument("--batch", type=int, default=2048, help="MLP batch")
    parser.add_argument("--atari-batches", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--minatar-batches", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--fvp-subsample",
        type=float,
        help="MLP: every row's FVPs on this fraction (default 1); --cnn: the extra Nature "
        "row's (default 0.1)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--chunk", type=int, default=256, help="--cnn: update_chunk of the last row's update"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    torch.set_num_threads(args.threads)
    if args.cnn:
        cnn_table(args)
    else:
        mlp_table(args)


if __name__ == "__main__":
    main()

"""The MinAtar lockstep test at the side by side's own batch, for many iterations.

    python benchmarks/minatar_lockstep.py MinAtar/SpaceInvaders-v1 --iterations 40

tests/test_minatar_sb3.py runs sb3-contrib and trpo in lockstep for three small iterations
(2 envs x 128 steps). This runs the benchmark's settings (8 envs x 256 steps, no short time
limit) for as many iterations as asked, the value fit on one whole-batch minibatch so that
neither library's shuffle enters: sb3-contrib trains, trpo replays its sampled actions with
its weights copied in before each iteration, and each iteration prints how far trpo's
policy step and value fit are from sb3-contrib's, and the ratio of the two policy steps'
lengths. A systematic difference between the libraries would show as a mean ratio away
from 1; float rounding, amplified by conjugate gradient, shows as scatter around it.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import minatar_sb3  # noqa: E402
from sb3_lockstep import flat, relative_difference  # noqa: E402
from test_minatar_sb3 import actor_state, critic_state, lockstep  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env_id")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(minatar_sb3.BASE["torch_threads"])
    minatar_sb3.register_family(args.env_id)
    settings = minatar_sb3.matched_settings(args.env_id, seed=args.seed)
    settings.update(value_minibatch=settings["steps_per_iter"])
    ratios = []
    for i, (agent, sb3, batch, _, advantages, _) in enumerate(lockstep(settings, args.iterations)):
        before, after = actor_state(sb3["before"]), actor_state(sb3["after"])
        ours = flat(agent.policy.state_dict()) - flat(before)
        theirs = flat(after) - flat(before)
        ratios.append((ours.norm() / theirs.norm()).item())
        advantage_gap = np.abs(advantages.reshape(batch.rewards.shape).numpy() - sb3["advantages"])
        policy_gap = relative_difference(agent.policy.state_dict(), before, after)
        value_gap = relative_difference(
            agent.value_fn.state_dict(), critic_state(sb3["before"]), critic_state(sb3["after"])
        )
        print(
            f"iteration {i:3d}: sb3 step {theirs.norm():.4f}, policy gap {policy_gap:.1e}, "
            f"value gap {value_gap:.1e}, advantages max gap {advantage_gap.max():.1e}, "
            f"step length ratio {ratios[-1]:.5f}",
            flush=True,
        )
    print(
        f"step length ratio trpo / sb3 over {len(ratios)} iterations: mean {np.mean(ratios):.5f},"
        f" min {min(ratios):.5f}, max {max(ratios):.5f}"
    )


if __name__ == "__main__":
    main()

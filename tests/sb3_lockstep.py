"""What the tests that run trpo in lockstep with sb3-contrib share: sb3's CG without its
random start, a recorder of each iteration sb3 trains on, the replay of those iterations
in trpo, and how far two updates land apart.

Import it after ``pytest.importorskip("sb3_contrib")``: it imports stable-baselines3.
"""

import copy

import torch
from stable_baselines3.common.callbacks import BaseCallback


class ZeroNoiseTorch:
    """torch as sb3-contrib's CG module sees it, with ``randn_like`` giving zeros.

    sb3-contrib starts conjugate gradient from x₀ = 1e-4 · randn instead of trpo's 0. On
    Hopper's batch (tests/test_sb3_equivalence.py) the noise moves sb3's step by 2.0e-5 of
    its length, four times the 5.1e-6 left by rounding once it is zero, and by another
    amount for another draw: a property of sb3's CG start, not of what the tests compare.
    Zeroing it runs sb3's own CG code from x₀ = 0; nothing else in sb3's update draws
    random numbers."""

    randn_like = staticmethod(torch.zeros_like)

    def __getattr__(self, name):
        return getattr(torch, name)


class RecordIterations(BaseCallback):
    """Each rollout sb3 trains on, its networks' weights before and after that update."""

    def __init__(self):
        super().__init__()
        self.iterations: list[dict] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        names = ("observations", "actions", "rewards", "values", "log_probs", "advantages")
        record = {name: getattr(buffer, name).copy() for name in names + ("returns",)}
        record["before"] = copy.deepcopy(self.model.policy.state_dict())
        self.iterations.append(record)

    def _on_rollout_start(self) -> None:
        if self.iterations:
            self.iterations[-1]["after"] = copy.deepcopy(self.model.policy.state_dict())

    def _on_training_end(self) -> None:
        self.iterations[-1]["after"] = copy.deepcopy(self.model.policy.state_dict())


def flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([state[name].reshape(-1) for name in sorted(state)])


def relative_difference(
    ours: dict[str, torch.Tensor], before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]
) -> float:
    """‖θ_ours − θ_after‖ / ‖θ_after − θ_before‖: how far our update lands from sb3's,
    as a fraction of sb3's step."""
    step = flat(after) - flat(before)
    return float((flat(ours) - flat(after)).norm() / step.norm())


def replayed_iterations(agent, iterations: list[dict], actor_state, critic_state, as_action):
    """Each iteration sb3 trained on, with trpo's batch of the same steps: trpo's policy
    and value set to sb3's weights before it (``actor_state``/``critic_state`` rename
    them), and sb3's sampled actions (``as_action`` casts one step's) replayed in trpo's
    rollout with their log-probabilities under trpo's policy. Yields (sb3's record, batch)."""
    trainer, replayed = agent.trainer, {}

    def replay(obs, sample):
        action = as_action(replayed["actions"][replayed["t"]])
        replayed["t"] += 1
        with torch.no_grad():
            return action, agent.policy(torch.as_tensor(obs)).log_prob(torch.as_tensor(action))

    trainer.collector._act = replay
    for sb3 in iterations:
        replayed.update(actions=sb3["actions"], t=0)
        agent.policy.load_state_dict(actor_state(sb3["before"]))
        agent.value_fn.load_state_dict(critic_state(sb3["before"]))
        batch, _ = trainer._collect()
        yield sb3, batch

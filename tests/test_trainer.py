"""The Trainer: the update on a separate copy of the policy (the GPU path) and the device check.
(Spaces and env sources: test_envs.py; custom modules: test_agent.py; callbacks:
test_run.py; evaluation: test_evaluate.py.)"""

import copy

import pytest
import torch
from conftest import EVAL_EACH

from trpo import TRPO
from trpo.config import ConfigError


def test_update_on_a_separate_copy_gives_the_same_run():
    """device=cuda updates a copy of the policy and copies its weights back for rollouts:
    the same path on the CPU (a deep copy as the learner's policy) changes nothing."""
    runs = []
    for separate in (False, True):
        agent = TRPO("Pendulum-v1", seed=4, **EVAL_EACH)
        if separate:
            agent.trainer.learner_policy = copy.deepcopy(agent.policy)
        agent.learn(4 * 128)
        runs.append([p.detach().clone() for p in agent.policy.parameters()])
        if separate:
            learner = list(agent.trainer.learner_policy.parameters())
            assert all(torch.equal(a, b) for a, b in zip(runs[-1], learner, strict=True))
        agent.close()
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(ConfigError, match="torch sees no GPU"):
        TRPO("CartPole-v1", device="cuda")

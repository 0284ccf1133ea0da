"""benchmarks/minatar_sb3.py builds trpo and sb3-contrib with the same CNN and settings.

Builds both for one MinAtar game (no training): `check_matched` passes, catches a
difference, and with trpo's weights copied in, sb3's policy and value give trpo's numbers
on the same observations, so the two really run one network.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("sb3_contrib")
pytest.importorskip("minatar")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import minatar_sb3  # noqa: E402

ENV_ID = "MinAtar/Breakout-v1"


@pytest.fixture
def built():
    # The benchmark's main sets one torch thread for the process; so does this fixture,
    # whatever the machine's default (2 on a 2-core CI runner).
    threads = torch.get_num_threads()
    torch.set_num_threads(minatar_sb3.BASE["torch_threads"])
    minatar_sb3.register_family(ENV_ID)
    settings = minatar_sb3.matched_settings(ENV_ID, seed=0)
    agent, model = minatar_sb3.make_trpo(settings), minatar_sb3.make_sb3(settings)
    yield agent, model
    agent.close()
    model.get_env().close()
    torch.set_num_threads(threads)


def test_settings_match(built):
    minatar_sb3.check_matched(*built)


def test_a_difference_is_caught(built):
    agent, model = built
    model.cg_max_steps += 1
    with pytest.raises(AssertionError, match="cg_iters"):
        minatar_sb3.check_matched(agent, model)


def test_same_weights_same_outputs(built):
    agent, model = built
    policy = model.policy
    (pi_image,) = agent.policy.features.images.values()
    (vf_image,) = agent.value_fn.features.images.values()
    policy.pi_features_extractor.image.load_state_dict(pi_image.state_dict())
    policy.vf_features_extractor.image.load_state_dict(vf_image.state_dict())
    policy.action_net.load_state_dict(agent.policy.net[0].state_dict())
    policy.value_net.load_state_dict(agent.value_fn.net[0].state_dict())
    obs = np.stack([model.observation_space.sample() for _ in range(16)])
    with torch.no_grad():
        x = agent.agent.observation_tensor(obs)
        sb3_obs = policy.obs_to_tensor(obs)[0]
        torch.testing.assert_close(
            policy.get_distribution(sb3_obs).distribution.logits, agent.policy(x).logits
        )
        torch.testing.assert_close(policy.predict_values(sb3_obs).squeeze(-1), agent.value_fn(x))

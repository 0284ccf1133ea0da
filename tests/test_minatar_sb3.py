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


def report(seed, steps=2048, **setting):
    pair = {"seed": seed, "trpo": {}, "sb3": {}, "ratio_sb3_over_trpo": 2.0}
    settings = {"seed": seed, "max_kl": 0.01, **setting}
    return {"games": {ENV_ID: {"steps": steps, "settings": settings, "sb3": {}, "pairs": [pair]}}}


def test_reports_of_one_seed_each_merge_into_one_game():
    games = minatar_sb3.merged({"a": report(2), "b": report(0), "c": report(1)})
    assert [p["seed"] for p in games[ENV_ID]["pairs"]] == [0, 1, 2]
    assert games[ENV_ID]["settings"]["seed"] == 2  # the first report's, as a single run's


@pytest.mark.parametrize(
    ("other", "problem"),
    [
        (report(0), r"seed \[0\] is in two reports"),
        (report(1, steps=4096), "other steps or settings"),
        (report(1, max_kl=0.02), "other steps or settings"),
    ],
)
def test_merging_refuses_runs_that_do_not_belong_together(other, problem):
    with pytest.raises(ValueError, match=problem):
        minatar_sb3.merged({"a": report(0), "b": other})

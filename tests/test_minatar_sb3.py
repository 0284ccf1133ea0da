"""benchmarks/minatar_sb3.py builds trpo and sb3-contrib with the same CNN and settings.

Builds both for one MinAtar game: `check_matched` passes, catches a difference, and with
trpo's weights copied in, sb3's policy and value give trpo's numbers on the same
observations, so the two really run one network. Then both train in lockstep, and each
iteration of trpo equals sb3-contrib's: the side by side compares one algorithm, and its
scores differ by each library's random streams.
"""

import sys
from contextlib import closing
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

pytest.importorskip("sb3_contrib")
pytest.importorskip("minatar")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import minatar_sb3  # noqa: E402
from sb3_contrib.common import utils as sb3_utils  # noqa: E402
from sb3_lockstep import (  # noqa: E402
    RecordIterations,
    ZeroNoiseTorch,
    relative_difference,
    replayed_iterations,
)

ENV_ID = "MinAtar/Breakout-v1"


@pytest.fixture
def benchmark_threads():
    # The benchmark's main sets one torch thread for the process; so does this fixture,
    # whatever the machine's default (2 on a 2-core CI runner).
    threads = torch.get_num_threads()
    torch.set_num_threads(minatar_sb3.BASE["torch_threads"])
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def built(benchmark_threads):
    minatar_sb3.register_family(ENV_ID)
    settings = minatar_sb3.matched_settings(ENV_ID, seed=0)
    agent, model = minatar_sb3.make_trpo(settings), minatar_sb3.make_sb3(settings)
    yield agent, model
    agent.close()
    model.get_env().close()


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


def network_state(sb3_state: dict, image: str, head: str) -> dict[str, torch.Tensor]:
    """sb3's CNN ``image`` and linear ``head`` as a trpo policy or value state dict."""
    state = {
        f"features.images.0.{name.removeprefix(image)}": tensor.clone()
        for name, tensor in sb3_state.items()
        if name.startswith(image)
    }
    return state | {
        f"net.0.{part}": sb3_state[f"{head}.{part}"].clone() for part in ("weight", "bias")
    }


def actor_state(sb3_state: dict) -> dict[str, torch.Tensor]:
    return network_state(sb3_state, "pi_features_extractor.image.", "action_net")


def critic_state(sb3_state: dict) -> dict[str, torch.Tensor]:
    return network_state(sb3_state, "vf_features_extractor.image.", "value_net")


def lockstep(settings: dict, iterations: int, **trpo_settings):
    """sb3-contrib trains for `iterations` iterations with `settings`; trpo, built from the
    same settings (and `trpo_settings`), then replays each one: sb3's sampled actions on the
    same env seeds, its policy and value set to sb3's before the iteration. Yields
    (agent, sb3's record, trpo's batch, values, advantages, value targets) after trpo's
    policy step and value fit, for the caller to hold against sb3's."""
    model = minatar_sb3.make_sb3(settings)
    recorder = RecordIterations()
    with mock.patch.object(sb3_utils, "th", ZeroNoiseTorch()):
        model.learn(settings["steps_per_iter"] * iterations, callback=recorder)
    model.get_env().close()
    agent = minatar_sb3.make_trpo({**settings, **trpo_settings, "overlap": "off"})
    trainer = agent.trainer
    steps = replayed_iterations(
        agent, recorder.iterations, actor_state, critic_state,
        lambda action: action.reshape(-1).astype(np.int64),
    )  # fmt: skip
    try:
        for sb3, batch in steps:
            obs, advantages, targets, values = trainer._advantages(batch)
            trainer._policy_step(batch, obs, advantages)
            trainer._fit_value(obs, targets, values)
            yield agent, sb3, batch, values, advantages, targets
    finally:
        agent.close()


LOCKSTEP = {"n_envs": 2, "steps_per_iter": 256, "iterations": 3, "max_episode_steps": 20}
"""Breakout cut at 20 steps: games lost (terminated), cut (truncated), and episodes across
the batches' boundaries."""


def test_whole_iteration_equals_sb3_contribs(monkeypatch, benchmark_threads):
    """sb3-contrib trains on MinAtar Breakout; trpo, with the benchmark's settings, replays
    sb3's sampled actions on the same env seeds, its policy and value set to sb3's before
    each iteration. Observations, rewards, values, advantages and value targets (truncation
    bootstraps included), the policy's step and the value fit agree, iteration after
    iteration. The value fit takes the whole batch as one minibatch, so that the two
    libraries' shuffles (each its own random stream) cannot change its result; its Adam
    state carries over between iterations in both."""
    limit = LOCKSTEP["max_episode_steps"]
    monkeypatch.setattr(minatar_sb3, "MAX_EPISODE_STEPS", limit)  # sb3's env factory
    minatar_sb3.register_family(ENV_ID)
    settings = minatar_sb3.matched_settings(ENV_ID, seed=0)
    batch_size = LOCKSTEP["steps_per_iter"]
    settings.update(
        n_envs=LOCKSTEP["n_envs"], steps_per_iter=batch_size, value_minibatch=batch_size
    )
    ended_somehow = np.zeros(2, bool)
    steps = lockstep(settings, LOCKSTEP["iterations"], env_kwargs={"max_episode_steps": limit})
    with closing(steps):
        for agent, sb3, batch, values, advantages, targets in steps:
            shape, plain = batch.rewards.shape, ~batch.truncated  # sb3 adds γ V(final obs)
            ended_somehow |= [batch.terminated.any(), batch.truncated.any()]
            sb3_obs = sb3["observations"].reshape(*shape, -1)  # 0/1 floats, channel-last
            np.testing.assert_array_equal(batch.obs, sb3_obs)
            np.testing.assert_array_equal(batch.rewards[plain], sb3["rewards"][plain])
            np.testing.assert_allclose(values.reshape(shape), sb3["values"], atol=1e-5)
            np.testing.assert_allclose(advantages.reshape(shape), sb3["advantages"], atol=1e-5)
            np.testing.assert_allclose(targets.reshape(shape), sb3["returns"], atol=1e-5)
            # Measured 2-6e-6 (policy) and 1e-6 (value) of sb3's step: float32 rounding.
            policy_gap = relative_difference(
                agent.policy.state_dict(), actor_state(sb3["before"]), actor_state(sb3["after"])
            )
            value_gap = relative_difference(
                agent.value_fn.state_dict(), critic_state(sb3["before"]), critic_state(sb3["after"])
            )
            assert policy_gap < 1e-4 and value_gap < 1e-4
    assert ended_somehow.all()  # both kinds of episode end were compared


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

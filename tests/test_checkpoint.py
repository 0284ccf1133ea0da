"""Tests of checkpoints: round trips, atomic writes, refusing bad weights, a fuzzed loader.

Agents learn for 512 steps (2 envs, 256 transitions per iteration, no evaluation), which
takes well under a second, and are saved once per module; each test loads its own copy.
"""

from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import TINY, raw_observations
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from safetensors.torch import save_file

from trpo import TRPO
from trpo.checkpoint import FORMAT_VERSION, CheckpointError, tensor_checksum


def learned(env_id: str) -> TRPO:
    return TRPO(env_id, seed=3, **TINY).learn(512)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, tuple[TRPO, Path]]:
    """A tiny trained agent and its checkpoint per env id (the agents must not be changed)."""
    directory = tmp_path_factory.mktemp("checkpoints")
    out = {}
    for env_id in ("CartPole-v1", "Pendulum-v1"):
        agent = learned(env_id)
        path = directory / f"{env_id}.safetensors"
        agent.save(path)
        out[env_id] = (agent, path)
    yield out
    for agent, _ in out.values():
        agent.close()


@pytest.fixture
def cartpole(saved) -> tuple[TRPO, Path]:
    return saved["CartPole-v1"]


def state_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def normalizer_state(agent: TRPO) -> tuple[np.ndarray, np.ndarray, float]:
    stats = agent.agent.normalizer.stats
    return stats.mean.copy(), stats.var.copy(), stats.count


# -- round trips -----------------------------------------------------------------------
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_save_load_predict_gives_same_actions(saved, env_id):
    agent, path = saved[env_id]
    obs = raw_observations(env_id)

    loaded = TRPO.load(path)

    expected, _ = agent.predict(obs)
    actions, _ = loaded.predict(obs)
    np.testing.assert_array_equal(actions, expected)
    assert actions.shape == (16, *agent.action_space.shape)
    singles = np.stack([loaded.predict(o)[0] for o in obs])
    np.testing.assert_array_equal(singles, np.stack([agent.predict(o)[0] for o in obs]))
    # One row at a time may round differently from the batched matmul (float32).
    np.testing.assert_allclose(singles, expected, rtol=1e-5, atol=1e-6)
    assert np.shape(loaded.predict(obs[0])[0]) == agent.action_space.shape
    assert all(agent.action_space.contains(a) for a in actions)
    loaded.close()


def test_predict_depends_on_the_restored_normaliser(cartpole):
    # Guards the round-trip test: with other normaliser statistics the actions change.
    agent, path = cartpole
    obs = raw_observations("CartPole-v1", 64)
    loaded = TRPO.load(path)
    mean, var, count = normalizer_state(loaded)

    loaded.agent.normalizer.set_stats(
        type(loaded.agent.normalizer.stats)(mean + 1.0, var * 4.0, count)
    )

    assert not np.array_equal(loaded.predict(obs)[0], agent.predict(obs)[0])
    loaded.close()


def test_load_restores_counters_statistics_optimizer_and_config(cartpole):
    agent, path = cartpole

    loaded = TRPO.load(path)

    assert (loaded.trainer.iteration, loaded.steps) == (2, 512)
    assert (
        loaded.trainer.episodes == agent.trainer.episodes > 10
    )  # CartPole episodes are short at first
    assert loaded.config == agent.config
    assert loaded.config.seed == 3 and loaded.config.steps_per_iter == 256
    mean, var, count = normalizer_state(loaded)
    np.testing.assert_array_equal(mean, agent.agent.normalizer.stats.mean)
    np.testing.assert_array_equal(var, agent.agent.normalizer.stats.var)
    assert count == agent.agent.normalizer.stats.count == 512
    assert not np.allclose(var, 1.0)  # statistics were really learned, not the initial ones
    assert_same_tensors(state_tensors(loaded.policy), state_tensors(agent.policy))
    assert_same_tensors(state_tensors(loaded.value_fn), state_tensors(agent.value_fn))

    want, got = (
        agent.trainer.value_optimizer.state_dict(),
        loaded.trainer.value_optimizer.state_dict(),
    )
    # JSON gives the betas back as a list; Adam only unpacks them.
    groups = [{**g, "betas": tuple(g["betas"])} for g in got["param_groups"]]
    assert groups == want["param_groups"]
    assert got["state"].keys() == want["state"].keys() and len(got["state"]) > 0
    for index, state in want["state"].items():
        assert_same_tensors(got["state"][index], state)
    assert float(got["state"][0]["step"]) > 0
    loaded.close()


def test_load_with_overrides(cartpole):
    _, path = cartpole

    loaded = TRPO.load(path, n_envs=1, steps_per_iter=1)

    assert (loaded.config.n_envs, loaded.config.steps_per_iter) == (1, 1)
    assert loaded.trainer.collector.envs.num_envs == 1
    assert loaded.steps == 512
    loaded.close()


def test_predict_never_updates_the_normaliser(cartpole):
    _, path = cartpole
    loaded = TRPO.load(path)
    before = normalizer_state(loaded)
    obs = raw_observations("CartPole-v1") * 10.0

    loaded.predict(obs)
    loaded.predict(obs[0], deterministic=False)
    loaded.predict(obs, deterministic=False)

    after = normalizer_state(loaded)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert after[2] == before[2] == 512
    loaded.close()


def test_evaluate_never_updates_the_normaliser(cartpole):
    _, path = cartpole
    loaded = TRPO.load(path)
    before = normalizer_state(loaded)

    result = loaded.evaluate(2)

    assert len(result.returns) == 2 and all(r >= 1 for r in result.returns)
    after = normalizer_state(loaded)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert after[2] == before[2]
    loaded.close()


def test_learning_continues_from_the_loaded_counts(cartpole):
    _, path = cartpole
    loaded = TRPO.load(path)
    episodes = loaded.trainer.episodes

    loaded.learn(512)  # the run already has 512 steps: nothing to do
    assert (loaded.trainer.iteration, loaded.steps) == (2, 512)

    seen = []
    loaded.learn(1024, callback=lambda stats: seen.append((stats.iteration, stats.steps)))

    assert seen == [(3, 768), (4, 1024)]
    assert (loaded.trainer.iteration, loaded.steps) == (4, 1024)
    assert loaded.trainer.episodes > episodes
    assert loaded.agent.normalizer.stats.count == 1024
    loaded.close()


# -- atomic, validated writes ---------------------------------------------------------
def test_saving_twice_leaves_no_temporary_files(cartpole, tmp_path):
    agent, _ = cartpole
    path = tmp_path / "agent.safetensors"

    agent.save(path)
    agent.save(path)

    assert [p.name for p in tmp_path.iterdir()] == ["agent.safetensors"]
    reloaded = TRPO.load(path)
    assert reloaded.steps == 512
    reloaded.close()


def test_failed_rename_keeps_the_previous_checkpoint(cartpole, tmp_path, monkeypatch):
    agent, original = cartpole
    path = tmp_path / "agent.safetensors"
    path.write_bytes(original.read_bytes())
    loaded = TRPO.load(path)
    loaded.learn(768)  # now differs from the file

    def fail(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        loaded.save(path)
    monkeypatch.undo()

    assert [p.name for p in tmp_path.iterdir()] == ["agent.safetensors"]
    assert path.read_bytes() == original.read_bytes()
    reloaded = TRPO.load(path)
    assert reloaded.steps == 512
    reloaded.close()
    loaded.close()


def test_non_finite_weights_are_refused(cartpole, tmp_path):
    _, original = cartpole
    previous = tmp_path / "previous.safetensors"
    previous.write_bytes(original.read_bytes())
    loaded = TRPO.load(previous)
    with torch.no_grad():
        next(loaded.policy.parameters())[0, 0] = float("nan")

    with pytest.raises(CheckpointError, match="non-finite 'policy/net.0.weight'"):
        loaded.save(tmp_path / "new.safetensors")
    with pytest.raises(CheckpointError, match="non-finite"):
        loaded.save(previous)

    assert [p.name for p in tmp_path.iterdir()] == ["previous.safetensors"]
    assert previous.read_bytes() == original.read_bytes()
    loaded.close()


# -- a loader that fails cleanly -----------------------------------------------------
def load_or_checkpoint_error(path: Path) -> str:
    """'ok' or 'error': anything but success or CheckpointError fails the test. The run is
    restored too (`TRPO.load` alone restores only the agent)."""
    try:
        TRPO.load(path).run.close()
    except CheckpointError as err:
        assert str(err), "a CheckpointError must say what is wrong"
        return "error"
    return "ok"


def test_truncated_checkpoints(cartpole, tmp_path):
    _, original = cartpole
    data = original.read_bytes()
    rng = random.Random(0)
    cuts = [0, 1, 7, 8, 9, 100, len(data) // 2, len(data) - 1]
    cuts += sorted(rng.randrange(1, len(data)) for _ in range(20))
    path = tmp_path / "cut.safetensors"

    for cut in cuts:
        path.write_bytes(data[:cut])
        assert load_or_checkpoint_error(path) == "error", cut


def test_truncated_checkpoint_message(cartpole, tmp_path):
    _, original = cartpole
    path = tmp_path / "cut.safetensors"
    path.write_bytes(original.read_bytes()[:100])

    with pytest.raises(CheckpointError, match="not a readable trpo checkpoint"):
        TRPO.load(path)


def test_bit_flipped_checkpoints(cartpole, tmp_path):
    _, original = cartpole
    data = original.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    rng = random.Random(1)
    path = tmp_path / "flipped.safetensors"
    outcomes, in_tensors = [], []

    for i in range(50):
        corrupt = bytearray(data)
        # Half the copies are hit in the length prefix and JSON header, half anywhere.
        end = header_end if i % 2 else len(data)
        flips = [rng.randrange(end) for _ in range(rng.randint(1, 4))]
        for at in flips:
            corrupt[at] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(corrupt))
        outcomes.append(load_or_checkpoint_error(path))
        in_tensors.append(min(flips) >= header_end)

    # Flipped tensor bytes fail their checksum; most flips in the header are caught.
    assert sum(in_tensors) >= 10
    assert all(o == "error" for o, t in zip(outcomes, in_tensors) if t)
    assert outcomes.count("error") >= 20


def checkpoint_parts(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    data = path.read_bytes()
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    return load_bytes(data), json.loads(header["__metadata__"]["trpo"])


def write_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: object) -> Path:
    path.write_bytes(save_bytes(tensors, metadata={"trpo": json.dumps(meta)}))
    return path


def with_checksums(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """``meta`` with the checksums of ``tensors``: a forgery consistent enough to reach
    the checks after the checksum check."""
    return {**meta, "checksums": {k: tensor_checksum(v) for k, v in tensors.items()}}


def test_foreign_files(cartpole, tmp_path):
    _, original = cartpole
    tensors, meta = checkpoint_parts(original)
    random_bytes = tmp_path / "random.safetensors"
    random_bytes.write_bytes(random.Random(2).randbytes(4096))
    text = tmp_path / "notes.safetensors"
    text.write_text("these are not the weights you are looking for\n")
    plain = tmp_path / "plain.safetensors"
    save_file({"weight": torch.zeros(3)}, plain)
    other_meta = tmp_path / "other_meta.safetensors"
    save_file({"weight": torch.zeros(3)}, other_meta, metadata={"format": "pt"})
    not_json = tmp_path / "not_json.safetensors"
    save_file({"weight": torch.zeros(3)}, not_json, metadata={"trpo": "{oops"})
    cases = [
        (random_bytes, "not a readable trpo checkpoint"),
        (text, "not a readable trpo checkpoint"),
        (plain, "not a readable trpo checkpoint"),
        (other_meta, "not a readable trpo checkpoint"),
        (not_json, "not a readable trpo checkpoint"),
        (write_checkpoint(tmp_path / "list.safetensors", tensors, [1]), "format None"),
        (
            write_checkpoint(
                tmp_path / "v999.safetensors", tensors, {**meta, "format_version": 999}
            ),
            f"has checkpoint format 999; this trpo reads format {FORMAT_VERSION}",
        ),
        (
            write_checkpoint(
                tmp_path / "no_config.safetensors",
                tensors,
                {**meta, "components": {**meta["components"], "agent": {}}},
            ),
            "checkpoint metadata is incomplete",
        ),
        (
            write_checkpoint(
                tmp_path / "no_checksums.safetensors",
                tensors,
                {k: v for k, v in meta.items() if k != "checksums"},
            ),
            "the checksum list does not match the tensors",
        ),
        (tmp_path, "is a directory"),
        (tmp_path / "missing.safetensors", "cannot read checkpoint"),
    ]

    for path, message in cases:
        with pytest.raises(CheckpointError) as info:
            TRPO.load(path)
        assert message in str(info.value), path
        assert str(path) in str(info.value), path


def test_loading_a_run_directory_names_its_checkpoints(tmp_path):
    for name in ("final", "last"):
        (tmp_path / f"{name}.safetensors").write_bytes(b"")

    with pytest.raises(CheckpointError) as info:
        TRPO.load(tmp_path)

    final, last = tmp_path / "final.safetensors", tmp_path / "last.safetensors"
    assert str(info.value).endswith(f"checkpoint file, such as {final} or {last}")


def test_checkpoint_missing_tensors(cartpole, tmp_path):
    _, original = cartpole
    tensors, meta = checkpoint_parts(original)
    del tensors["obs_norm/var"]
    path = write_checkpoint(
        tmp_path / "partial.safetensors", tensors, with_checksums(tensors, meta)
    )

    with pytest.raises(CheckpointError, match="do not fit the model"):
        TRPO.load(path)


def test_overwritten_tensor_fails_its_checksum(cartpole, tmp_path):
    _, original = cartpole
    tensors, meta = checkpoint_parts(original)
    tensors["policy/net.0.weight"] = tensors["policy/net.0.weight"] + 0.5
    path = write_checkpoint(tmp_path / "edited.safetensors", tensors, meta)

    with pytest.raises(CheckpointError) as info:
        TRPO.load(path)

    message = str(info.value)
    assert str(path) in message
    assert "tensor 'policy/net.0.weight' does not match its checksum" in message


def test_non_finite_weights_are_refused_on_load(cartpole, tmp_path):
    _, original = cartpole
    tensors, meta = checkpoint_parts(original)
    tensors["value/net.0.bias"][1] = float("inf")
    path = write_checkpoint(tmp_path / "inf.safetensors", tensors, with_checksums(tensors, meta))

    with pytest.raises(CheckpointError) as info:
        TRPO.load(path)

    assert str(info.value) == f"{path}: tensor 'value/net.0.bias' holds NaN or Inf"


@pytest.mark.parametrize(
    "component, section, key",
    [
        ("agent", "action_space", "n"),
        ("agent", "action_space", "start"),
        ("agent", "observation_space", "low"),
        ("agent", "obs_norm", "count"),
        ("trainer", "counters", "steps"),
        ("trainer", "return_norm", "count"),
        ("trainer", "value_optim_param_groups", None),
        ("run", "best_eval", None),
    ],
)
@pytest.mark.parametrize("value", [10**30, -1.5, "x", None, [], {}])
def test_corrupt_metadata_is_a_checkpoint_error(cartpole, tmp_path, component, section, key, value):
    _, original = cartpole
    tensors, meta = checkpoint_parts(original)
    part = meta["components"][component]
    if key is None:
        part[section] = value
    else:
        part[section][key] = value
    path = write_checkpoint(tmp_path / "meta.safetensors", tensors, meta)

    load_or_checkpoint_error(path)


@pytest.mark.parametrize("env_id", ["Acrobot-v1", "MountainCar-v0"])
def test_space_mismatch_names_both_spaces(cartpole, env_id):
    agent, path = cartpole
    other = gym.make(env_id)

    with pytest.raises(CheckpointError) as info:
        TRPO.load(path, env=env_id).learn(1)  # loading builds no env; learning does

    message = str(info.value)
    assert f"observation space {agent.observation_space} and action space Discrete(2)" in message
    assert f"but the env has {other.observation_space} and Discrete(3)" in message
    other.close()


def test_loading_never_unpickles(cartpole, monkeypatch):
    agent, path = cartpole

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint must load without unpickling")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)

    loaded = TRPO.load(path)

    obs = raw_observations("CartPole-v1")
    np.testing.assert_array_equal(loaded.predict(obs)[0], agent.predict(obs)[0])
    loaded.close()

"""Results do not depend on where operands sit in memory (see trpo.reproducibility).

The update runs twice on the same batch, once as trpo lays it out and once with the
activations and every parameter moved to an odd offset (4 bytes past an aligned start,
where MKL's small GEMMs take another code path): the bits must agree. They do only while
MKL's strict mode is in force; `test_without_strict_mode_the_same_check_fails` shows,
on machines whose MKL depends on alignment, that the check can fail.
"""

from __future__ import annotations

import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from trpo.config import Config
from trpo.policies import MLPPolicy, MLPValue
from trpo.reproducibility import aligned_tensor, assign_flat
from trpo.update import fit_value, policy_step


def at_odd_offset(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of ``tensor`` that starts one float past an aligned allocation."""
    shifted = torch.empty(tensor.numel() + 1)[1:].view_as(tensor)
    shifted.copy_(tensor)
    return shifted


def seeded_values(module: torch.nn.Module) -> list[torch.Tensor]:
    """Fixed values for each parameter, whatever torch's default initialisation does."""
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(p.shape, generator=generator) * 0.3 for p in module.parameters()]


def update_bits(odd: bool) -> list[torch.Tensor]:
    """Parameters after one policy step and one value fit on a fixed batch."""
    generator = torch.Generator().manual_seed(0)
    obs = torch.randn(256, 11, generator=generator)
    # Layers with few outputs: their products are the alignment-dependent ones.
    policy = MLPPolicy(11, gym.spaces.Box(-1, 1, (3,)), hidden=(8, 8))
    value = MLPValue(11, hidden=(8, 8))
    for module in (policy, value):
        for param, init in zip(module.parameters(), seeded_values(module), strict=True):
            param.data = at_odd_offset(init) if odd else init.clone()
    if odd:
        obs = at_odd_offset(obs)
    with torch.no_grad():
        actions, old_log_probs = policy.sample(obs, generator)
    advantages = torch.randn(256, generator=generator)
    targets = torch.randn(256, generator=generator)
    policy_step(policy, obs, actions, advantages, old_log_probs, Config(max_kl=0.05), 3)
    optimizer = torch.optim.Adam(value.parameters(), lr=1e-3, fused=True)
    fit_value(value, optimizer, obs, targets, targets * 0.5, 2, 64, generator)
    return [p.detach().clone() for p in [*policy.parameters(), *value.parameters()]]


def test_update_at_odd_offsets_gives_the_same_bits():
    for aligned, odd in zip(update_bits(odd=False), update_bits(odd=True), strict=True):
        assert torch.equal(aligned, odd)


def _run(code: str) -> subprocess.CompletedProcess:
    """``python -c code`` with MKL_CBWR unset, as in a user's shell."""
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def _machine_depends_on_alignment() -> bool:
    """Whether MKL's default mode (strict mode off) is alignment-dependent here."""
    check = (
        "import torch; torch.ones(7, 64) @ torch.ones(64, 3)  # before trpo: mode off\n"
        "from trpo.reproducibility import alignment_dependent; print(alignment_dependent())"
    )
    return _run(check).stdout.strip() == "True"


def test_import_requests_strict_mode_and_it_takes_effect():
    out = _run(
        "import os, trpo\n"
        "from trpo.reproducibility import alignment_dependent\n"
        "print(os.environ['MKL_CBWR'], alignment_dependent())",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["AUTO,STRICT", "False"]
    assert "ReproducibilityWarning" not in out.stderr


def test_a_product_before_import_is_warned_about_with_the_fix():
    if not _machine_depends_on_alignment():
        pytest.skip("this machine's MKL gives the same bits at any alignment")
    out = _run("import torch; torch.ones(7, 64) @ torch.ones(64, 3); import trpo")
    assert out.returncode == 0
    assert "ReproducibilityWarning" in out.stderr
    assert "MKL_CBWR=AUTO,STRICT" in out.stderr


def test_without_strict_mode_the_same_check_fails():
    if not _machine_depends_on_alignment():
        pytest.skip("this machine's MKL gives the same bits at any alignment")
    code = (
        "import sys, torch; torch.ones(7, 64) @ torch.ones(64, 3)  # before trpo: mode off\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_reproducibility import update_bits\n"
        "same = all(torch.equal(a, b) for a, b in zip(update_bits(False), update_bits(True)))\n"
        "print(same)"
    )
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_aligned_tensor_shares_aligned_memory_and_copies_the_rest():
    base = np.zeros(64 + 1, np.float32)
    for array in (base[1:], base[:64]):
        tensor = aligned_tensor(array)
        assert tensor.data_ptr() % 64 == 0
        np.testing.assert_array_equal(tensor.numpy(), array)


def test_assign_flat_keeps_each_parameter_in_its_own_storage():
    module = torch.nn.Linear(3, 2)
    params = list(module.parameters())
    storages = [p.untyped_storage().data_ptr() for p in params]
    assign_flat(torch.arange(8.0), params)
    assert [p.untyped_storage().data_ptr() for p in params] == storages
    assert module.weight.tolist() == [[0, 1, 2], [3, 4, 5]] and module.bias.tolist() == [6, 7]

"""GAE, one policy step and one value fit on recorded data give the reference numbers,
within a tolerance measured across CPU dispatch settings (see golden_reference.py)."""

import json

import pytest
from golden_reference import ENVS, EXPECTED_FILE, TOLERANCE, numbers


@pytest.mark.parametrize("env_id", ENVS)
def test_recorded_batch_gives_the_reference_numbers(env_id):
    expected = json.loads(EXPECTED_FILE.read_text())[env_id]
    actual = numbers(env_id)
    assert actual.keys() == expected.keys()
    for key, want in expected.items():
        assert actual[key] == pytest.approx(want, rel=TOLERANCE, abs=TOLERANCE), (env_id, key)

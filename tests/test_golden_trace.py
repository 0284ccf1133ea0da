"""Same seed, same run, bit for bit, on this machine (see golden_trace.py)."""

import json
import subprocess
import sys
from pathlib import Path

from golden_trace import trace


def test_same_seed_same_run_bit_for_bit_in_this_process_and_a_fresh_one():
    # NaN (no episode finished yet) compares equal only through its JSON spelling.
    here = json.dumps(trace())
    assert json.dumps(trace()) == here
    script = Path(__file__).parent / "golden_trace.py"
    fresh = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=300
    )
    assert fresh.stdout.strip() == here

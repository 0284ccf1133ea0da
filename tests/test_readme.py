"""The README stays true: its settings table matches Config and CI runs its test command."""

import re
from pathlib import Path

from trpo.config_text import config_table

ROOT = Path(__file__).resolve().parent.parent


def test_readme_settings_table_matches_the_config():
    assert config_table() in (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()

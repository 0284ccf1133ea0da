"""Trust Region Policy Optimization (Schulman et al., 2015) for Gymnasium environments."""

import os as _os

# MKL's strict reproducibility must be in the environment before the first matrix product
# (trpo.reproducibility explains why); setdefault keeps a user's own MKL_CBWR.
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from trpo.reproducibility import check_strict_mode as _check_strict_mode  # noqa: E402

_check_strict_mode()

from trpo.agent import Agent  # noqa: E402
from trpo.api import TRPO  # noqa: E402
from trpo.config import Config, ConfigError  # noqa: E402
from trpo.metrics import IterationStats  # noqa: E402

__all__ = ["TRPO", "Agent", "Config", "ConfigError", "IterationStats"]
__version__ = "0.1.0"

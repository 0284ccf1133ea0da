"""Trust Region Policy Optimization (Schulman et al., 2015) for Gymnasium environments."""

from trpo.config import Config, ConfigError
from trpo.trainer import TRPO, IterationStats

__all__ = ["TRPO", "Config", "ConfigError", "IterationStats"]
__version__ = "0.1.0"

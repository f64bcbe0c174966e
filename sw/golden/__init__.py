"""The bit-exact golden model of CP+R training for binary MLPs.

This package is the single source of truth: the accelerator's RTL, its
simulation and every device backend are checked against it weight for weight.
See ``docs/algorithm.md`` for every choice it fixes.
"""

from .config import NetworkConfig, default_gamma, robustness_threshold
from .model import BMLP, check_batch
from .literal import LiteralBMLP
from .fast import FastBMLP

__all__ = ["NetworkConfig", "default_gamma", "robustness_threshold", "BMLP", "check_batch",
           "LiteralBMLP", "FastBMLP", "IMPLEMENTATIONS"]

IMPLEMENTATIONS = {"literal": LiteralBMLP, "fast": FastBMLP}

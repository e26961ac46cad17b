"""PyMC step methods (BlockedStep adapters around the numba kernels)."""

from .base import StochasticGradientStep
from .constant_sgd import ConstantSGD
from .sgld import SGLD, PolynomialDecay

__all__ = ["StochasticGradientStep", "SGLD", "ConstantSGD", "PolynomialDecay"]

"""PyMC step methods (BlockedStep adapters around the numba kernels)."""

from .amagold import AMAGOLD
from .averaged import AveragedSGD
from .base import StochasticGradientStep
from .constant_sgd import ConstantSGD
from .contour import ContourSGLD, importance_resample
from .exchange import ReplicaExchangeSGLD
from .gradient_estimator import SVRG
from .mala import MALA
from .sghmc import SGHMC
from .schedules import Cyclical, PolynomialDecay
from .sgfs import SGFS
from .sgld import SGLD
from .sgnht import SGNHT
from .underdamped import UnderdampedLangevin

__all__ = ["StochasticGradientStep", "SGLD", "ConstantSGD", "SGHMC", "UnderdampedLangevin",
           "ReplicaExchangeSGLD", "PolynomialDecay", "SVRG", "SGNHT", "MALA", "Cyclical", "AveragedSGD", "SGFS",
           "AMAGOLD", "ContourSGLD", "importance_resample"]

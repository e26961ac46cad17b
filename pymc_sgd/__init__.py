"""pymc_sgd: stochastic-gradient samplers as PyMC step methods.

>>> import pymc_sgd
>>> sorted(pymc_sgd.__all__)[:2]
['ConstantSGD', 'MALA']
"""

from . import diagnostics
from .gradients import ModelSpecificationError, build_estimator
from .steps import MALA, SGHMC, SGLD, SGNHT, SVRG, ConstantSGD, PolynomialDecay, ReplicaExchangeSGLD, UnderdampedLangevin
from .warmup.report import tuning_report

__all__ = ["SGLD", "ConstantSGD", "SGHMC", "SGNHT", "UnderdampedLangevin", "ReplicaExchangeSGLD", "MALA", "PolynomialDecay", "SVRG",
           "build_estimator", "ModelSpecificationError", "tuning_report", "diagnostics"]

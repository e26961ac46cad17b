"""pymc_sgd: stochastic-gradient samplers as PyMC step methods.

>>> import pymc_sgd
>>> sorted(pymc_sgd.__all__)[:2]
['AveragedSGD', 'ConstantSGD']
"""

from . import diagnostics
from .gradients import ModelSpecificationError, build_estimator
from .steps import MALA, SGFS, AveragedSGD, SGHMC, SGLD, SGNHT, SVRG, ConstantSGD, Cyclical, PolynomialDecay, ReplicaExchangeSGLD, UnderdampedLangevin
from .warmup.report import tuning_report

__all__ = ["SGLD", "AveragedSGD", "ConstantSGD", "SGHMC", "SGNHT", "SGFS", "UnderdampedLangevin", "ReplicaExchangeSGLD", "MALA", "PolynomialDecay", "Cyclical", "SVRG",
           "build_estimator", "ModelSpecificationError", "tuning_report", "diagnostics"]

"""pymc_sgd: stochastic-gradient samplers as PyMC step methods.

>>> import pymc_sgd
>>> sorted(pymc_sgd.__all__)[:2]
['AMAGOLD', 'AveragedSGD']
"""

from . import diagnostics
from .data import Data, to_inference_data
from .distributed import sample_distributed
from .gradients import ModelSpecificationError, build_estimator
from .steps import (AMAGOLD, MALA, SGFS, SGHMC, SGLD, SGNHT, SVRG, AveragedSGD, ConstantSGD, ContourSGLD, Cyclical,
                    PolynomialDecay, ReplicaExchangeSGLD, UnderdampedLangevin, importance_resample)
from .warmup.report import tuning_report

__all__ = ["SGLD", "AveragedSGD", "ConstantSGD", "SGHMC", "SGNHT", "SGFS", "UnderdampedLangevin",
           "ReplicaExchangeSGLD", "MALA", "AMAGOLD", "ContourSGLD", "PolynomialDecay", "Cyclical", "SVRG",
           "importance_resample", "sample_distributed", "build_estimator", "ModelSpecificationError",
           "tuning_report", "diagnostics", "Data", "to_inference_data"]

"""pymc_sgd: stochastic-gradient samplers as PyMC step methods.

>>> import pymc_sgd
>>> sorted(pymc_sgd.__all__)[:2]
['ConstantSGD', 'ModelSpecificationError']
"""

from .gradients import ModelSpecificationError, build_estimator
from .steps import SGLD, ConstantSGD, PolynomialDecay

__all__ = ["SGLD", "ConstantSGD", "PolynomialDecay", "build_estimator", "ModelSpecificationError"]

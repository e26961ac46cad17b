"""Kernel Stein discrepancy with the inverse multiquadric kernel, and its calibration.

For draws x_1..x_m with scores s_i = grad log pi(x_i), the Langevin Stein kernel of a base kernel
k is (Gorham & Mackey 2017, "Measuring sample quality with kernels", ICML, eq. 4)

    u(x, y) = s_x . s_y k + s_x . grad_y k + s_y . grad_x k + tr(grad_x grad_y k),

and KSD^2 = E_{x, y ~ q} u(x, y), zero iff q = pi. With the IMQ kernel k = q^beta, q = c^2 + |r|^2,
r = x - y (c = 1, beta = -1/2, their Theorem 8: the KSD then detects non-convergence):

    u = (s_x . s_y) q^beta + 2 beta q^(beta-1) (s_y - s_x) . r - 2 beta d q^(beta-1)
        - 4 beta (beta - 1) |r|^2 q^(beta-2).

Draws and scores are given in whitened coordinates (z = L^-1 (w - centre), s_z = L^T s_w for a
metric L L^T), so c = 1 is on the scale of the posterior.

- ``ksd_squared``: the U-statistic (1 / m(m-1)) sum_{i != j} u_ij, unbiased for KSD^2, O(m^2 d).
- ``ksd_bootstrap_pvalue``: its null distribution by the multinomial bootstrap of Liu, Lee &
  Jordan (2016, ICML, "A kernelized Stein discrepancy for goodness-of-fit tests", Sec. 4):
  sum_{i != j} (w_i - 1/m)(w_j - 1/m) u_ij with m w ~ Multinomial(m, 1/m). It assumes independent
  draws: thin a chain to about one draw per effective sample first.
- ``ksd_linear``: the linear-time statistic of the same paper (Sec. 4.1), the mean of
  u(x_{2i-1}, x_{2i}) over m/2 disjoint pairs, asymptotically normal with the pairs' SE.
"""

from __future__ import annotations

import numpy as np

C, BETA = 1.0, -0.5  # Gorham & Mackey's IMQ choice


def stein_kernel_matrix(x: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The (m, m) matrix u(x_i, x_j) for draws x (m, d) with scores s (m, d)."""
    d = x.shape[1]
    xx, ss, sx = x @ x.T, s @ s.T, s @ x.T  # sx[i, j] = s_i . x_j
    sq = np.diag(xx)
    r2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * xx, 0.0)
    q = C * C + r2
    # (s_y - s_x) . (x - y) for x = x_i, y = x_j: s_j.x_i - s_j.x_j - s_i.x_i + s_i.x_j
    diag_sx = np.diag(sx)
    cross = sx.T - diag_sx[None, :] - diag_sx[:, None] + sx
    return (ss * q ** BETA + 2.0 * BETA * q ** (BETA - 1.0) * cross - 2.0 * BETA * d * q ** (BETA - 1.0)
            - 4.0 * BETA * (BETA - 1.0) * r2 * q ** (BETA - 2.0))


def stein_kernel_pairs(x: np.ndarray, y: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """u(x_k, y_k) for paired rows, O(m d)."""
    r = x - y
    r2 = np.sum(r * r, axis=1)
    q = C * C + r2
    d = x.shape[1]
    return (np.sum(sx * sy, axis=1) * q ** BETA + 2.0 * BETA * q ** (BETA - 1.0) * np.sum((sy - sx) * r, axis=1)
            - 2.0 * BETA * d * q ** (BETA - 1.0) - 4.0 * BETA * (BETA - 1.0) * r2 * q ** (BETA - 2.0))


def ksd_squared(u: np.ndarray) -> float:
    """U-statistic of KSD^2 from the Stein kernel matrix (diagonal excluded)."""
    m = u.shape[0]
    return float((u.sum() - np.trace(u)) / (m * (m - 1)))


def ksd_bootstrap_pvalue(u: np.ndarray, rng: np.random.Generator, replicates: int = 1000) -> float:
    """P(bootstrap null >= observed) for the U-statistic (Liu, Lee & Jordan 2016, Sec. 4)."""
    m = u.shape[0]
    off = u - np.diag(np.diag(u))
    observed = off.sum() / (m * (m - 1))
    weights = rng.multinomial(m, np.full(m, 1.0 / m), size=replicates) / m - 1.0 / m  # (replicates, m)
    null = np.sum((weights @ off) * weights, axis=1)
    return float((1 + np.sum(null >= observed)) / (1 + replicates))


def ksd_linear(x: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """(linear-time KSD^2 estimate, its standard error) from m/2 disjoint consecutive pairs."""
    half = x.shape[0] // 2
    terms = stein_kernel_pairs(x[0:2 * half:2], x[1:2 * half:2], s[0:2 * half:2], s[1:2 * half:2])
    return float(terms.mean()), float(terms.std(ddof=1) / np.sqrt(half))

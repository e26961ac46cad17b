"""Solves and curvature of a Hessian whose block of group effects is diagonal: O(d k^2), not O(d^3).

``geometry.finite_difference_hessian`` with ``blocks`` returns H whose entries between two coordinates of
the blocks (the group effects, conditionally independent given the k other coordinates) are zero: an
arrowhead matrix. Everything here works on the Jacobi-scaled A = D H D, D = |diag H|^{-1/2}
(``metric.jacobi_inverse``), where the diagonal block has entries p_i = +-1:

    A = [[P, B], [B^T, C]],   P = diag(p) (d - k),  B (d - k) x k,  C k x k.

Block elimination (Golub & Van Loan 2013, Sec. 3.2.10) through the Schur complement S = C - B^T P B:
A is positive definite iff every p_i = 1 and S is, and

    A^{-1} r = [P (r_P - B y), y]  with  y = S^{-1} (r_C - B^T P r_P),
    diag(A^{-1})_P = p + rowsum((P B S^{-1}) * (P B)),   diag(A^{-1})_C = diag(S^{-1}).

Eigenvectors: a vector x_P orthogonal to the columns of B within the coordinates of one sign of p, with
x_C = 0, satisfies A x = p x, so every eigenvalue is +-1 except those of A on the span V of (orthonormal
bases of) B's columns per sign and the k other coordinates, at most 3k of them: eig(V^T A V) (V spans an
invariant subspace). The mode search needs the most negative eigenpair and g^T |A|^{-1} g (``bulk``).
With no blocks k = d and all of this is the dense computation. On 1,000 group effects the dense
factorisations and eigendecompositions were 70% of a 71 s warm-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import linalg

NO_BLOCKS = np.zeros(0, dtype=np.int64)  # a dense H


class Factor(NamedTuple):
    """A = D (H + diag(shift)) D by block elimination (see the module docstring)."""

    scale: np.ndarray  # D
    inner: np.ndarray  # indices of the diagonal block P
    outer: np.ndarray  # indices of the k other coordinates
    signs: np.ndarray  # p
    coupling: np.ndarray  # B
    outer_block: np.ndarray  # C
    schur: np.ndarray  # S
    schur_cholesky: np.ndarray | None  # lower Cholesky factor of S, None when S is not positive definite

    @property
    def positive_definite(self) -> bool:
        return self.schur_cholesky is not None and bool(np.all(self.signs > 0))


def inner_coordinates(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """The coordinates of every block (H's diagonal part)."""
    return np.concatenate([np.asarray(b, dtype=np.int64) for b in blocks]) if blocks else NO_BLOCKS


def factorise(H: np.ndarray, inner: np.ndarray, shift: np.ndarray | None = None) -> Factor:
    """The factor of H + diag(shift); ``inner``: coordinates whose block of H is diagonal (``inner_coordinates``).
    A non-finite entry makes it not positive definite."""
    diagonal = np.diag(H) + (0.0 if shift is None else shift)
    D = 1.0 / np.sqrt(np.maximum(np.abs(diagonal), 1e-300))
    inner = inner[(diagonal[inner] != 0) & np.isfinite(diagonal[inner])]  # no pivot there: with the others
    outer = np.setdiff1d(np.arange(len(H)), inner)
    signs = np.sign(diagonal[inner])
    B = H[np.ix_(inner, outer)] * D[inner, None] * D[None, outer]
    C = H[np.ix_(outer, outer)] * D[outer, None] * D[None, outer]
    C[np.diag_indices_from(C)] = np.sign(diagonal[outer])
    S = C - B.T @ (signs[:, None] * B)
    try:
        finite = np.all(np.isfinite(S)) and np.all(np.isfinite(B)) and np.all(np.isfinite(diagonal))
        cholesky = np.linalg.cholesky(S) if finite else None
    except np.linalg.LinAlgError:
        cholesky = None
    return Factor(D, inner, outer, signs, B, C, S, cholesky)


def _schur_solve(factor: Factor, r: np.ndarray) -> np.ndarray:
    if factor.schur_cholesky is not None:
        return linalg.cho_solve((factor.schur_cholesky, True), r)
    return np.linalg.solve(factor.schur, r)


def solve(factor: Factor, r: np.ndarray) -> np.ndarray:
    """(H + diag(shift))^{-1} r (a singular one raises LinAlgError)."""
    rs = factor.scale * r
    y = np.empty_like(rs)
    y[factor.outer] = _schur_solve(factor, rs[factor.outer] - factor.coupling.T @ (factor.signs * rs[factor.inner]))
    y[factor.inner] = factor.signs * (rs[factor.inner] - factor.coupling @ y[factor.outer])
    return factor.scale * y


def inverse_diagonal(factor: Factor) -> np.ndarray:
    """diag((H + diag(shift))^{-1}) (a singular one raises LinAlgError)."""
    S_inverse = _schur_solve(factor, np.eye(len(factor.outer)))
    PB = factor.signs[:, None] * factor.coupling
    out = np.empty(len(factor.scale))
    out[factor.inner] = factor.signs + np.einsum("ij,ij->i", PB @ S_inverse, PB)
    out[factor.outer] = np.diag(S_inverse)
    return factor.scale**2 * out


def _orthonormal_basis(M: np.ndarray) -> np.ndarray:
    """Columns spanning the range of M (rank-revealing QR)."""
    if M.size == 0:
        return np.zeros((M.shape[0], 0))
    Q, R, _ = linalg.qr(M, mode="economic", pivoting=True)
    diagonal = np.abs(np.diag(R))
    return Q[:, diagonal > 1e-12 * max(diagonal.max(initial=0.0), 1e-300)]


def negative_curvature(factor: Factor, g: np.ndarray) -> tuple[np.ndarray | None, float]:
    """(the direction of most negative curvature of H, of unit |H| length, or None when there is none;
    g^T |H|^{-1} g), from the eigenvectors of A (module docstring), eigenvalues floored at 1e-12 of the largest."""
    d, inner, outer = len(factor.scale), factor.inner, factor.outer
    if not (np.all(np.isfinite(factor.schur)) and np.all(np.isfinite(factor.coupling))
            and np.all(np.isfinite(factor.scale))):
        return None, np.inf  # a Hessian with a non-finite entry says nothing: the search damps its steps instead
    columns, values = [], []
    for sign in (1.0, -1.0):  # the basis of B's columns within the coordinates of each sign
        rows = inner[factor.signs == sign]
        Q = _orthonormal_basis(factor.coupling[factor.signs == sign])
        embedded = np.zeros((d, Q.shape[1]))
        embedded[rows] = Q
        columns.append(embedded)
        values.append((sign, rows, Q))
    outer_columns = np.zeros((d, len(outer)))
    outer_columns[outer, np.arange(len(outer))] = 1.0
    V = np.hstack(columns + [outer_columns])
    A_V = np.zeros_like(V)  # A V, from the blocks
    A_V[inner] = factor.signs[:, None] * V[inner] + factor.coupling @ V[outer]
    A_V[outer] = factor.coupling.T @ V[inner] + factor.outer_block @ V[outer]
    eigenvalues, eigenvectors = np.linalg.eigh(V.T @ A_V)
    floor = 1e-12 * max(np.abs(eigenvalues).max(initial=0.0), 1.0 if len(inner) else 0.0, 1e-300)
    gs = factor.scale * g
    in_span = V.T @ gs
    pseudo_decrement = float(np.sum((eigenvectors.T @ in_span) ** 2 / np.maximum(np.abs(eigenvalues), floor)))
    pseudo_decrement += float(np.sum((gs - V @ in_span) ** 2))  # the complement: eigenvalues +-1
    lowest = eigenvalues[0] if len(eigenvalues) else np.inf
    sign, rows, Q = values[1]
    if len(rows) > Q.shape[1] and lowest > -1.0:  # an eigenvalue -1 outside the span is the lowest
        x = np.zeros(d)
        x[rows] = 1.0 - Q @ Q.sum(axis=0)  # the vector of ones on those coordinates, its part in the span removed
        if np.linalg.norm(x) > 1e-8:
            return factor.scale * x / np.linalg.norm(x), pseudo_decrement
    if lowest >= 0:
        return None, pseudo_decrement
    return factor.scale * (V @ eigenvectors[:, 0]) / np.sqrt(max(-lowest, floor)), pseudo_decrement

"""Solves and curvature of a Hessian whose block of group effects is block diagonal: O(d k^2), not O(d^3).

``geometry.finite_difference_hessian`` with ``cells`` returns H whose entries between coordinates of
different cells are zero: a cell is one group's coordinates (its intercept, or its intercept and slope, when
the effects are indexed by the same group), conditionally independent of the other groups' given the k other
coordinates. H is then a (block) arrowhead matrix. Everything here works on the Jacobi-scaled A = D H D,
D = |diag H|^{-1/2} (``metric.jacobi_inverse``), and, where cells hold m > 1 coordinates, on the congruent
A' = T^T A T with T = Q_c |Lambda_c|^{-1/2} in each cell (P_c = Q_c Lambda_c Q_c^T its m x m block of A), so
that the inner block is diagonal with entries p_i = +-1 (for m = 1, T = 1: the Jacobi scaling already gives
+-1). Congruence keeps the inertia (Sylvester), so A is positive definite iff A' is:

    A' = [[P, B], [B^T, C]],   P = diag(p) (d - k),  B (d - k) x k,  C k x k.

Block elimination (Golub & Van Loan 2013, Sec. 3.2.10) through the Schur complement S = C - B^T P B:
A' is positive definite iff every p_i = 1 and S is, and

    A'^{-1} r = [P (r_P - B y), y]  with  y = S^{-1} (r_C - B^T P r_P),
    diag(A'^{-1})_P = p + rowsum((P B S^{-1}) * (P B)),   diag(A'^{-1})_C = diag(S^{-1}),

and A^{-1} = T A'^{-1} T^T (per cell: diag(T_c (diag(p_c) + W_c S^{-1} W_c^T) T_c^T), W = P B).
Eigenvectors of A': a vector x_P orthogonal to the columns of B within the coordinates of one sign of p, with
x_C = 0, satisfies A' x = p x, so every eigenvalue is +-1 except those of A' on the span V of (orthonormal
bases of) B's columns per sign and the k other coordinates, at most 3k of them: eig(V^T A' V) (V spans an
invariant subspace). The mode search needs a direction of negative curvature (T x' for the lowest eigenvector
x' of A': x^T A x = x'^T A' x') and g^T |A'|^{-1} g (= g^T A^{-1} g where A is positive definite; ``bulk``).
With no cells k = d and all of this is the dense computation. On 1,000 group effects the dense
factorisations and eigendecompositions were 70% of a 71 s warm-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import linalg

Cells = Sequence[np.ndarray]  # families of cells: (groups, m) coordinate arrays, row g = group g's cell


class Factor(NamedTuple):
    """A' = T^T D (H + diag(shift)) D T by block elimination (see the module docstring)."""

    scale: np.ndarray  # D
    inner: np.ndarray  # indices of the block diagonal part, family by family and cell by cell
    outer: np.ndarray  # indices of the k other coordinates
    signs: np.ndarray  # p
    coupling: np.ndarray  # B (of A')
    outer_block: np.ndarray  # C
    schur: np.ndarray  # S
    schur_cholesky: np.ndarray | None  # lower Cholesky factor of S, None when S is not positive definite
    transforms: tuple[np.ndarray, ...] = ()  # T per family, (groups, m, m); () when every m is 1 (T = 1)
    families: tuple[np.ndarray, ...] = ()  # the cells factorised, as ``inner`` orders them

    @property
    def positive_definite(self) -> bool:
        return self.schur_cholesky is not None and bool(np.all(self.signs > 0))


def cell_count(cells: Cells) -> tuple[int, int]:
    """(coordinates in cells, pairs of gradients a Hessian takes for them: one per column of each family)."""
    return sum(f.size for f in cells), sum(f.shape[1] for f in cells)


def _transform(factor: Factor, x: np.ndarray, transpose: bool = False) -> np.ndarray:
    """T x (or T^T x) on inner coordinates: x is (d - k,) or (d - k, columns), ordered as ``factor.inner``."""
    return _in_cells(factor.families, factor.transforms, x, transpose)


def _in_cells(families: Sequence[np.ndarray], transforms: Sequence[np.ndarray], x: np.ndarray,
              transpose: bool) -> np.ndarray:
    """``_transform`` given the families and their T."""
    if not transforms:
        return x
    out, start = np.empty_like(x), 0
    for family, T in zip(families, transforms):
        stop = start + family.size
        cells = x[start:stop].reshape(family.shape + x.shape[1:])
        pattern = "gji,gj...->gi..." if transpose else "gij,gj...->gi..."
        out[start:stop] = np.einsum(pattern, T, cells).reshape((family.size,) + x.shape[1:])
        start = stop
    return out


SINGULAR_CELL = 1e-8  # a cell whose smallest |eigenvalue| is below this of its largest goes with the outer coordinates


def _cell_pivots(H: np.ndarray, D: np.ndarray, diagonal: np.ndarray,
                 family: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p (groups, m), T (groups, m, m), which cells are not nearly singular): each cell's block P_c of
    A = D H D (the shift on its diagonal) diagonalised as T_c^T P_c T_c = diag(p_c)."""
    if family.shape[1] == 1:  # the Jacobi scaling makes P_c = +-1
        return np.sign(diagonal[family]), np.ones((len(family), 1, 1)), np.ones(len(family), dtype=bool)
    P = H[family[:, :, None], family[:, None, :]] * D[family][:, :, None] * D[family][:, None, :]
    on_diagonal = np.arange(family.shape[1])
    P[:, on_diagonal, on_diagonal] = diagonal[family] * D[family] ** 2
    eigenvalues, Q = np.linalg.eigh(0.5 * (P + np.swapaxes(P, 1, 2)))
    magnitude = np.abs(eigenvalues)
    regular = magnitude.min(axis=1) >= SINGULAR_CELL * magnitude.max(axis=1)
    T = Q / np.sqrt(np.maximum(magnitude, 1e-300))[:, None, :]
    return np.where(eigenvalues > 0, 1.0, -1.0), T, regular


def factorise(H: np.ndarray, cells: Cells, shift: np.ndarray | None = None) -> Factor:
    """The factor of H + diag(shift); ``cells``: families of cells, H zero between any two cells (module
    docstring). A cell with a zero, non-finite or nearly singular pivot block goes with the outer coordinates.
    A non-finite entry makes it not positive definite."""
    diagonal = np.diag(H) + (0.0 if shift is None else shift)
    D = 1.0 / np.sqrt(np.maximum(np.abs(diagonal), 1e-300))
    usable = (diagonal != 0) & np.isfinite(diagonal)
    families, signs, transforms = [], [], []
    for family in cells:
        family = family[np.all(usable[family], axis=1)]
        p, T, regular = _cell_pivots(H, D, diagonal, family)
        if regular.any():
            families.append(family[regular])
            signs.append(p[regular].ravel())
            transforms.append(T[regular])
    inner = np.concatenate([f.ravel() for f in families]) if families else np.zeros(0, dtype=np.int64)
    signs = np.concatenate(signs) if signs else np.zeros(0)
    transforms = () if all(f.shape[1] == 1 for f in families) else tuple(transforms)  # () : T = 1
    outer = np.setdiff1d(np.arange(len(H)), inner)
    B = H[np.ix_(inner, outer)] * D[inner, None] * D[None, outer]
    B = _in_cells(families, transforms, B, transpose=True)
    C = H[np.ix_(outer, outer)] * D[outer, None] * D[None, outer]
    C[np.diag_indices_from(C)] = np.sign(diagonal[outer])
    S = C - B.T @ (signs[:, None] * B)
    try:
        finite = np.all(np.isfinite(S)) and np.all(np.isfinite(B)) and np.all(np.isfinite(diagonal))
        cholesky = np.linalg.cholesky(S) if finite else None
    except np.linalg.LinAlgError:
        cholesky = None
    return Factor(D, inner, outer, signs, B, C, S, cholesky, transforms, tuple(families))


def _schur_solve(factor: Factor, r: np.ndarray) -> np.ndarray:
    if factor.schur_cholesky is not None:
        return linalg.cho_solve((factor.schur_cholesky, True), r)
    return np.linalg.solve(factor.schur, r)


def solve(factor: Factor, r: np.ndarray) -> np.ndarray:
    """(H + diag(shift))^{-1} r (a singular one raises LinAlgError)."""
    rs = factor.scale * r
    r_inner = _transform(factor, rs[factor.inner], transpose=True)
    y = np.empty_like(rs)
    y[factor.outer] = _schur_solve(factor, rs[factor.outer] - factor.coupling.T @ (factor.signs * r_inner))
    y[factor.inner] = _transform(factor, factor.signs * (r_inner - factor.coupling @ y[factor.outer]))
    return factor.scale * y


def inverse_diagonal(factor: Factor) -> np.ndarray:
    """diag((H + diag(shift))^{-1}) (a singular one raises LinAlgError)."""
    S_inverse = _schur_solve(factor, np.eye(len(factor.outer)))
    W = _transform(factor, factor.signs[:, None] * factor.coupling)  # T P B
    out = np.empty(len(factor.scale))
    out[factor.inner] = _pivot_diagonal(factor) + np.einsum("ij,ij->i", W @ S_inverse, W)
    out[factor.outer] = np.diag(S_inverse)
    return factor.scale**2 * out


def _pivot_diagonal(factor: Factor) -> np.ndarray:
    """diag(T diag(p) T^T) on the inner coordinates (p itself when T = 1)."""
    if not factor.transforms:
        return factor.signs
    out, start = np.empty(len(factor.inner)), 0
    for family, T in zip(factor.families, factor.transforms):
        stop = start + family.size
        out[start:stop] = np.einsum("gij,gj->gi", T * T, factor.signs[start:stop].reshape(family.shape)).ravel()
        start = stop
    return out


def _orthonormal_basis(M: np.ndarray) -> np.ndarray:
    """Columns spanning the range of M (rank-revealing QR)."""
    if M.size == 0:
        return np.zeros((M.shape[0], 0))
    Q, R, _ = linalg.qr(M, mode="economic", pivoting=True)
    diagonal = np.abs(np.diag(R))
    return Q[:, diagonal > 1e-12 * max(diagonal.max(initial=0.0), 1e-300)]


def negative_curvature(factor: Factor, g: np.ndarray) -> tuple[np.ndarray | None, float]:
    """(a direction x of negative curvature of H with x^T H x = -1, the most negative one of A' (of A where every
    cell has one coordinate), or None when there is none; g^T |A'|^{-1} g in A''s coordinates), from the
    eigenvectors of A' (module docstring), eigenvalues floored at 1e-12 of the largest."""
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
    gs[inner] = _transform(factor, gs[inner], transpose=True)
    in_span = V.T @ gs
    pseudo_decrement = float(np.sum((eigenvectors.T @ in_span) ** 2 / np.maximum(np.abs(eigenvalues), floor)))
    pseudo_decrement += float(np.sum((gs - V @ in_span) ** 2))  # the complement: eigenvalues +-1
    lowest = eigenvalues[0] if len(eigenvalues) else np.inf
    sign, rows, Q = values[1]
    if len(rows) > Q.shape[1] and lowest > -1.0:  # an eigenvalue -1 outside the span is the lowest
        x = np.zeros(d)
        x[rows] = 1.0 - Q @ Q.sum(axis=0)  # the vector of ones on those coordinates, its part in the span removed
        if np.linalg.norm(x) > 1e-8:
            return _from_primed(factor, x / np.linalg.norm(x)), pseudo_decrement
    if lowest >= 0:
        return None, pseudo_decrement
    return _from_primed(factor, V @ eigenvectors[:, 0] / np.sqrt(max(-lowest, floor))), pseudo_decrement


def _from_primed(factor: Factor, x: np.ndarray) -> np.ndarray:
    """D T x for a vector x in A''s coordinates: the same curvature x^T A' x along it in H."""
    x = x.copy()
    x[factor.inner] = _transform(factor, x[factor.inner])
    return factor.scale * x

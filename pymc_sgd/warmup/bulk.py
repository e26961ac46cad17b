"""Reach the bulk of the posterior from a start point far away: damped Newton on U.

Levenberg-Marquardt with Marquardt's diagonal scaling (Nocedal & Wright 2006, Sec. 10.3):
each iteration solves (H + lam D) p = -grad U with D = diag|H| and accepts w + p only if U
decreases and everything is finite; otherwise lam grows tenfold. Newton steps are invariant
to rescaling a coordinate, so covariates in dollars or in millimetres cost the same, and the
damping keeps the iterates finite when the start point overflows an exp() (a log-sigma step
too long is simply rejected). The Hessian comes from central differences of the exact
gradient with a step of 1e-3 of each coordinate's current posterior scale.

Saddles: started on a symmetry line (a label-switching mixture at mu = (0, 0)) the gradient
never leaves the line and Newton converges to the saddle between the modes. Where H has a
negative eigenvalue and the gradient is small in the |H| metric (g^T |H|^{-1} g < d), the
search steps along the most negative curvature direction instead (Nocedal & Wright 2006,
Sec. 4.3 on negative-curvature directions), by 1, 2, 4, ... of its own |H| length, either
sign, until U falls.

Stopping rule: the Newton decrement g^T H^{-1} g is the squared Mahalanobis distance to the
mode of the local quadratic; at a draw from the Laplace posterior it is chi^2_d (mean d).
The search stops when it is below ``tolerance * d``, far inside the bulk.

Large n: the search first runs on a fixed subsample S of m rows (U_S, unbiased for U), whose
mode lies O(sqrt(n / m)) posterior SDs from the full one, then takes Newton steps on the
exact U with the subsample's Hessian (relative error O(sqrt(d / m))), each shrinking the
distance by about that factor, so a few full-data gradients finish the job.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import arrowhead
from .draws import curvature_of_draws, sample_bulk
from .geometry import PotentialAndGrad, finite_difference_hessian, model_errors_silenced, potential_on, subsample_rows


NOISE_POINTS = 4  # draws of a window at which the steps measure the gradient noise
MIN_ACCEPTANCE = 0.2  # a MALA run accepting less than this has not adapted to the bulk
ROUNDING_DECREMENT = 1e-10  # per coordinate: a Newton step this small that leaves U unchanged is at rounding error


@dataclass(frozen=True)
class Bulk:
    """Where the search ended and the curvature there.

    Attributes
    ----------
    mode : the end point (the mode of U when ``converged``).
    hessian : Hessian of U there (from the subsample rows, scaled to n, when m < n).
    decrement : Newton decrement g^T H^{-1} g at the end (inf where H is not positive definite).
    data_passes : gradient evaluations in units of one full-data gradient.
    converged : whether the decrement fell below tolerance * d.
    message : why the search stopped, for the tuning report.
    draws : points that stand for the posterior where the gradient noise is measured (a window of
        tuning draws, set when the metric is refitted from them); None: draws from N(mode, H^-1).
    gradient : the full-data grad U at ``mode`` when the search computed it (a control variate's
        centre needs it), else None.
    """

    mode: np.ndarray
    hessian: np.ndarray
    decrement: float
    data_passes: float
    converged: bool
    message: str
    draws: np.ndarray | None = None
    gradient: np.ndarray | None = None


def _difference_steps(w: np.ndarray, factor: arrowhead.Factor | None) -> np.ndarray:
    """1e-3 of each coordinate's scale sqrt((H^-1)_jj) (``factor``: H's), or 1e-4 (1 + |w_j|) before H is known
    and where (H^-1)_jj is not positive."""
    fallback = 1e-4 * (1.0 + np.abs(w))
    if factor is None:
        return fallback
    try:
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.sqrt(arrowhead.inverse_diagonal(factor))
    except np.linalg.LinAlgError:
        return fallback
    good = np.isfinite(scale) & (scale > 0)
    return np.where(good, 1e-3 * np.where(good, scale, 1.0), fallback)


def newton_decrement(H: np.ndarray, g: np.ndarray, cells: arrowhead.Cells = ()) -> float:
    """g^T H^{-1} g, or inf when H is not positive definite (``cells``: see ``arrowhead``)."""
    factor = arrowhead.factorise(H, cells)
    return float(g @ arrowhead.solve(factor, g)) if factor.positive_definite else np.inf


def _damped_step(H: np.ndarray, g: np.ndarray, lam: float, cells: arrowhead.Cells) -> np.ndarray | None:
    D = np.maximum(np.abs(np.diag(H)), 1e-12 * max(np.abs(np.diag(H)).max(), 1e-300))
    factor = arrowhead.factorise(H, cells, lam * D)
    return -arrowhead.solve(factor, g) if factor.positive_definite else None


def _escape_saddle(potential: PotentialAndGrad, w: np.ndarray, U: float, direction: np.ndarray
                   ) -> tuple[np.ndarray, float, np.ndarray, int] | None:
    """First of w +- 2^k direction (k = 0..5) that lowers U, with its (U, grad) and the calls spent."""
    calls = 0
    for length in 2.0 ** np.arange(6):
        for sign in (1.0, -1.0):
            trial = w + sign * length * direction
            U_new, g_new = potential(trial)
            calls += 1
            if _finite(U_new, g_new) and U_new < U:
                return trial, U_new, g_new, calls
    return None


def _finite(potential: float, grad: np.ndarray) -> bool:
    return bool(np.isfinite(potential) and np.all(np.isfinite(grad)))


def levenberg_marquardt(potential: PotentialAndGrad, w: np.ndarray, tolerance: float, max_iterations: int,
                        cells: arrowhead.Cells = ()) -> tuple[np.ndarray, np.ndarray, float, int, bool, str]:
    """Damped Newton from w (Hessians with ``geometry.finite_difference_hessian``'s ``cells``).
    Returns (w, H, decrement, gradient calls, converged, message)."""
    U, g = potential(w)
    if not _finite(U, g):
        raise FloatingPointError("the potential or its gradient is not finite at the start point")
    d, calls, lam = len(w), 1, 0.0
    in_cells, pairs = arrowhead.cell_count(cells)
    hessian_calls = 2 * (d - in_cells + pairs)
    H = finite_difference_hessian(potential, w, _difference_steps(w, None), cells)
    factor = arrowhead.factorise(H, cells)
    calls += hessian_calls
    for iteration in range(max_iterations):
        H = finite_difference_hessian(potential, w, _difference_steps(w, factor), cells)
        calls += hessian_calls
        factor = arrowhead.factorise(H, cells)
        decrement = float(g @ arrowhead.solve(factor, g)) if factor.positive_definite else np.inf
        if decrement <= tolerance * d:
            return w, H, decrement, calls, True, f"converged after {iteration} Newton steps"
        # positive definite: no negative curvature, and |H| = H
        direction, pseudo_decrement = (None, decrement) if factor.positive_definite else \
            arrowhead.negative_curvature(factor, g)
        escaped = None if direction is None or pseudo_decrement > d else _escape_saddle(potential, w, U, direction)
        if escaped is not None:
            w, U, g, spent = escaped
            calls += spent
            continue
        for _ in range(40):  # raise the damping until a step lowers U
            step = _damped_step(H, g, lam, cells)
            if step is not None:
                U_new, g_new = potential(w + step)
                calls += 1
                if _finite(U_new, g_new) and U_new == U and decrement <= ROUNDING_DECREMENT * d:
                    # U no longer resolves the step; it still halves the digits of w it has wrong (Newton)
                    return (w + step, H, newton_decrement(H, g_new, cells), calls, True,
                            f"converged to rounding error after {iteration + 1} Newton steps")
                if _finite(U_new, g_new) and U_new <= U:
                    w, U, g = w + step, U_new, g_new
                    lam = lam / 10.0 if lam > 1e-8 else 0.0
                    break
            lam = max(10.0 * lam, 1e-4)
        else:
            return w, H, newton_decrement(H, g, cells), calls, False, "no damped Newton step lowers U (a flat or rough potential)"
    return w, H, newton_decrement(H, g, cells), calls, False, f"not converged in {max_iterations} Newton steps"


def _refine_on_full_data(potential: PotentialAndGrad, w: np.ndarray, H: np.ndarray, tolerance: float,
                         max_iterations: int) -> tuple[np.ndarray, np.ndarray, float, int, bool]:
    """Newton steps on the exact U with a fixed (subsample) Hessian and step halving.
    Returns (w, grad U(w), decrement, gradient calls, converged)."""
    U, g = potential(w)
    calls = 1
    for _ in range(max_iterations):
        decrement = newton_decrement(H, g)
        if decrement <= tolerance * len(w) or not np.isfinite(decrement):
            return w, g, decrement, calls, bool(np.isfinite(decrement))
        step = -np.linalg.solve(H, g)
        for _ in range(20):
            U_new, g_new = potential(w + step)
            calls += 1
            if _finite(U_new, g_new) and U_new <= U:
                break
            step = step / 2.0
        else:
            return w, g, decrement, calls, False
        w, U, g = w + step, U_new, g_new
    return w, g, newton_decrement(H, g), calls, False


def find_bulk(est, start: np.ndarray, rng: np.random.Generator, subsample_size: int = 10_000,
              tolerance: float = 1e-4, max_iterations: int = 100, cells: arrowhead.Cells = (),
              draws_if_no_mode: bool = True) -> Bulk:
    """Damped Newton from ``start`` to the mode of U (see the module docstring); where there is no mode to
    find (the search does not converge, or ends where the Hessian is not positive definite), the bulk of
    an adaptive MALA run from ``start`` instead (``draws.sample_bulk``), or with ``draws_if_no_mode=False``
    where the search ended (``converged`` False). Errors the model raises at trial
    points are part of the search (``geometry.model_errors_silenced``). ``cells``: coordinates whose
    Hessian is block diagonal (``geometry.finite_difference_hessian``, ``arrowhead``), e.g. conditionally
    independent group effects: each column of cells costs two gradients per Hessian instead of two per
    coordinate, and the search then
    runs on all rows (a subsample of m rows gives groups without rows in it their prior's curvature only, and the
    others m / n times their rows' curvature in noise)."""
    n, start = est.n_rows, np.asarray(start, dtype=np.float64)
    if cells:  # a subsample leaves small groups without rows: their curvature would be the prior's alone
        subsample_size = n
    rows = subsample_rows(n, subsample_size, rng)
    m = len(rows)
    with model_errors_silenced(), np.errstate(all="ignore"):  # overflow at trial points is rejected below
        try:
            w, H, decrement, calls, converged, message = levenberg_marquardt(
                potential_on(est, rows), start.copy(), tolerance, max_iterations, cells)
        except FloatingPointError as error:
            raise FloatingPointError(
                f"The warm-up cannot start: {error}. Pass a finite start point (pm.sample(initvals=...)).") from None
        passes, gradient = calls * m / n, None
        if converged and np.isfinite(decrement):
            if m < n:
                w, gradient, decrement, full_calls, converged = _refine_on_full_data(
                    potential_on(est, None), w, H, 1e-2, 20)
                passes += full_calls
                message += f" on {m} rows, then {full_calls} full-data gradients"
            return Bulk(w, H, decrement, passes, converged, message, gradient=gradient)
        if not draws_if_no_mode:
            return Bulk(w, H, decrement, passes, False, message)
        return bulk_from_draws(est, start, rng, subsample_size, passes, message, cells)


def bulk_from_draws(est, start: np.ndarray, rng: np.random.Generator, rows: int, passes: float, why: str,
                    cells: arrowhead.Cells = ()) -> Bulk:
    """The bulk as the draws of ``draws.sample_bulk`` from ``start`` see it (``why``: the mode search's message)."""
    draws, calls, acceptance = sample_bulk(est, start, rng, rows, cells)
    centre = draws.mean(axis=0)
    settled = MIN_ACCEPTANCE <= acceptance
    data = "the full data" if rows >= est.n_rows else f"{rows} of its {est.n_rows} rows"
    message = (f"no mode ({why}): the bulk from {len(draws)} draws of an adaptive MALA run on {data} "
               f"(acceptance {acceptance:.2f})")
    return Bulk(centre, curvature_of_draws(draws), np.nan, passes + calls, settled, message,
                draws=spread_out(draws, NOISE_POINTS))


def spread_out(points: np.ndarray, count: int) -> np.ndarray:
    """At most ``count`` rows of ``points``, evenly spaced (the last included): draws of a window
    that stand for all of it."""
    return points[np.unique(np.linspace(0, len(points) - 1, min(count, len(points))).round().astype(int))]

"""Scale moves: a Metropolis update of a scale together with the values it scales (full-data U).

A *family* is a coordinate w_s = log s of a scale s and members x_k = c_k + s e_k whose standardised
part e_k has a law free of s: a centred group effect (x_g ~ N(loc, s^2), c_g = loc), or a Gaussian random
walk (x_t = x_0 + t mu + s (eps_1 + ... + eps_t), c_t = x_0 + t mu). Gradient updates in these centred
coordinates move s only as far as the members' spread allows (given x, log s is known to about
1 / sqrt(2 k); on a 300-step walk 0.04 against a posterior SD of 0.23): a funnel. The move

    w_s' = w_s + delta xi,   x_k' = c_k + exp(delta xi) (x_k - c_k),   xi ~ N(0, 1),

changes s with e fixed, a step in the non-centred coordinates taken from the centred ones, the
interweaving of the two parameterisations (Yu & Meng 2011, J. Comput. Graph. Stat. 20, 531-570; the
scale group of Liu & Sabatti 2000's generalised Gibbs). The map T_xi is deterministic with
T_{-xi} = T_xi^{-1} and Jacobian exp(k delta xi), so accepting with probability

    min(1, exp(-(U(w') - U(w)) / T + k delta xi))

keeps exp(-U/T) (the Jacobian is not tempered). The centres c_k must not be members, nor the scale.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from .langevin import copy_into
from .model import full_potential_into


class ScaleMoves(NamedTuple):
    """Families of scale moves, flat (family f's members are members[first[f]:first[f + 1]]).

    - scale: (m,) the coordinate of each family's log scale;
    - first: (m + 1,) offsets into the member arrays;
    - members: the coordinates scaled;
    - centres: for each member, the coordinate its centre adds (x_0 of a walk, a group effect's location),
      or -1 for none;
    - offsets: for each member, the constant its centre adds (t mu, a constant location);
    - proposal_sd: (m,) delta of each family;
    - every: a round of moves (one per family) before updates 0, every, 2 every, ...; 0 for none.
    """

    scale: np.ndarray
    first: np.ndarray
    members: np.ndarray
    centres: np.ndarray
    offsets: np.ndarray
    proposal_sd: np.ndarray
    every: int


def no_scale_moves() -> ScaleMoves:
    """No families."""
    empty = np.zeros(0, dtype=np.int64)
    return ScaleMoves(empty, np.zeros(1, dtype=np.int64), empty, empty, np.zeros(0), np.zeros(0), 0)


@njit(cache=True, inline="always")
def scale_moves_into(model, moves, w, proposal, grad, proposal_grad, potential, parts, no_rows, zero,
                     temperature, accepted, rng):
    """One move of each family from w (U(w) = ``potential``, grad U(w) in ``grad``), in place; the new U.
    ``accepted[f]`` counts family f's accepted moves. No allocation."""
    for f in range(moves.scale.shape[0]):
        step = moves.proposal_sd[f] * rng.standard_normal()
        factor = np.exp(step)
        copy_into(w, proposal)
        proposal[moves.scale[f]] += step
        for k in range(moves.first[f], moves.first[f + 1]):
            centre = moves.offsets[k]
            if moves.centres[k] >= 0:
                centre += w[moves.centres[k]]
            j = moves.members[k]
            proposal[j] = centre + factor * (w[j] - centre)
        proposal_potential = full_potential_into(model, proposal, parts, no_rows, zero, proposal_grad)
        count = moves.first[f + 1] - moves.first[f]
        log_ratio = -(proposal_potential - potential) / temperature + count * step
        if np.log(rng.random()) < log_ratio:  # False for NaN: a non-finite proposal is rejected
            copy_into(proposal, w)
            copy_into(proposal_grad, grad)
            potential = proposal_potential
            accepted[f] += 1.0
    return potential


@njit(cache=True)
def acceptances(tally, moves, n_updates):
    """[the updates' acceptance rate, then each scale family's] from ``tally`` = [U, accepted, families']."""
    rounds = (n_updates + moves.every - 1) // moves.every if moves.every > 0 else 0
    rates = np.full(tally.shape[0] - 1, np.nan)
    rates[0] = tally[1] / max(n_updates, 1)
    if rounds > 0:
        rates[1:] = tally[2:] / rounds
    return rates

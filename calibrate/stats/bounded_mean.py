"""One-sided tests and upper bounds for the mean of a variable bounded in [0, 1], by betting.

The test of H0: E[x] ≥ m against "the mean is lower" is the predictable plug-in betting test of
Waudby-Smith & Ramdas ("Estimating means of bounded random variables by betting", JRSSB 86(1),
2024, §4–5). A gambler starts with wealth 1 and, before seeing x_t, stakes the fraction λ_t ≥ 0 on
"x_t is below m": K_t = Π_{i ≤ t} (1 + λ_i (m − x_i)). When the x_i are independent with means ≥ m,
each factor has expectation ≤ 1 and λ_i depends only on x_1 … x_{i−1}, so (K_t) is a non-negative
supermartingale with K_0 = 1 and Ville's inequality gives P(sup_t K_t ≥ 1/α) ≤ α: the p-value
1 / max_t K_t is valid at every level, with no asymptotics and no Monte Carlo.

The bet is WSR's fixed-n choice λ_t = min(√(2 ln(1/α) / (n σ̂²_{t−1})), c / (1 − m)), with the
running mean μ̂_t = (½ + Σ x_i)/(t + 1) and variance σ̂²_t = (¼ + Σ (x_i − μ̂_i)²)/(t + 1): it adapts
to the variance (most rows of a certification test contribute exactly the midpoint, so the variance
is far below the worst case ¼ that Hoeffding and Bentkus pay), and the cap c < 1 keeps every factor
≥ 1 − c > 0. The tuning may use α and n because they are fixed before the data are seen.

The order of the x's matters for the value (not for validity): callers pass them in an order fixed
independently of the labels. Everything is vectorized over rows of a 2-D array (one row per
hypothesis) and deterministic.
"""

from __future__ import annotations

import math

import numpy as np

BET_CAP = 0.9  # c: the largest stake as a share of what the bounded range allows
_CHUNK_CELLS = 2_000_000  # rows × observations evaluated at once (memory bound)


def max_log_wealth(x: np.ndarray, null_mean: float | np.ndarray, alpha: float) -> np.ndarray:
    """max_t ln K_t for each row of `x` (shape (k, n), values in [0, 1]) against H0: mean ≥
    `null_mean` (one value, or one per row), betting tuned for level `alpha` and n observations.
    0 for rows with n = 0."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    k, n = x.shape
    m = np.broadcast_to(np.asarray(null_mean, dtype=np.float64), (k,))
    out = np.zeros(k)
    if n == 0 or k == 0:
        return out
    # mean ≥ 0 always holds (never rejectable); mean ≥ 1 means x ≡ 1 (refuted by any x < 1)
    out[m >= 1.0] = np.where((x[m >= 1.0] < 1.0).any(axis=1), np.inf, 0.0)
    inside = np.flatnonzero((m > 0.0) & (m < 1.0))
    step = max(1, _CHUNK_CELLS // n)
    for lo in range(0, inside.size, step):
        rows = inside[lo : lo + step]
        out[rows] = _max_log_wealth(x[rows], m[rows], alpha)
    return out


def _max_log_wealth(x: np.ndarray, m: np.ndarray, alpha: float) -> np.ndarray:
    return _wealth_at(x, _variance_stake(x, alpha), m)


def _variance_stake(x: np.ndarray, alpha: float) -> np.ndarray:
    """The stake before its cap, √(2 ln(1/α) / (n σ̂²_{t−1})) per row and t: it depends on the
    x's alone, not on the null mean, so a bisection over the mean computes it once."""
    n = x.shape[1]
    t = np.arange(1, n + 1, dtype=np.float64)
    mean = (0.5 + np.cumsum(x, axis=1)) / (t + 1.0)
    var = (0.25 + np.cumsum((x - mean) ** 2, axis=1)) / (t + 1.0)
    prior = np.concatenate([np.full((x.shape[0], 1), 0.25), var[:, :-1]], axis=1)
    return np.sqrt(2.0 * math.log(1.0 / alpha) / (n * np.maximum(prior, 1e-12)))


def _wealth_at(x: np.ndarray, variance_stake: np.ndarray, m: np.ndarray) -> np.ndarray:
    """max_t ln K_t of each row against its null mean m (0 < m < 1)."""
    m = m[:, None]
    stake = np.minimum(variance_stake, BET_CAP / (1.0 - m))
    log_wealth = np.cumsum(np.log1p(stake * (m - x)), axis=1)
    return np.maximum(log_wealth.max(axis=1), 0.0)


def p_values(x: np.ndarray, null_mean: float | np.ndarray, alpha: float) -> np.ndarray:
    """Valid p-values 1 / max_t K_t (capped at 1) for H0: mean ≥ `null_mean`, one per row."""
    return np.exp(-max_log_wealth(x, null_mean, alpha))


def rejects(x: np.ndarray, null_mean: float | np.ndarray, alpha: float) -> np.ndarray:
    """Whether each row's test rejects H0: mean ≥ `null_mean` at level `alpha`."""
    return max_log_wealth(x, null_mean, alpha) >= math.log(1.0 / alpha)


def upper_bound(x: np.ndarray, alpha: float, tolerance: float = 1e-5) -> float:
    """A (1 − α) upper confidence bound for the mean of `x` (1-D, values in [0, 1]): the least m the
    test rejects. The wealth at every t only grows with m (a larger m raises each factor, and the cap
    c/(1 − m) rises no faster than the stake's loss on an x above m shrinks), so the rejected means
    form an interval [U, 1] and bisection finds U; the upper end of the bracket (a rejected mean) is
    returned."""
    x = np.asarray(x, dtype=np.float64).reshape(1, -1)
    if x.size == 0:
        return 1.0
    low, high = float(x.mean()), 1.0 - 1e-12
    threshold = math.log(1.0 / alpha)
    stake = _variance_stake(x, alpha) if x.shape[1] <= _CHUNK_CELLS else None

    def rejected(mean: float) -> bool:  # `rejects(x, mean, alpha)`, the stake computed once
        if stake is None or mean <= 0.0:
            return bool(rejects(x, mean, alpha)[0])
        return bool(_wealth_at(x, stake, np.array([mean]))[0] >= threshold)

    if not rejected(high):
        return 1.0
    while high - low > tolerance:
        mid = (low + high) / 2.0
        low, high = (low, mid) if rejected(mid) else (mid, high)
    return high


def lower_bound(x: np.ndarray, alpha: float, tolerance: float = 1e-6) -> float:
    """A (1 − α) lower confidence bound for the mean of `x` (1-D, values in [0, 1])."""
    return 1.0 - upper_bound(1.0 - np.asarray(x, dtype=np.float64), alpha, tolerance)

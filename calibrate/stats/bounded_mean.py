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

A yes/no decision (`rejects`, `leading_rejections`, each step of `upper_bound`) needs only whether
K_t ever reaches 1/α, so it reads the x's in blocks and stops at the first block where it does:
each running sum goes on from the block before (the same doubles added in the same order, never
a carried total added to a block's own sum), so every ln K_t read is the double the whole
computation gives and the decision is the same. Certification's hypotheses mostly cross within a
few per cent of n.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

BET_CAP = 0.9  # c: the largest stake as a share of what the bounded range allows
_CHUNK_CELLS = 2_000_000  # rows × observations evaluated at once (memory bound)
_FIRST_BLOCK, _LAST_BLOCK = 1_024, 32_768  # observations an early-stopping test reads at once
_ROWS_AT_ONCE, _HORIZON = 16, 32_768  # `leading_rejections` reads rows together up to _HORIZON


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
    """Whether each row's test rejects H0: mean ≥ `null_mean` at level `alpha`, i.e.
    `max_log_wealth(x, null_mean, alpha) >= ln(1/α)`; a row is read only until its wealth
    reaches 1/α (`_crossed`)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    k, n = x.shape
    m = np.broadcast_to(np.asarray(null_mean, dtype=np.float64), (k,))
    out = np.zeros(k, dtype=bool)
    if not _stops_early(n, alpha):
        return max_log_wealth(x, m, alpha) >= math.log(1.0 / alpha)
    early = (m > 0.0) & (m < 1.0) & ((x >= 0.0) & (x <= 1.0)).all(axis=1)
    late = np.flatnonzero(~early)  # no bet, or values out of range (a NaN): all of the row
    out[late] = max_log_wealth(x[late], m[late], alpha) >= math.log(1.0 / alpha)
    rows = np.flatnonzero(early)
    for lo in range(0, rows.size, _ROWS_AT_ONCE):
        chunk = rows[lo : lo + _ROWS_AT_ONCE]
        out[chunk] = _crossed(
            lambda r, a, b: x[r, a:b], chunk, n, m, alpha, _Running.start(chunk.size), n
        )[0]
    return out


def leading_rejections(
    x_of: Callable[[np.ndarray, int, int], np.ndarray],
    k: int,
    n: int,
    null_mean: float,
    alpha: float,
) -> int:
    """How many of k hypotheses "mean ≥ `null_mean`", taken in order, `rejects` rejects before
    the first it does not (a fixed-sequence test), each on n observations (values in [0, 1], no
    NaN) that `x_of(rows, lo, hi)` gives as x[rows, lo:hi]. Rows are read only until their wealth
    reaches 1/α, a few rows at once up to `_HORIZON` observations, then one by one, so little is
    read past the first row not rejected. The wealth is computed exactly as `max_log_wealth`
    computes it (every running sum goes on from the block before, the same doubles added in the
    same order): the count is the one `rejects` gives."""
    if not (_stops_early(n, alpha) and 0.0 < null_mean < 1.0):
        for row in range(k):
            if not rejects(x_of(np.array([row]), 0, n), null_mean, alpha)[0]:
                return row
        return k
    m = np.full(k, float(null_mean))
    for lo in range(0, k, _ROWS_AT_ONCE):
        rows = np.arange(lo, min(k, lo + _ROWS_AT_ONCE))
        start = _Running.start(rows.size)
        crossed, run = _crossed(x_of, rows, n, m, alpha, start, min(n, _HORIZON))
        for i, row in enumerate(rows[~crossed].tolist()):  # in order, from where they stand
            if not _crossed(x_of, np.array([row]), n, m, alpha, run.take(np.array([i])), n)[0][0]:
                return row
    return k


def _stops_early(n: int, alpha: float) -> bool:
    """Whether a test of n observations at level α can stop once the wealth reaches 1/α (a
    positive threshold: `max_log_wealth` is at least 0)."""
    return n > 0 and math.log(1.0 / alpha) > 0.0


@dataclass(frozen=True)
class _Running:
    """Where k rows of the betting test stand after their first `t` observations: the running
    sums of x and of the squared deviations, the last variance and ln K_t (each (k, 1))."""

    t: int
    x_sum: np.ndarray
    square_sum: np.ndarray
    variance: np.ndarray
    log_wealth: np.ndarray

    @staticmethod
    def start(k: int) -> _Running:
        zeros = np.zeros((k, 1))
        return _Running(0, zeros, zeros, np.full((k, 1), 0.25), zeros)

    def take(self, keep: np.ndarray) -> _Running:
        """The rows `keep` (indices) only."""
        return _Running(
            self.t,
            self.x_sum[keep],
            self.square_sum[keep],
            self.variance[keep],
            self.log_wealth[keep],
        )


def _crossed(
    x_of: Callable[[np.ndarray, int, int], np.ndarray],
    rows: np.ndarray,
    n: int,
    m: np.ndarray,
    alpha: float,
    run: _Running,
    until: int,
) -> tuple[np.ndarray, _Running]:
    """Which `rows` (standing at `run`, null means m[rows] in (0, 1)) reach ln K_t ≥ ln(1/α) > 0
    by t = `until`, reading block by block and dropping a row once it does; and where the others
    stand at `until`."""
    threshold = math.log(1.0 / alpha)
    crossed = np.zeros(rows.size, dtype=bool)
    active = np.arange(rows.size)
    for lo, hi in _blocks(run.t, until):
        run, log_wealths = _step(run, x_of(rows[active], lo, hi), n, m[rows[active]], alpha)
        hit = (log_wealths >= threshold).any(axis=1)
        crossed[active[hit]] = True
        left = np.flatnonzero(~hit)
        active, run = active[left], run.take(left)
        if not active.size:
            break
    return crossed, run


def _blocks(lo: int, hi: int) -> Iterator[tuple[int, int]]:
    """[a, b) blocks covering lo … hi that double with the position, from _FIRST_BLOCK to
    _LAST_BLOCK observations."""
    while lo < hi:
        size = min(max(lo, _FIRST_BLOCK), _LAST_BLOCK)
        yield lo, min(hi, lo + size)
        lo += size


def _step(
    run: _Running, x: np.ndarray, n: int, m: np.ndarray, alpha: float
) -> tuple[_Running, np.ndarray]:
    """Rows standing at `run` after the block x (k, b) of their observations, and ln K_t over
    the block: `_variance_stake` and `_wealth_at` element for element."""
    lo, hi = run.t, run.t + x.shape[1]
    t = np.arange(lo + 1, hi + 1, dtype=np.float64)
    x_sums = _running_sums(run.x_sum, x, lo)
    mean = (0.5 + x_sums) / (t + 1.0)
    square_sums = _running_sums(run.square_sum, (x - mean) ** 2, lo)
    var = (0.25 + square_sums) / (t + 1.0)
    prior = np.concatenate([run.variance, var[:, :-1]], axis=1)
    variance_stake = np.sqrt(2.0 * math.log(1.0 / alpha) / (n * np.maximum(prior, 1e-12)))
    m = m[:, None]
    stake = np.minimum(variance_stake, BET_CAP / (1.0 - m))
    log_wealths = _running_sums(run.log_wealth, np.log1p(stake * (m - x)), lo)
    ends = (x_sums[:, -1:], square_sums[:, -1:], var[:, -1:], log_wealths[:, -1:])
    return _Running(hi, *ends), log_wealths


def _running_sums(before: np.ndarray, values: np.ndarray, lo: int) -> np.ndarray:
    """np.cumsum along whole rows, for a block starting at `lo` whose preceding running sums
    are `before` (k, 1): the same sequential additions, the same doubles."""
    if not lo:
        return np.cumsum(values, axis=1)
    return np.cumsum(np.concatenate([before, values], axis=1), axis=1)[:, 1:]


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
    early = threshold > 0.0 and not np.isnan(x).any()

    def rejected(mean: float) -> bool:  # `rejects(x, mean, alpha)`, the stake computed once
        if stake is None or mean <= 0.0:
            return bool(rejects(x, mean, alpha)[0])
        if early:
            return _reaches(x, stake, mean, threshold)
        return bool(_wealth_at(x, stake, np.array([mean]))[0] >= threshold)

    if not rejected(high):
        return 1.0
    while high - low > tolerance:
        mid = (low + high) / 2.0
        low, high = (low, mid) if rejected(mid) else (mid, high)
    return high


def _reaches(x: np.ndarray, variance_stake: np.ndarray, mean: float, threshold: float) -> bool:
    """`_wealth_at(x, variance_stake, [mean]) >= threshold` for one row (threshold > 0, no NaN),
    block by block, stopping at the first block where ln K_t reaches the threshold."""
    m = np.array([[mean]])
    cap, log_wealth = BET_CAP / (1.0 - m), np.zeros((1, 1))
    for lo, hi in _blocks(0, x.shape[1]):
        stake = np.minimum(variance_stake[:, lo:hi], cap)
        log_wealths = _running_sums(log_wealth, np.log1p(stake * (m - x[:, lo:hi])), lo)
        if (log_wealths >= threshold).any():
            return True
        log_wealth = log_wealths[:, -1:]
    return False


def lower_bound(x: np.ndarray, alpha: float, tolerance: float = 1e-6) -> float:
    """A (1 − α) lower confidence bound for the mean of `x` (1-D, values in [0, 1])."""
    return 1.0 - upper_bound(1.0 - np.asarray(x, dtype=np.float64), alpha, tolerance)

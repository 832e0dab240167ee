"""Drift statistics for `monitor`: PSI with a sample-size-aware limit, a two-sided CUSUM on daily
rates with its threshold simulated for a per-run false-alarm rate, a binomial excess test and a
one-sided test for a fallen rate.

Pure numpy/scipy on plain arrays; imports nothing from calibrate. Formulas: methods.md §4.2 (PSI and
its null distribution (1/n + 1/m)·χ²_{B−1}), §4.4 (tabular CUSUM on standardised daily rates).

The CUSUM's in-control mean p₀ and between-day variance τ² come from the reference days (τ² = 0 when
the days vary no more than binomial noise). Day t is standardised by its binomial SE plus τ² and the
uncertainty of p̂₀: z_t = (x_t/n_t − p̂₀) / √(p̂₀(1−p̂₀)/n_t + τ² + Var p̂₀). The threshold h is the
(1 − α) quantile of max_t max(S⁺_t, S⁻_t) over simulated in-control runs of the *whole* procedure
(reference re-estimated in every run, the real day volumes), so P(any alarm in this run) ≈ α.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binom, chi2, fisher_exact

PSI_BINS = 10
PSI_EFFECT = 0.1  # the conventional "moderate shift" band: never alarm below it (methods.md §4.2)
PSI_SMOOTHING = 0.5  # added to every bin count (Jeffreys), so an empty bin stays finite
CUSUM_K = 0.5  # allowance: half of a 1σ shift
MIN_SIMULATIONS = 2000


@dataclass(frozen=True, slots=True)
class InControl:
    """The reference behaviour of a daily rate: pooled mean, between-day variance, and the variance
    of the pooled mean itself."""

    p0: float
    tau2: float
    mean_var: float
    days: int
    trials: int


@dataclass(frozen=True, slots=True)
class Cusum:
    """Both one-sided CUSUM paths over the monitored days and where each first crossed h."""

    z: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    h: float
    k: float
    first_up: int | None
    first_down: int | None

    def onset(self, side: str) -> int | None:
        """The usual change-point estimate: the day after the path last stood at 0 before firing."""
        first = self.first_up if side == "up" else self.first_down
        if first is None:
            return None
        path = self.upper if side == "up" else self.lower
        zeros = np.flatnonzero(path[: first + 1] <= 0.0)
        return int(zeros[-1] + 1) if zeros.size else 0


def psi_edges(reference: np.ndarray, bins: int = PSI_BINS) -> np.ndarray:
    """Inner bin edges at the reference quantiles (fewer when the scores are discrete)."""
    qs = np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(qs)


def shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of values per bin (bin b holds edges[b−1] < v ≤ edges[b]), with ½ added to every
    count. Clipping empty bins at 1e-4 instead (Evidently) makes one empty bin in a 60-request
    chunk read as PSI ≈ 0.7, a "major shift" made of sampling noise."""
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=edges.size + 1)
    return (counts + PSI_SMOOTHING) / (values.size + PSI_SMOOTHING * counts.size)


def psi(reference_shares: np.ndarray, values: np.ndarray, edges: np.ndarray) -> float:
    """Σ_b (q_b − p_b)·ln(q_b / p_b) of `values` against the reference shares."""
    q = shares(values, edges)
    return float(np.sum((q - reference_shares) * np.log(q / reference_shares)))


def psi_limit(n_reference: int, n_current: int, bins: int, alpha: float) -> float:
    """Alarm limit: max(0.1, (1/n + 1/m)·χ²_{B−1}(1 − α)), so noise in small chunks never alarms and
    trivial shifts in huge chunks do not either."""
    noise = (1.0 / n_reference + 1.0 / n_current) * float(chi2.ppf(1.0 - alpha, max(bins - 1, 1)))
    return max(PSI_EFFECT, noise)


def in_control(successes: np.ndarray, trials: np.ndarray) -> InControl:
    """p̂₀ pooled over the reference days; τ² by moments (excess of the day-to-day variance over the
    binomial one, never negative)."""
    p0, tau2, mean_var = _moments(successes[None, :], trials)
    used = int((trials > 0).sum())
    return InControl(float(p0[0]), float(tau2[0]), float(mean_var[0]), used, int(trials.sum()))


def _moments(successes: np.ndarray, trials: np.ndarray) -> tuple[np.ndarray, ...]:
    """(p̂₀, τ̂², Var p̂₀) for a batch of reference series (rows) sharing the day volumes.

    τ² is the DerSimonian–Laird estimate, kept only when Pearson's dispersion statistic rejects
    "binomial days" at 5%: the moment estimate alone is positive half the time on binomial data.
    """
    used = trials > 0
    x, n = successes[:, used].astype(np.float64), trials[used].astype(np.float64)
    total = float(n.sum())
    if total == 0:
        zeros = np.zeros(successes.shape[0])
        return zeros, zeros, zeros
    p0 = x.sum(axis=1) / total
    p_se = _clip_rate(p0, total)
    weight = n[None, :] / (p_se * (1 - p_se))[:, None]
    q = (weight * (x / n - p0[:, None]) ** 2).sum(axis=1)
    df = n.size - 1
    spread = weight.sum(axis=1) - (weight**2).sum(axis=1) / weight.sum(axis=1)
    overdispersed = q > chi2.ppf(0.95, df) if df > 0 else np.zeros_like(p0, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau2 = np.where(overdispersed, np.maximum((q - df) / spread, 0.0), 0.0)
    mean_var = p_se * (1 - p_se) / total + tau2 / n.size
    return p0, tau2, mean_var


def _clip_rate(p: np.ndarray | float, trials: float) -> np.ndarray:
    """Keep the SE away from 0 when the reference rate is exactly 0 or 1."""
    eps = 0.5 / max(trials, 1.0)
    return np.clip(p, eps, 1.0 - eps)


def standardise(successes: np.ndarray, trials: np.ndarray, ic: InControl) -> np.ndarray:
    """z_t per day; NaN on days without traffic (the CUSUM skips them)."""
    return _z(
        successes, trials, np.array(ic.p0), np.array(ic.tau2), np.array(ic.mean_var), ic.trials
    )


def _z(
    successes: np.ndarray,
    trials: np.ndarray,
    p0: np.ndarray,
    tau2: np.ndarray,
    mean_var: np.ndarray,
    reference_trials: int,
) -> np.ndarray:
    p = _clip_rate(p0, reference_trials)[..., None]
    n = trials.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(p * (1 - p) / n + tau2[..., None] + mean_var[..., None])
        z = (successes / n - p0[..., None]) / se
    return np.where(trials > 0, z, np.nan)


def cusum_paths(z: np.ndarray, k: float = CUSUM_K) -> tuple[np.ndarray, np.ndarray]:
    """S⁺ and S⁻ along the last axis (works on one series or a batch); NaN days hold the paths."""
    upper, lower = np.zeros(z.shape), np.zeros(z.shape)
    up = np.zeros(z.shape[:-1])
    down = np.zeros(z.shape[:-1])
    for t in range(z.shape[-1]):
        step = z[..., t]
        held = np.isnan(step)
        up = np.where(held, up, np.maximum(0.0, up + step - k))
        down = np.where(held, down, np.maximum(0.0, down - step - k))
        upper[..., t], lower[..., t] = up, down
    return upper, lower


def cusum_threshold(
    reference_trials: np.ndarray,
    monitored_trials: np.ndarray,
    ic: InControl,
    alpha: float,
    rng: np.random.Generator,
    k: float = CUSUM_K,
) -> float:
    """h such that an in-control run of this length and these volumes alarms (either side) with
    probability ≈ alpha, by simulating the whole procedure."""
    sims = max(MIN_SIMULATIONS, int(np.ceil(50 / alpha)))
    ref_x = _draw(rng, reference_trials, ic, sims)
    mon_x = _draw(rng, monitored_trials, ic, sims)
    p0, tau2, mean_var = _moments(ref_x, reference_trials)
    z = _z(mon_x, monitored_trials, p0, tau2, mean_var, int(reference_trials.sum()))
    upper, lower = cusum_paths(z, k)
    worst = np.maximum(upper.max(axis=1, initial=0.0), lower.max(axis=1, initial=0.0))
    return float(np.quantile(worst, 1.0 - alpha, method="higher"))


def _draw(rng: np.random.Generator, trials: np.ndarray, ic: InControl, sims: int) -> np.ndarray:
    """In-control daily successes: the day's rate wanders with variance τ², then binomial noise.
    Without τ², by inverting each day's binomial CDF (exact, and far faster than per-draw)."""
    if ic.tau2 > 0:
        rate = ic.p0 + np.sqrt(ic.tau2) * rng.standard_normal((sims, trials.size))
        return rng.binomial(trials, np.clip(rate, 0.0, 1.0))
    u = rng.random((sims, trials.size))
    cdf = binom.cdf(np.arange(int(trials.max(initial=0)) + 1)[None, :], trials[:, None], ic.p0)
    out = np.empty(u.shape, dtype=np.int64)
    for t, n in enumerate(trials.tolist()):
        out[:, t] = np.minimum(np.searchsorted(cdf[t, : n + 1], u[:, t], side="left"), n)
    return out


def run_cusum(z: np.ndarray, h: float, k: float = CUSUM_K) -> Cusum:
    """Both one-sided CUSUMs on z; the first index where each exceeds h."""
    upper, lower = cusum_paths(z, k)
    return Cusum(z, upper, lower, h, k, _first_above(upper, h), _first_above(lower, h))


def _first_above(path: np.ndarray, h: float) -> int | None:
    hits = np.flatnonzero(path > h)
    return int(hits[0]) if hits.size else None


def excess_p_value(successes: int, trials: int, base_rate: float) -> float:
    """One-sided P(X ≥ successes) for X ~ Binomial(trials, base_rate)."""
    if successes <= 0:
        return 1.0
    return float(binom.sf(successes - 1, trials, base_rate))


def fall_p_value(current: tuple[int, int], reference: tuple[int, int]) -> float:
    """One-sided Fisher exact p-value that the current rate (successes, trials) is below the
    reference one."""
    (x, k), (a, n) = current, reference
    return float(fisher_exact([[x, k - x], [a, n - a]], alternative="less").pvalue)

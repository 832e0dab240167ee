"""Exact, vectorized evaluation of a whole grid of routing policies at once.

A policy family is a path of k tiers with one decision per non-final tier: request i stops at the
first decision stage j whose bin `b[j][i]` exceeds the policy's option `a[j]`, else at the last tier.
For a cascade, `b` is the rank of the tier's confidence in its threshold grid (keep iff c ≥ τ); for a
length rule it is the rank of -input_tokens. What a stop costs and how long it takes is given per
request and stop tier, so cascades (pay every tier touched) and up-front routers (pay one tier) share
this engine.

Every metric is a sum over requests, so it is computed from histograms over the bins with prefix
sums: O(n + Π(G_j+1)) per metric, never a Python loop over rows. Latency percentiles come from the
per-request sums exactly: a binned histogram locates the bin holding the rank, then the few values
in that bin are sorted. Money and scores are integers (nano-USD, micro-score) held in float64 below
2**53, so every sum is exact and independent of summation order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NANO_USD = 1e9
MICRO_SCORE = 1e6
PERCENTILES = (50, 95)
_LATENCY_BINS = 1024
_EDGE_SAMPLE = 65_536
_EXACT_CELLS = 4_000_000  # policies × bin members handled at once in the exact step


@dataclass(frozen=True)
class StopTable:
    """What happens to each request depending on the tier it stops at: (n, k) arrays."""

    cost_nano_usd: np.ndarray
    latency_us: np.ndarray
    score_micro: np.ndarray
    labeled: np.ndarray


@dataclass(frozen=True)
class GridResult:
    """Metrics of every policy of a grid, flattened in C order over the options (m policies)."""

    options: np.ndarray
    requests: int
    labeled: int
    stop_counts: np.ndarray
    cost_nano_usd: np.ndarray
    score_micro: np.ndarray
    latency_p50_us: np.ndarray
    latency_p95_us: np.ndarray


def quantize_usd(cost_usd: np.ndarray) -> np.ndarray:
    return np.rint(cost_usd * NANO_USD)


def quantize_score(score: np.ndarray) -> np.ndarray:
    return np.rint(np.nan_to_num(score, nan=0.0) * MICRO_SCORE)


def quantize_ms(latency_ms: np.ndarray) -> np.ndarray:
    return np.rint(latency_ms * 1000.0)


def percentile_rank(pct: int, n: int) -> int:
    """1-based rank of the nearest-rank (inverted CDF) percentile: smallest r with r/n ≥ pct/100."""
    return max(1, (pct * n + 99) // 100)


def evaluate_grid(bins: list[np.ndarray], n_options: list[int], stops: StopTable) -> GridResult:
    """Evaluate every option vector (a_0, …, a_{k-2}) with a_j in range(n_options[j])."""
    n, k = stops.cost_nano_usd.shape
    shape = tuple(n_options)
    score = stops.score_micro * stops.labeled[:, None]
    counts = np.stack([_sum_by_policy(bins, shape, j) for j in range(k)], axis=-1)
    cost = sum(_sum_by_policy(bins, shape, j, stops.cost_nano_usd[:, j]) for j in range(k))
    quality = sum(_sum_by_policy(bins, shape, j, score[:, j]) for j in range(k))
    p50, p95 = _latency_percentiles(bins, shape, stops.latency_us)
    return GridResult(
        options=_all_options(shape),
        requests=n,
        labeled=int(stops.labeled.sum()),
        stop_counts=np.rint(counts.reshape(-1, k)).astype(np.int64),
        cost_nano_usd=cost.reshape(-1),
        score_micro=quality.reshape(-1),
        latency_p50_us=p50,
        latency_p95_us=p95,
    )


def _all_options(shape: tuple[int, ...]) -> np.ndarray:
    return np.stack(np.unravel_index(np.arange(int(np.prod(shape))), shape), axis=1)


def _sum_by_policy(
    bins: list[np.ndarray],
    shape: tuple[int, ...],
    stop: int,
    weights: np.ndarray | None = None,
    value_bin: np.ndarray | None = None,
    n_value_bins: int = 1,
) -> np.ndarray:
    """Σ weights over requests stopping at tier `stop`, for every option vector, per value bin.

    Stopping at `stop` < k-1 means b_i ≤ a_i for i < stop and b_stop > a_stop; the last tier needs
    b_i ≤ a_i at every decision stage. The result has `shape` (+ a last axis of n_value_bins when
    value_bin is given); the histogram is over the first stop+1 decision stages only, and prefix
    sums turn "bin" into "option".
    """
    dims = min(stop + 1, len(shape))
    hist_shape = shape[:dims] + (n_value_bins,)
    extra = value_bin if value_bin is not None else np.zeros(len(bins[0]), dtype=np.int64)
    flat = np.ravel_multi_index(tuple(bins[:dims]) + (extra.astype(np.int64),), hist_shape)
    hist = np.bincount(flat, weights=weights, minlength=int(np.prod(hist_shape)))
    hist = hist.reshape(hist_shape)
    for axis in range(dims):
        hist = np.cumsum(hist, axis=axis)
        if axis == stop:  # Σ_{b > a} = total − Σ_{b ≤ a}
            hist = np.take(hist, [-1], axis=axis) - hist
    hist = hist.reshape(shape[:dims] + (1,) * (len(shape) - dims) + (n_value_bins,))
    hist = np.broadcast_to(hist, shape + (n_value_bins,))
    return hist if value_bin is not None else hist[..., 0]


def _latency_percentiles(
    bins: list[np.ndarray], shape: tuple[int, ...], latency_us: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest-rank p50/p95 of the per-request latency for every policy."""
    n, k = latency_us.shape
    beta, n_bins = _value_bins(latency_us)
    hist = sum(_sum_by_policy(bins, shape, j, None, beta[:, j], n_bins) for j in range(k))
    cum = np.cumsum(hist.reshape(-1, n_bins), axis=1)
    members = _bin_members(beta, n_bins)
    options = _all_options(shape)
    out = []
    for pct in PERCENTILES:
        rank = percentile_rank(pct, n)
        v_star = np.argmax(cum >= rank - 0.5, axis=1)
        below = np.where(v_star > 0, cum[np.arange(len(v_star)), v_star - 1], 0.0)
        rank_in_bin = rank - np.rint(below).astype(np.int64)
        values = np.empty(len(options))
        for v in np.unique(v_star):
            policies = np.flatnonzero(v_star == v)
            rows, tiers = members[v]
            in_bin = latency_us[rows, tiers]
            if in_bin.min() == in_bin.max():  # a bin of one repeated value (ties are common)
                values[policies] = in_bin[0]
                continue
            gathered = (np.stack([b[rows] for b in bins]), tiers, in_bin)
            for chunk in np.array_split(policies, 1 + policies.size * rows.size // _EXACT_CELLS):
                values[chunk] = _values_in_bin(*gathered, options[chunk], rank_in_bin[chunk])
        out.append(values)
    return out[0], out[1]


def _value_bins(latency_us: np.ndarray) -> tuple[np.ndarray, int]:
    """Bin every (request, stop) latency by quantiles of a strided sample: bins only locate a rank,
    so any edges are correct; roughly equal-mass edges keep the exact step small."""
    sample = latency_us[:: max(1, latency_us.size // _EDGE_SAMPLE)].reshape(-1)  # rows, every stop
    edges = np.unique(np.quantile(sample, np.linspace(0, 1, _LATENCY_BINS + 1)[1:-1]))
    beta = np.searchsorted(edges, latency_us, side="right").astype(np.int16)
    return beta, edges.size + 1


def _bin_members(beta: np.ndarray, n_bins: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each value bin, the (request, stop tier) pairs whose latency falls in it."""
    flat = beta.reshape(-1)
    order = np.argsort(flat, kind="stable")  # int16 keys: numpy uses a linear-time radix sort
    bounds = np.searchsorted(flat[order], np.arange(n_bins + 1))
    k = beta.shape[1]
    return [
        (order[lo:hi] // k, order[lo:hi] % k)
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def _values_in_bin(
    member_bins: np.ndarray,
    tiers: np.ndarray,
    values: np.ndarray,
    options: np.ndarray,
    ranks: np.ndarray,
) -> np.ndarray:
    """For each policy, the ranks[p]-th smallest latency among its requests that fall in the bin."""
    stages = member_bins.shape[0]
    stop = np.full((len(options), tiers.size), stages, dtype=np.int64)
    undecided = np.ones(stop.shape, dtype=bool)
    for j in range(stages):
        here = undecided & (member_bins[j][None, :] > options[:, j][:, None])
        stop[here] = j
        undecided &= ~here
    chosen = np.where(stop == tiers[None, :], values[None, :], np.inf)
    chosen = np.partition(chosen, np.unique(ranks - 1), axis=1)
    return chosen[np.arange(len(options)), ranks - 1]

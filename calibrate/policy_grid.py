"""Exact, vectorized evaluation of a whole grid of routing policies at once.

A policy family is a path of k tiers with one decision per non-final tier: request i stops at the
first decision stage j whose bin `b[j][i]` exceeds the policy's option `a[j]`, else at the last tier.
For a cascade, `b` is the rank of the tier's confidence in its threshold grid (keep iff c ≥ τ); for a
length rule it is the rank of -input_tokens. What a stop costs and how long it takes is given per
request and stop, so cascades (pay every tier touched) and up-front routers (pay one tier) share
this engine.

Every metric is a sum over requests, so it is computed from histograms over the bins with prefix
sums: O(n + Π(G_j+1)) per metric, never a Python loop over rows. Latency percentiles are exact order
statistics of the per-request sums: latencies become integer codes (equal codes ⇔ equal µs, order
kept), a histogram over (policy, coarse code bin) finds the bin holding each policy's rank, and one
pass over the requests in the bins that were hit counts, per policy, the codes inside them. Money
and scores are integers (nano-USD, micro-score) held in float64 below 2**53, so every sum is exact
and independent of summation order.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

NANO_USD = 1e9
MICRO_SCORE = 1e6
PERCENTILES = (50, 95)
CODE_LIMIT = 1 << 20  # beyond this many µs-unit codes, codes rank the distinct values instead
_MAX_BIN_CODES = 4096  # no coarse bin spans more codes, which bounds the per-policy count table


@dataclass(frozen=True)
class CoarseBins:
    """Consecutive latency codes grouped into bins of similar mass; a heavy code has its own bin."""

    of_code: np.ndarray  # (n_codes,) bin of each code, non-decreasing
    first: np.ndarray  # (n_bins,) first code with mass in the bin
    width: np.ndarray  # (n_bins,) codes from the first to the last with mass
    single: np.ndarray  # (n_bins,) exactly one code has mass: a rank there needs no count

    @property
    def size(self) -> int:
        return int(self.first.size)


@dataclass(frozen=True)
class LatencyAxis:
    """The latency codes of one sweep: code → µs (base_us + unit_us × code, or values_us[code])
    and the coarse bins over them that the percentile histograms use."""

    base_us: float
    unit_us: float
    values_us: np.ndarray | None
    bins: CoarseBins

    def to_us(self, codes: np.ndarray) -> np.ndarray:
        if self.values_us is not None:
            return self.values_us[codes]
        return self.base_us + self.unit_us * codes.astype(np.float64)


@dataclass(frozen=True)
class LatencyColumn:
    """One stop's per-request latency: its code, its coarse bin, and the histogram of codes."""

    codes: np.ndarray
    bins: np.ndarray
    counts: np.ndarray


@dataclass(frozen=True)
class StopTable:
    """What stopping at each stop of a path means for each request: one column per stop.

    Cost is nano-USD for all n requests; score is micro-score for the `labeled_rows` only.
    """

    cost_nano_usd: tuple[np.ndarray, ...]
    score_micro: tuple[np.ndarray, ...]
    latency: tuple[LatencyColumn, ...]
    labeled_rows: np.ndarray
    axis: LatencyAxis


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


def latency_columns(
    latency_ms: np.ndarray, sums: Iterable[tuple[int, ...]]
) -> tuple[LatencyAxis, dict[tuple[int, ...], LatencyColumn]]:
    """Codes of every needed sum of tiers (a cascade pays the tiers of a path prefix).

    Latencies are whole µs. Codes count their common unit (1 ms when the logs hold whole
    milliseconds) from the smallest possible sum. When that would need more than CODE_LIMIT codes,
    they are the ranks of the distinct sums instead (a sort, but still exact).
    """
    sums = sorted(set(sums))
    tiers = [quantize_ms(latency_ms[:, j]) for j in range(latency_ms.shape[1])]  # whole µs
    unit = max(1, int(np.gcd.reduce([np.gcd.reduce(t.astype(np.int64), initial=0) for t in tiers])))
    floors = [min(0.0, float(t.min())) for t in tiers]
    n_codes = (
        int(sum(max(0.0, float(t.max())) - f for t, f in zip(tiers, floors, strict=True))) // unit
        + 1
    )
    values_us = None
    if n_codes <= CODE_LIMIT:  # (t - f) / unit is a whole number, so the float division is exact
        units = [((t - f) / unit).astype(np.int32) for t, f in zip(tiers, floors, strict=True)]
        codes = {}
        for s in sums:  # floors of the tiers not summed shift the code up to the common origin
            shift = int(sum(-f for j, f in enumerate(floors) if j not in s)) // unit
            codes[s] = _sum_codes([units[j] for j in s], shift)
    else:
        totals = [sum(tiers[j] for j in s).astype(np.int64) for s in sums]
        distinct, inverse = np.unique(np.concatenate(totals), return_inverse=True)
        codes = dict(zip(sums, np.split(inverse.astype(np.int32), len(sums)), strict=True))
        values_us, n_codes = distinct.astype(np.float64), distinct.size
    counts = {s: np.bincount(c, minlength=n_codes) for s, c in codes.items()}
    pairs = latency_ms.shape[0] * max(len(s) for s in sums)
    bins = _coarse_bins(np.sum(list(counts.values()), axis=0), _coarse_bin_count(pairs))
    axis = LatencyAxis(float(sum(floors)), float(unit), values_us, bins)
    return axis, {
        s: LatencyColumn(c, np.take(bins.of_code, c), counts[s]) for s, c in codes.items()
    }


def _sum_codes(parts: list[np.ndarray], offset: int) -> np.ndarray:
    """Σ parts + offset, without a copy for a single part at offset 0 (int32: codes < CODE_LIMIT)."""
    if len(parts) == 1 and offset == 0:
        return parts[0]
    total = parts[0] + np.int32(offset)
    for part in parts[1:]:
        total += part
    return total


def evaluate_grid(
    bins: list[np.ndarray], n_options: list[int], stops: StopTable, shared: dict | None = None
) -> GridResult:
    """Evaluate every option vector (a_0, …, a_{k-2}) with a_j in range(n_options[j]).

    `shared`, a dict kept for one sweep, lets families whose first stage bins requests the same way
    (the same bins array) reuse the per-cell sums of the stops they have in common.
    """
    shape = tuple(n_options)
    if not shape:
        return _one_policy(stops)
    cells = _cell_ids(bins, shape)
    counts, by_cost, by_score, by_latency = [], [], [], []
    for s in range(len(stops.latency)):
        depth = min(s + 1, len(shape))
        sums = _cell_sums(cells[depth], shape[:depth], stops, s, shared if depth == 1 else None)
        counts.append(_to_options(sums.latency.sum(axis=-1), shape, s).reshape(-1))
        by_latency.append(sums.latency)
        by_cost.append(sums.cost)
        by_score.append(sums.score)
    cost, quality = _sum_over_stops(by_cost, shape), _sum_over_stops(by_score, shape)
    latency = _sum_over_stops(by_latency, shape)
    p50, p95 = _latency_percentiles(latency.reshape(-1, stops.axis.bins.size), cells, shape, stops)
    return GridResult(
        options=_all_options(shape),
        requests=stops.latency[0].codes.size,
        labeled=int(stops.labeled_rows.size),
        stop_counts=np.stack(counts, axis=1).astype(np.int64),
        cost_nano_usd=cost.reshape(-1),
        score_micro=quality.reshape(-1),
        latency_p50_us=p50,
        latency_p95_us=p95,
    )


@dataclass(frozen=True)
class _CellSums:
    """Sums over the requests in each cell that stop at one stop: latency by coarse bin, cost, score."""

    latency: np.ndarray
    cost: np.ndarray
    score: np.ndarray

    def copy(self) -> _CellSums:
        return _CellSums(self.latency.copy(), self.cost.copy(), self.score.copy())


def _cell_sums(
    cell: np.ndarray, cell_shape: tuple[int, ...], stops: StopTable, s: int, shared: dict | None
) -> _CellSums:
    """Per-cell sums of stop s (a fresh copy: callers sum them in place)."""
    column = stops.latency[s]
    key = (id(cell), id(column))
    if shared is not None and key in shared:
        return shared[key][-1].copy()
    nb, size = stops.axis.bins.size, int(np.prod(cell_shape))
    latency = np.bincount(cell * np.intp(nb) + column.bins, minlength=size * nb)
    cost = np.bincount(cell, stops.cost_nano_usd[s], size)
    score = np.bincount(cell[stops.labeled_rows], stops.score_micro[s], size)
    sums = _CellSums(
        latency.reshape(cell_shape + (nb,)), cost.reshape(cell_shape), score.reshape(cell_shape)
    )
    if shared is None:
        return sums
    shared[key] = (cell, column, sums)  # holding both keeps their ids from being reused
    return sums.copy()


def _one_policy(stops: StopTable) -> GridResult:
    """No decision stage: every request stops at the one tier; its code histogram is the latency
    distribution."""
    n = stops.latency[0].codes.size
    ranks = [percentile_rank(pct, n) for pct in PERCENTILES]
    codes = np.searchsorted(np.cumsum(stops.latency[0].counts), ranks, side="left")
    p50, p95 = stops.axis.to_us(codes)
    return GridResult(
        options=np.zeros((1, 0), dtype=np.int64),
        requests=n,
        labeled=int(stops.labeled_rows.size),
        stop_counts=np.array([[n]], dtype=np.int64),
        cost_nano_usd=np.array([stops.cost_nano_usd[0].sum()]),
        score_micro=np.array([stops.score_micro[0].sum()]),
        latency_p50_us=np.array([p50]),
        latency_p95_us=np.array([p95]),
    )


def _all_options(shape: tuple[int, ...]) -> np.ndarray:
    if not shape:
        return np.zeros((1, 0), dtype=np.intp)
    return np.stack(np.unravel_index(np.arange(int(np.prod(shape))), shape), axis=1)


def _cell_ids(bins: list[np.ndarray], shape: tuple[int, ...]) -> list[np.ndarray | None]:
    """cells[depth]: each request's flat (C-order) index of its bins at the first `depth` stages."""
    cells: list[np.ndarray | None] = [None]
    for j, b in enumerate(bins):
        cells.append(b if j == 0 else cells[-1] * np.intp(shape[j]) + b)
    return cells


def _to_options(hist: np.ndarray, shape: tuple[int, ...], stop: int) -> np.ndarray:
    """Per-cell sums of requests stopping at `stop` → per-option sums (in place, then broadcast).

    `hist` is over the bins of the first min(stop+1, d) stages (+ any trailing axes). Stopping at
    `stop` < d means b_j ≤ a_j for j < stop and b_stop > a_stop; the last stop needs b_j ≤ a_j at
    every stage; prefix sums along each stage axis turn "bin" into "option".
    """
    dims = min(stop + 1, len(shape))
    trailing = hist.shape[dims:]
    for axis in range(dims):
        _cumulate(hist, axis, complement=axis == stop)
    hist = hist.reshape(shape[:dims] + (1,) * (len(shape) - dims) + trailing)
    return np.broadcast_to(hist, shape + trailing)


def _sum_over_stops(hists: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Σ over stops of per-option sums, from per-cell sums (in place): hists[s] is over the bins of
    the first min(s+1, d) stages (+ trailing axes), as for `_to_options`. Working from the last stage
    axis down, the stops that share an axis share its prefix sum."""
    total = hists[len(shape)]  # the last stop: b_j ≤ a_j at every stage
    for axis in reversed(range(len(shape))):
        _cumulate(total, axis, complement=False)
        own = hists[axis]  # stop `axis`: b > a there, b ≤ a before (summed at later axes)
        _cumulate(own, axis, complement=True)
        total += own.reshape(
            shape[: axis + 1] + (1,) * (len(shape) - axis - 1) + own.shape[axis + 1 :]
        )
    return total


def _cumulate(hist: np.ndarray, axis: int, complement: bool) -> None:
    """In place along `axis`: slice a becomes Σ_{b ≤ a}, or Σ_{b > a} when `complement`.

    Slice by slice, because np.cumsum along a leading axis is an order of magnitude slower.
    """
    view = np.moveaxis(hist, axis, 0)
    for a in range(1, view.shape[0]):
        view[a] += view[a - 1]
    if complement:
        total = view[-1].copy()
        np.subtract(total, view, out=view)


def _coarse_bins(counts: np.ndarray, n_bins: int) -> CoarseBins:
    """About n_bins bins of equal mass; a heavy code (ties are common) gets a bin of its own."""
    target = max(1.0, counts.sum() / n_bins)
    window = (np.cumsum(counts) - counts) // target
    heavy = counts > target / 2
    starts = np.ones(counts.size, dtype=bool)
    starts[1:] = (window[1:] != window[:-1]) | heavy[1:] | heavy[:-1]
    starts[::_MAX_BIN_CODES] = True
    of_code = np.cumsum(starts, dtype=np.int32) - 1
    massive = np.flatnonzero(counts)
    bin_of_massive = of_code[massive]
    bins = np.arange(int(of_code[-1]) + 1)
    lo = np.searchsorted(bin_of_massive, bins, side="left")
    hi = np.searchsorted(bin_of_massive, bins, side="right") - 1
    empty = hi < lo
    lo, hi = np.where(empty, 0, lo), np.where(empty, 0, hi)
    return CoarseBins(
        of_code=of_code,
        first=massive[lo],
        width=massive[hi] - massive[lo] + 1,
        single=~empty & (hi == lo),
    )


def _coarse_bin_count(n_pairs: int) -> int:
    """Balances the (policy × bin) histogram against the per-policy pass over a bin's requests."""
    return int(np.clip(np.sqrt(4.0 * n_pairs), 8, 4096))


def _latency_percentiles(
    cum: np.ndarray, cells: list[np.ndarray | None], shape: tuple[int, ...], stops: StopTable
) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest-rank p50/p95 of the per-request latency for every policy, from the
    (policies × coarse bins) histogram `cum` (turned into cumulative counts in place)."""
    latency, axis = stops.latency, stops.axis
    n, nb = latency[0].codes.size, axis.bins.size
    ranks = [percentile_rank(pct, n) for pct in PERCENTILES]
    np.cumsum(cum, axis=1, out=cum)
    m = cum.shape[0]
    offset = np.arange(m) * (n + 1)  # rows stacked into one ascending array, searched at once
    cum += offset[:, None]
    flat = cum.reshape(-1)
    policy, bin_, rank = [], [], []
    for r in ranks:
        at = np.searchsorted(flat, offset + r, side="left")
        hit = at - np.arange(m) * nb
        below = np.where(hit > 0, flat[np.maximum(at - 1, 0)] - offset, 0)
        policy.append(np.arange(m))
        bin_.append(hit)
        rank.append(r - below)
    policy, bin_, rank = np.concatenate(policy), np.concatenate(bin_), np.concatenate(rank)
    codes = axis.bins.first[bin_]
    look = np.flatnonzero(~axis.bins.single[bin_])
    if look.size:
        entries = _Entries(policy[look], bin_[look], rank[look])
        codes[look] = _codes_in_bins(entries, axis.bins, latency, cells, shape)
    values = axis.to_us(codes)
    return values[:m], values[m:]


@dataclass(frozen=True)
class _Entries:
    """Rank queries: the rank-th smallest latency of `policy` among its requests in `bin`."""

    policy: np.ndarray
    bin: np.ndarray
    rank: np.ndarray


def _codes_in_bins(
    entries: _Entries,
    bins: CoarseBins,
    latency: tuple[LatencyColumn, ...],
    cells: list[np.ndarray | None],
    shape: tuple[int, ...],
) -> np.ndarray:
    """The code answering each rank query, by counting codes inside its bin for its policy.

    Each query meets every (request, stop) whose code lies in its bin and keeps those where its
    policy stops the request there; work is the sum over queries of their bin's mass.
    """
    order = np.argsort(entries.bin, kind="stable")
    policy, bin_, rank = entries.policy[order], entries.bin[order], entries.rank[order]
    width = bins.width[bin_]
    start = np.cumsum(width) - width  # each query's segment of the count table
    per_bin = np.bincount(bin_, minlength=bins.size)
    first_query = np.cumsum(per_bin) - per_bin
    table = np.zeros(int(width.sum()), dtype=np.int64)
    for s, column in enumerate(latency):
        rows = np.flatnonzero(np.take(per_bin > 0, column.bins))
        if rows.size:
            stops_here = _stops_here(shape, s)
            cell = cells[min(s + 1, len(shape))][rows]
            meet = _Meetings(rows, column, bins, per_bin, first_query, cell)
            table += meet.counts(stops_here, policy * stops_here.shape[1], start, table.size)
    cum = np.cumsum(table)
    before = np.where(start > 0, cum[np.maximum(start - 1, 0)], 0)
    found = np.searchsorted(cum, before + rank, side="left")
    codes = np.empty_like(found)
    codes[order] = bins.first[bin_] + found - start
    return codes


class _Meetings:
    """The (request, query) pairs of one stop: row i meets the reps[i] queries of its bin, which
    are consecutive from first[i]. Rows are ordered by reps, descending, so that the rows meeting
    at least t+1 queries are a prefix and pass t is plain slicing (no np.repeat)."""

    def __init__(self, rows, column, bins, per_bin, first_query, cell) -> None:
        hit = column.bins[rows]
        offset = column.codes[rows] - bins.first[hit]
        reps = per_bin[hit]
        keys = -reps.astype(np.int16 if reps.max() < 1 << 15 else np.int64)  # 16 bits: radix sort
        by_reps = np.argsort(keys, kind="stable")
        self.reps, self.first = reps[by_reps], first_query[hit[by_reps]]
        self.offset, self.cell = offset[by_reps], cell[by_reps]

    def counts(self, stops_here, policy_base, start, size) -> np.ndarray:
        """Per query segment, how many of its pairs the query's policy stops here, by code."""
        table = np.zeros(size, dtype=np.int64)
        at_least = np.cumsum(np.bincount(self.reps)[::-1])[::-1]  # rows meeting ≥ t queries
        flat = stops_here.reshape(-1)
        for t in range(int(self.reps[0])):
            k = int(at_least[t + 1])
            query = self.first[:k] + t
            keep = flat[policy_base[query] + self.cell[:k]]
            table += np.bincount((start[query] + self.offset[:k])[keep], minlength=size)
        return table


@functools.lru_cache(maxsize=32)
def _stops_here(shape: tuple[int, ...], stop: int) -> np.ndarray:
    """(policies × cells) bool: does the policy stop at `stop` a request in that cell?

    Cells enumerate the bins of the first min(stop+1, d) stages in C order, like `_cell_ids`.
    """
    dims = min(stop + 1, len(shape))
    options = _all_options(shape)
    cell_bins = _all_options(shape[:dims])
    here = np.ones((options.shape[0], cell_bins.shape[0]), dtype=bool)
    for j in range(dims):
        above = cell_bins[None, :, j] > options[:, None, j]
        here &= above if j == stop else ~above
    here.flags.writeable = False  # shared by every call with this shape (cached)
    return here

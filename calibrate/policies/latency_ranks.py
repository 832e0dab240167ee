"""Exact order statistics of per-request latency sums, for many routing policies at once.

A request's latency under a policy is the sum of the tiers it touched: whole µs. `latency_columns`
turns every needed sum into integer codes (equal codes ⇔ equal µs, order kept) and groups the codes
into coarse bins of similar mass. The grid engine histograms (policy, coarse bin) to find, for each
policy and percentile, the bin holding the rank; `codes_at_ranks` then finds the exact code inside
the bin. Nothing here knows what a policy is: the caller says which cell each request is in and
which (policy, cell) pairs stop a request at each stop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

CODE_LIMIT = 1 << 20  # beyond this many µs-unit codes, codes rank the distinct values instead
_MAX_BIN_CODES = 4096  # no coarse bin spans more codes, which bounds the per-query count table


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


def quantize_ms(latency_ms: np.ndarray) -> np.ndarray:
    return np.rint(latency_ms * 1000.0)


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
        totals = [np.sum([tiers[j] for j in s], axis=0).astype(np.int64) for s in sums]
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


@dataclass(frozen=True)
class RankQueries:
    """Rank queries: the rank-th smallest latency of `policy` among its requests in `bin`."""

    policy: np.ndarray
    bin: np.ndarray
    rank: np.ndarray


def codes_at_ranks(
    queries: RankQueries,
    axis: LatencyAxis,
    latency: Sequence[LatencyColumn],
    cells: Sequence[np.ndarray],
    stops_here: Callable[[int], np.ndarray],
    requests: Sequence[np.ndarray | None] | None = None,
) -> np.ndarray:
    """The latency code answering each rank query.

    latency[s] is stop s's column; cells[s] each request's cell as the policies see it at stop s,
    and stops_here(s) the (policies × cells) table of whether the policy stops such a request
    there. A query whose bin holds one code is answered by it; any other meets every request whose
    code at some stop lies in its bin and counts, code by code, those its policy stops there. The
    work is the sum over those queries of their bin's mass. `requests[s]`: how many requests each
    row of stop s stands for (None, or a None entry: one each).
    """
    bins = axis.bins
    codes = bins.first[queries.bin]
    look = np.flatnonzero(~bins.single[queries.bin])
    if look.size:
        weights = list(requests) if requests is not None else [None] * len(latency)
        codes[look] = _counted(queries, look, bins, latency, cells, stops_here, weights)
    return codes


def _counted(queries, look, bins, latency, cells, stops_here, weights) -> np.ndarray:
    """Codes of the queries `look` (whose bins hold several codes), by counting."""
    by_bin = np.argsort(queries.bin[look], kind="stable")
    order = look[by_bin]
    policy, bin_, rank = queries.policy[order], queries.bin[order], queries.rank[order]
    width = bins.width[bin_]
    start = np.cumsum(width) - width  # each query's segment of the count table
    per_bin = np.bincount(bin_, minlength=bins.size)
    first_query = np.cumsum(per_bin) - per_bin
    table = np.zeros(int(width.sum()), dtype=np.int64)
    for s, column in enumerate(latency):
        rows = np.flatnonzero(np.take(per_bin > 0, column.bins))
        if rows.size:
            here = stops_here(s)
            weight = None if weights[s] is None else weights[s][rows]
            meet = _Meetings(rows, column, bins, per_bin, first_query, cells[s][rows], weight)
            table += meet.counts(here, policy * here.shape[1], start, table.size)
    cum = np.cumsum(table)
    before = np.where(start > 0, cum[np.maximum(start - 1, 0)], 0)
    found = np.searchsorted(cum, before + rank, side="left")
    codes = np.empty_like(found)
    codes[by_bin] = bins.first[bin_] + found - start
    return codes


class _Meetings:
    """The (request, query) pairs of one stop: row i meets the reps[i] queries of its bin, which
    are consecutive from first[i]. Rows are ordered by reps, descending, so that the rows meeting
    at least t+1 queries are a prefix and pass t is plain slicing (no np.repeat)."""

    def __init__(self, rows, column, bins, per_bin, first_query, cell, weight) -> None:
        hit = column.bins[rows]
        offset = column.codes[rows] - bins.first[hit]
        reps = per_bin[hit]
        keys = -reps.astype(np.int16 if reps.max() < 1 << 15 else np.int64)  # 16 bits: radix sort
        by_reps = np.argsort(keys, kind="stable")
        self.reps, self.first = reps[by_reps], first_query[hit[by_reps]]
        self.offset, self.cell = offset[by_reps], cell[by_reps]
        self.weight = None if weight is None else weight[by_reps]

    def counts(self, stops_here, policy_base, start, size) -> np.ndarray:
        """Per query segment, how many of its pairs the query's policy stops here, by code."""
        table = np.zeros(size, dtype=np.int64)
        at_least = np.cumsum(np.bincount(self.reps)[::-1])[::-1]  # rows meeting ≥ t queries
        flat = stops_here.reshape(-1)
        for t in range(int(self.reps[0])):
            k = int(at_least[t + 1])
            query = self.first[:k] + t
            keep = flat[policy_base[query] + self.cell[:k]]
            at = (start[query] + self.offset[:k])[keep]
            if self.weight is None:
                table += np.bincount(at, minlength=size)
            else:
                table += np.bincount(at, self.weight[:k][keep], size).astype(np.int64)
        return table


def weighted_columns(
    latency_us: Sequence[np.ndarray], requests: Sequence[np.ndarray]
) -> tuple[LatencyAxis, list[LatencyColumn]]:
    """Codes of aggregated rows: per stop, each row's latency (whole µs) and how many requests it
    holds. Codes count the values' common unit from the smallest (the ranks of the distinct values
    when that needs more than CODE_LIMIT codes); coarse bins balance the rows (the work of a rank
    query), the code histograms count requests."""
    values = np.concatenate(latency_us).astype(np.int64)
    lo = int(values.min())
    unit = max(1, int(np.gcd.reduce(values - lo, initial=0)))
    if (int(values.max()) - lo) // unit < CODE_LIMIT:
        codes_all = ((values - lo) // unit).astype(np.int32)
        n_codes = int(codes_all.max()) + 1
        base, step, values_us = float(lo), float(unit), None
    else:
        distinct, inverse = np.unique(values, return_inverse=True)
        codes_all = inverse.astype(np.int32).reshape(-1)
        n_codes, base, step, values_us = distinct.size, 0.0, 1.0, distinct.astype(np.float64)
    codes = np.split(codes_all, np.cumsum([v.size for v in latency_us])[:-1])
    rows = np.bincount(codes_all, minlength=n_codes)
    bins = _coarse_bins(rows, _coarse_bin_count(int(values.size)))
    axis = LatencyAxis(base, step, values_us, bins)
    columns = [
        LatencyColumn(c, np.take(bins.of_code, c), np.bincount(c, w, n_codes).astype(np.int64))
        for c, w in zip(codes, requests, strict=True)
    ]
    return axis, columns

"""Exact, vectorized evaluation of a whole grid of routing policies at once.

A policy family is a path of k tiers with one decision per non-final tier: request i stops at the
first decision stage j whose bin `b[j][i]` exceeds the policy's option `a[j]`, else at the last tier.
For a cascade, `b` is the rank of the tier's confidence in its threshold grid (keep iff c ≥ τ); for a
length rule it is the rank of -input_tokens. What a stop costs and how long it takes is given per
request and stop, so cascades (pay every tier touched) and up-front routers (pay one tier) share
this engine.

Every metric is a sum over requests, so it is computed from histograms over the bins with prefix
sums: O(n + Π(G_j+1)) per metric, never a Python loop over rows. Latency percentiles are exact order
statistics of the per-request sums: a histogram over (policy, coarse latency bin) finds the bin
holding each policy's rank, and `latency_ranks` finds the exact value inside it. Money and scores
are integers (nano-USD, micro-score) held in float64 below 2**53, so every sum is exact and
independent of summation order.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from calibrate.policies.latency_ranks import LatencyAxis, LatencyColumn, RankQueries, codes_at_ranks

NANO_USD = 1e9
MICRO_SCORE = 1e6
PERCENTILES = (50, 95)


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
class StopCells:
    """One stop of a path as weighted rows: each row is a group of requests sharing a cell (their
    bins' flat C-order index at the stages up to the stop's depth, min(stop+1, stages)) and a
    latency code, with how many requests it holds (`requests`; None: one per row) and their summed
    cost (nano-USD) if they stop here. The labeled requests' cells and scores (micro-score) at this
    stop come separately: scores are summed over the labeled requests only."""

    cell: np.ndarray
    latency: LatencyColumn
    requests: np.ndarray | None
    cost_nano_usd: np.ndarray
    scored_cell: np.ndarray
    score_micro: np.ndarray


@dataclass(frozen=True)
class GridCells:
    """A whole grid as the engine reads it: the options per stage (`shape`), one `StopCells` per
    stop, the latency axis their codes live on, and the request and labeled counts."""

    shape: tuple[int, ...]
    stops: tuple[StopCells, ...]
    axis: LatencyAxis
    requests: int
    labeled: int


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


def percentile_rank(pct: int, n: int) -> int:
    """1-based rank of the nearest-rank (inverted CDF) percentile: smallest r with r/n ≥ pct/100."""
    return max(1, (pct * n + 99) // 100)


def evaluate_grid(
    bins: list[np.ndarray], n_options: list[int], stops: StopTable, shared: dict | None = None
) -> GridResult:
    """Evaluate every option vector (a_0, …, a_{k-2}) with a_j in range(n_options[j]), one row per
    request (`grid_cells` of the per-request bins and stop table, then `evaluate_cells`)."""
    return evaluate_cells(grid_cells(bins, n_options, stops), shared)


def grid_cells(bins: list[np.ndarray], n_options: list[int], stops: StopTable) -> GridCells:
    """The per-request stop table as cells of one request each."""
    shape = tuple(n_options)
    n = stops.latency[0].codes.size
    cells = cell_ids(bins, shape) if shape else [np.zeros(n, dtype=np.intp)]
    per_stop = []
    for s, latency in enumerate(stops.latency):
        cell = cells[min(s + 1, len(shape))]
        scored = cell[stops.labeled_rows]
        per_stop.append(
            StopCells(cell, latency, None, stops.cost_nano_usd[s], scored, stops.score_micro[s])
        )
    return GridCells(shape, tuple(per_stop), stops.axis, n, int(stops.labeled_rows.size))


def evaluate_cells(grid: GridCells, shared: dict | None = None) -> GridResult:
    """Exact metrics of every option vector of a grid given as weighted per-stop cells.

    `shared`, a dict kept for one sweep, lets families whose first stage bins requests the same way
    (the same cell array) reuse the per-cell sums of the stops they have in common.
    """
    shape = grid.shape
    if not shape:
        return _one_policy(grid)
    counts, by_cost, by_score, by_latency = [], [], [], []
    for s, stop in enumerate(grid.stops):
        depth = min(s + 1, len(shape))
        sums = _cell_sums(stop, shape[:depth], grid.axis, shared if depth == 1 else None)
        counts.append(_to_options(sums.latency.sum(axis=-1), shape, s).reshape(-1))
        by_latency.append(sums.latency)
        by_cost.append(sums.cost)
        by_score.append(sums.score)
    cost, quality = _sum_over_stops(by_cost, shape), _sum_over_stops(by_score, shape)
    latency = _sum_over_stops(by_latency, shape)
    p50, p95 = _latency_percentiles(latency.reshape(-1, grid.axis.bins.size), grid)
    return GridResult(
        options=_all_options(shape),
        requests=grid.requests,
        labeled=grid.labeled,
        stop_counts=np.stack(counts, axis=1).astype(np.int64),
        cost_nano_usd=cost.reshape(-1),
        score_micro=quality.reshape(-1),
        latency_p50_us=p50,
        latency_p95_us=p95,
    )


@dataclass(frozen=True)
class GridSums:
    """Cost and score of every policy of a grid, shaped like the grid (one axis per stage), and how
    many requests the first stage keeps under each option of that stage; no latency."""

    cost_nano_usd: np.ndarray
    score_micro: np.ndarray
    first_stop: np.ndarray


def evaluate_sums(
    bins: list[np.ndarray],
    n_options: list[int],
    cost_nano_usd: tuple[np.ndarray, ...],
    score_micro: tuple[np.ndarray, ...],
    labeled_rows: np.ndarray,
) -> GridSums:
    """`evaluate_grid`'s cost and score sums alone (per stop s: `cost_nano_usd[s]` over every
    request, `score_micro[s]` over `labeled_rows`): O(n + Π n_options), small enough per policy
    for grids of millions of policies."""
    shape = tuple(n_options)
    cells = cell_ids(bins, shape)
    by_cost, by_score = [], []
    for s in range(len(shape) + 1):
        depth = min(s + 1, len(shape))
        cell, size = cells[depth], int(np.prod(shape[:depth]))
        by_cost.append(np.bincount(cell, cost_nano_usd[s], size).reshape(shape[:depth]))
        score = np.bincount(cell[labeled_rows], score_micro[s], size)
        by_score.append(score.reshape(shape[:depth]))
    at_least = np.bincount(bins[0], minlength=shape[0])[::-1].cumsum()[::-1]
    kept = np.append(at_least[1:], 0)  # option a keeps the requests with bins > a
    return GridSums(
        cost_nano_usd=_sum_over_stops(by_cost, shape),
        score_micro=_sum_over_stops(by_score, shape),
        first_stop=kept,
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
    stop: StopCells, cell_shape: tuple[int, ...], axis: LatencyAxis, shared: dict | None
) -> _CellSums:
    """Per-cell sums of one stop (a fresh copy: callers sum them in place)."""
    key = (id(stop.cell), id(stop.latency))
    if shared is not None and key in shared:
        return shared[key][-1].copy()
    nb, size = axis.bins.size, int(np.prod(cell_shape))
    latency = np.bincount(stop.cell * np.intp(nb) + stop.latency.bins, stop.requests, size * nb)
    if stop.requests is not None:
        latency = latency.astype(np.int64)
    cost = np.bincount(stop.cell, stop.cost_nano_usd, size)
    score = np.bincount(stop.scored_cell, stop.score_micro, size)
    sums = _CellSums(
        latency.reshape(cell_shape + (nb,)), cost.reshape(cell_shape), score.reshape(cell_shape)
    )
    if shared is None:
        return sums
    shared[key] = (stop.cell, stop.latency, sums)  # holding both keeps their ids from being reused
    return sums.copy()


def _one_policy(grid: GridCells) -> GridResult:
    """No decision stage: every request stops at the one tier; its code histogram is the latency
    distribution."""
    n, stop = grid.requests, grid.stops[0]
    ranks = [percentile_rank(pct, n) for pct in PERCENTILES]
    codes = np.searchsorted(np.cumsum(stop.latency.counts), ranks, side="left")
    p50, p95 = grid.axis.to_us(codes)
    return GridResult(
        options=np.zeros((1, 0), dtype=np.int64),
        requests=n,
        labeled=grid.labeled,
        stop_counts=np.array([[n]], dtype=np.int64),
        cost_nano_usd=np.array([stop.cost_nano_usd.sum()]),
        score_micro=np.array([stop.score_micro.sum()]),
        latency_p50_us=np.array([p50]),
        latency_p95_us=np.array([p95]),
    )


def _all_options(shape: tuple[int, ...]) -> np.ndarray:
    if not shape:
        return np.zeros((1, 0), dtype=np.intp)
    return np.stack(np.unravel_index(np.arange(int(np.prod(shape))), shape), axis=1)


def cell_ids(bins: list[np.ndarray], shape: tuple[int, ...]) -> list[np.ndarray]:
    """cells[depth]: each request's flat (C-order) index of its bins at the first `depth` stages."""
    cells = [np.zeros_like(bins[0], dtype=np.intp)]  # no stage yet: every request in cell 0
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

    Slice by slice along a leading axis, where np.cumsum is an order of magnitude slower, unless
    the slices are small and many (one Python step per slice would then dominate); np.cumsum along
    the last axis, where slicing would stride through memory. Either way each element is the same
    sequence of additions, so the sums are identical.
    """
    view = np.moveaxis(hist, axis, 0)
    if axis == hist.ndim - 1 or (view.shape[0] > 64 and view[0].size < 256):
        np.cumsum(view, axis=0, out=view)
    else:
        for a in range(1, view.shape[0]):
            view[a] += view[a - 1]
    if complement:
        total = view[-1].copy()
        np.subtract(total, view, out=view)


def _latency_percentiles(cum: np.ndarray, grid: GridCells) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest-rank p50/p95 of the per-request latency for every policy, from the
    (policies × coarse bins) histogram `cum` (turned into cumulative counts in place)."""
    n, nb, shape = grid.requests, grid.axis.bins.size, grid.shape
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
    queries = RankQueries(np.concatenate(policy), np.concatenate(bin_), np.concatenate(rank))
    stops_here = functools.partial(_stops_here, shape)
    stops = grid.stops
    codes = codes_at_ranks(
        queries,
        grid.axis,
        [stop.latency for stop in stops],
        [stop.cell for stop in stops],
        stops_here,
        [stop.requests for stop in stops],
    )
    values = grid.axis.to_us(codes)
    return values[:m], values[m:]


@functools.lru_cache(maxsize=32)
def _stops_here(shape: tuple[int, ...], stop: int) -> np.ndarray:
    """(policies × cells) bool: does the policy stop at `stop` a request in that cell?

    Cells enumerate the bins of the first min(stop+1, d) stages in C order, like `cell_ids`.
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

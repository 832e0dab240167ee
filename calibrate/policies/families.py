"""Policy families (always-one-tier, cascades, input-length rules, learned routers, and keyword
rules in front of a length rule or a cascade) and their metrics table.

`evaluate_families(outcomes, families)` turns each family into bins and a stop table for the grid
engine (`grid`) and returns one Polars row per policy (the frontier frame, `frontier.py`): its
`Policy` and the metrics every command shares: quality, quality_drop, escalation_rate,
cost_per_1k_requests_usd, savings_vs_premium, latency_p50_ms, latency_p95_ms, plus the counts
requests and labeled. The premium reference is the last (most expensive) tier of tiers.yaml.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from calibrate.errors import DataError
from calibrate.policies.frontier import policy_columns
from calibrate.policies.grid import (
    GridResult,
    StopTable,
    evaluate_grid,
    quantize_score,
    quantize_usd,
)
from calibrate.policies.latency_ranks import LatencyAxis, LatencyColumn, latency_columns
from calibrate.records.outcomes import Outcomes
from calibrate.records.policy import (
    CONFIDENCE_STRATEGIES,
    CUTOFF_STRATEGIES,
    THRESHOLD_STRATEGIES,
    Policy,
    Strategy,
)

DEFAULT_GRID = {2: 200, 3: 30, 4: 12}


@dataclass(frozen=True)
class Family:
    """A set of policies sharing a tier path. kind: always | cascade | length | router | rules |
    hybrid.

    `grids[j]` are the candidate values of decision stage j: confidence thresholds (ascending; the
    policy keeps a request iff confidence ≥ τ, plus τ=+inf) or token cutoffs (descending; the
    cheaper tier gets requests with input_tokens ≤ N, plus "none"). A router decides up front (pays
    one tier) on `scores`, a per-request P(cheaper answer acceptable), with thresholds like a
    cascade's; `overhead_usd` is its price per request, added to every request's cost.

    `rules` (length cutoffs) and `hybrid` (a cascade) first apply keyword rules: `forced` holds per
    request the tier index the first matching rule sends it to (-1: no rule matches). A forced
    request is served by that tier alone, whatever the option, and pays nothing else (the rules
    decide before any call). `request_ids` name the rows `scores` and `forced` were made for.
    """

    kind: Strategy
    path: tuple[int, ...]
    grids: tuple[np.ndarray, ...] = ()
    scores: np.ndarray | None = field(default=None, compare=False, repr=False)
    overhead_usd: float = 0.0
    request_ids: np.ndarray | None = field(default=None, compare=False, repr=False)
    forced: np.ndarray | None = field(default=None, compare=False, repr=False)

    def scores_of(self, outcomes: Outcomes) -> np.ndarray:
        """The router's score of each request of `outcomes`."""
        assert self.scores is not None
        return self._of(self.scores, outcomes)

    def forced_of(self, outcomes: Outcomes) -> np.ndarray | None:
        """The keyword rules' tier of each request of `outcomes` (-1: none), or None."""
        return None if self.forced is None else self._of(self.forced, outcomes)

    def _of(self, values: np.ndarray, outcomes: Outcomes) -> np.ndarray:
        """`values` for the rows of `outcomes` (which may be a subset of the rows the values were
        made for: they are then looked up by `request_ids`)."""
        if values.size == outcomes.n or self.request_ids is None:
            return values
        position = {rid: i for i, rid in enumerate(self.request_ids.tolist())}
        return values[[position[rid] for rid in outcomes.request_ids.tolist()]]

    def ruled_tiers(self) -> list[int]:
        """The tiers some keyword rule sends requests to."""
        if self.forced is None:
            return []
        return sorted({int(t) for t in np.unique(self.forced) if t >= 0})


_BUCKETS = 1 << 16


@dataclass(frozen=True)
class ConfidenceBuckets:
    """One tier's confidences cut once into equal-width buckets by a monotone arithmetic map.

    x ≤ y implies bucket(x) ≤ bucket(y), so grid order statistics and each request's rank in a grid
    cost O(n) (a bincount, a table lookup) plus exact work on the few values sharing a bucket with a
    grid point, instead of a sort or a binary search per request. Bucket 0 holds NaN (no signal).
    """

    values: np.ndarray
    ids: np.ndarray
    counts: np.ndarray
    lo: float
    scale: float
    infinite: bool  # ±inf among the values: grids then take the sorting path

    def rank_in(self, grid: np.ndarray) -> np.ndarray:
        """np.searchsorted(grid, values, side="right") for an ascending grid, 0 where NaN."""
        grid_buckets = _bucket(np.asarray(grid, dtype=np.float64), self.lo, self.scale)
        table = np.searchsorted(grid_buckets, np.arange(_BUCKETS + 1), side="left")
        table = table.astype(np.int32)
        table[grid_buckets] = -1  # a bucket holding a grid point: decided value by value
        ranks = np.take(table, self.ids)  # np.take: faster than indexing for 1-D lookups
        rows = np.flatnonzero(ranks < 0)
        ranks[rows] = np.searchsorted(grid, self.values[rows], side="right")
        return ranks

    def grid(self, size: int) -> np.ndarray:
        """`threshold_grid` of these values."""
        counts = self.counts[1:]
        if np.count_nonzero(counts) <= size or self.infinite:
            return _grid_by_sorting(self.values, size)  # few distinct values (or infinities)
        positions = grid_positions(int(counts.sum()), size)
        return rounded_grid(self._order_statistics(counts, positions))

    def _order_statistics(self, counts: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The values at 0-based `positions` of the sorted finite values, sorting only the buckets
        that hold one of them."""
        cum = np.cumsum(counts)
        bucket = np.searchsorted(cum, positions, side="right")
        wanted = np.zeros(_BUCKETS + 1, dtype=bool)
        wanted[bucket + 1] = True
        members = np.sort(self.values[np.take(wanted, self.ids)])  # by value, hence by bucket
        kept = np.where(wanted[1:], counts, 0)
        return members[positions - (cum - counts)[bucket] + (np.cumsum(kept) - kept)[bucket]]


def confidence_buckets(values: np.ndarray) -> ConfidenceBuckets:
    """Equal-width buckets over [min, max] of the finite values."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    lo, hi = (
        float(np.fmin.reduce(values, initial=np.inf)),
        float(np.fmax.reduce(values, initial=-np.inf)),
    )
    infinite = math.isinf(lo) and lo < 0 or math.isinf(hi) and hi > 0
    if not (math.isfinite(lo) and math.isfinite(hi)):
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    with np.errstate(over="ignore"):
        span = hi - lo
    scale = _BUCKETS / span if 0 < span < math.inf else 1.0 if span == 0 else 1e-300
    ids = _bucket(values, lo, scale)
    counts = np.bincount(ids, minlength=_BUCKETS + 1)
    return ConfidenceBuckets(values, ids, counts, lo, scale, infinite)


def _bucket(x: np.ndarray, lo: float, scale: float) -> np.ndarray:
    """1 + ⌊(x - lo)·scale⌋ clipped to [1, _BUCKETS], 0 for NaN; monotone in x."""
    with np.errstate(over="ignore", invalid="ignore"):
        b = np.multiply(x, scale)  # x·s + (1 - lo·s): one pass fewer than (x - lo)·s + 1
        b += 1.0 - lo * scale
    np.clip(b, 1.0, _BUCKETS, out=b)  # NaN stays NaN …
    np.fmax(b, 0.0, out=b)  # … and becomes bucket 0
    return b.astype(np.int32)


def _grid_by_sorting(values: np.ndarray, size: int) -> np.ndarray:
    ordered = np.sort(values[np.isfinite(values)])
    distinct = ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if ordered.size else ordered
    if distinct.size <= size:
        return distinct
    return rounded_grid(ordered[grid_positions(ordered.size, size)])


def grid_positions(count: int, size: int) -> np.ndarray:
    """The 0-based positions, among `count` sorted values, of a grid's `size` order statistics."""
    return np.round(np.linspace(0, count - 1, size)).astype(np.int64)


def rounded_grid(picks: np.ndarray) -> np.ndarray:
    """Order statistics rounded to 4 significant digits, distinct and ascending: the grid."""
    return np.unique(np.array([float(f"{q:.4g}") for q in picks]))


def threshold_grid(values: np.ndarray, size: int) -> np.ndarray:
    """Candidate thresholds from the unlabeled distribution: every distinct value when there are at
    most `size`, else `size` quantiles rounded to 4 significant digits. Labels are never consulted."""
    return confidence_buckets(values).grid(size)


def cutoff_grid(tokens: np.ndarray, size: int) -> np.ndarray:
    """Candidate input-length cutoffs (descending integers)."""
    if tokens.size == 0:
        return np.array([], dtype=np.int64)
    qs = np.floor(_integer_quantiles(tokens, np.linspace(0, 1, size))).astype(np.int64)
    return np.unique(qs[qs < tokens.max()])[::-1]  # a cutoff at the maximum is just always-cheap


def cutoff_grid_of_counts(tokens: np.ndarray, requests: np.ndarray, size: int) -> np.ndarray:
    """`cutoff_grid` from the histogram of input lengths: the distinct `tokens` (ascending) and
    how many `requests` have each."""
    if tokens.size == 0:
        return np.array([], dtype=np.int64)
    at_most = np.cumsum(requests)
    qs = _quantiles_of_counts(tokens, at_most, np.linspace(0, 1, size))
    qs = np.floor(qs).astype(np.int64)
    return np.unique(qs[qs < tokens[-1]])[::-1]


def _integer_quantiles(tokens: np.ndarray, q: np.ndarray) -> np.ndarray:
    """np.quantile(tokens, q) (linear method), bit for bit, with the order statistics counted
    instead of partitioned when the integers span a small range."""
    lo, hi = int(tokens.min()), int(tokens.max())
    if hi - lo > 1 << 20:
        return np.quantile(tokens, q)
    at_most = np.cumsum(np.bincount(tokens - lo))  # at_most[v]: how many are ≤ lo + v
    return _quantiles_of_counts(np.arange(lo, hi + 1), at_most, q)


def _quantiles_of_counts(values: np.ndarray, at_most: np.ndarray, q: np.ndarray) -> np.ndarray:
    """np.quantile (linear method) of the integers where at_most[i] of them are ≤ values[i]
    (`values` ascending), bit for bit."""
    n = int(at_most[-1])
    virtual = (n - 1) * q
    below = np.floor(virtual)
    top = virtual >= n - 1  # numpy then reads index -1 (the maximum) on both sides
    below[top] = -1
    gamma = virtual - below
    index = np.where(top, n - 1, below).astype(np.intp)
    a = values[np.searchsorted(at_most, index, side="right")]
    b = values[np.searchsorted(at_most, np.where(top, n - 1, index + 1), side="right")]
    diff = b - a
    lerp = a + diff * gamma
    np.subtract(b, diff * (1 - gamma), out=lerp, where=gamma >= 0.5)
    return lerp


def default_families(outcomes: Outcomes, grid_size: dict[int, int] | None = None) -> list[Family]:
    """Always-tier baselines, cascades over every ordered subset of 2–4 tiers, length rules per pair."""
    sizes = {**DEFAULT_GRID, **(grid_size or {})}
    k = len(outcomes.tiers)
    families = [Family("always", (j,)) for j in range(k)]
    cutoffs = cutoff_grid(outcomes.input_tokens, sizes[2] // 4)
    for pair in itertools.combinations(range(k), 2):
        families.append(Family("length", pair, (cutoffs,)))
    buckets = [confidence_buckets(outcomes.confidence[:, j]) for j in range(k - 1)]
    for size in range(2, k + 1):
        grids = [b.grid(sizes[size]) for b in buckets]  # tier j's grid for paths of this length
        for path in itertools.combinations(range(k), size):
            families.append(Family("cascade", path, tuple(grids[j] for j in path[:-1])))
    return families


def keyword_families(
    outcomes: Outcomes, forced: np.ndarray, grid_size: dict[int, int] | None = None
) -> list[Family]:
    """Keyword rules first (`forced`: per request the tier index of its first matching rule, -1
    for none), then for the rest an input-length rule per pair of tiers (its cutoffs include
    "every unmatched request to the cheaper tier") or a cascade ending at the premium tier."""
    sizes = {**DEFAULT_GRID, **(grid_size or {})}
    k = len(outcomes.tiers)
    cutoffs = cutoff_grid(outcomes.input_tokens, sizes[2] // 4)
    if outcomes.n:
        cutoffs = np.r_[int(outcomes.input_tokens.max()), cutoffs].astype(np.int64)
    ids = outcomes.request_ids
    families = [
        Family("rules", pair, (cutoffs,), request_ids=ids, forced=forced)
        for pair in itertools.combinations(range(k), 2)
    ]
    buckets = [confidence_buckets(outcomes.confidence[:, j]) for j in range(k - 1)]
    for size in range(2, k + 1):
        grids = [b.grid(sizes[size]) for b in buckets]
        for path in itertools.combinations(range(k), size):
            if path[-1] == k - 1:
                families.append(
                    Family(
                        "hybrid",
                        path,
                        tuple(grids[j] for j in path[:-1]),
                        request_ids=ids,
                        forced=forced,
                    )
                )
    return families


@dataclass(frozen=True)
class SweepColumns:
    """Per-request integer columns shared by every family of one sweep, built once.

    Per tier: cost (nano-USD) and, for the labeled rows, score (micro-score). Per needed sum of
    tiers: cost and latency codes. Bins of each (tier, grid) are cached as families reuse grids.
    """

    cost_nano_usd: tuple[np.ndarray, ...]
    score_micro: tuple[np.ndarray, ...]
    labeled_rows: np.ndarray
    latency_axis: LatencyAxis
    latency: dict[tuple[int, ...], LatencyColumn]
    cost_sums: dict[tuple[int, ...], np.ndarray]
    ranks: dict[tuple[object, bytes], np.ndarray]
    buckets: dict[int, ConfidenceBuckets]


def sweep_columns(outcomes: Outcomes, families: list[Family]) -> SweepColumns:
    """Quantize once: cost, labeled scores and the latency codes of every stop of `families`."""
    if not np.isfinite(outcomes.latency_ms).all():
        raise DataError(
            "some latencies are not finite numbers",
            hint="Check latency_ms in the logs; the store writes 0 when it is missing.",
        )
    labeled_rows = np.flatnonzero(outcomes.labeled)
    labels = outcomes.label[labeled_rows]  # no NaN on these rows
    k = len(outcomes.tiers)
    axis, latency = latency_columns(
        outcomes.latency_ms, {s for f in families for s in stop_sums(f)}
    )
    return SweepColumns(
        cost_nano_usd=tuple(quantize_usd(outcomes.cost_usd[:, j]) for j in range(k)),
        score_micro=tuple(quantize_score(labels[:, j]) for j in range(k)),
        labeled_rows=labeled_rows,
        latency_axis=axis,
        latency=latency,
        cost_sums={},
        ranks={},
        buckets={},
    )


def stop_sums(family: Family) -> list[tuple[int, ...]]:
    """The tiers a request stopping at each stop has paid for (cascades pay every tier touched),
    then the tiers keyword rules send requests to (paid alone)."""
    if family.kind in CONFIDENCE_STRATEGIES:
        sums = [family.path[: s + 1] for s in range(len(family.path))]
    else:
        sums = [(j,) for j in family.path]
    return sums + [(t,) for t in family.ruled_tiers()]


def stage_bins(outcomes: Outcomes, family: Family, columns: SweepColumns) -> list[np.ndarray]:
    """Per decision stage, each request's bin: the policy with option a keeps it iff bin > a."""
    bins = []
    for j, grid in zip(family.path[:-1], family.grids, strict=True):
        key = _rank_key(family, j, grid)
        if key not in columns.ranks:
            if family.kind == "router":
                assert family.scores is not None, "a router family carries its scores"
                columns.ranks[key] = confidence_buckets(family.scores).rank_in(grid)
            elif family.kind in CONFIDENCE_STRATEGIES:
                if j not in columns.buckets:
                    columns.buckets[j] = confidence_buckets(outcomes.confidence[:, j])
                columns.ranks[key] = columns.buckets[j].rank_in(grid)
            else:
                columns.ranks[key] = cutoff_ranks(outcomes.input_tokens, grid)
        bins.append(columns.ranks[key])
    return without_forced(bins, family.forced)


def without_forced(bins: list[np.ndarray], forced: np.ndarray | None) -> list[np.ndarray]:
    """Bins with every request a keyword rule decides put in bin 0 (never kept), so that it
    stops at the last stop under every option; the stop table gives it its rule's tier there."""
    if forced is None:
        return bins
    ruled = forced >= 0
    return [np.where(ruled, 0, b) for b in bins]


def _rank_key(family: Family, j: int, grid: np.ndarray) -> tuple[object, bytes]:
    """Cache key of a stage's bins: the tier's confidences, the lengths, or one router's scores
    (families of one sweep stay alive, so the id is not reused)."""
    if family.kind == "router":
        return (("router", id(family.scores)), grid.tobytes())
    return (j if family.kind in CONFIDENCE_STRATEGIES else "tokens", grid.tobytes())


def cutoff_ranks(tokens: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
    """How many cutoffs (descending) are ≥ each request's input_tokens: a lookup when lengths span
    a small range, else a binary search per request."""
    ascending = cutoffs[::-1]
    lo, hi = (int(tokens.min()), int(tokens.max())) if tokens.size else (0, 0)
    if hi - lo > 1 << 20:
        return cutoffs.size - np.searchsorted(ascending, tokens, side="left")
    table = cutoffs.size - np.searchsorted(ascending, np.arange(lo, hi + 1), side="left")
    return np.take(table, tokens - lo)


def stop_money(
    columns: SweepColumns, family: Family
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Cost (nano-USD, every request) and score (micro-score, the labeled rows) of stopping at each
    tier of the path."""
    sums = stop_sums(family)[: len(family.path)]
    overhead = float(quantize_usd(np.array(family.overhead_usd)))
    cost = [_cost_of(columns, s) + overhead for s in sums]
    score = [columns.score_micro[s[-1]] for s in sums]
    if family.forced is not None:  # a ruled request costs and scores its rule's tier
        ruled = family.forced >= 0
        cost[-1] = np.where(ruled, _ruled(family.forced, columns.cost_nano_usd), cost[-1])
        labeled = family.forced[columns.labeled_rows]
        score[-1] = np.where(labeled >= 0, _ruled(labeled, columns.score_micro), score[-1])
    return tuple(cost), tuple(score)


def stop_table(columns: SweepColumns, family: Family) -> StopTable:
    """Cost, score and latency of stopping at each tier of the path."""
    cost, score = stop_money(columns, family)
    latency = [columns.latency[s] for s in stop_sums(family)[: len(family.path)]]
    if family.forced is not None:  # a ruled request takes its rule's tier
        latency[-1] = _ruled_latency(family.forced, columns.latency, latency[-1])
    return StopTable(
        cost_nano_usd=cost,
        score_micro=score,
        latency=tuple(latency),
        labeled_rows=columns.labeled_rows,
        axis=columns.latency_axis,
    )


def _ruled(forced: np.ndarray, per_tier: tuple[np.ndarray, ...]) -> np.ndarray:
    """Per request, `per_tier[forced[i]][i]` (0 where no rule matches)."""
    out = np.zeros(forced.size, dtype=np.float64)
    for t in np.unique(forced[forced >= 0]).tolist():
        rows = forced == t
        out[rows] = per_tier[t][rows]
    return out


def _ruled_latency(
    forced: np.ndarray, latency: dict[tuple[int, ...], LatencyColumn], last: LatencyColumn
) -> LatencyColumn:
    """The last stop's latency column with each ruled request's code taken from its rule's tier."""
    codes, bins = last.codes.copy(), last.bins.copy()
    for t in np.unique(forced[forced >= 0]).tolist():
        rows = forced == t
        codes[rows] = latency[(t,)].codes[rows]
        bins[rows] = latency[(t,)].bins[rows]
    return LatencyColumn(codes, bins, np.bincount(codes, minlength=last.counts.size))


def _cost_of(columns: SweepColumns, tiers: tuple[int, ...]) -> np.ndarray:
    """Σ of the tiers' costs, cached: a path prefix extends the shorter prefix by one tier."""
    if tiers not in columns.cost_sums:
        last = columns.cost_nano_usd[tiers[-1]]
        columns.cost_sums[tiers] = last if len(tiers) == 1 else _cost_of(columns, tiers[:-1]) + last
    return columns.cost_sums[tiers]


def evaluate_family(
    outcomes: Outcomes,
    family: Family,
    columns: SweepColumns | None = None,
    shared: dict | None = None,
) -> GridResult:
    """Exact metrics for every policy of one family (`columns` and `shared`: one sweep's caches)."""
    columns = columns if columns is not None else sweep_columns(outcomes, [family])
    n_options = [g.size + 1 for g in family.grids]
    bins = stage_bins(outcomes, family, columns)
    return evaluate_grid(bins, n_options, stop_table(columns, family), shared)


def premium_family(outcomes: Outcomes) -> Family:
    """Always the premium tier (the last of `outcomes`): every quality drop's reference."""
    return Family("always", (len(outcomes.tiers) - 1,))


def evaluate_families(
    outcomes: Outcomes,
    families: list[Family],
    on_family=None,
    columns: SweepColumns | None = None,
) -> pl.DataFrame:
    """One row per policy: its parameters and metrics (premium = the last tier of `outcomes`).
    `columns`: the sweep's, when made beforehand with every family's stops and premium's."""
    if outcomes.n == 0:
        raise DataError(
            "no request has an attempt for every tier",
            hint="Ingest logs with shadow attempts for each tier in tiers.yaml, or run `calibrate replay`.",
        )
    reference = premium_family(outcomes)
    if columns is None:
        columns = sweep_columns(outcomes, [*families, reference])
    premium = evaluate_family(outcomes, reference, columns)
    shared: dict = {}
    frames = []
    for family in families:
        result = evaluate_family(outcomes, family, columns, shared)
        frame = family_frame(outcomes, family, result, premium)
        if family.kind == "rules" and family.path[0] != 0:
            frame = frame.head(-1)  # "none": the same policy as on the cheapest tier's pair
        frames.append(frame)
        if on_family is not None:
            on_family(family)
    return pl.concat(frames, how="vertical")


@dataclass(frozen=True)
class Measured:
    """The metrics of many policies of one family from the engine's sums, as every frame has them."""

    quality: np.ndarray
    quality_drop: np.ndarray
    escalation_rate: np.ndarray | None
    cost_per_1k_requests_usd: np.ndarray


def measured(
    family: Family,
    requests: int,
    labeled: int,
    sums: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    premium_score_micro: float,
) -> Measured:
    """`sums`: (cost nano-USD, score micro, requests kept by the first stage, or None when the
    escalation rate is not needed) per policy."""
    cost, score, kept_first = sums
    quality = score / 1e6 / labeled if labeled else np.full(score.shape, np.nan)
    quality_p = premium_score_micro / 1e6 / labeled if labeled else math.nan
    escalated = None
    if kept_first is not None:
        escalated = 1.0 - (kept_first + _ruled_unescalated(family)) / requests
    return Measured(
        quality=quality,
        quality_drop=quality_p - quality,
        escalation_rate=escalated,
        cost_per_1k_requests_usd=cost / 1e9 / requests * 1000.0,
    )


def family_frame(
    outcomes: Outcomes, family: Family, res: GridResult, premium: GridResult
) -> pl.DataFrame:
    """The frontier rows of one family's engine result (`outcomes`: for the tier names only)."""
    n, labeled = res.requests, res.labeled
    sums = (res.cost_nano_usd, res.score_micro, res.stop_counts[:, 0])
    metrics = measured(family, n, labeled, sums, premium.score_micro[0])
    m = len(res.options)
    return pl.DataFrame(
        {
            **policy_columns(family_policies(outcomes, family, res.options.tolist())),
            "requests": [n] * m,
            "labeled": [labeled] * m,
            "quality": metrics.quality,
            "quality_drop": metrics.quality_drop,
            "escalation_rate": metrics.escalation_rate,
            "cost_per_1k_requests_usd": metrics.cost_per_1k_requests_usd,
            "savings_vs_premium": 1.0 - res.cost_nano_usd / premium.cost_nano_usd[0],
            "latency_p50_ms": res.latency_p50_us / 1000.0,
            "latency_p95_ms": res.latency_p95_us / 1000.0,
        }
    )


def _ruled_unescalated(family: Family) -> int:
    """Requests a keyword rule sends to the path's first tier or a cheaper one: not escalated
    (every ruled request sits at the last stop in the engine)."""
    if family.forced is None:
        return 0
    return int(((family.forced >= 0) & (family.forced <= family.path[0])).sum())


def family_policies(
    outcomes: Outcomes, family: Family, options: list[list[int]] | list[tuple[int, ...]]
) -> list[Policy]:
    """The policy of each option vector (one index per stage into the grid plus its last option:
    a threshold τ = +inf, 'escalate all', or no cutoff)."""
    names = tuple(outcomes.tiers[j] for j in family.path)
    kind = family.kind
    values = [grid.tolist() for grid in family.grids]
    if kind in THRESHOLD_STRATEGIES:
        thresholds = [[*v, math.inf] for v in values]
        return [
            Policy(kind, names, tuple(t[a] for t, a in zip(thresholds, opt, strict=True)))
            for opt in options
        ]
    if kind in CUTOFF_STRATEGIES:
        cutoffs = [*values[0], None]
        return [Policy(kind, names, cutoff_tokens=cutoffs[a]) for (a,) in options]
    return [Policy(kind, names) for _ in options]


def policy_index(outcomes: Outcomes, families: list[Family]) -> dict[str, tuple[Family, tuple]]:
    """Policy id → (family, option vector): how to walk one frontier row request by request."""
    index: dict[str, tuple[Family, tuple]] = {}
    for family in families:
        options = [o for o in itertools.product(*(range(g.size + 1) for g in family.grids))]
        for policy, option in zip(family_policies(outcomes, family, options), options, strict=True):
            index[policy.id] = (family, tuple(option))
    return index

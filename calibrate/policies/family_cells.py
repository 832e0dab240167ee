"""The policy families evaluated on per-cell aggregates computed in SQL (the sweep at scale).

`sql_families` builds `default_families`' families with their grids found from SQL histograms
(exact order statistics: `aggregates_sql`). `evaluate_families_from_cells` returns
`evaluate_families`' frame, bit for bit, from (a) per family and stop the SQL aggregate
(cell, latency µs) → requests, cost and (b) the labeled requests alone, in memory, for the
scores: their bins are made in numpy from the same grids. Families whose bins come from Python
per request (routers' scores, keyword rules' tiers) are evaluated on `outcomes`, every request
as a cell of one, by the same engine.

Cost profile (1M-request bench store, 3 tiers): the (cell, latency) aggregates hold about as many
rows as there are requests for the cascades (exact µs percentiles of ~1,000 policies need the
joint distribution), so the SQL grouping, not the engine, is most of the time; `SqlStopRows`
queries each distinct stop once and keeps about one family's rows at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import polars as pl

from calibrate.errors import DataError
from calibrate.policies.cascade import threshold_bins
from calibrate.policies.families import (
    DEFAULT_GRID,
    Family,
    SweepColumns,
    cutoff_grid_of_counts,
    cutoff_ranks,
    evaluate_family,
    family_frame,
    grid_positions,
    premium_family,
    rounded_grid,
    stop_sums,
    sweep_columns,
)
from calibrate.policies.grid import (
    GridCells,
    GridResult,
    StopCells,
    cell_ids,
    evaluate_cells,
    quantize_score,
    quantize_usd,
)
from calibrate.policies.latency_ranks import weighted_columns
from calibrate.records.cells import ConfidenceHistogram, StageRule, StopRows
from calibrate.records.outcomes import Outcomes
from calibrate.store import aggregates_sql
from calibrate.store.aggregates_sql import Query


def threshold_grids(
    query: Query, relation: str, hist: ConfidenceHistogram, sizes: list[int]
) -> dict[int, np.ndarray]:
    """`threshold_grid` of one tier's confidences for each size, from its histogram and at most one
    pull of the values in the buckets that hold a wanted order statistic."""
    if hist.count == 0:
        return {size: np.zeros(0) for size in sizes}
    single = hist.minimum == hist.maximum
    distinct = None
    if hist.bucket.size <= max(sizes):  # perhaps few distinct values: count them
        many = hist.bucket[~single]
        values, _ = aggregates_sql.bucket_values(query, relation, hist, many.tolist())
        distinct = np.unique(np.concatenate([hist.minimum[single], values]))
    picked = {
        size: grid_positions(hist.count, size)
        for size in sizes
        if distinct is None or distinct.size > size
    }
    cum = np.cumsum(hist.counts)
    where = {size: np.searchsorted(cum, p, side="right") for size, p in picked.items()}
    wanted = np.unique(np.concatenate([np.zeros(0, dtype=np.int64), *where.values()]))
    pulled = wanted[~single[wanted]]
    values, requests = aggregates_sql.bucket_values(query, relation, hist, hist.bucket[pulled])
    grids = {}
    for size in sizes:
        if size not in picked:
            assert distinct is not None
            grids[size] = distinct
            continue
        at = where[size]
        rank = picked[size] - (cum[at] - hist.counts[at])
        picks = hist.minimum[at].copy()
        for i in np.flatnonzero(~single[at]):  # a few: the buckets holding several values
            b = at[i]
            inside = (values >= hist.minimum[b]) & (values <= hist.maximum[b])
            order = np.cumsum(requests[inside])
            picks[i] = values[inside][np.searchsorted(order, rank[i], side="right")]
        grids[size] = rounded_grid(picks)
    return grids


def sql_families(
    query: Query, relation: str, tiers: int, grid_size: dict[int, int] | None = None
) -> list[Family]:
    """`default_families` for `tiers` tiers with every grid computed from SQL aggregates."""
    sizes = {**DEFAULT_GRID, **(grid_size or {})}
    families = [Family("always", (j,)) for j in range(tiers)]
    cutoffs = cutoff_grid_of_counts(*aggregates_sql.token_counts(query, relation), sizes[2] // 4)
    for pair in itertools.combinations(range(tiers), 2):
        families.append(Family("length", pair, (cutoffs,)))
    hists = aggregates_sql.confidence_histograms(query, relation, list(range(tiers - 1)))
    needed = [sizes[size] for size in range(2, tiers + 1)]
    grids = [threshold_grids(query, relation, h, needed) for h in hists]
    for size in range(2, tiers + 1):
        for path in itertools.combinations(range(tiers), size):
            by_tier = tuple(grids[j][sizes[size]] for j in path[:-1])
            families.append(Family("cascade", path, by_tier))
    return families


def sql_keyword_families(
    query: Query,
    relation: str,
    tiers: int,
    forced: np.ndarray,
    request_ids: np.ndarray,
    grid_size: dict[int, int] | None = None,
) -> list[Family]:
    """`keyword_families` with the grids computed from SQL aggregates (`forced`: the keyword
    rules' tier of each request named by `request_ids`, -1 for none)."""
    sizes = {**DEFAULT_GRID, **(grid_size or {})}
    tokens, requests = aggregates_sql.token_counts(query, relation)
    cutoffs = cutoff_grid_of_counts(tokens, requests, sizes[2] // 4)
    if tokens.size:
        cutoffs = np.r_[int(tokens[-1]), cutoffs].astype(np.int64)
    families = [
        Family("rules", pair, (cutoffs,), request_ids=request_ids, forced=forced)
        for pair in itertools.combinations(range(tiers), 2)
    ]
    hists = aggregates_sql.confidence_histograms(query, relation, list(range(tiers - 1)))
    needed = [sizes[size] for size in range(2, tiers + 1)]
    grids = [threshold_grids(query, relation, h, needed) for h in hists]
    for size in range(2, tiers + 1):
        for path in itertools.combinations(range(tiers), size):
            if path[-1] == tiers - 1:
                by_tier = tuple(grids[j][sizes[size]] for j in path[:-1])
                families.append(
                    Family("hybrid", path, by_tier, request_ids=request_ids, forced=forced)
                )
    return families


def stage_rules(family: Family) -> list[StageRule]:
    """The family's decision stages as the SQL aggregates bin them."""
    if family.kind == "always":
        return []
    if family.kind == "cascade":
        return [
            StageRule("confidence", j, g)
            for j, g in zip(family.path[:-1], family.grids, strict=True)
        ]
    if family.kind == "length":
        return [StageRule("tokens", 0, family.grids[0])]
    raise ValueError(f"{family.kind} families are evaluated per request")


def in_sql(family: Family) -> bool:
    """Whether the family's bins can be made in SQL (no per-request input from Python)."""
    return family.kind in ("always", "cascade", "length") and family.forced is None


StopRowsOf = Callable[[Family], list[StopRows]]
_StopKey = tuple[tuple, tuple[int, ...], int]


class SqlStopRows:
    """Per family, its stops' aggregates from SQL, each distinct stop computed once (families
    share stops: the cascades from one tier, the length rules on one tier), with one query per
    family for the stops it adds. After `plan` (every family that will be asked for), a one-tier
    stop without stages that another stop pays the same way is summed over that stop's cells
    instead of being queried (ask for the families with stages first), and each aggregate is
    dropped once its last family has taken it, so memory holds about one family's rows."""

    def __init__(self, query: Query, relation: str) -> None:
        self.query, self.relation = query, relation
        self.rows: dict[_StopKey, StopRows] = {}
        self.users: dict[_StopKey, int] = {}
        self.richer: set[tuple[tuple[int, ...], int]] = set()
        self.sources: dict[_StopKey, _StopKey] = {}

    def plan(self, families: list[Family]) -> None:
        keys = [k for f in families if in_sql(f) for k in _stop_keys(f)]
        self.richer = {(paid, overhead) for stages, paid, overhead in keys if stages}
        for key in keys:
            self.users[key] = self.users.get(key, 0) + 1
        for key in dict.fromkeys(keys):
            if not key[0] and key[1:] in self.richer:  # summed from a richer stop: keep one
                source = next(k for k in keys if k[0] and k[1:] == key[1:])
                self.sources[key] = source
                self.users[source] += 1

    def __call__(self, family: Family) -> list[StopRows]:
        keys = _stop_keys(family)
        missing = []
        for s, key in enumerate(keys):
            if key in self.rows:
                continue
            source = None if key[0] else self._source(key)
            if source is not None:
                self.rows[key] = _marginal(self.rows[source])
                self._taken(source)
            else:
                missing.append((s, key))
        if missing:
            depths = [min(s + 1, len(family.grids)) for s, _ in missing]
            stops = [(d, k[1]) for d, (_, k) in zip(depths, missing, strict=True)]
            rules = stage_rules(family)
            got = aggregates_sql.stop_rows(self.query, self.relation, rules, stops, keys[0][2])
            for (_, key), rows in zip(missing, got, strict=True):
                self.rows[key] = rows
        out = [self.rows[k] for k in keys]
        for key in keys:
            self._taken(key)
        return out

    def _source(self, key: _StopKey) -> _StopKey | None:
        """A computed stop paying as `key` does, over some stages (the planned one first)."""
        planned = self.sources.get(key)
        if planned in self.rows:
            return planned
        return next((k for k in self.rows if k[0] and k[1:] == key[1:]), None)

    def _taken(self, key: _StopKey) -> None:
        """One planned use of `key` done: forget its rows after the last."""
        left = self.users.get(key, 0) - 1
        self.users[key] = left
        if left == 0:
            self.rows.pop(key, None)


def _stop_keys(family: Family) -> list[_StopKey]:
    """What identifies each stop's aggregate: the stages its cell is over, the tiers it pays and
    the overhead."""
    rules = [(r.kind, r.tier, r.grid.dtype.str, r.grid.tobytes()) for r in stage_rules(family)]
    overhead = int(quantize_usd(np.array(family.overhead_usd)))
    sums = stop_sums(family)[: len(family.path)]
    return [(tuple(rules[: min(s + 1, len(rules))]), paid, overhead) for s, paid in enumerate(sums)]


def _marginal(rows: StopRows) -> StopRows:
    """The rows summed over their cells: one cell (0) per latency."""
    latency, inverse = np.unique(rows.latency_us, return_inverse=True)
    inverse = inverse.reshape(-1)
    return StopRows(
        cell=np.zeros(latency.size, dtype=np.intp),
        latency_us=latency,
        requests=np.bincount(inverse, rows.requests, latency.size).astype(np.int64),
        cost_nano_usd=np.bincount(inverse, rows.cost_nano_usd, latency.size),
    )


def sql_stop_rows(query: Query, relation: str) -> SqlStopRows:
    """`SqlStopRows` on a runner and relation."""
    return SqlStopRows(query, relation)


def labeled_bins(labeled: Outcomes, family: Family) -> list[np.ndarray]:
    """The labeled requests' bin at each stage, as the SQL aggregates bin every request."""
    bins = []
    for rule in stage_rules(family):
        if rule.kind == "confidence":
            bins.append(threshold_bins(labeled.confidence[:, rule.tier], rule.grid))
        else:
            bins.append(np.asarray(cutoff_ranks(labeled.input_tokens, rule.grid), np.int64))
    return bins


def family_grid(labeled: Outcomes, family: Family, rows: list[StopRows]) -> GridCells:
    """The engine's input for one family: the SQL rows of each stop, the labeled requests'
    cells and scores at each stop (they pay the stop's last tier's label)."""
    shape = tuple(g.size + 1 for g in family.grids)
    rows_labeled = np.flatnonzero(labeled.labeled)
    labels = labeled.label[rows_labeled]
    bins = [b[rows_labeled] for b in labeled_bins(labeled, family)]
    cells = cell_ids(bins, shape) if shape else [np.zeros(rows_labeled.size, dtype=np.intp)]
    axis, columns = weighted_columns([r.latency_us for r in rows], [r.requests for r in rows])
    sums = stop_sums(family)[: len(family.path)]
    stops = tuple(
        StopCells(
            cell=r.cell,
            latency=column,
            requests=r.requests,
            cost_nano_usd=r.cost_nano_usd,
            scored_cell=cells[min(s + 1, len(shape))],
            score_micro=quantize_score(labels[:, sums[s][-1]]),
        )
        for s, (r, column) in enumerate(zip(rows, columns, strict=True))
    )
    requests = int(rows[0].requests.sum())
    return GridCells(shape, stops, axis, requests, int(rows_labeled.size))


def evaluate_rows(labeled: Outcomes, family: Family, rows: list[StopRows]) -> GridResult:
    """Exact metrics of every policy of a family from its stops' aggregates."""
    if int(rows[0].requests.sum()) == 0:
        raise DataError(
            "no request has an attempt for every tier",
            hint="Ingest logs with shadow attempts for each tier in tiers.yaml, or run `calibrate replay`.",
        )
    return evaluate_cells(family_grid(labeled, family, rows))


def evaluate_families_from_cells(
    labeled: Outcomes,
    families: list[Family],
    stop_rows: StopRowsOf,
    outcomes: Outcomes | None = None,
    on_family=None,
) -> pl.DataFrame:
    """`evaluate_families`' frame from SQL aggregates (`stop_rows`, e.g. `sql_stop_rows`) and the
    labeled requests (`labeled`: its labeled rows score). Families that need per-request input
    (routers, keyword rules) are evaluated on `outcomes`, every request (required then).

    The families with stages are evaluated first (a one-tier stop can then be summed from their
    aggregates), the frames are put back in the families' order."""
    reference = premium_family(labeled)
    plan = getattr(stop_rows, "plan", None)
    if plan is not None:
        plan([*families, reference])
    order = sorted(
        range(len(families)), key=lambda i: (not in_sql(families[i]), not families[i].grids)
    )
    per_request = _PerRequest(outcomes, families)
    results: dict[int, GridResult] = {}
    for i in order:
        family = families[i]
        if in_sql(family):
            results[i] = evaluate_rows(labeled, family, stop_rows(family))
        else:
            results[i] = per_request.evaluate(family)
        if on_family is not None:
            on_family(family)
    premium = evaluate_rows(labeled, reference, stop_rows(reference))
    frames = []
    for i, family in enumerate(families):
        frame = family_frame(labeled, family, results[i], premium)
        if family.kind == "rules" and family.path[0] != 0:
            frame = frame.head(-1)  # "none": the same policy as on the cheapest tier's pair
        frames.append(frame)
    return pl.concat(frames, how="vertical")


class _PerRequest:
    """The per-request path for the families SQL cannot bin, with one sweep's caches."""

    def __init__(self, outcomes: Outcomes | None, families: list[Family]) -> None:
        self.outcomes = outcomes
        self.families = [f for f in families if not in_sql(f)]
        self.columns: SweepColumns | None = None
        self.shared: dict = {}

    def evaluate(self, family: Family) -> GridResult:
        if self.outcomes is None:
            raise ValueError(f"a {family.kind} family needs every request's outcomes")
        if self.columns is None:
            self.columns = sweep_columns(self.outcomes, self.families)
        return evaluate_family(self.outcomes, family, self.columns, self.shared)


def check_latencies(query: Query, relation: str, tiers: int) -> None:
    """The error `sweep_columns` raises, from SQL."""
    if aggregates_sql.latency_faults(query, relation, tiers):
        raise DataError(
            "some latencies are not finite numbers",
            hint="Check latency_ms in the logs; the store writes 0 when it is missing.",
        )

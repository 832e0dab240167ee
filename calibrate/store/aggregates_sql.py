"""The sweep's sufficient statistics, aggregated in SQL over the outcome relation.

Plain SQL in the subset DuckDB and Spark SQL share, built as text with literals inlined, run by a
runner `query(sql) -> {column: numpy array}` on whatever engine holds the relation (its name is a
parameter; the columns are `outcome_rows_sql`'s). What comes back grows with the grids, not with
the traffic:

- `confidence_histograms`: per tier, its finite confidences counted in equal-width buckets, then
  `bucket_values` pulls only the values of the few buckets holding a wanted order statistic (a
  bucket holding one value needs no pull): the threshold grids, exactly as numpy sorts them.
- `token_counts`: the (input_tokens, requests) histogram, for the length cutoffs.
- `stop_rows`: per stop of a family, (cell, latency µs) → requests and summed cost (nano-USD),
  the cell being the flat C-order index of the request's bins at the stages up to the stop, each
  bin a CASE tree over the inlined grid (`StageRule`).
- `consensus_rows`: the same for a vote among tiers (cost: the voters' summed cost; latency: the
  slowest voter's).
- `latency_faults`: rows whose latency is not a finite number (the engine refuses them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import duckdb
import numpy as np

from calibrate.records.cells import ConfidenceHistogram, StageRule, StopRows
from calibrate.store.exact_sql import double, finite, latency_us, nano_usd, rint
from calibrate.store.sql_engine import DuckDbEngine

Query = Callable[[str], Mapping[str, np.ndarray]]
BUCKETS = 1 << 16


def duckdb_query(con: duckdb.DuckDBPyConnection) -> Query:
    """A runner on a DuckDB connection (`sql_engine.DuckDbEngine`'s)."""
    return DuckDbEngine(con).query


def latency_faults(query: Query, relation: str, tiers: int) -> int:
    """How many (row, tier) latencies are not finite numbers (NULL, NaN, ±inf)."""
    parts = " + ".join(
        f"SUM(CASE WHEN {finite(f'latency_ms_{j}')} THEN 0 ELSE 1 END)" for j in range(tiers)
    )
    out = query(f"SELECT CAST(COALESCE({parts}, 0) AS BIGINT) AS faults FROM {relation}")
    return int(out["faults"][0])


def _bucket_sql(column: str, lo: float, scale: float) -> str:
    return (
        f"LEAST(GREATEST(CAST(FLOOR(({column} - {double(lo)}) * {double(scale)}) AS BIGINT), 0),"
        f" {BUCKETS - 1})"
    )


def confidence_histograms(
    query: Query, relation: str, tiers: Sequence[int]
) -> list[ConfidenceHistogram]:
    """Per tier position, its finite confidences bucketed over [min, max] (two scans)."""
    if not tiers:
        return []
    stats = ", ".join(
        f"COUNT(CASE WHEN {finite(f'conf_{j}')} THEN 1 END) AS n_{j}, "
        f"MIN(CASE WHEN {finite(f'conf_{j}')} THEN conf_{j} END) AS lo_{j}, "
        f"MAX(CASE WHEN {finite(f'conf_{j}')} THEN conf_{j} END) AS hi_{j}"
        for j in tiers
    )
    row = query(f"SELECT {stats} FROM {relation}")
    ranges = {}
    for j in tiers:
        n = int(row[f"n_{j}"][0])
        lo, hi = (float(row[f"lo_{j}"][0]), float(row[f"hi_{j}"][0])) if n else (0.0, 0.0)
        with np.errstate(over="ignore"):
            span = hi - lo
        scale = BUCKETS / span if 0 < span < np.inf else 0.0
        ranges[j] = (n, lo, scale)
    counted = [j for j in tiers if ranges[j][0]]
    parts = [
        f"SELECT {j} AS tier, bucket, COUNT(*) AS n, MIN(c) AS lo, MAX(c) AS hi FROM "
        f"(SELECT {_bucket_sql(f'conf_{j}', *ranges[j][1:])} AS bucket, conf_{j} AS c "
        f"FROM {relation} WHERE {finite(f'conf_{j}')}) t GROUP BY bucket"
        for j in counted
    ]
    hist = query(" UNION ALL ".join(parts)) if parts else {}
    return [_histogram(j, *ranges[j], hist) for j in tiers]


def _histogram(
    tier: int, count: int, lo: float, scale: float, hist: Mapping[str, np.ndarray]
) -> ConfidenceHistogram:
    """One tier's rows of the histogram query, by ascending bucket."""
    mine = hist["tier"] == tier if hist else np.zeros(0, dtype=bool)
    columns = {
        name: hist[name][mine] if hist else np.zeros(0) for name in ("bucket", "n", "lo", "hi")
    }
    order = np.argsort(columns["bucket"], kind="stable")
    return ConfidenceHistogram(
        tier=tier,
        count=count,
        lo=lo,
        scale=scale,
        bucket=columns["bucket"][order].astype(np.int64),
        counts=columns["n"][order].astype(np.int64),
        minimum=columns["lo"][order].astype(np.float64),
        maximum=columns["hi"][order].astype(np.float64),
    )


def bucket_values(
    query: Query, relation: str, hist: ConfidenceHistogram, buckets: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct finite confidences in `buckets` of `hist`'s tier, ascending, with how many
    requests have each."""
    if not len(buckets):
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    column = f"conf_{hist.tier}"
    wanted = ", ".join(str(int(b)) for b in sorted(set(buckets)))
    out = query(
        f"SELECT c AS conf_value, COUNT(*) AS n FROM (SELECT {_bucket_sql(column, hist.lo, hist.scale)}"
        f" AS bucket, {column} AS c FROM {relation} WHERE {finite(column)}) t"
        f" WHERE bucket IN ({wanted}) GROUP BY c"
    )
    order = np.argsort(out["conf_value"], kind="stable")
    return out["conf_value"][order].astype(np.float64), out["n"][order].astype(np.int64)


def token_counts(query: Query, relation: str) -> tuple[np.ndarray, np.ndarray]:
    """The distinct input_tokens, ascending, with how many requests have each."""
    out = query(
        f"SELECT input_tokens AS tokens, COUNT(*) AS n FROM {relation} GROUP BY input_tokens"
    )
    order = np.argsort(out["tokens"], kind="stable")
    return out["tokens"][order].astype(np.int64), out["n"][order].astype(np.int64)


def _at_most_tree(column: str, grid: np.ndarray, lo: int, hi: int) -> str:
    """How many of the ascending grid[lo:hi] are ≤ column, plus lo, given grid[lo-1] ≤ column <
    grid[hi]: a binary search written as nested CASEs (NULL takes every ELSE: 0 from the root)."""
    if lo == hi:
        return str(lo)
    mid = (lo + hi) // 2
    above = _at_most_tree(column, grid, mid + 1, hi)
    below = _at_most_tree(column, grid, lo, mid)
    return f"CASE WHEN {column} >= {double(grid[mid])} THEN {above} ELSE {below} END"


def _at_least_tree(column: str, ascending: np.ndarray, lo: int, hi: int, size: int) -> str:
    """How many cutoffs are ≥ column (an integer): size minus how many of `ascending` are < it."""
    if lo == hi:
        return str(size - lo)
    mid = (lo + hi) // 2
    above = _at_least_tree(column, ascending, mid + 1, hi, size)
    below = _at_least_tree(column, ascending, lo, mid, size)
    return f"CASE WHEN {column} > {int(ascending[mid])} THEN {above} ELSE {below} END"


def stage_bin_sql(rule: StageRule) -> str:
    """The SQL of a stage's bin of each row."""
    grid = np.asarray(rule.grid)
    if rule.kind == "confidence":
        return _at_most_tree(f"conf_{rule.tier}", grid.astype(np.float64), 0, grid.size)
    if rule.kind == "tokens":
        ascending = grid[::-1].astype(np.int64)
        return _at_least_tree("input_tokens", ascending, 0, ascending.size, ascending.size)
    raise ValueError(f"unknown stage kind {rule.kind!r}")


def stop_rows_sql(
    relation: str,
    stages: Sequence[StageRule],
    stops: Sequence[tuple[int, tuple[int, ...]]],
    overhead_nano_usd: int = 0,
) -> str:
    """One query for several stops over the same stages: `stops[i]` is (depth, paid): the cell is
    over the first `depth` stages, `paid` the tiers a request stopping there pays (latency and
    cost summed, plus the overhead). Columns: stop (i), cell, latency_us, requests,
    cost_nano_usd."""
    shape = [np.asarray(r.grid).size + 1 for r in stages]
    deepest = max((depth for depth, _ in stops), default=0)
    tiers = sorted({j for _, paid in stops for j in paid})
    columns = [f"{stage_bin_sql(r)} AS b{i}" for i, r in enumerate(stages[:deepest])]
    columns += [f"{latency_us(f'latency_ms_{j}')} AS l{j}" for j in tiers]
    columns += [f"{nano_usd(f'cost_usd_{j}')} AS c{j}" for j in tiers]
    cell = ["0"]
    for i in range(deepest):
        cell.append(f"b{i}" if i == 0 else f"({cell[-1]}) * {shape[i]} + b{i}")
    per_stop = []
    for i, (depth, paid) in enumerate(stops):
        lat = " + ".join(f"l{j}" for j in paid)
        cost = " + ".join(f"c{j}" for j in paid) + (
            f" + {int(overhead_nano_usd)}" if overhead_nano_usd else ""
        )
        per_stop.append(f"{cell[depth]} AS cell_{i}, {lat} AS lat_{i}, {cost} AS cost_{i}")
    unions = " UNION ALL ".join(
        f"SELECT {i} AS stop, cell_{i} AS cell, lat_{i} AS latency_us, COUNT(*) AS requests,"
        f" CAST(SUM(cost_{i}) AS BIGINT) AS cost_nano_usd FROM s GROUP BY cell_{i}, lat_{i}"
        for i in range(len(stops))
    )
    return (
        f"WITH r AS (SELECT {', '.join(columns)} FROM {relation}),"
        f" s AS (SELECT {', '.join(per_stop)} FROM r) {unions}"
    )


def stop_rows(
    query: Query,
    relation: str,
    stages: Sequence[StageRule],
    stops: Sequence[tuple[int, tuple[int, ...]]],
    overhead_nano_usd: int = 0,
) -> list[StopRows]:
    """`stop_rows_sql` run and split by stop."""
    out = query(stop_rows_sql(relation, stages, stops, overhead_nano_usd))
    return [_rows(out, out["stop"] == i) for i in range(len(stops))]


def _rows(out: Mapping[str, np.ndarray], mask: np.ndarray) -> StopRows:
    return StopRows(
        cell=out["cell"][mask].astype(np.intp),
        latency_us=out["latency_us"][mask].astype(np.int64),
        requests=out["requests"][mask].astype(np.int64),
        cost_nano_usd=out["cost_nano_usd"][mask].astype(np.float64),
    )


def consensus_rows(query: Query, relation: str, voters: Sequence[int]) -> StopRows:
    """A vote among `voters` as one stop: latency the slowest voter's, cost rint of the voters'
    summed cost_usd (added left to right, as numpy sums a row of a few columns)."""
    slowest = f"GREATEST({', '.join(f'latency_ms_{j}' for j in voters)})"
    summed = " + ".join(f"cost_usd_{j}" for j in voters)
    if len(voters) == 1:
        slowest = f"latency_ms_{voters[0]}"
    out = query(
        f"SELECT 0 AS cell, l AS latency_us, COUNT(*) AS requests,"
        f" CAST(SUM(c) AS BIGINT) AS cost_nano_usd FROM (SELECT {latency_us(slowest)} AS l,"
        f" {rint(f'({summed}) * {double(1e9)}')} AS c FROM {relation}) t GROUP BY l"
    )
    return _rows(out, np.ones(out["cell"].size, dtype=bool))


def _text(value: str) -> str:
    """A string literal (a quote doubled)."""
    return "'" + value.replace("'", "''") + "'"


def with_intents(relation: str, intents: Sequence[str]) -> str:
    """The rows of `relation` whose intent is one of `intents`, as a relation to aggregate over."""
    listed = ", ".join(_text(i) for i in intents)
    return f"(SELECT * FROM {relation} WHERE intent IN ({listed})) AS with_intents"


def known_intents(query: Query, relation: str) -> list[str]:
    """The distinct intents of the requests, sorted."""
    out = query(f"SELECT DISTINCT intent FROM {relation} WHERE intent IS NOT NULL")
    return sorted(str(i) for i in out["intent"])


def label_counts(query: Query, relation: str, tiers: int) -> list[int]:
    """Per tier position, how many requests carry its label."""
    out = query(
        "SELECT "
        + ", ".join(f"COUNT(label_{j}) AS n_{j}" for j in range(tiers))
        + f" FROM {relation}"
    )
    return [int(out[f"n_{j}"][0]) for j in range(tiers)]

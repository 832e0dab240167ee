"""Reads for the sweep: the per-request × tier outcome table and the data window.

One attempt per (request, tier) is used: an `ok` attempt before a failed one, then `prod` before
`shadow`. One label per (request, tier) is used, by source: human, log, reference, judge.
Cost is the attempt's `cost_usd`, or its tokens × the tier's price when the log has no cost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import duckdb
import numpy as np

from calibrate.errors import DataError
from calibrate.records import DataWindow, Outcomes

_LABEL_PRIORITY = "CASE source WHEN 'human' THEN 0 WHEN 'log' THEN 1 WHEN 'reference' THEN 2 WHEN 'judge' THEN 3 ELSE 4 END"

_PICKED = f"""
WITH tier_list AS (SELECT unnest(?::VARCHAR[]) AS tier, generate_subscripts(?::VARCHAR[], 1) AS k),
prices AS (SELECT unnest(?::VARCHAR[]) AS tier, unnest(?::DOUBLE[]) AS p_in, unnest(?::DOUBLE[]) AS p_out),
picked AS (
    SELECT a.*, row_number() OVER (
        PARTITION BY a.request_id, a.tier
        ORDER BY (a.status = 'ok') DESC, (a.source = 'prod') DESC, a.source) AS rn
    FROM attempts a JOIN tier_list USING (tier)
),
best_label AS (
    SELECT request_id, tier, arg_min(score, {_LABEL_PRIORITY}) AS score
    FROM labels JOIN tier_list USING (tier) GROUP BY request_id, tier
)
SELECT p.request_id, t.k,
       CASE WHEN p.status = 'ok' AND isfinite(p.confidence) THEN p.confidence END AS confidence,
       COALESCE(p.cost_usd,
                (COALESCE(p.input_tokens, 0) * pr.p_in + COALESCE(p.output_tokens, 0) * pr.p_out) / 1e6)
           AS cost_usd,
       COALESCE(p.latency_ms, 0) AS latency_ms,
       l.score AS label
FROM picked p
JOIN tier_list t USING (tier)
LEFT JOIN prices pr USING (tier)
LEFT JOIN best_label l ON l.request_id = p.request_id AND l.tier = p.tier
WHERE p.rn = 1
"""

_REQUESTS = """
SELECT r.request_id, epoch(r.ts) AS ts_s, COALESCE(r.region, '') AS region, COALESCE(r.app, '') AS app, COALESCE(r.metadata->>'intent', '') AS intent,
       COALESCE(r.input_tokens, a.max_in, CAST(length(CAST(r.messages AS VARCHAR)) / 4 AS BIGINT)) AS input_tokens
FROM requests r
LEFT JOIN (SELECT request_id, max(input_tokens) AS max_in FROM attempts GROUP BY request_id) a USING (request_id)
ORDER BY r.request_id
"""


def load_outcomes(
    con: duckdb.DuckDBPyConnection,
    tiers: Sequence[str],
    price_per_mtok: Mapping[str, tuple[float, float]],
) -> Outcomes:
    """Assemble the (n_requests × n_tiers) arrays; requests missing a tier are counted, not used."""
    names = list(tiers)
    priced = [t for t in names if t in price_per_mtok]
    params = [
        names,
        names,
        priced,
        [price_per_mtok[t][0] for t in priced],
        [price_per_mtok[t][1] for t in priced],
    ]
    cells = con.execute(_PICKED, params).fetchnumpy()
    req = con.execute(_REQUESTS).fetchnumpy()
    return _assemble(names, req, cells, set(priced))


def _assemble(names: list[str], req: dict, cells: dict, priced: set[str]) -> Outcomes:
    ids = np.asarray(req["request_id"], dtype=object)
    row_of = {rid: i for i, rid in enumerate(ids)}
    n, k = len(ids), len(names)
    shape = (n, k)
    conf, cost, lat, label = (np.full(shape, np.nan) for _ in range(4))
    present = np.zeros(shape, dtype=bool)
    rows = np.fromiter(
        (row_of[r] for r in cells["request_id"]), dtype=np.int64, count=len(cells["request_id"])
    )
    cols = np.asarray(cells["k"], dtype=np.int64) - 1
    present[rows, cols] = True
    for target, key in (
        (conf, "confidence"),
        (cost, "cost_usd"),
        (lat, "latency_ms"),
        (label, "label"),
    ):
        target[rows, cols] = _as_float(cells[key])
    _check_costs(names, cost, present, priced)
    complete = present.all(axis=1)
    sel = np.flatnonzero(complete)
    return Outcomes(
        tiers=tuple(names),
        request_ids=ids[sel],
        timestamp_s=np.asarray(req["ts_s"], dtype=np.float64)[sel],
        region=np.asarray(req["region"], dtype=object)[sel],
        app=np.asarray(req["app"], dtype=object)[sel],
        intent=np.asarray(req["intent"], dtype=object)[sel],
        input_tokens=np.asarray(req["input_tokens"], dtype=np.int64)[sel],
        confidence=conf[sel],
        cost_usd=cost[sel],
        latency_ms=lat[sel],
        label=label[sel],
        incomplete=int(n - sel.size),
    )


def _as_float(column: np.ndarray) -> np.ndarray:
    """DuckDB returns masked arrays for nullable columns; NULL becomes NaN."""
    if np.ma.isMaskedArray(column):
        return np.ma.filled(column.astype(np.float64), np.nan)
    return np.asarray(column, dtype=np.float64)


def _check_costs(names: list[str], cost: np.ndarray, present: np.ndarray, priced: set[str]) -> None:
    missing = present & np.isnan(cost)
    for j, name in enumerate(names):
        if missing[:, j].any() and name not in priced:
            raise DataError(
                f"tier {name!r}: {int(missing[:, j].sum())} attempts have no cost_usd and the tier has no price",
                hint=f"Add `price: {{input_per_mtok: ..., output_per_mtok: ...}}` to tier {name!r} in tiers.yaml.",
            )


def data_window(con: duckdb.DuckDBPyConnection, outcomes: Outcomes) -> DataWindow:
    """Time window of the used requests and a digest of every ingested file."""
    start = end = None
    if outcomes.n:
        lo, hi = float(outcomes.timestamp_s.min()), float(outcomes.timestamp_s.max())
        start, end = con.execute(
            "SELECT strftime(make_timestamp(CAST(? * 1e6 AS BIGINT)), '%Y-%m-%dT%H:%M:%SZ'),"
            " strftime(make_timestamp(CAST(? * 1e6 AS BIGINT)), '%Y-%m-%dT%H:%M:%SZ')",
            [lo, hi],
        ).fetchone()
    shas = [
        r[0] for r in con.execute("SELECT file_sha256 FROM ingested_files ORDER BY 1").fetchall()
    ]
    digest = hashlib.sha256("\n".join(shas).encode()).hexdigest()
    return DataWindow(
        requests=outcomes.n,
        labeled=int(outcomes.labeled.sum()),
        incomplete=outcomes.incomplete,
        start=start,
        end=end,
        logs_sha256=digest,
    )

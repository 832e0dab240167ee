"""Reads for `monitor`: every stored request in time order with, per tier of the deployed config,
what that tier answered, and what production did (the tier that served, the first failed attempt).

Unlike the sweep's outcome table, requests are kept when a tier never answered them: production
logs hold only the tiers a request reached. One attempt per (request, tier) is used, as for the
sweep: an `ok` attempt before a failed one, then `prod` before `shadow`. Labels by source priority.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np

from calibrate.records.outcomes import RequestLog
from calibrate.store.outcomes_sql import LABEL_PRIORITY

# Every request with what production did (the tier that served, the first failed prod attempt);
# endpoint health groups the same rows (`health_sql`).
PRODUCTION_PATHS = """
WITH prod AS (
    SELECT request_id,
           arg_min(tier, position) FILTER (WHERE status <> 'ok') AS failed_tier,
           arg_max(tier, position) FILTER (WHERE status = 'ok') AS last_ok_tier,
           max(input_tokens) AS max_in
    FROM attempts WHERE source = 'prod' GROUP BY request_id
)
SELECT r.request_id, epoch(r.ts) AS ts_s,
       COALESCE(r.region, '') AS region, COALESCE(r.app, '') AS app,
       COALESCE(r.metadata->>'intent', '') AS intent,
       COALESCE(r.input_tokens, p.max_in, CAST(length(CAST(r.messages AS VARCHAR)) / 4 AS BIGINT))
           AS input_tokens,
       COALESCE(r.served_tier, p.last_ok_tier, '') AS served_tier,
       COALESCE(p.failed_tier, '') AS failed_tier
FROM requests r LEFT JOIN prod p USING (request_id)
"""
_REQUESTS = PRODUCTION_PATHS + "ORDER BY r.ts, r.request_id\n"

_CELLS = f"""
WITH tier_list AS (SELECT unnest(?::VARCHAR[]) AS tier, generate_subscripts(?::VARCHAR[], 1) AS k),
picked AS (
    SELECT a.request_id, a.tier, a.status, a.confidence, a.cost_usd, row_number() OVER (
        PARTITION BY a.request_id, a.tier
        ORDER BY (a.status = 'ok') DESC, (a.source = 'prod') DESC, a.source) AS rn
    FROM attempts a JOIN tier_list USING (tier)
),
best_label AS (
    SELECT request_id, tier, arg_min(score, {LABEL_PRIORITY}) AS score
    FROM labels JOIN tier_list USING (tier) GROUP BY request_id, tier
)
SELECT p.request_id, t.k,
       CASE WHEN p.status = 'ok' AND isfinite(p.confidence) THEN p.confidence END AS confidence,
       CASE WHEN p.status = 'ok' THEN p.cost_usd END AS cost_usd,
       l.score AS label
FROM picked p
JOIN tier_list t USING (tier)
LEFT JOIN best_label l ON l.request_id = p.request_id AND l.tier = p.tier
WHERE p.rn = 1
"""

TIER_COSTS = """
SELECT tier, median(cost_usd) FROM attempts
WHERE status = 'ok' AND cost_usd IS NOT NULL GROUP BY tier ORDER BY tier
"""


def _as_float(column: np.ndarray) -> np.ndarray:
    """DuckDB returns masked arrays for nullable columns; NULL becomes NaN."""
    if np.ma.isMaskedArray(column):
        return np.ma.filled(column.astype(np.float64), np.nan)
    return np.asarray(column, dtype=np.float64)


def load_request_log(con: duckdb.DuckDBPyConnection, tiers: Sequence[str]) -> RequestLog:
    """Assemble the monitor's arrays for the given config tiers."""
    names = list(tiers)
    req = con.execute(_REQUESTS).fetchnumpy()
    cells = con.execute(_CELLS, [names, names]).fetchnumpy()
    ids = np.asarray(req["request_id"], dtype=object)
    row_of = {rid: i for i, rid in enumerate(ids)}
    shape = (len(ids), len(names))
    rows = np.fromiter((row_of[r] for r in cells["request_id"]), np.int64, len(cells["request_id"]))
    cols = np.asarray(cells["k"], dtype=np.int64) - 1
    answered = np.zeros(shape, dtype=bool)
    answered[rows, cols] = True
    conf, label, cost = (np.full(shape, np.nan) for _ in range(3))
    for target, key in ((conf, "confidence"), (label, "label"), (cost, "cost_usd")):
        target[rows, cols] = _as_float(cells[key])
    return RequestLog(
        tiers=tuple(names),
        request_ids=ids,
        timestamp_s=np.asarray(req["ts_s"], dtype=np.float64),
        region=np.asarray(req["region"], dtype=object),
        app=np.asarray(req["app"], dtype=object),
        intent=np.asarray(req["intent"], dtype=object),
        input_tokens=np.asarray(req["input_tokens"], dtype=np.int64),
        served_tier=np.asarray(req["served_tier"], dtype=object),
        failed_tier=np.asarray(req["failed_tier"], dtype=object),
        answered=answered,
        confidence=conf,
        label=label,
        cost_usd=cost,
        tier_cost_usd={t: float(c) for t, c in con.execute(TIER_COSTS).fetchall()},
    )

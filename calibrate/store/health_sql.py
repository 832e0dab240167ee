"""Reads for endpoint health: per tier × region × day, what the production attempts looked like.

Only `prod` attempts count (shadow replays say nothing about production endpoints). Latency
percentiles are nearest-rank (quantile_disc) over `ok` attempts; error and timeout rates are over
all prod attempts; `fallback_share` is the share of the requests whose first failed prod attempt
was at this tier and that another tier served.
"""

from __future__ import annotations

import duckdb
import polars as pl

_HEALTH = """
WITH prod AS (
    SELECT a.request_id, a.tier, a.status, a.latency_ms, COALESCE(r.region, '') AS region,
           CAST(r.ts AS DATE) AS day, r.served_tier
    FROM attempts a JOIN requests r USING (request_id)
    WHERE a.source = 'prod'
),
first_failure AS (
    SELECT request_id, arg_min(tier, attempt_rank) AS tier
    FROM (SELECT request_id, tier, status, row_number() OVER (PARTITION BY request_id ORDER BY rowid)
                 AS attempt_rank
          FROM attempts WHERE source = 'prod') WHERE status <> 'ok'
    GROUP BY request_id
)
SELECT p.tier, p.region, p.day, count(*) AS attempts,
       quantile_disc(p.latency_ms, 0.5) FILTER (WHERE p.status = 'ok') AS latency_p50_ms,
       quantile_disc(p.latency_ms, 0.95) FILTER (WHERE p.status = 'ok') AS latency_p95_ms,
       avg((p.status = 'error')::INT) AS error_rate,
       avg((p.status = 'timeout')::INT) AS timeout_rate,
       avg((f.tier IS NOT NULL AND f.tier = p.tier
            AND COALESCE(p.served_tier, '') <> p.tier)::INT) AS fallback_share
FROM prod p LEFT JOIN first_failure f USING (request_id)
GROUP BY p.tier, p.region, p.day
ORDER BY p.tier, p.region, p.day
"""


def endpoint_health(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """One row per tier × region × day with prod attempts (see the module docstring)."""
    frame = pl.from_arrow(con.sql(_HEALTH).to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame

"""All SQL of `calibrate sample`: the population a labelling queue is drawn from, the reviewer's
view of the chosen requests, and the record of the queue (`label_samples`, `label_sample_items`).

`--keyword` patterns are matched outside SQL, by the same RE2 engine as every user pattern
(config/patterns.py), on `Store.prompt_texts`. Only the store imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import numpy as np

from calibrate.store.labels_sql import PICKED_ATTEMPTS
from calibrate.store.one_row import one_row

_INPUT_TOKENS = (
    "coalesce(r.input_tokens, a.max_in, CAST(length(CAST(r.messages AS VARCHAR)) / 4 AS BIGINT))"
)


def population(con: duckdb.DuckDBPyConnection, tiers: Sequence[str]) -> dict[str, np.ndarray]:
    """Requests with an attempt from every tier: id, confidence per tier, input tokens, intent;
    sorted by request id."""
    columns = ", ".join(f"c.conf[{j + 1}] AS conf_{j}" for j in range(len(tiers)))
    rows = con.execute(
        f"""
        WITH tier_list AS (SELECT unnest($tiers::VARCHAR[]) AS tier,
                                  generate_subscripts($tiers::VARCHAR[], 1) AS k),
        picked AS ({PICKED_ATTEMPTS}),
        cells AS (SELECT p.request_id, list(p.confidence ORDER BY t.k) AS conf, count(*) AS n
                  FROM picked p JOIN tier_list t USING (tier) GROUP BY p.request_id)
        SELECT r.request_id, {columns}, {_INPUT_TOKENS} AS input_tokens,
               coalesce(r.metadata->>'intent', '') AS intent
        FROM requests r JOIN cells c USING (request_id)
        LEFT JOIN (SELECT request_id, max(input_tokens) AS max_in FROM attempts
                   GROUP BY request_id) a USING (request_id)
        WHERE c.n = len($tiers::VARCHAR[])
        ORDER BY r.request_id""",
        {"tiers": list(tiers)},
    ).fetchnumpy()
    return rows


def review_rows(
    con: duckdb.DuckDBPyConnection, request_ids: Sequence[str], tiers: Sequence[str]
) -> list[tuple]:
    """(request_id, app, region, intent, input_tokens, messages JSON, reference, answers per
    tier) for the given requests, in the given order."""
    rows = con.execute(
        f"""
        WITH wanted AS (SELECT unnest($ids::VARCHAR[]) AS request_id,
                               generate_subscripts($ids::VARCHAR[], 1) AS pos),
        tier_list AS (SELECT unnest($tiers::VARCHAR[]) AS tier,
                             generate_subscripts($tiers::VARCHAR[], 1) AS k),
        picked AS ({PICKED_ATTEMPTS}),
        answers AS (SELECT p.request_id,
                           list(CASE WHEN p.status = 'ok' THEN p.output END ORDER BY t.k) AS outs
                    FROM picked p JOIN tier_list t USING (tier)
                    SEMI JOIN wanted w ON w.request_id = p.request_id
                    GROUP BY p.request_id)
        SELECT r.request_id, coalesce(r.app, ''), coalesce(r.region, ''),
               coalesce(r.metadata->>'intent', ''), {_INPUT_TOKENS},
               CAST(r.messages AS VARCHAR), r.reference, ans.outs
        FROM wanted w JOIN requests r USING (request_id)
        LEFT JOIN answers ans USING (request_id)
        LEFT JOIN (SELECT request_id, max(input_tokens) AS max_in FROM attempts
                   GROUP BY request_id) a USING (request_id)
        ORDER BY w.pos""",
        {"ids": list(request_ids), "tiers": list(tiers)},
    ).fetchall()
    return [(*row[:7], tuple(row[7] or [None] * len(tiers))) for row in rows]


def record_sample(
    con: duckdb.DuckDBPyConnection,
    created_at: datetime,
    seed: int,
    requested: int,
    population_size: int,
    design_json: str,
    file: str,
    items: tuple[Sequence[str], Sequence[str], Sequence[float]],
) -> int:
    """Store one labelling queue and its rows; returns its sample_id."""
    sample_id = int(one_row(con, "SELECT coalesce(max(sample_id), 0) + 1 FROM label_samples")[0])
    con.execute(
        "INSERT INTO label_samples VALUES (?, ?, ?, ?, ?, ?, ?)",
        [sample_id, created_at, seed, requested, population_size, design_json, file],
    )
    ids, strata, probs = items
    con.execute(
        """
        INSERT INTO label_sample_items
        SELECT $sid, unnest($ids::VARCHAR[]), unnest($strata::VARCHAR[]),
               unnest($probs::DOUBLE[])""",
        {"sid": sample_id, "ids": list(ids), "strata": list(strata), "probs": list(probs)},
    )
    return sample_id

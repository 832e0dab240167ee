"""All SQL of `calibrate sample`: the population a labelling queue is drawn from, the reviewer's
view of the chosen requests, and the record of the queue (`label_samples`, `label_sample_items`).

Keyword rules are RE2 patterns matched case-insensitively against the text of the request's
messages. Only the store imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import numpy as np

from calibrate.errors import ConfigError
from calibrate.store.labels_sql import PICKED_ATTEMPTS
from calibrate.store.one_row import one_row

_TEXT = (
    "array_to_string(list_transform(CAST(r.messages AS JSON[]), "
    "lambda m: coalesce(m->>'content', '')), chr(10))"
)
_INPUT_TOKENS = (
    "coalesce(r.input_tokens, a.max_in, CAST(length(CAST(r.messages AS VARCHAR)) / 4 AS BIGINT))"
)


def keyword_pattern(con: duckdb.DuckDBPyConnection, keywords: Sequence[str]) -> str | None:
    """One case-insensitive RE2 pattern for all keyword rules; ConfigError names a bad one."""
    for keyword in keywords:
        try:
            con.execute("SELECT regexp_matches('', ?)", [keyword]).fetchone()
        except duckdb.Error as exc:
            raise ConfigError(
                f"--keyword {keyword!r} is not a valid regular expression: "
                f"{str(exc).splitlines()[0]}",
                hint="Keyword rules use RE2 syntax, e.g. --keyword 'refund|chargeback'.",
            ) from None
    if not keywords:
        return None
    return "(?i)" + "|".join(f"(?:{k})" for k in keywords)


def population(
    con: duckdb.DuckDBPyConnection, tiers: Sequence[str], keywords: Sequence[str]
) -> dict[str, np.ndarray]:
    """Requests with an attempt from every tier: id, confidence per tier, input tokens, intent,
    keyword hit; sorted by request id."""
    pattern = keyword_pattern(con, keywords)
    columns = ", ".join(f"c.conf[{j + 1}] AS conf_{j}" for j in range(len(tiers)))
    rows = con.execute(
        f"""
        WITH tier_list AS (SELECT unnest($tiers::VARCHAR[]) AS tier,
                                  generate_subscripts($tiers::VARCHAR[], 1) AS k),
        picked AS ({PICKED_ATTEMPTS}),
        cells AS (SELECT p.request_id, list(p.confidence ORDER BY t.k) AS conf, count(*) AS n
                  FROM picked p JOIN tier_list t USING (tier) GROUP BY p.request_id)
        SELECT r.request_id, {columns}, {_INPUT_TOKENS} AS input_tokens,
               coalesce(r.metadata->>'intent', '') AS intent,
               CASE WHEN $pattern::VARCHAR IS NULL THEN false
                    ELSE coalesce(regexp_matches({_TEXT}, $pattern::VARCHAR), false) END
                   AS keyword_hit
        FROM requests r JOIN cells c USING (request_id)
        LEFT JOIN (SELECT request_id, max(input_tokens) AS max_in FROM attempts
                   GROUP BY request_id) a USING (request_id)
        WHERE c.n = len($tiers::VARCHAR[])
        ORDER BY r.request_id""",
        {"tiers": list(tiers), "pattern": pattern},
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

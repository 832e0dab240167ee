"""Reads of request text: the prompt each request sent and its precomputed embedding (the
learned router), and each tier's answer (consensus).

The prompt is the concatenated `content` of the request's messages (every role, in order), which
ingest stores for `prompt` rows too (as one user message).
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

_PROMPTS = """
SELECT w.i, COALESCE(array_to_string(
           list_transform(CAST(r.messages AS JSON[]), lambda m: COALESCE(m->>'content', '')), '\n'),
       '') AS prompt
FROM wanted w LEFT JOIN requests r USING (request_id)
ORDER BY w.i
"""


def prompt_texts(con: duckdb.DuckDBPyConnection, request_ids: Sequence[str]) -> list[str]:
    """The prompt text of each request, in the order of `request_ids` ('' for an unknown id)."""
    wanted = pa.table(
        {"i": pa.array(range(len(request_ids)), pa.int64()), "request_id": list(request_ids)}
    )
    con.register("wanted", wanted)
    try:
        rows = con.execute(_PROMPTS).fetchall()
    finally:
        con.unregister("wanted")
    return [text for _, text in rows]


_OUTPUTS = """
SELECT w.i, t.k, arg_min(a.output, ((a.source <> 'prod')::INT, a.source)) AS output
FROM wanted w
JOIN attempts a USING (request_id)
JOIN (SELECT unnest($tiers::VARCHAR[]) AS tier, generate_subscripts($tiers::VARCHAR[], 1) - 1 AS k) t
  USING (tier)
WHERE a.status = 'ok' AND a.output IS NOT NULL
GROUP BY w.i, t.k
"""


def tier_outputs(
    con: duckdb.DuckDBPyConnection, request_ids: Sequence[str], tiers: Sequence[str]
) -> list[list[str | None]]:
    """Per request (in the given order) and tier, the answer text of its `ok` attempt (prod before
    shadow), None when the tier has none."""
    out: list[list[str | None]] = [[None] * len(tiers) for _ in request_ids]
    wanted = pa.table(
        {"i": pa.array(range(len(request_ids)), pa.int64()), "request_id": list(request_ids)}
    )
    con.register("wanted", wanted)
    try:
        rows = con.execute(_OUTPUTS, {"tiers": list(tiers)}).fetchall()
    finally:
        con.unregister("wanted")
    for i, k, text in rows:
        out[i][k] = text
    return out


_EMBEDDINGS = """
SELECT w.i, TRY_CAST(json_extract(r.metadata, $path) AS DOUBLE[]) AS v
FROM wanted w LEFT JOIN requests r USING (request_id)
ORDER BY w.i
"""


def embeddings(
    con: duckdb.DuckDBPyConnection, request_ids: Sequence[str], key: str
) -> list[list[float] | None]:
    """Each request's `metadata.<key>` as a list of numbers (None when absent or not numeric)."""
    wanted = pa.table(
        {"i": pa.array(range(len(request_ids)), pa.int64()), "request_id": list(request_ids)}
    )
    con.register("wanted", wanted)
    try:
        rows = con.execute(_EMBEDDINGS, {"path": f'$."{key}"'}).fetchall()
    finally:
        con.unregister("wanted")
    return [v for _, v in rows]

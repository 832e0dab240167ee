"""Reads of request text: the prompt each request sent and its precomputed embedding (the
learned router), and each tier's answer normalised for the consensus vote (as ids, in SQL).

The prompt is the concatenated `content` of the request's messages (every role, in order), which
ingest stores for `prompt` rows too (as one user message).
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
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


# The consensus vote's normalised answer, in SQL: the answer's words (maximal runs of Unicode
# letters, digits and '_'; `\w` of Python's re), lowercased character by character (İ as Python's
# str.lower gives it: i and a combining dot, which splits the word), without a leading courtesy
# word (sure, certainly, of course, okay, ok: a whole word at the start), joined by single spaces.
# Case, punctuation and spacing are folded; "Sure. It ships  TOMORROW!" = "it ships tomorrow".
# The chosen attempts are found first and their text read by rowid: the join over every attempt
# then does not carry every answer's text. Each distinct text is normalised once.
_WORD = r"[\p{L}\p{N}_]"
_SPACE = r"[\t-\r\x{1c}-\x{20}\x{85}\p{Z}]"  # str.isspace
_FILLER = rf"^{_SPACE}*(sure|certainly|of{_SPACE}+course|okay|ok)(?:[^\p{{L}}\p{{N}}_]|$)"

_ANSWER_CODES = f"""
WITH chosen AS (
    SELECT w.i, t.k, arg_min(a.rowid, ((a.source <> 'prod')::INT, a.source)) AS attempt
    FROM wanted w
    JOIN attempts a USING (request_id)
    JOIN (SELECT unnest($tiers::VARCHAR[]) AS tier,
                 generate_subscripts($tiers::VARCHAR[], 1) - 1 AS k) t USING (tier)
    WHERE a.status = 'ok' AND a.output IS NOT NULL
    GROUP BY w.i, t.k),
picked AS (SELECT c.i, c.k, a.output FROM chosen c JOIN attempts a ON a.rowid = c.attempt),
texts AS (SELECT output, lower(replace(output, 'İ', 'i' || chr(775))) AS answer
          FROM (SELECT DISTINCT output FROM picked)),
words AS (
    SELECT output, regexp_extract_all(answer, '{_WORD}+') AS words,
           regexp_extract(answer, '{_FILLER}', 1) AS filler
    FROM texts),
normalised AS (
    SELECT output, array_to_string(
               list_slice(words, CASE WHEN filler = '' THEN 1
                                      WHEN filler LIKE 'of%' THEN 3 ELSE 2 END, len(words)),
               ' ') AS answer
    FROM words),
coded AS (SELECT output, dense_rank() OVER (ORDER BY answer) - 1 AS code FROM normalised)
SELECT i, k, code FROM picked JOIN coded USING (output)
"""


def answer_codes(
    con: duckdb.DuckDBPyConnection, request_ids: Sequence[str], tiers: Sequence[str]
) -> np.ndarray:
    """(requests × tiers) id of each request's normalised answer per tier (its `ok` attempt's,
    prod before shadow; -1 without one): equal ids, equal normalised answers."""
    codes = np.full((len(request_ids), len(tiers)), -1, dtype=np.int64)
    wanted = pa.table(
        {"i": pa.array(range(len(request_ids)), pa.int64()), "request_id": list(request_ids)}
    )
    con.register("wanted", wanted)
    try:
        rows = con.execute(_ANSWER_CODES, {"tiers": list(tiers)}).fetchnumpy()
    finally:
        con.unregister("wanted")
    codes[np.asarray(rows["i"], dtype=np.int64), np.asarray(rows["k"], dtype=np.int64)] = rows[
        "code"
    ]
    return codes


_EMBEDDINGS = """
SELECT w.i, TRY_CAST(json_extract(r.metadata, $path) AS DOUBLE[]) AS v
FROM wanted w LEFT JOIN requests r USING (request_id)
ORDER BY w.i
"""


def any_embedding(con: duckdb.DuckDBPyConnection, key: str) -> bool:
    """Whether some request has a numeric `metadata.<key>` (what `embeddings` reads)."""
    rows = con.execute(
        "SELECT 1 FROM requests WHERE TRY_CAST(json_extract(metadata, $path) AS DOUBLE[])"
        " IS NOT NULL LIMIT 1",
        {"path": f'$."{key}"'},
    ).fetchall()
    return bool(rows)


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

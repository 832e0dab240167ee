"""The merge rule as SQL, shared by both ingest paths: checked rows -> requests, attempts, labels.

Input: ing_checked (line, r, meta, bad) and ing_att (line, position, m, extra, bad) for the rows of
one file or batch. Good rows become typed rows (ing_req, ing_att_good, ing_lab_good); rows that
contradict the store or an earlier row go to ing_conf with their reason; the rest is inserted when
it is new (first copy per key wins, equal copies are no-ops). The rule is in logformat.SCHEMA_DOC.
Only the store imports this module.
"""

from __future__ import annotations

import duckdb

from calibrate.formats import canonical as lf
from calibrate.store.ingest import runs


def merge(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    """Type the good rows, find conflicts (ing_conf) and insert what is new."""
    good(con)
    apply(con, run_id)


def apply(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    """Find the typed rows that conflict (ing_conf) and insert what is new; where each line comes
    from is in ing_sources (store/ingest/runs.py)."""
    _conflicts(con)
    _insert(con, run_id)


def request_columns(values: str, meta: str) -> str:
    """SQL select-list of the typed request columns of a good row, from its top-level JSON values
    (the SQL name of their struct, `values`) and its merged metadata (`meta`, NULL when it has no unknown keys)."""
    return f"""{values}.request_id->>'$' AS request_id, ing_ts({values}.timestamp) AS ts,
        {values}.region->>'$' AS region, {values}.app->>'$' AS app,
        coalesce({values}.messages, to_json([{{'role': 'user', 'content': {values}.prompt->>'$'}}]))::JSON
            AS messages,
        TRY_CAST(TRY_CAST({values}.input_tokens AS DOUBLE) AS BIGINT) AS input_tokens,
        {values}.served_tier->>'$' AS served_tier, {values}.reference->>'$' AS reference,
        coalesce({meta}, {values}.metadata) AS metadata"""


def content(alias: str) -> str:
    """SQL: the request-level content of a typed request row (`alias`.column), as one struct.

    Two copies of a request_id are the same request when these are not distinct."""
    return "{" + ", ".join(f"'{c}': {alias}.{c}" for c in CONTENT_COLUMNS) + "}"


CONTENT_COLUMNS = (
    "ts",
    "region",
    "app",
    "messages",
    "input_tokens",
    "served_tier",
    "reference",
    "metadata",
)
"""The request-level content the merge rule compares (attempts and labels merge on their own)."""


def good(con: duckdb.DuckDBPyConnection) -> None:
    """ing_req, ing_att_good, ing_lab_good: typed values of the rows that passed every rule."""
    good_requests(con)
    good_details(con)


def good_requests(con: duckdb.DuckDBPyConnection) -> None:
    """ing_req: typed request columns and labels of the good checked rows."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ing_req AS
        SELECT line, {request_columns("r", "meta")}, r.labels AS labels
        FROM ing_checked WHERE bad IS NULL""")


def good_details(con: duckdb.DuckDBPyConnection) -> None:
    """ing_att_good, ing_lab_good: typed attempts (of ing_att) and labels of ing_req's rows."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ing_att_good AS
        SELECT a.line, q.request_id, m['tier']->>'$' AS tier,
               coalesce(m['source']->>'$', '{lf.DEFAULT_SOURCE}') AS source, a.position,
               {{'model': m['model']->>'$', 'confidence': TRY_CAST(m['confidence'] AS DOUBLE),
                 'output': m['output']->>'$',
                 'input_tokens': TRY_CAST(m['input_tokens'] AS DOUBLE)::BIGINT,
                 'output_tokens': TRY_CAST(m['output_tokens'] AS DOUBLE)::BIGINT,
                 'cost_usd': TRY_CAST(m['cost_usd'] AS DOUBLE),
                 'latency_ms': TRY_CAST(m['latency_ms'] AS DOUBLE),
                 'status': coalesce(m['status']->>'$', '{lf.DEFAULT_STATUS}'),
                 'extra': extra}} AS c
        FROM ing_att AS a JOIN ing_req AS q USING (line)""")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE ing_lab_good AS
        SELECT line, request_id, e.key AS tier, TRY_CAST(e.value AS DOUBLE) AS score
        FROM (SELECT line, request_id, unnest(map_entries(labels)) AS e
              FROM ing_req WHERE labels IS NOT NULL)""")


_STORED_ATTEMPT = (
    "{'model': s.model, 'confidence': s.confidence, 'output': s.output, "
    "'input_tokens': s.input_tokens, 'output_tokens': s.output_tokens, 'cost_usd': s.cost_usd, "
    "'latency_ms': s.latency_ms, 'status': s.status, 'extra': s.extra::VARCHAR}"
)


def _conflicts(con: duckdb.DuckDBPyConnection) -> None:
    """ing_conf: good rows that contradict the store or an earlier row of the batch, each with
    its first conflict (request, then attempts by position, then labels by tier)."""
    seen = "' (first seen in ' || ing_place(first_line) || ')'"
    earlier = "' differs from an earlier copy (request first seen in ' || origin || ')'"
    con.execute("""
        CREATE OR REPLACE TEMP TABLE ing_origin AS
        SELECT request_id, coalesce(any_value(s.source_file || ' line ' || s.source_line),
                                    ing_place(min(q.line))) AS origin
        FROM ing_req AS q LEFT JOIN requests AS s USING (request_id)
        GROUP BY request_id""")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ing_conf AS
        SELECT line, field, reason FROM (
            SELECT q.line, 1 AS prio, 0 AS slot, 'request_id' AS field,
                   'duplicate request_id ' || q.request_id || ' with conflicting content (first '
                   || 'seen in ' || s.source_file || ' line ' || s.source_line || ')' AS reason
            FROM ing_req AS q JOIN requests AS s USING (request_id)
            WHERE {content("s")} IS DISTINCT FROM {content("q")}
            UNION ALL
            SELECT line, 2, 0, 'request_id', 'duplicate request_id ' || request_id
                   || ' with conflicting content' || {seen}
            FROM (SELECT *, {content("r")} AS own, first_value({content("r")}) OVER w AS first,
                         first_value(line) OVER w AS first_line
                  FROM ing_req AS r WINDOW w AS (PARTITION BY request_id ORDER BY line)) AS q
            WHERE own IS DISTINCT FROM first
              AND NOT EXISTS (SELECT 1 FROM requests AS s WHERE s.request_id = q.request_id)
            UNION ALL
            SELECT line, 3, position, 'attempts[' || position || ']',
                   'conflicting attempt: request_id '
                   || request_id || ' tier ' || tier || ' source ' || source || {earlier}
            FROM (SELECT a.*, first_value(a.c) OVER w AS first_c
                  FROM (SELECT line, request_id, tier, source, position, c FROM ing_att_good
                        UNION ALL
                        SELECT -1, request_id, tier, source, position, {_STORED_ATTEMPT}
                        FROM attempts AS s SEMI JOIN ing_att_good USING (request_id, tier, source)
                  ) AS a
                  WINDOW w AS (PARTITION BY request_id, tier, source ORDER BY line))
            JOIN ing_origin USING (request_id)
            WHERE line > 0 AND c IS DISTINCT FROM first_c
            UNION ALL
            SELECT line, 4, 0, 'labels.' || tier, 'conflicting label: request_id ' || request_id
                   || ' tier ' || tier || {earlier}
            FROM (SELECT b.*, first_value(score) OVER w AS first_score
                  FROM (SELECT line, request_id, tier, score FROM ing_lab_good
                        UNION ALL
                        SELECT -1, request_id, tier, score FROM labels AS s
                        SEMI JOIN ing_lab_good USING (request_id, tier)
                        WHERE s.source = '{lf.LABEL_SOURCE}') AS b
                  WINDOW w AS (PARTITION BY request_id, tier ORDER BY line))
            JOIN ing_origin USING (request_id)
            WHERE line > 0 AND score <> first_score)
        QUALIFY row_number() OVER (PARTITION BY line ORDER BY prio, slot, field) = 1"""
    )


def _insert(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    """Insert what is new: first copy per key, not in the store, from rows without conflict."""
    join, file, _, line = runs.provenance(con, "q", runs.SOURCES)
    con.execute(
        f"""
        INSERT INTO requests BY NAME
        SELECT request_id, ts, region, app, messages, input_tokens, served_tier, reference,
               metadata, {file} AS source_file, {line} AS source_line, $run AS run_id
        FROM ing_req AS q{join}
        WHERE NOT EXISTS (SELECT 1 FROM ing_conf AS c WHERE c.line = q.line)
          AND NOT EXISTS (SELECT 1 FROM requests AS s WHERE s.request_id = q.request_id)
        QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY q.line) = 1""",
        {"run": run_id},
    )
    con.execute(
        """
        INSERT INTO attempts BY NAME
        SELECT request_id, tier, source, position, c.model, c.confidence, c.output,
               c.input_tokens, c.output_tokens, c.cost_usd, c.latency_ms, c.status,
               c.extra::JSON AS extra, $run AS run_id
        FROM ing_att_good AS a
        WHERE NOT EXISTS (SELECT 1 FROM ing_conf AS c WHERE c.line = a.line)
          AND NOT EXISTS (SELECT 1 FROM attempts AS s WHERE s.request_id = a.request_id
                          AND s.tier = a.tier AND s.source = a.source)
        QUALIFY row_number() OVER (PARTITION BY request_id, tier, source ORDER BY line) = 1""",
        {"run": run_id},
    )
    con.execute(
        f"""
        INSERT INTO labels BY NAME
        SELECT request_id, tier, score, '{lf.LABEL_SOURCE}' AS source, $run AS run_id
        FROM ing_lab_good AS b
        WHERE NOT EXISTS (SELECT 1 FROM ing_conf AS c WHERE c.line = b.line)
          AND NOT EXISTS (SELECT 1 FROM labels AS s WHERE s.request_id = b.request_id
                          AND s.tier = b.tier AND s.source = '{lf.LABEL_SOURCE}')
        QUALIFY row_number() OVER (PARTITION BY request_id, tier ORDER BY line) = 1""",
        {"run": run_id},
    )

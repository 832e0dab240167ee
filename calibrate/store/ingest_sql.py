"""All SQL of the ingest stage: validate a batch of raw rows in bulk, merge it, quarantine rejects.

A batch is an Arrow table (line, text). DuckDB parses every row once into typed JSON fields, a CASE
chain finds each row's first broken rule, and anti-joins merge the good rows into requests, attempts
and labels (the merge rule is in logformat.SCHEMA_DOC). Temp tables named ing_* hold one batch.
Only the store imports this module.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from calibrate import logformat as lf


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Counts of one batch; `rejects` holds the first few (line, field, reason) for --strict."""

    rows_read: int
    rows_rejected: int
    rejects: tuple[tuple[int, str | None, str], ...]


def _strings(values: Sequence[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


_ROW_SCHEMA = json.dumps(
    {k: "JSON" for k in lf.REQUEST_FIELDS}
    | {"attempts": [{k: "JSON" for k in lf.ATTEMPT_FIELDS}], "labels": "MAP(VARCHAR, JSON)"}
)
_MACROS = """
CREATE OR REPLACE TEMP MACRO ing_kind(j) AS CASE json_type(j)
    WHEN 'VARCHAR' THEN 'string' WHEN 'BIGINT' THEN 'number' WHEN 'UBIGINT' THEN 'number'
    WHEN 'DOUBLE' THEN 'number' WHEN 'BOOLEAN' THEN 'boolean' WHEN 'OBJECT' THEN 'object'
    WHEN 'ARRAY' THEN 'array' ELSE 'null' END;
CREATE OR REPLACE TEMP MACRO ing_got(j) AS
    CASE WHEN ing_kind(j) = 'number' THEN j::VARCHAR ELSE ing_kind(j) END;
CREATE OR REPLACE TEMP MACRO ing_num(j) AS
    json_type(j) IN ('BIGINT', 'UBIGINT', 'DOUBLE') AND isfinite(TRY_CAST(j AS DOUBLE));
CREATE OR REPLACE TEMP MACRO ing_count(j) AS ing_num(j) AND TRY_CAST(j AS DOUBLE) >= 0
    AND TRY_CAST(j AS DOUBLE) = floor(TRY_CAST(j AS DOUBLE)) AND TRY_CAST(j AS DOUBLE) < 9e18;
CREATE OR REPLACE TEMP MACRO ing_str(j) AS json_type(j) = 'VARCHAR';
CREATE OR REPLACE TEMP MACRO ing_wrong(name, expected, got) AS
    {'field': name, 'reason': 'wrong type: ' || name || ' must be ' || expected || ', got ' || got};
CREATE OR REPLACE TEMP MACRO ing_ts(j) AS CASE
    WHEN regexp_full_match(j->>'$',
        '\\d{4}-\\d{2}-\\d{2}[Tt ]\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?([Zz]|[+-]\\d{2}:\\d{2})')
    THEN TRY_CAST(upper(j->>'$') AS TIMESTAMPTZ) END;
CREATE OR REPLACE TEMP MACRO ing_quote(s) AS
    '"' || CASE WHEN length(s) > 40 THEN left(s, 40) || '...' ELSE s END || '"';
CREATE OR REPLACE TEMP TABLE ing_rejects (line BIGINT, field VARCHAR, reason VARCHAR, raw VARCHAR);
"""


def prepare(con: duckdb.DuckDBPyConnection) -> None:
    """Create the temp macros and tables the batch SQL uses (once per connection)."""
    for statement in _MACROS.split(";\n"):
        if statement.strip():
            con.execute(statement)


def _parse(con: duckdb.DuckDBPyConnection, batch: pa.Table) -> None:
    """ing_rows: non-blank rows parsed once (text stays in the registered ing_batch)."""
    # Many small chunks let DuckDB scan the Arrow table on all threads.
    con.register("ing_batch", pa.Table.from_batches(batch.to_batches(max_chunksize=2048)))
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ing_rows AS
        SELECT line, valid, is_object, r, keys,
               list_filter(keys, lambda k: NOT list_contains({_strings(lf.REQUEST_FIELDS)}, k))
                   AS unknown,
               CASE WHEN r.attempts IS NOT NULL THEN json_keys(text, '$.attempts[*]') END
                   AS att_keys
        FROM (
            SELECT line, text, json_valid(text) AS valid,
                   valid AND starts_with(ltrim(text), '{{') AS is_object,
                   CASE WHEN is_object THEN json_keys(text) END AS keys,
                   CASE WHEN is_object THEN from_json(text, '{_ROW_SCHEMA}') END AS r,
                   CASE WHEN NOT valid THEN trim(text, ' ' || chr(9) || chr(10) || chr(13)) = ''
                        ELSE false END AS blank
            FROM ing_batch)
        WHERE NOT blank""")
    _odd(con)
    _metadata(con)


def _odd(con: duckdb.DuckDBPyConnection) -> None:
    """ing_odd: JSON kinds of the rare rows whose row, attempts or labels has the wrong type."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE ing_odd AS
        SELECT line, CASE WHEN NOT is_object THEN ing_kind(text::JSON) END AS row_kind,
               ing_kind(json_extract(text, '$.attempts')) AS attempts_kind,
               ing_kind(json_extract(text, '$.labels')) AS labels_kind
        FROM ing_rows JOIN ing_batch USING (line)
        WHERE valid AND (NOT is_object
               OR (r.attempts IS NULL AND list_contains(keys, 'attempts'))
               OR (r.labels IS NULL AND list_contains(keys, 'labels')))""")


def _metadata(con: duckdb.DuckDBPyConnection) -> None:
    """ing_meta: metadata of rows with unknown top-level keys, merged with those keys."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ing_meta AS
        SELECT line, own, clash,
               to_json(map_from_entries(list_concat(map_entries(own),
                   list_filter(extras, lambda e: NOT list_contains(map_keys(own), e.key)),
                   CASE WHEN len(clash) > 0 THEN [{{'key': '{lf.EXTRA_KEY}',
                       'value': to_json(map_from_entries(clash))}}] ELSE [] END)))::JSON AS meta
        FROM (
            SELECT line, own, extras,
                   list_filter(extras, lambda e: list_contains(map_keys(own), e.key)) AS clash
            FROM (
                SELECT line,
                    CASE WHEN json_type(r.metadata) = 'OBJECT'
                         THEN from_json(r.metadata, '"MAP(VARCHAR, JSON)"')
                         ELSE MAP {{}}::MAP(VARCHAR, JSON) END AS own,
                    extras
                FROM ing_rows JOIN (
                    SELECT line, list({{'key': key, 'value': json_extract(text, '$."'
                                || replace(replace(key, '\\', '\\\\'), '"', '\\"') || '"')}}
                               ORDER BY pos) AS extras
                    FROM (SELECT line, unnest(unknown) AS key,
                                 generate_subscripts(unknown, 1) AS pos FROM ing_rows
                          WHERE is_object AND len(unknown) > 0)
                    JOIN ing_batch USING (line) GROUP BY line) USING (line)
                WHERE is_object AND len(unknown) > 0))""")


_ATTEMPT_RULES = (
    ("coalesce(kind, 'object') <> 'object'", "ing_wrong(p, 'an object', kind)"),
    ("m['tier'] IS NULL", "{'field': p || '.tier', 'reason': 'missing field: ' || p || '.tier'}"),
    (
        "NOT ing_str(m['tier']) OR m['tier']->>'$' = ''",
        "ing_wrong(p || '.tier', 'a non-empty string', ing_got(m['tier']))",
    ),
    (
        "m['source'] IS NOT NULL AND (NOT ing_str(m['source']) OR m['source']->>'$' NOT IN "
        f"{tuple(lf.SOURCES)})",
        "ing_wrong(p || '.source', '\"prod\" or \"shadow\"', CASE WHEN ing_str(m['source']) "
        "THEN ing_quote(m['source']->>'$') ELSE ing_got(m['source']) END)",
    ),
    (
        "m['status'] IS NOT NULL AND (NOT ing_str(m['status']) OR m['status']->>'$' NOT IN "
        f"{tuple(lf.STATUSES)})",
        "ing_wrong(p || '.status', 'one of ok, error, timeout', CASE WHEN ing_str(m['status']) "
        "THEN ing_quote(m['status']->>'$') ELSE ing_got(m['status']) END)",
    ),
    (
        "m['model'] IS NOT NULL AND NOT ing_str(m['model'])",
        "ing_wrong(p || '.model', 'a string or null', ing_got(m['model']))",
    ),
    (
        "m['output'] IS NOT NULL AND NOT ing_str(m['output'])",
        "ing_wrong(p || '.output', 'a string or null', ing_got(m['output']))",
    ),
    (
        "m['confidence'] IS NOT NULL AND NOT ing_num(m['confidence'])",
        "ing_wrong(p || '.confidence', 'a number or null', ing_got(m['confidence']))",
    ),
    *(
        (
            f"m['{f}'] IS NOT NULL AND NOT ing_count(m['{f}'])",
            f"ing_wrong(p || '.{f}', 'a non-negative integer or null', ing_got(m['{f}']))",
        )
        for f in ("input_tokens", "output_tokens")
    ),
    *(
        (
            f"m['{f}'] IS NOT NULL AND NOT (ing_num(m['{f}']) AND TRY_CAST(m['{f}'] AS DOUBLE) >= 0)",
            f"ing_wrong(p || '.{f}', 'a non-negative number or null', ing_got(m['{f}']))",
        )
        for f in ("cost_usd", "latency_ms")
    ),
    (
        "dup > 1",
        "{'field': p, 'reason': 'duplicate attempt: ' || p || ' repeats tier ' || "
        f"(m['tier']->>'$') || ', source ' || coalesce(m['source']->>'$', '{lf.DEFAULT_SOURCE}')}}",
    ),
)


def _case(rules: Sequence[tuple[str, str]]) -> str:
    return "CASE " + " ".join(f"WHEN {c} THEN {v}" for c, v in rules) + " END"


def _attempts(con: duckdb.DuckDBPyConnection) -> None:
    """ing_att: one row per attempt of each parsed row, with its first broken rule (if any)."""
    known = _strings(lf.ATTEMPT_FIELDS)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ing_att_raw AS
        SELECT *, 'attempts[' || position || ']' AS p,
               list_filter(k, lambda x: NOT list_contains({known}, x)) AS unknown,
               count(*) OVER (PARTITION BY line, m['tier'], coalesce(m['source'],
                    '"{lf.DEFAULT_SOURCE}"') ORDER BY position) AS dup
        FROM (SELECT line, unnest(r.attempts) AS m, unnest(att_keys) AS k,
                     generate_subscripts(r.attempts, 1) - 1 AS position
              FROM ing_rows WHERE r.attempts IS NOT NULL)""")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE ing_att_odd AS
        SELECT line, position,
               CASE WHEN len(k) = 0 THEN ing_kind(elem) END AS kind,
               CASE WHEN len(unknown) > 0 AND json_type(elem) = 'OBJECT' THEN
                   to_json(map_from_entries(list_filter(
                       map_entries(from_json(elem, '"MAP(VARCHAR, JSON)"')),
                       lambda e: list_contains(unknown, e.key))))::VARCHAR END AS extra
        FROM (SELECT line, position, k, unknown,
                     json_extract(text, '$.attempts[' || position || ']') AS elem
              FROM ing_att_raw JOIN ing_batch USING (line)
              WHERE len(k) = 0 OR len(unknown) > 0)""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ing_att AS
        SELECT line, position, m, extra, {_case(_ATTEMPT_RULES)} AS bad
        FROM ing_att_raw LEFT JOIN ing_att_odd USING (line, position)""")


def _opt_string(field: str) -> tuple[str, str]:
    return (
        f"r.{field} IS NOT NULL AND NOT ing_str(r.{field})",
        f"ing_wrong('{field}', 'a string or null', ing_got(r.{field}))",
    )


_ROW_RULES = (
    ("NOT valid", "{'field': NULL, 'reason': 'invalid JSON'}"),
    ("NOT is_object", "ing_wrong('row', 'a JSON object', odd.row_kind)"),
    ("r.request_id IS NULL", "{'field': 'request_id', 'reason': 'missing field: request_id'}"),
    (
        "NOT ing_str(r.request_id) OR r.request_id->>'$' = ''",
        "ing_wrong('request_id', 'a non-empty string', ing_got(r.request_id))",
    ),
    ("r.timestamp IS NULL", "{'field': 'timestamp', 'reason': 'missing field: timestamp'}"),
    (
        "NOT ing_str(r.timestamp)",
        "ing_wrong('timestamp', 'an RFC 3339 string', ing_got(r.timestamp))",
    ),
    (
        "ing_ts(r.timestamp) IS NULL",
        "ing_wrong('timestamp', 'an RFC 3339 string', ing_quote(r.timestamp->>'$'))",
    ),
    (
        "r.messages IS NULL AND r.prompt IS NULL",
        "{'field': 'messages', 'reason': 'missing field: messages (or prompt)'}",
    ),
    (
        "r.messages IS NOT NULL AND r.prompt IS NOT NULL",
        "ing_wrong('prompt', 'absent when messages is given', 'both')",
    ),
    (
        "r.messages IS NOT NULL AND json_type(r.messages) <> 'ARRAY'",
        "ing_wrong('messages', 'an array of objects', ing_kind(r.messages))",
    ),
    (
        "r.messages IS NOT NULL AND list_position(json_type(r.messages, '$[*]'), 'OBJECT') IS NULL"
        " AND json_array_length(r.messages) > 0 OR list_filter(json_type(r.messages, '$[*]'),"
        " lambda t: t <> 'OBJECT') <> []",
        "ing_wrong('messages', 'an array of objects', 'an array with a non-object')",
    ),
    (
        "r.prompt IS NOT NULL AND NOT ing_str(r.prompt)",
        "ing_wrong('prompt', 'a string', ing_got(r.prompt))",
    ),
    *(_opt_string(f) for f in ("region", "app", "served_tier", "reference")),
    (
        "r.input_tokens IS NOT NULL AND NOT ing_count(r.input_tokens)",
        "ing_wrong('input_tokens', 'a non-negative integer or null', ing_got(r.input_tokens))",
    ),
    (
        "r.metadata IS NOT NULL AND json_type(r.metadata) <> 'OBJECT'",
        "ing_wrong('metadata', 'an object or null', ing_kind(r.metadata))",
    ),
    (
        "coalesce(odd.attempts_kind, 'null') NOT IN ('null', 'array')",
        "ing_wrong('attempts', 'an array or null', odd.attempts_kind)",
    ),
    (
        "coalesce(odd.labels_kind, 'null') NOT IN ('null', 'object')",
        "ing_wrong('labels', 'an object or null', odd.labels_kind)",
    ),
    ("att.bad IS NOT NULL", "att.bad"),
    (
        "lab IS NOT NULL AND NOT ing_num(lab.value)",
        "ing_wrong('labels.' || lab.key, 'a number', ing_got(lab.value))",
    ),
    (
        "lab IS NOT NULL",
        "{'field': 'labels.' || lab.key, 'reason': 'label out of range: labels.' || lab.key || '='"
        " || lab.value::VARCHAR || ' (must be in [0, 1])'}",
    ),
    (
        f"len(meta.clash) > 0 AND list_contains(map_keys(meta.own), '{lf.EXTRA_KEY}')",
        f"{{'field': 'metadata.{lf.EXTRA_KEY}', 'reason': 'metadata clash: metadata.{lf.EXTRA_KEY}"
        " exists and top-level key ' || meta.clash[1].key || ' clashes'}",
    ),
)


def _check(con: duckdb.DuckDBPyConnection) -> None:
    """ing_checked: every parsed row with its first broken rule (bad) or NULL."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ing_checked AS
        SELECT line, r, meta.meta AS meta, {_case(_ROW_RULES)} AS bad
        FROM (
            SELECT *, list_filter(map_entries(r.labels), lambda e: NOT ing_num(e.value)
                       OR TRY_CAST(e.value AS DOUBLE) NOT BETWEEN 0 AND 1)[1] AS lab
            FROM ing_rows) AS rows
        LEFT JOIN (SELECT line, arg_min(bad, position) AS bad FROM ing_att
                   WHERE bad IS NOT NULL GROUP BY line) AS att USING (line)
        LEFT JOIN ing_meta AS meta USING (line)
        LEFT JOIN ing_odd AS odd USING (line)""")


def _good(con: duckdb.DuckDBPyConnection) -> None:
    """ing_req, ing_att_good, ing_lab_good: typed values of the rows that passed every rule."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE ing_req AS
        SELECT *, sha256(to_json({'request_id': request_id, 'ts_us': epoch_us(ts),
                   'region': region, 'app': app, 'messages': messages,
                   'input_tokens': input_tokens, 'served_tier': served_tier,
                   'reference': reference, 'metadata': metadata})) AS content_sha256
        FROM (
            SELECT line, r.request_id->>'$' AS request_id, ing_ts(r.timestamp) AS ts,
                   r.region->>'$' AS region, r.app->>'$' AS app,
                   coalesce(r.messages,
                            to_json([{'role': 'user', 'content': r.prompt->>'$'}]))::JSON
                       AS messages,
                   TRY_CAST(r.input_tokens AS DOUBLE)::BIGINT AS input_tokens,
                   r.served_tier->>'$' AS served_tier, r.reference->>'$' AS reference,
                   coalesce(meta, r.metadata) AS metadata, r.labels AS labels
            FROM ing_checked WHERE bad IS NULL)""")
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


def _conflicts(con: duckdb.DuckDBPyConnection, file: str) -> None:
    """ing_conf: good rows that contradict the store or an earlier row of the batch."""
    seen = "' (first seen in ' || $file || ' line ' || first_line || ')'"
    earlier = "' differs from an earlier copy (request first seen in ' || origin || ')'"
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE ing_origin AS
        SELECT request_id, coalesce(any_value(s.source_file || ' line ' || s.source_line),
                                    $file || ' line ' || min(q.line)) AS origin
        FROM ing_req AS q LEFT JOIN requests AS s USING (request_id)
        GROUP BY request_id""",
        {"file": file},
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ing_conf AS
        SELECT line, arg_min(field, prio) AS field, arg_min(reason, prio) AS reason FROM (
            SELECT q.line, 1 AS prio, 'request_id' AS field,
                   'duplicate request_id ' || q.request_id || ' with conflicting content (first '
                   || 'seen in ' || s.source_file || ' line ' || s.source_line || ')' AS reason
            FROM ing_req AS q JOIN requests AS s USING (request_id)
            WHERE s.content_sha256 <> q.content_sha256
            UNION ALL
            SELECT line, 2, 'request_id', 'duplicate request_id ' || request_id
                   || ' with conflicting content' || {seen}
            FROM (SELECT *, first_value(content_sha256) OVER w AS first_sha,
                         first_value(line) OVER w AS first_line
                  FROM ing_req WINDOW w AS (PARTITION BY request_id ORDER BY line)) AS q
            WHERE content_sha256 <> first_sha
              AND NOT EXISTS (SELECT 1 FROM requests AS s WHERE s.request_id = q.request_id)
            UNION ALL
            SELECT line, 3, 'attempts[' || position || ']', 'conflicting attempt: request_id '
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
            SELECT line, 4, 'labels.' || tier, 'conflicting label: request_id ' || request_id
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
        GROUP BY line""",
        {"file": file},
    )


def _merge(con: duckdb.DuckDBPyConnection, file: str, run_id: int) -> None:
    """Insert what is new: first copy per key, not in the store, from rows without conflict."""
    params = {"file": file, "run": run_id}
    con.execute(
        """
        INSERT INTO requests BY NAME
        SELECT request_id, ts, region, app, messages, input_tokens, served_tier, reference,
               metadata, content_sha256, $file AS source_file, line AS source_line, $run AS run_id
        FROM ing_req AS q
        WHERE NOT EXISTS (SELECT 1 FROM ing_conf AS c WHERE c.line = q.line)
          AND NOT EXISTS (SELECT 1 FROM requests AS s WHERE s.request_id = q.request_id)
        QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY line) = 1""",
        params,
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


def _json_error(raw: str) -> str:
    try:
        json.loads(raw, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg} (col {exc.colno})"
    except ValueError as exc:
        return f"invalid JSON: {exc}"
    return "invalid JSON"


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def _quarantine(
    con: duckdb.DuckDBPyConnection,
    raw_rejects: Sequence[tuple[int, str | None, str, str]],
    where: tuple[str, str, int],
) -> None:
    """Move this batch's bad rows into `rejects` (invalid JSON gets Python's precise message)."""
    con.execute("""
        INSERT INTO ing_rejects
        SELECT line, field, reason, rtrim(text, chr(13) || chr(10))
        FROM (SELECT line, bad.field, bad.reason FROM ing_checked WHERE bad IS NOT NULL
              UNION ALL
              SELECT line, field, reason FROM ing_conf)
        JOIN ing_batch USING (line)""")
    invalid = con.execute("SELECT line, raw FROM ing_rejects WHERE reason = 'invalid JSON'")
    fixes = [(_json_error(raw), line) for line, raw in invalid.fetchall()]
    if fixes:
        con.executemany("UPDATE ing_rejects SET reason = ? WHERE line = ?", fixes)
    if raw_rejects:
        con.executemany("INSERT INTO ing_rejects VALUES (?, ?, ?, ?)", list(raw_rejects))
    file, sha, run_id = where
    con.execute(
        "INSERT INTO rejects BY NAME SELECT $file AS file, $sha AS file_sha256, line, field,"
        " reason, raw, $run AS run_id FROM ing_rejects",
        {"file": file, "sha": sha, "run": run_id},
    )


def ingest_batch(
    con: duckdb.DuckDBPyConnection,
    batch: pa.Table,
    raw_rejects: Sequence[tuple[int, str | None, str, str]],
    where: tuple[str, str, int],
) -> BatchResult:
    """Validate, merge and quarantine one batch; `where` is (file, file_sha256, run_id)."""
    file, _, run_id = where
    con.execute("DELETE FROM ing_rejects")
    _parse(con, batch)
    _attempts(con)
    _check(con)
    _good(con)
    _conflicts(con, file)
    _merge(con, file, run_id)
    _quarantine(con, raw_rejects, where)
    con.unregister("ing_batch")
    read = con.execute("SELECT count(*) FROM ing_rows").fetchone()[0] + len(raw_rejects)
    rejected = con.execute("SELECT count(*) FROM ing_rejects").fetchone()[0]
    first = con.execute("SELECT line, field, reason FROM ing_rejects ORDER BY line LIMIT 5")
    return BatchResult(int(read), int(rejected), tuple(first.fetchall()))


def begin_run(con: duckdb.DuckDBPyConnection, started_at: object, strict: bool) -> int:
    """Insert a new ingest_runs row and return its run_id."""
    run_id = con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM ingest_runs").fetchone()[0]
    con.execute(
        "INSERT INTO ingest_runs (run_id, started_at, strict) VALUES (?, ?, ?)",
        [run_id, started_at, strict],
    )
    return int(run_id)


def finish_run(
    con: duckdb.DuckDBPyConnection, run_id: int, finished_at: object, counts: Sequence[int]
) -> None:
    """Record the end of a run; counts = (files, rows_read, rows_kept, rows_rejected)."""
    con.execute(
        "UPDATE ingest_runs SET finished_at = ?, files = ?, rows_read = ?, rows_kept = ?,"
        " rows_rejected = ? WHERE run_id = ?",
        [finished_at, *counts, run_id],
    )


def file_ingested(con: duckdb.DuckDBPyConnection, sha: str) -> bool:
    """Whether a file with these bytes was ingested before."""
    row = con.execute("SELECT 1 FROM ingested_files WHERE file_sha256 = ?", [sha]).fetchone()
    return row is not None


def record_file(
    con: duckdb.DuckDBPyConnection, where: tuple[str, str, int], counts: Sequence[int]
) -> None:
    """Mark a file as ingested; counts = (rows_read, rows_kept, rows_rejected)."""
    file, sha, run_id = where
    con.execute(
        "INSERT INTO ingested_files VALUES (?, ?, ?, ?, ?, ?)", [sha, file, run_id, *counts]
    )


def rejects_by_kind(con: duckdb.DuckDBPyConnection, run_id: int) -> list[tuple[str, int]]:
    """Rejects of one run counted per reason kind, most frequent first."""
    kinds = _strings(lf.REJECT_KINDS)
    rows = con.execute(
        f"""SELECT coalesce(list_filter({kinds}, lambda k: starts_with(reason, k))[1],
                            split_part(reason, ':', 1)) AS kind, count(*) AS n
            FROM rejects WHERE run_id = ? GROUP BY kind ORDER BY n DESC, kind""",
        [run_id],
    )
    return [(str(kind), int(n)) for kind, n in rows.fetchall()]


def request_count(con: duckdb.DuckDBPyConnection) -> int:
    """Number of stored requests."""
    return int(con.execute("SELECT count(*) FROM requests").fetchone()[0])

"""The log format's rules as SQL, shared by both ingest paths: macros, rule chains, the row check.

A rule is (condition, reject) where reject is a {field, reason} struct; `case()` turns an ordered
list of rules into a CASE chain, so the first broken rule names the row's reject. The inputs are
the ing_rows / ing_att / ing_meta / ing_odd temp tables that either path builds (store/ingest/line_path.py
from text batches, store/ingest/file_path.py from a whole file). Only the store imports this module.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import duckdb

from calibrate.formats import canonical as lf


def strings(values: Sequence[str]) -> str:
    """A SQL list literal of the given strings."""
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


ROW_SCHEMA = json.dumps(
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
CREATE OR REPLACE TEMP MACRO ing_first_dup(keys) AS
    list_filter(keys, lambda k, i: list_position(keys, k) < i)[1];
CREATE OR REPLACE TEMP MACRO ing_dup(name) AS
    {'field': name, 'reason': 'duplicate key: ' || name || ' appears twice'};
CREATE OR REPLACE TEMP MACRO ing_wrong(name, expected, got) AS
    {'field': name, 'reason': 'wrong type: ' || name || ' must be ' || expected || ', got ' || got};
CREATE OR REPLACE TEMP MACRO ing_ts(j) AS CASE
    WHEN regexp_full_match(j->>'$',
        '\\d{4}-\\d{2}-\\d{2}[Tt ]\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?([Zz]|[+-]\\d{2}:\\d{2})')
    THEN TRY_CAST(upper(j->>'$') AS TIMESTAMPTZ) END;
CREATE OR REPLACE TEMP MACRO ing_quote(s) AS
    '"' || CASE WHEN length(s) > 40 THEN left(s, 40) || '...' ELSE s END || '"';
CREATE OR REPLACE TEMP TABLE ing_rejects (line BIGINT, field VARCHAR, reason VARCHAR, raw VARCHAR);
CREATE OR REPLACE TEMP TABLE ing_sources (first_line BIGINT, file VARCHAR, sha VARCHAR);
CREATE OR REPLACE TEMP MACRO ing_place(l) AS (
    SELECT file || ' line ' || (l - first_line + 1) FROM ing_sources
    WHERE first_line <= l ORDER BY first_line DESC LIMIT 1);
"""


def prepare(con: duckdb.DuckDBPyConnection) -> None:
    """Create the temp macros and tables the batch SQL uses (once per connection)."""
    for statement in _MACROS.split(";\n"):
        if statement.strip():
            con.execute(statement)


ATTEMPT_RULES = (
    ("coalesce(kind, 'object') <> 'object'", "ing_wrong(p, 'an object', kind)"),
    ("ing_first_dup(k) IS NOT NULL", "ing_dup(p || '.' || ing_first_dup(k))"),
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


def case(rules: Sequence[tuple[str, str]]) -> str:
    """A CASE chain that yields the reject of the first broken rule, or NULL."""
    return "CASE " + " ".join(f"WHEN {c} THEN {v}" for c, v in rules) + " END"


def _opt_string(field: str) -> tuple[str, str]:
    return (
        f"r.{field} IS NOT NULL AND NOT ing_str(r.{field})",
        f"ing_wrong('{field}', 'a string or null', ing_got(r.{field}))",
    )


ROW_RULES = (
    ("NOT valid", "{'field': NULL, 'reason': 'invalid JSON'}"),
    ("NOT is_object", "ing_wrong('row', 'a JSON object', odd.row_kind)"),
    ("top_dup IS NOT NULL", "ing_dup(top_dup)"),
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
    ("odd.labels_dup IS NOT NULL", "ing_dup('labels.' || odd.labels_dup)"),
    ("att.bad IS NOT NULL", "att.bad"),
    (
        "lab IS NOT NULL AND (lab.value IS NULL OR NOT ing_num(lab.value))",
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


def merged_metadata(extras: str) -> str:
    """SQL for ing_meta from a relation (line, metadata JSON, extras [{key, value}]): the row's
    metadata with its unknown top-level keys added; keys it already has go to `_extra` (a row
    whose metadata already has `_extra` then gets no merged value: it is rejected as a clash)."""
    merged = f"""to_json(map_from_entries(list_concat(map_entries(own),
                   list_filter(extras, lambda e: NOT list_contains(map_keys(own), e.key)),
                   CASE WHEN len(clash) > 0 THEN [{{'key': '{lf.EXTRA_KEY}',
                       'value': to_json(map_from_entries(clash))}}] ELSE [] END)))::JSON"""
    return f"""
        CREATE OR REPLACE TEMP TABLE ing_meta AS
        SELECT line, own, clash,
               CASE WHEN len(clash) = 0 OR NOT list_contains(map_keys(own), '{lf.EXTRA_KEY}')
                    THEN {merged} END AS meta
        FROM (
            SELECT line, own, extras,
                   list_filter(extras, lambda e: list_contains(map_keys(own), e.key)) AS clash
            FROM (
                SELECT line, extras,
                    CASE WHEN json_type(metadata) = 'OBJECT'
                         THEN from_json(metadata, '"MAP(VARCHAR, JSON)"')
                         ELSE MAP {{}}::MAP(VARCHAR, JSON) END AS own
                FROM ({extras})))"""


def check(con: duckdb.DuckDBPyConnection, rows: str = "ing_rows") -> None:
    """ing_checked: every parsed row with its first broken rule (bad) or NULL.

    `rows` names the table or view of parsed rows (ing_rows or ing_frows, never user input).
    """
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ing_checked AS
        SELECT line, r, meta.meta AS meta, {case(ROW_RULES)} AS bad
        FROM (
            SELECT *, list_filter(map_entries(r.labels), lambda e: e.value IS NULL
                       OR NOT ing_num(e.value) OR TRY_CAST(e.value AS DOUBLE) NOT BETWEEN 0 AND 1
                   )[1] AS lab
            FROM {rows}) AS rows
        LEFT JOIN (SELECT line, arg_min(bad, position) AS bad FROM ing_att
                   WHERE bad IS NOT NULL GROUP BY line) AS att USING (line)
        LEFT JOIN ing_meta AS meta USING (line)
        LEFT JOIN ing_odd AS odd USING (line)""")

"""The fast lane of the file path: rows that cheap tests prove good, typed while the file is read.

The file path (store/ingest/file_path.py) sees each record's top-level values as JSON text and parses
its attempts with strings typed and numbers kept as JSON text, then cast once to DOUBLE (NULL when
the JSON value is not a number). A row is *plain* when these show, without reparsing, that every
rule holds: strings are JSON strings, numbers are finite and in range, and the attempts have
exactly the keys they show (the `":` count of their JSON text equals their non-null fields after
the cast, so no unknown, null, repeated or non-numeric key hides). The tests only ever err
towards "not plain":
a string that reads like a number, say, is left to the exact rule chains (store/ingest/rules.py),
which decide the row and give the reason. Plain rows carry their typed values (`req`,
`labels_map`, `att`) from the read on; a plain row whose request_id is unique in the file and new to the store
is inserted directly, since no merge rule can touch it. Only the store imports this module.
"""

from __future__ import annotations

import json

import duckdb

from calibrate.formats import canonical as lf
from calibrate.store.ingest import runs
from calibrate.store.ingest.merge import CONTENT_COLUMNS, request_columns

_NUMBERS = ("confidence", "input_tokens", "output_tokens", "cost_usd", "latency_ms")
ATTEMPTS_SCHEMA = json.dumps(
    [{k: "JSON" if k in _NUMBERS else "VARCHAR" for k in lf.ATTEMPT_FIELDS}]
)
"""from_json schema of the attempts: strings typed, numbers as JSON text (to see their type)."""


def _known() -> str:
    return "[" + ", ".join(f"'{k}'" for k in lf.ATTEMPT_FIELDS) + "]"


def _json_strings(values: tuple[str, ...]) -> str:
    """A SQL tuple of the given strings as JSON text (`'"ok"'`)."""
    return "(" + ", ".join(f"'{json.dumps(v)}'" for v in values) + ")"


# A typed string could have been a number, NaN, Infinity, a boolean, an object or an array only
# if it starts with one of these characters (- 0-9 I N [ f t {).
_NOT_STRING_START = (45, *range(48, 58), 73, 78, 91, 102, 116, 123)

_NOT_PLAIN = -(10**9)
"""What an attempt that fails a test adds to its row's key count: no `":` count can then match."""

_MACROS = f"""
CREATE OR REPLACE TEMP MACRO ing_plain(s) AS ascii(s) NOT IN {_NOT_STRING_START}
    OR (left(s, 1) NOT IN ('[', '{{')
        AND NOT regexp_full_match(s, '-?[0-9][0-9.eE+-]*|-?Infinity|NaN|true|false'));
CREATE OR REPLACE TEMP MACRO ing_nonneg(j) AS
    coalesce(isfinite(TRY_CAST(j::VARCHAR AS DOUBLE)) AND TRY_CAST(j::VARCHAR AS DOUBLE) >= 0,
             false);
CREATE OR REPLACE TEMP MACRO ing_whole(j) AS ing_nonneg(j)
    AND TRY_CAST(j::VARCHAR AS DOUBLE) = floor(TRY_CAST(j::VARCHAR AS DOUBLE))
    AND TRY_CAST(j::VARCHAR AS DOUBLE) < 9e18;
CREATE OR REPLACE TEMP MACRO ing_text(j) AS coalesce(starts_with(j, '"'), true);
CREATE OR REPLACE TEMP MACRO ing_fields(a) AS
    {" + ".join(f"(a.{k} IS NOT NULL)::INT" for k in lf.ATTEMPT_FIELDS)};
CREATE OR REPLACE TEMP MACRO ing_whole_double(d) AS d >= 0 AND d = floor(d) AND d < 9e18;
CREATE OR REPLACE TEMP MACRO ing_plain_attempt(a) AS coalesce(
    a.tier <> '' AND ing_plain(a.tier)
    AND coalesce(a.source IN {tuple(lf.SOURCES)}, true)
    AND coalesce(a.status IN {tuple(lf.STATUSES)}, true)
    AND coalesce(ing_plain(a.model), true) AND coalesce(ing_plain(a.output), true)
    AND coalesce(isfinite(a.confidence), true)
    AND coalesce(ing_whole_double(a.input_tokens), true)
    AND coalesce(ing_whole_double(a.output_tokens), true)
    AND coalesce(isfinite(a.cost_usd) AND a.cost_usd >= 0, true)
    AND coalesce(isfinite(a.latency_ms) AND a.latency_ms >= 0, true), false);
CREATE OR REPLACE TEMP MACRO ing_plain_attempts(text, att) AS att IS NOT NULL
    AND (strlen(text::VARCHAR) - strlen(replace(text::VARCHAR, '":', ''))) // 2
        = coalesce(list_sum(list_transform(att, lambda a:
              CASE WHEN ing_plain_attempt(a) THEN ing_fields(a) ELSE {_NOT_PLAIN} END)), 0)
    AND ing_distinct_attempts(att);
CREATE OR REPLACE TEMP MACRO ing_distinct_attempts(att) AS len(list_distinct(list_transform(att,
    lambda a: hash(a.tier, coalesce(a.source, '{lf.DEFAULT_SOURCE}'))))) = len(att);
CREATE OR REPLACE TEMP MACRO ing_keyed_attempts(keys, raw, att) AS len(keys) = len(att)
    AND list_has_all({_known()}, flatten(keys))
    AND list_bool_and(list_transform(keys, lambda k: len(list_distinct(k)) = len(k)))
    AND coalesce(list_sum(list_transform(raw, lambda a: ing_fields(a))), 0)
        = coalesce(list_sum(list_transform(att, lambda a:
              CASE WHEN ing_plain_attempt(a) THEN ing_fields(a) ELSE {_NOT_PLAIN} END)), 0)
    AND ing_distinct_attempts(att);
CREATE OR REPLACE TEMP MACRO ing_plain_map_attempt(m) AS coalesce(
    starts_with(m['tier'], '"') AND m['tier'] <> '""'
    AND coalesce(m['source'] IN {_json_strings(lf.SOURCES)}, true)
    AND coalesce(m['status'] IN {_json_strings(lf.STATUSES)}, true)
    AND coalesce(starts_with(m['model'], '"'), true)
    AND coalesce(starts_with(m['output'], '"'), true)
    AND (m['confidence'] IS NULL OR isfinite(TRY_CAST(m['confidence']::VARCHAR AS DOUBLE)))
    AND (m['input_tokens'] IS NULL OR ing_whole(m['input_tokens']))
    AND (m['output_tokens'] IS NULL OR ing_whole(m['output_tokens']))
    AND (m['cost_usd'] IS NULL OR ing_nonneg(m['cost_usd']))
    AND (m['latency_ms'] IS NULL OR ing_nonneg(m['latency_ms'])), false);
"""

# Unknown top-level keys join the metadata; plain rows are those where none of them is already a
# metadata key and the metadata keys are distinct, so the merge is a splice of JSON texts.
_PLAIN_META = """CASE WHEN len(extras) = 0 THEN NULL
    WHEN r.metadata IS NULL OR r.metadata = '{}' THEN to_json(map_from_entries(extras))
    ELSE (left(r.metadata, -1) || ',' || substr(to_json(map_from_entries(extras)), 2))::JSON
    END"""

PLAIN_ROW = """coalesce(
    starts_with(r.request_id, '"') AND r.request_id <> '""'
    AND ing_ts(r.timestamp) IS NOT NULL
    AND CASE WHEN r.messages IS NULL THEN starts_with(r.prompt, '"')
             ELSE starts_with(r.messages, '[') AND r.prompt IS NULL
                  AND len(list_filter(json_type(r.messages, '$[*]'),
                                      lambda t: t <> 'OBJECT')) = 0 END
    AND ing_text(r.region) AND ing_text(r.app) AND ing_text(r.served_tier)
    AND ing_text(r.reference)
    AND (r.input_tokens IS NULL OR ing_whole(r.input_tokens))
    AND coalesce(starts_with(r.metadata, '{'), true)
    AND (labels IS NULL OR (r.labels IS NOT NULL AND len(list_filter(map_values(r.labels),
         lambda v: NOT coalesce(TRY_CAST(v::VARCHAR AS DOUBLE) BETWEEN 0 AND 1, false))) = 0))
    AND (len(extras) = 0 OR r.metadata IS NULL OR (len(list_distinct(meta_keys)) = len(meta_keys)
         AND NOT list_has_any(meta_keys, list_transform(extras, lambda e: e.key))))
    AND att_ok, false)"""
"""SQL: whether the record (r, labels, extras, meta_keys, att_ok) is plain."""

TYPED_ATTEMPTS = (
    "list_transform(att, lambda a: {"
    + ", ".join(
        f"'{k}': TRY_CAST(a.{k}::VARCHAR AS DOUBLE)" if k in _NUMBERS else f"'{k}': a.{k}"
        for k in lf.ATTEMPT_FIELDS
    )
    + ", 'extra': NULL::VARCHAR})"
)
"""SQL: the parsed attempts `att` with their numbers read once as DOUBLE, NULL where the JSON
value is not a number: a number field that is not NULL in `att` but NULL here is not plain."""

_KNOWN = "[" + ", ".join(f"'{k}'" for k in lf.ATTEMPT_FIELDS) + "]"

MAP_ATTEMPTS = (
    "list_transform(att_m, lambda m: {"
    + ", ".join(
        f"'{k}': TRY_CAST(m['{k}']::VARCHAR AS DOUBLE)"
        if k in _NUMBERS
        else f"'{k}': m['{k}']->>'$'"
        for k in lf.ATTEMPT_FIELDS
    )
    + f""", 'extra': CASE WHEN len(list_filter(map_keys(m), lambda k:
                             NOT list_contains({_KNOWN}, k))) > 0
                      THEN to_json(map_from_entries(list_filter(map_entries(m), lambda e:
                               NOT list_contains({_KNOWN}, e.key))))::VARCHAR END}})"""
)
"""SQL: the attempts as MAPs of JSON values (`att_m`), typed like TYPED_ATTEMPTS, with their
unknown keys as `extra` (JSON text), as the exact rule chains build them."""

_MAP_OK = """att_m IS NOT NULL
    AND len(list_filter(att_m, lambda m: NOT ing_plain_map_attempt(m))) = 0
    AND ing_distinct_attempts(att_map)"""
"""SQL: whether every attempt parsed as a MAP (`att_m`, NULL for one with a repeated key or not
an object) passes the attempt rules, checked on its JSON values."""


def plain_values(source: str) -> str:
    """SQL: `source` (r, attempts, labels, extras, att) with `plain` and, for plain rows, `req`
    (typed request columns); `source` is a subquery from a closed set."""
    return f"""
        SELECT *, CASE WHEN plain THEN {{{_REQ_FIELDS}}} END AS req
        FROM (SELECT *, {request_columns("r", "meta")}
              FROM (SELECT *, CASE WHEN plain THEN {_PLAIN_META} END AS meta
                    FROM (SELECT *, {PLAIN_ROW} AS plain
                          FROM ({_attempt_lanes(source)}))))"""


def _attempt_lanes(source: str) -> str:
    """SQL: `source` with `meta_keys`, the typed attempts (`att_fast` when `fast_ok`, else
    `att_map`; see TYPED_ATTEMPTS) and whether they pass the attempt rules (`att_ok`). The `":` count decides most rows. A row it cannot decide (a field
    written as null, `":` inside a string, an unknown key) has its attempts' keys read
    (json_keys): when they are known and distinct and no value failed its type, the typed values
    stand. Only a row with an unknown key (kept in `extra`) has its attempts parsed again as MAPs
    of JSON values and checked on those."""
    return f"""
        SELECT *, fast_ok OR coalesce({_MAP_OK}, false) AS att_ok
        FROM (SELECT *, CASE WHEN att_m IS NOT NULL THEN {MAP_ATTEMPTS} END AS att_map
              FROM (SELECT *, CASE WHEN NOT fast_ok AND starts_with(attempts, '[')
                                   THEN from_json(attempts, '["MAP(VARCHAR, JSON)"]') END AS att_m
                    FROM (SELECT * REPLACE (fast_ok OR coalesce(CASE WHEN NOT fast_ok
                              AND starts_with(attempts, '[') THEN ing_keyed_attempts(
                                  json_keys(attempts, '$[*]'), att, att_fast) END, false)
                              AS fast_ok)
                          FROM (SELECT *, attempts IS NULL
                                          OR ing_plain_attempts(attempts, att_fast) AS fast_ok
                                FROM (SELECT *, CASE WHEN len(extras) > 0
                                                     AND starts_with(r.metadata, '{{')
                                                     THEN json_keys(r.metadata) END AS meta_keys,
                                             {TYPED_ATTEMPTS} AS att_fast
                                      FROM ({source}))))))"""


_REQ_FIELDS = ", ".join(f"'{k}': {k}" for k in CONTENT_COLUMNS)
"""The typed request columns a plain row carries (request_id aside): its request-level content."""

_TYPED_ATTEMPT = f"""a.tier AS tier, coalesce(a.source, '{lf.DEFAULT_SOURCE}') AS source, position,
    {{'model': a.model, 'confidence': a.confidence, 'output': a.output,
      'input_tokens': a.input_tokens::BIGINT, 'output_tokens': a.output_tokens::BIGINT,
      'cost_usd': a.cost_usd, 'latency_ms': a.latency_ms,
      'status': coalesce(a.status, '{lf.DEFAULT_STATUS}'), 'extra': a.extra}} AS c"""
"""Typed attempt columns from `a` (one element of TYPED_ATTEMPTS) and its `position`."""


def prepare(con: duckdb.DuckDBPyConnection) -> None:
    """Create the temp macros of the plain-row tests (once per connection)."""
    for statement in _MACROS.split(";\n"):
        if statement.strip():
            con.execute(statement)


def contest(con: duckdb.DuckDBPyConnection) -> int:
    """ing_contested: request_ids of plain rows that another read record of the file (plain or
    not) or the store also has; ing_lanes: the plain rows, `direct` unless contested. Returns how
    many ids are contested."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE ing_contested AS
        SELECT rid AS request_id FROM ing_file WHERE NOT unread AND rid IS NOT NULL
        GROUP BY rid HAVING count(*) > 1 AND bool_or(plain)
        UNION
        SELECT rid FROM ing_file AS f WHERE plain
               AND EXISTS (SELECT 1 FROM requests AS s WHERE s.request_id = f.rid)""")
    contested = con.execute("SELECT count(*) FROM ing_contested").fetchall()[0][0]
    direct = (
        "true"
        if not contested
        else ("NOT EXISTS (SELECT 1 FROM ing_contested AS c WHERE c.request_id = n.rid)")
    )
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW ing_lanes AS
        SELECT *, {direct} AS direct FROM ing_numbered AS n WHERE plain""")
    return int(contested)


def add_contested(con: duckdb.DuckDBPyConnection) -> None:
    """Add the contested plain rows to ing_req (after merge.good_requests)."""
    con.execute("""
        INSERT INTO ing_req BY NAME
        SELECT line, rid AS request_id, req.*, labels_map AS labels
        FROM ing_lanes WHERE NOT direct""")


def add_contested_attempts(con: duckdb.DuckDBPyConnection) -> None:
    """Add their typed attempts to ing_att_good (after merge.good_details)."""
    con.execute(f"""
        INSERT INTO ing_att_good BY NAME
        SELECT line, request_id, {_TYPED_ATTEMPT}
        FROM (SELECT line, rid AS request_id, unnest(att) AS a,
                     generate_subscripts(att, 1) - 1 AS position
              FROM ing_lanes WHERE NOT direct AND att IS NOT NULL)""")


def insert_direct(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    """Insert the direct rows into requests, attempts and labels."""
    join, file, _, line = runs.provenance(con, "n", runs.SOURCES)
    con.execute(
        f"""
        INSERT INTO requests BY NAME
        SELECT rid AS request_id, req.*, {file} AS source_file, {line} AS source_line,
               $run AS run_id
        FROM ing_lanes AS n{join} WHERE direct""",
        {"run": run_id},
    )
    con.execute(
        f"""
        INSERT INTO attempts BY NAME
        SELECT request_id, tier, source, position, c.*, $run AS run_id
        FROM (SELECT rid AS request_id, {_TYPED_ATTEMPT}
              FROM (SELECT rid, unnest(att) AS a, generate_subscripts(att, 1) - 1 AS position
                    FROM ing_lanes WHERE direct AND att IS NOT NULL))""",
        {"run": run_id},
    )
    con.execute(
        f"""
        INSERT INTO labels BY NAME
        SELECT request_id, e.key AS tier, TRY_CAST(e.value AS DOUBLE) AS score,
               '{lf.LABEL_SOURCE}' AS source, $run AS run_id
        FROM (SELECT rid AS request_id, unnest(map_entries(labels_map)) AS e
              FROM ing_lanes WHERE direct AND labels_map IS NOT NULL)""",
        {"run": run_id},
    )

"""The file path of ingest: DuckDB reads a whole JSONL file (plain or gzip) and checks it in SQL.

`read_json(records=false, ignore_errors=true)` parses each line once into a MAP of JSON values, in
parallel and out of core. Blank lines are skipped and a line it cannot read as one JSON object with
distinct keys (invalid JSON, not UTF-8, an array, a repeated key) becomes a NULL record, so record k
is the k-th non-blank line; `number_lines()` turns records into physical lines given the blank ones.
While reading, cheap tests sort the records into two lanes (store/ingest/fast_lane.py): plain rows,
typed on the spot, and the rest, which keep their JSON values for the exact rule chains
(store/ingest/rules.py). The merge rule (store/ingest/merge.py) then runs over the whole file at
once, and NULL records are handed back to go through the line path (store/ingest/line_path.py), which
gives them exactly the reasons it always gave. Only the store imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from calibrate.formats import canonical as lf
from calibrate.formats import jsonl
from calibrate.store.ingest import fast_lane, merge, rules, runs
from calibrate.store.ingest.rules import strings


@dataclass(frozen=True, slots=True)
class FileCheck:
    """What validating a file found: the lines left for the line path and the rejected lines."""

    rows_read: int
    unread: np.ndarray
    rejected: np.ndarray


_ATTEMPT_STRUCT = "{" + ", ".join(f'"{k}": "JSON"' for k in lf.ATTEMPT_FIELDS) + "}"
_TOP = [k for k in lf.REQUEST_FIELDS if k not in ("attempts", "labels")]


def read_file_records(con: duckdb.DuckDBPyConnection, paths: Sequence[str]) -> list[int] | None:
    """ing_file: one record per non-blank line of the files (one scan, in file order, then line
    order); returns each file's count of records, or None when DuckDB's reader fails on a file as
    a whole (a line it finds too long, damaged gzip data): the line path then reads it, rejecting
    what it must line by line. The files share one compression (gzip or none).

    Plain rows (store/ingest/fast_lane.py) keep their typed values (rid, req, labels_map, att); the
    others keep their JSON values (r, attempts, labels, extras) for the exact rule chains.
    Call it outside a transaction: an error in DuckDB aborts the transaction it happens in.
    """
    several = len(paths) > 1
    maps = f"""SELECT j{", filename" if several else ""}
               FROM read_json($path, {_read_options(paths[0])}, filename = {several},
                              columns = {{'j': 'MAP(VARCHAR, JSON)'}})"""
    try:
        con.execute(_records(maps, "filename, " if several else ""), _path_param(paths))
    except (duckdb.IOException, duckdb.InvalidInputException):
        return None
    if not several:
        return [int(con.execute("SELECT count(*) FROM ing_file").fetchall()[0][0])]
    found = dict(con.execute("SELECT filename, count(*) FROM ing_file GROUP BY ALL").fetchall())
    return [int(found.get(path, 0)) for path in paths]


def _path_param(paths: Sequence[str]) -> dict[str, object]:
    return {"path": paths[0] if len(paths) == 1 else list(paths)}


def _read_options(path: str) -> str:
    """read_json's options for a log file: lines as they are (errors become NULL records), gzip
    told by the file's first bytes, and the line path's line limit as its object size limit
    (DuckDB may still read somewhat longer lines: the caller rejects those via the scan)."""
    compression = "gzip" if jsonl.is_gzip(Path(path)) else "none"
    return f"""format = 'newline_delimited', records = false, ignore_errors = true,
               auto_detect = false, compression = '{compression}',
               maximum_object_size = {jsonl.MAX_LINE_BYTES}"""


def read_batch_records(con: duckdb.DuckDBPyConnection, batch: pa.Table) -> None:
    """ing_file and ing_numbered from a batch of (line, text) rows, as `read_file_records` and `number_lines` make
    them from a file: DuckDB parses each non-blank text once into a MAP of JSON values (NULL
    where it cannot: those rows are `unread`)."""
    # Many small chunks let DuckDB scan the Arrow table on all threads.
    con.register(
        "ing_text_batch", pa.Table.from_batches(batch.to_batches(max_chunksize=2048), batch.schema)
    )
    # Blank rows are not records; trim is slow on long texts, so only unparsed rows are trimmed.
    # try() evaluates a whole vector row by row once one row fails, so invalid JSON is kept
    # from it (json_valid); it still catches a repeated key or a value that is not an object.
    maps = f"""SELECT line, j FROM (
                   SELECT line, text,
                          CASE WHEN json_valid(text)
                               THEN try(from_json(text, '"MAP(VARCHAR, JSON)"')) END AS j
                   FROM ing_text_batch)
               WHERE CASE WHEN j IS NOT NULL THEN true
                          ELSE NOT coalesce(trim(text, {_WHITESPACE}) = '', true) END"""
    con.execute(_records(maps, "line, "))
    defer_shared_ids(
        con,
        f"""SELECT from_json(text, '{_ID_STRUCT}').request_id->>'$' AS id FROM ing_text_batch
            WHERE json_valid(text) AND line IN (SELECT line FROM ing_file WHERE unread)""",
    )
    con.unregister("ing_text_batch")
    con.execute("CREATE OR REPLACE TEMP VIEW ing_numbered AS FROM ing_file")


_ID_STRUCT = '{"request_id": "JSON"}'


def defer_file_shared_ids(con: duckdb.DuckDBPyConnection, paths: Sequence[str]) -> None:
    """`defer_shared_ids` for files read by `read_file_records`: the ids of their unread lines are the ids a
    plain struct read of the files finds more often than the MAP read did (no line numbers
    needed). Costs one more read of the files, and only when some line was not read."""
    if not con.execute("SELECT count(*) FROM ing_file WHERE unread").fetchall()[0][0]:
        return
    defer_shared_ids(
        con,
        f"""SELECT id FROM (
                SELECT j.request_id->>'$' AS id, 1 AS n
                FROM read_json($path, {_read_options(paths[0])},
                               columns = {{'j': 'STRUCT(request_id JSON)'}})
                WHERE starts_with(j.request_id, '"')
                UNION ALL
                SELECT {_READ_ID}, -1 FROM ing_file WHERE NOT unread)
            GROUP BY id HAVING sum(n) > 0""",
        _path_param(paths),
    )


_READ_ID = (
    "CASE WHEN plain THEN rid WHEN starts_with(r.request_id, '\"') THEN r.request_id->>'$' END"
)
"""SQL: the string request_id of a read record of ing_file (NULL when it has none)."""


def defer_shared_ids(
    con: duckdb.DuckDBPyConnection, unread_ids: str, params: dict | None = None
) -> None:
    """Records whose request_id an unread line also has become unread too, so the exact rule
    chains merge them all in line order. Only a line that is valid JSON yet not readable as a
    MAP (a repeated key) can have an id; read first, a later copy would otherwise win the merge.

    `unread_ids`: SQL giving `id`, the string request_ids of the unread lines."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE ing_unread_ids AS
            SELECT DISTINCT id FROM ({unread_ids}) WHERE id IS NOT NULL""",
        params or {},
    )
    con.execute(f"""
        UPDATE ing_file SET unread = true, plain = false
        WHERE NOT unread AND {_READ_ID} IN (SELECT id FROM ing_unread_ids)""")
    con.execute("DROP TABLE ing_unread_ids")


_WHITESPACE = "' ' || chr(9) || chr(10) || chr(13)"


def _records(maps: str, keep: str) -> str:
    """SQL creating ing_file from `maps` (j: each record as a MAP of JSON values, NULL when
    unreadable, plus the columns `keep` names)."""
    fields = ", ".join(f"'{k}': j['{k}']" for k in _TOP)
    values = f"""
        SELECT {keep}j IS NULL AS unread,
               {{{fields}, 'labels': from_json(j['labels'], '"MAP(VARCHAR, JSON)"')}} AS r,
               j['attempts'] AS attempts, j['labels'] AS labels,
               from_json(j['attempts'], '{fast_lane.ATTEMPTS_SCHEMA}') AS att,
               list_filter(map_entries(j),
                           lambda e: NOT list_contains({strings(lf.REQUEST_FIELDS)}, e.key))
                   AS extras
        FROM ({maps})"""
    return f"""
        CREATE OR REPLACE TEMP TABLE ing_file AS
        SELECT {keep}unread, coalesce(plain, false) AS plain, request_id AS rid, req,
               CASE WHEN plain THEN r.labels END AS labels_map,
               CASE WHEN plain AND fast_ok THEN att_fast WHEN plain THEN att_map END AS att,
               CASE WHEN NOT plain THEN r END AS r,
               CASE WHEN NOT plain THEN attempts END AS attempts,
               CASE WHEN NOT plain THEN labels END AS labels,
               CASE WHEN NOT plain THEN extras END AS extras
        FROM ({fast_lane.plain_values(values)})"""


def number_lines(con: duckdb.DuckDBPyConnection, blanks: Sequence[int]) -> None:
    """ing_numbered: ing_file with each record's physical line, given the sorted blank lines."""
    ordinal = _ordinal(con)
    if not blanks:
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW ing_numbered AS SELECT ord AS line, * FROM ({ordinal})"
        )
        return
    # The record with ordinal k lies after blank line b_i (i = 0, 1, ...) iff k >= b_i - i.
    at = np.asarray(blanks, dtype=np.int64) - np.arange(len(blanks))
    last = np.append(at[1:] != at[:-1], True)
    shifts = pa.table({"at": at[last], "shift": np.flatnonzero(last) + 1})
    con.register("ing_blank_shifts", shifts)
    con.execute("CREATE OR REPLACE TEMP TABLE ing_shifts AS FROM ing_blank_shifts")
    con.unregister("ing_blank_shifts")
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW ing_numbered AS
        SELECT f.ord + coalesce(s.shift, 0) AS line, f.*
        FROM ({ordinal}) AS f ASOF LEFT JOIN ing_shifts AS s ON f.ord >= s.at""")


def _ordinal(con: duckdb.DuckDBPyConnection) -> str:
    """SQL: ing_file with each record's ordinal (1, 2, ... in file order) as `ord`."""
    # A scan follows rowid order, which is the file's order (ing_file is written once, in order);
    # inside a transaction rowids start at a large offset, hence `low`. row_number() OVER ()
    # gives the same numbers, but every scan of a view using it runs on one thread: it is only
    # the fallback for rowids that are not consecutive.
    bounds = con.execute("SELECT min(rowid), max(rowid), count(*) FROM ing_file").fetchall()
    low, high, count = bounds[0]
    if count and high - low + 1 == count:
        return f"SELECT rowid - {int(low) - 1} AS ord, * FROM ing_file"
    return ORDINAL_BY_WINDOW


ORDINAL_BY_WINDOW = "SELECT row_number() OVER () AS ord, * FROM ing_file"
"""The fallback numbering of ing_file's records (tests compare the two)."""


def check_and_merge(con: duckdb.DuckDBPyConnection, run_id: int) -> FileCheck:
    """Validate and merge every read record; rejects wait in ing_file_rejects for their raw text.
    Where the lines come from is in ing_sources and ing_file_sources (store/ingest/runs.py)."""
    contested = fast_lane.contest(con)
    _rows(con)
    _attempts(con)
    rules.check(con, "ing_frows")
    merge.good_requests(con)
    if contested:
        fast_lane.add_contested(con)
    merge.good_details(con)
    if contested:
        fast_lane.add_contested_attempts(con)
    merge.apply(con, run_id)
    fast_lane.insert_direct(con, run_id)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE ing_file_rejects AS
        SELECT line, bad.field AS field, bad.reason AS reason FROM ing_checked WHERE bad IS NOT NULL
        UNION ALL
        SELECT line, field, reason FROM ing_conf""")
    unread = con.execute("SELECT line FROM ing_numbered WHERE unread ORDER BY line").fetchnumpy()
    rejected = con.execute("SELECT line FROM ing_file_rejects ORDER BY line").fetchnumpy()
    read = con.execute("SELECT count(*) FROM ing_file WHERE NOT unread").fetchall()[0][0]
    return FileCheck(int(read), unread["line"], rejected["line"])


def _rows(con: duckdb.DuckDBPyConnection) -> None:
    """ing_frows, ing_odd, ing_meta: the records that are not plain, shaped for the rule chains."""
    con.execute("""
        CREATE OR REPLACE TEMP VIEW ing_frows AS
        SELECT line, true AS valid, true AS is_object, NULL::VARCHAR AS top_dup, r, attempts,
               labels, extras
        FROM ing_numbered WHERE NOT unread AND NOT plain""")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE ing_odd AS
        SELECT line, NULL AS row_kind,
               ing_kind(attempts) AS attempts_kind, ing_kind(labels) AS labels_kind,
               CASE WHEN json_type(labels) = 'OBJECT'
                    THEN ing_first_dup(json_keys(labels)) END AS labels_dup
        FROM ing_frows
        WHERE NOT coalesce(starts_with(attempts, '['), true)
           OR (r.labels IS NULL AND labels IS NOT NULL)""")
    con.execute(
        rules.merged_metadata(
            "SELECT line, r.metadata AS metadata, extras FROM ing_frows WHERE len(extras) > 0"
        )
    )


def _attempt_elements(con: duckdb.DuckDBPyConnection) -> None:
    """ing_att_elems: each attempt of the exact lane as a MAP of JSON values (e), or, when that
    fails (not an object, or a repeated key), as JSON text (elem)."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE ing_att_elems AS
        SELECT line, position, e,
               CASE WHEN e IS NULL THEN json_extract(attempts, '$[' || position || ']') END
                   AS elem
        FROM (SELECT line, attempts, unnest(list) AS e, generate_subscripts(list, 1) - 1 AS position
              FROM (SELECT line, attempts,
                           from_json(attempts, '["MAP(VARCHAR, JSON)"]') AS list
                    FROM ing_frows WHERE starts_with(attempts, '[')))""")


def _attempts(con: duckdb.DuckDBPyConnection) -> None:
    """ing_att: one row per attempt of the exact lane with its first broken rule, as the line
    path builds it."""
    _attempt_elements(con)
    known = strings(lf.ATTEMPT_FIELDS)
    from_map = "{" + ", ".join(f"'{k}': e['{k}']" for k in lf.ATTEMPT_FIELDS) + "}"
    # A NULL map is an element that is not an object, or an object with a repeated key: read it
    # the way the line path does (a struct keeps the first copy of a key).
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ing_att_raw AS
        SELECT *, 'attempts[' || position || ']' AS p,
               list_filter(k, lambda x: NOT list_contains({known}, x)) AS unknown,
               count(*) OVER (PARTITION BY line, m['tier'], coalesce(m['source'],
                    '"{lf.DEFAULT_SOURCE}"') ORDER BY position) AS dup
        FROM (SELECT line, position, e, elem,
                     CASE WHEN e IS NOT NULL THEN {from_map}
                          ELSE from_json(elem, '{_ATTEMPT_STRUCT}') END AS m,
                     CASE WHEN e IS NOT NULL THEN map_keys(e) ELSE json_keys(elem) END AS k
              FROM ing_att_elems)""")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE ing_att_odd AS
        SELECT line, position,
               CASE WHEN len(k) = 0 THEN ing_kind(coalesce(elem, '{}')) END AS kind,
               CASE WHEN len(unknown) = 0 THEN NULL
                    WHEN e IS NOT NULL THEN to_json(map_from_entries(list_filter(
                        map_entries(e), lambda x: list_contains(unknown, x.key))))::VARCHAR
                    WHEN json_type(elem) = 'OBJECT' THEN to_json(map_from_entries(list_filter(
                        map_entries(from_json(elem, '"MAP(VARCHAR, JSON)"')),
                        lambda x: list_contains(unknown, x.key))))::VARCHAR END AS extra
        FROM ing_att_raw WHERE len(k) = 0 OR len(unknown) > 0""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ing_att AS
        SELECT line, position, m, extra, {rules.case(rules.ATTEMPT_RULES)} AS bad
        FROM ing_att_raw LEFT JOIN ing_att_odd USING (line, position)""")


def quarantine(con: duckdb.DuckDBPyConnection, raw: pa.Table, run_id: int) -> None:
    """Move the rejects found on the lines of `raw` (line, text) into `rejects`, each under its
    file and line (ing_file_sources)."""
    join, file, sha, line = runs.provenance(con, "f", runs.FILE_SOURCES)
    con.register("ing_raw_lines", raw)
    con.execute(
        f"""
        INSERT INTO rejects BY NAME
        SELECT {file} AS file, {sha} AS file_sha256, {line} AS line, field, reason,
               rtrim(text, chr(13) || chr(10)) AS raw, $run AS run_id
        FROM (SELECT * FROM ing_file_rejects JOIN ing_raw_lines USING (line)) AS f{join}""",
        {"run": run_id},
    )
    con.unregister("ing_raw_lines")


def finish_rejects(
    con: duckdb.DuckDBPyConnection, run_id: int
) -> list[tuple[int, str | None, str]]:
    """Store rejects whose line was not given to `quarantine` (raw NULL), drop the file's temp
    tables, and return the first few rejects (line, field, reason; lines as numbered across
    the files)."""
    join, file, sha, line = runs.provenance(con, "f", runs.FILE_SOURCES)
    con.execute(
        f"""
        INSERT INTO rejects BY NAME
        SELECT file, file_sha256, line, field, reason, $run AS run_id
        FROM (SELECT {file} AS file, {sha} AS file_sha256, {line} AS line, field, reason
              FROM ing_file_rejects AS f{join}) AS f
        WHERE NOT EXISTS (SELECT 1 FROM rejects AS s WHERE s.file_sha256 = f.file_sha256
                          AND s.line = f.line)""",
        {"run": run_id},
    )
    first = con.execute("SELECT line, field, reason FROM ing_file_rejects ORDER BY line LIMIT 5")
    rejects = first.fetchall()
    drop_temp_tables(con)
    return rejects


def drop_temp_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Free the file's temp tables (the line path reuses some of their names)."""
    for view in ("ing_frows", "ing_lanes", "ing_numbered"):
        con.execute(f"DROP VIEW IF EXISTS {view}")
    for table in (
        "ing_file",
        "ing_shifts",
        "ing_att_elems",
        "ing_file_rejects",
        "ing_contested",
    ):
        con.execute(f"DROP TABLE IF EXISTS {table}")

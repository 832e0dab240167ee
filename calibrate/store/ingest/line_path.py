"""The line path of ingest: validate a batch of raw text rows in bulk, merge it, quarantine rejects.

A batch is an Arrow table (line, text). `ingest_lines` (CSV, Parquet and JSONL batches) gives it the
file path's fast lane first (store/ingest/file_path.py over the batch); `ingest_batch` checks every row
with the exact rule chains: DuckDB parses every row once into typed JSON fields, the shared rule
chains (store/ingest/rules.py) find each row's first broken rule, and the shared merge
(store/ingest/merge.py) adds the good rows. `ingest_batch` also takes the lines of a JSONL file that
DuckDB's reader cannot read, and is the reference the fast lanes are tested against. Temp tables
named ing_* hold one batch. Only the store imports this module."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from calibrate.formats import canonical as lf
from calibrate.store.ingest import file_path, merge, rules, runs
from calibrate.store.ingest.rules import ROW_SCHEMA, strings
from calibrate.store.one_row import one_row


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Counts of one batch; `rejects` holds the first few (line, field, reason) for --strict."""

    rows_read: int
    rows_rejected: int
    rejects: tuple[tuple[int, str | None, str], ...]


def _parse(con: duckdb.DuckDBPyConnection, batch: pa.Table) -> None:
    """ing_rows: non-blank rows parsed once (text stays in the registered ing_batch)."""
    # Many small chunks let DuckDB scan the Arrow table on all threads.
    con.register(
        "ing_batch", pa.Table.from_batches(batch.to_batches(max_chunksize=2048), batch.schema)
    )
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ing_rows AS
        SELECT line, valid, is_object, r, keys, ing_first_dup(keys) AS top_dup,
               list_filter(keys, lambda k: NOT list_contains({strings(lf.REQUEST_FIELDS)}, k))
                   AS unknown,
               CASE WHEN r.attempts IS NOT NULL THEN json_keys(text, '$.attempts[*]') END
                   AS att_keys
        FROM (
            SELECT line, text, json_valid(text) AS valid,
                   valid AND starts_with(ltrim(text), '{{') AS is_object,
                   CASE WHEN is_object THEN json_keys(text) END AS keys,
                   CASE WHEN is_object THEN from_json(text, '{ROW_SCHEMA}') END AS r,
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
               ing_kind(json_extract(text, '$.labels')) AS labels_kind,
               CASE WHEN json_type(text, '$.labels') = 'OBJECT'
                    THEN ing_first_dup(json_keys(text, '$.labels')) END AS labels_dup
        FROM ing_rows JOIN ing_batch USING (line)
        WHERE valid AND (NOT is_object
               OR (r.attempts IS NULL AND list_contains(keys, 'attempts'))
               OR (r.labels IS NULL AND list_contains(keys, 'labels')))""")


def _metadata(con: duckdb.DuckDBPyConnection) -> None:
    """ing_meta: metadata of rows with unknown top-level keys, merged with those keys."""
    con.execute(
        rules.merged_metadata("""
            SELECT line, r.metadata AS metadata, extras
            FROM ing_rows JOIN (
                SELECT line, list({'key': key, 'value': json_extract(text, '$."'
                            || replace(replace(key, '\\', '\\\\'), '"', '\\"') || '"')}
                           ORDER BY pos) AS extras
                FROM (SELECT line, unnest(unknown) AS key,
                             generate_subscripts(unknown, 1) AS pos FROM ing_rows
                      WHERE is_object AND len(unknown) > 0)
                JOIN ing_batch USING (line) GROUP BY line) USING (line)
            WHERE is_object AND len(unknown) > 0""")
    )


def _attempts(con: duckdb.DuckDBPyConnection) -> None:
    """ing_att: one row per attempt of each parsed row, with its first broken rule (if any)."""
    known = strings(lf.ATTEMPT_FIELDS)
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
        SELECT line, position, m, extra, {rules.case(rules.ATTEMPT_RULES)} AS bad
        FROM ing_att_raw LEFT JOIN ing_att_odd USING (line, position)""")


def _json_error(raw: str) -> str:
    try:
        json.loads(raw, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg} (col {exc.colno})"
    except ValueError as exc:
        return f"invalid JSON: {exc}"
    except RecursionError:
        return "invalid JSON: nested too deeply"
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
    file, sha, run_id = where
    runs.set_sources(con, [(file, sha, 1)], runs.SOURCES)
    con.execute("DELETE FROM ing_rejects")
    _parse(con, batch)
    _attempts(con)
    rules.check(con)
    merge.merge(con, run_id)
    _quarantine(con, raw_rejects, where)
    con.unregister("ing_batch")
    read = one_row(con, "SELECT count(*) FROM ing_rows")[0] + len(raw_rejects)
    rejected = one_row(con, "SELECT count(*) FROM ing_rejects")[0]
    first = con.execute("SELECT line, field, reason FROM ing_rejects ORDER BY line LIMIT 5")
    return BatchResult(int(read), int(rejected), tuple(first.fetchall()))


def ingest_lines(
    con: duckdb.DuckDBPyConnection,
    batch: pa.Table,
    raw_rejects: Sequence[tuple[int, str | None, str, str]],
    where: tuple[str, str, int],
) -> BatchResult:
    """`ingest_batch` with the file path's fast lane: the batch's rows that cheap tests prove good
    are typed and inserted set-wise (store/ingest/file_path.py over the batch), the others take the
    exact rule chains, and rows DuckDB cannot parse into a MAP come back through `ingest_batch`."""
    file, sha, run_id = where
    for table in (runs.SOURCES, runs.FILE_SOURCES):
        runs.set_sources(con, [(file, sha, 1)], table)
    file_path.read_batch_records(con, batch)
    check = file_path.check_and_merge(con, run_id)
    file_path.quarantine(con, batch, run_id)
    unread = batch.filter(pc.is_in(batch["line"], pa.array(check.unread, pa.int64())))
    rest = BatchResult(0, 0, ())
    if unread.num_rows or raw_rejects:
        rest = ingest_batch(con, unread, raw_rejects, where)
    first = sorted([*file_path.finish_rejects(con, run_id), *rest.rejects], key=lambda r: r[0])[:5]
    read = check.rows_read + rest.rows_read
    return BatchResult(read, len(check.rejected) + rest.rows_rejected, tuple(first))

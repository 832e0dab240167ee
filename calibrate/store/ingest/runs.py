"""Ingest bookkeeping SQL: runs, ingested files (the sha256 skip), reject counts.

Only the store imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

from calibrate.formats import canonical as lf
from calibrate.store.ingest.rules import strings
from calibrate.store.one_row import one_row


def begin_run(con: duckdb.DuckDBPyConnection, started_at: object, strict: bool) -> int:
    """Insert a new ingest_runs row and return its run_id."""
    run_id = one_row(con, "SELECT coalesce(max(run_id), 0) + 1 FROM ingest_runs")[0]
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
    rows = con.execute(
        "SELECT 1 FROM ingested_files WHERE file_sha256 = ? LIMIT 1", [sha]
    ).fetchall()
    return bool(rows)


def size_ingested(con: duckdb.DuckDBPyConnection, size: int) -> bool:
    """Whether a file of this many bytes may have been ingested before (files recorded before
    sizes were kept count as any size)."""
    rows = con.execute(
        "SELECT 1 FROM ingested_files WHERE bytes IS NULL OR bytes = ? LIMIT 1", [size]
    ).fetchall()
    return bool(rows)


def record_file(
    con: duckdb.DuckDBPyConnection, where: tuple[str, str, int], size: int, counts: Sequence[int]
) -> None:
    """Mark a file of `size` bytes as ingested; counts = (rows_read, rows_kept, rows_rejected)."""
    file, sha, run_id = where
    con.execute(
        "INSERT INTO ingested_files (file_sha256, path, run_id, rows_read, rows_kept,"
        " rows_rejected, bytes) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [sha, file, run_id, *counts, size],
    )


def rejected_lines(con: duckdb.DuckDBPyConnection, where: tuple[str, str, int]) -> set[int]:
    """The lines of one file rejected in one run."""
    file, sha, run_id = where
    rows = con.execute(
        "SELECT DISTINCT line FROM rejects WHERE file = ? AND file_sha256 = ? AND run_id = ?",
        [file, sha, run_id],
    ).fetchall()
    return {int(line) for (line,) in rows if line is not None}


def ingested_among(con: duckdb.DuckDBPyConnection, shas: Sequence[str]) -> set[str]:
    """Which of these file digests were ingested before (one query for many files)."""
    con.register("ing_shas", pa.table({"sha": pa.array(list(shas), pa.string())}))
    try:
        rows = con.execute(
            "SELECT file_sha256 FROM ingested_files WHERE file_sha256 IN (SELECT sha FROM ing_shas)"
        ).fetchall()
    finally:
        con.unregister("ing_shas")
    return {sha for (sha,) in rows}


def record_files(
    con: duckdb.DuckDBPyConnection,
    rows: Sequence[tuple[str, str, int, Sequence[int]]],
    run_id: int,
) -> None:
    """`record_file` for many files at once: (file, sha256, size, (read, kept, rejected))."""
    if not rows:
        return
    table = pa.table(
        {
            "file_sha256": [sha for _, sha, _, _ in rows],
            "path": [file for file, _, _, _ in rows],
            "rows_read": pa.array([c[0] for *_, c in rows], pa.int64()),
            "rows_kept": pa.array([c[1] for *_, c in rows], pa.int64()),
            "rows_rejected": pa.array([c[2] for *_, c in rows], pa.int64()),
            "bytes": pa.array([size for _, _, size, _ in rows], pa.int64()),
        }
    )
    con.register("ing_files", table)
    try:
        con.execute(
            "INSERT INTO ingested_files (file_sha256, path, run_id, rows_read, rows_kept,"
            " rows_rejected, bytes) SELECT file_sha256, path, $run, rows_read, rows_kept,"
            " rows_rejected, bytes FROM ing_files",
            {"run": run_id},
        )
    finally:
        con.unregister("ing_files")


def quarantine(
    con: duckdb.DuckDBPyConnection,
    rows: Sequence[tuple[str, str, int, str | None, str, str]],
    run_id: int,
) -> None:
    """Store rejects found before validation: (file, file_sha256, line, field, reason, raw)."""
    if not rows:
        return
    names = ("file", "file_sha256", "line", "field", "reason", "raw")
    columns = {name: [row[k] for row in rows] for k, name in enumerate(names)}
    table = pa.table({**columns, "line": pa.array(columns["line"], pa.int64())})
    con.register("ing_quarantine", table)
    try:
        con.execute(
            "INSERT INTO rejects BY NAME SELECT *, $run AS run_id FROM ing_quarantine",
            {"run": run_id},
        )
    finally:
        con.unregister("ing_quarantine")


def relocate(
    con: duckdb.DuckDBPyConnection,
    where: tuple[str, str, int],
    moves: Sequence[tuple[int, str, str, int]],
) -> None:
    """Give the requests and rejects a batch filed under `where` their own source: `moves` are
    (line in the batch, file, file_sha256, line in that file)."""
    file, sha, run_id = where
    table = pa.table(
        {
            "line": pa.array([m[0] for m in moves], pa.int64()),
            "file": pa.array([m[1] for m in moves], pa.string()),
            "sha": pa.array([m[2] for m in moves], pa.string()),
            "source_line": pa.array([m[3] for m in moves], pa.int64()),
        }
    )
    con.register("ing_moves", table)
    try:
        con.execute(
            """UPDATE requests SET source_file = m.file, source_line = m.source_line
               FROM ing_moves m
               WHERE requests.source_file = $file AND requests.run_id = $run
                 AND requests.source_line = m.line""",
            {"file": file, "run": run_id},
        )
        con.execute(
            """UPDATE rejects SET file = m.file, file_sha256 = m.sha, line = m.source_line
               FROM ing_moves m WHERE rejects.file_sha256 = $sha AND rejects.line = m.line""",
            {"sha": sha},
        )
    finally:
        con.unregister("ing_moves")


def rejects_by_kind(con: duckdb.DuckDBPyConnection, run_id: int) -> list[tuple[str, int]]:
    """Rejects of one run counted per reason kind, most frequent first."""
    kinds = strings(lf.REJECT_KINDS)
    rows = con.execute(
        f"""SELECT coalesce(list_filter({kinds}, lambda k: starts_with(reason, k))[1],
                            split_part(reason, ':', 1)) AS kind, count(*) AS n
            FROM rejects WHERE run_id = ? GROUP BY kind ORDER BY n DESC, kind""",
        [run_id],
    )
    return [(str(kind), int(n)) for kind, n in rows.fetchall()]


def request_count(con: duckdb.DuckDBPyConnection) -> int:
    """Number of stored requests."""
    return int(one_row(con, "SELECT count(*) FROM requests")[0])


SOURCES = "ing_sources"
"""Where the lines the merge sees come from (set for each file, group of files or batch)."""
FILE_SOURCES = "ing_file_sources"
"""Where the lines of the file or group the file path checked come from (its quarantine)."""


def set_sources(
    con: duckdb.DuckDBPyConnection, sources: Sequence[tuple[str, str, int]], table: str
) -> None:
    """Fill `table` (SOURCES or FILE_SOURCES) with (file, file_sha256, first_line): the lines
    being checked are numbered across the files in order, file i's line 1 being first_line."""
    con.register(
        "ing_given_sources",
        pa.table(
            {
                "first_line": pa.array([s[2] for s in sources], pa.int64()),
                "file": pa.array([s[0] for s in sources], pa.string()),
                "sha": pa.array([s[1] for s in sources], pa.string()),
            }
        ),
    )
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS FROM ing_given_sources")
    finally:
        con.unregister("ing_given_sources")


def provenance(con: duckdb.DuckDBPyConnection, alias: str, table: str) -> tuple[str, ...]:
    """SQL (join, file, sha, line) giving each row of `alias` (which has a `line` column) its
    file, digest and line in that file, from `table`; one file needs no join."""
    rows = con.execute(f"SELECT first_line, file, sha FROM {table}").fetchall()
    if len(rows) == 1:
        first, file, sha = rows[0]
        return "", _literal(file), _literal(sha), f"{alias}.line - {int(first) - 1}"
    return (
        f" ASOF JOIN {table} AS src ON {alias}.line >= src.first_line",
        "src.file",
        "src.sha",
        f"{alias}.line - src.first_line + 1",
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"

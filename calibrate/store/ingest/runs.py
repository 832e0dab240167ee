"""Ingest bookkeeping SQL: runs, ingested files (the sha256 skip), reject counts.

Only the store imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from calibrate.formats import canonical as lf
from calibrate.store.ingest.rules import strings


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


def size_ingested(con: duckdb.DuckDBPyConnection, size: int) -> bool:
    """Whether a file of this many bytes may have been ingested before (files recorded before
    sizes were kept count as any size)."""
    row = con.execute(
        "SELECT 1 FROM ingested_files WHERE bytes IS NULL OR bytes = ? LIMIT 1", [size]
    ).fetchone()
    return row is not None


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
    return int(con.execute("SELECT count(*) FROM requests").fetchone()[0])

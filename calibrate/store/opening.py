"""Opening a store file: for writing (created when missing, removed again when the command that
created it failed before storing anything), or read-only (shared with other readers), and what a
lock held by another process means.

DuckDB lets one process open a file for writing, or any number of processes open it read-only.
Commands that only read (sweep, evaluate and monitor with --db and no logs, labels status, the
dry runs) open it read-only, so they can run side by side. A store that needs writing before it
can be read — a pending migration, a leftover replay journal — is opened for writing once first.
Only `store.core` imports this module.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb

from calibrate.errors import CalibrateError, DataError
from calibrate.store.journal import journal_path
from calibrate.store.journal import recover as recover_journal
from calibrate.store.migrations import apply_migrations, pending_migrations

_LOCK = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
_SIDE_FILES = (".wal", ".replay-journal")


@dataclass(frozen=True, slots=True)
class Opened:
    """A store opened for writing; `created` is what this opening made (the file, then the
    folders it needed, deepest first), empty when the file existed."""

    con: duckdb.DuckDBPyConnection
    recovered: int
    created: tuple[Path, ...]


def open_for_writing(file: Path) -> Opened:
    """Open or create the store, bring its schema up to date, fold a leftover journal in."""
    new_dirs = _missing_dirs(file.parent)
    existed = file.exists()
    file.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = connect(file, read_only=False)
    except BaseException:
        remove_created(new_dirs)
        raise
    apply_migrations(con)
    journal = journal_path(str(file))
    recovered = recover_journal(con, journal) if journal is not None else 0
    return Opened(con, recovered, () if existed else (file, *new_dirs))


def open_read_only(file: Path) -> duckdb.DuckDBPyConnection:
    """Open an existing store for reading only (DataError when there is none)."""
    if not file.exists():
        raise DataError(
            f"no store at {file}",
            hint="Create one with `calibrate ingest LOGS --db FILE`, or pass the --db of an "
            "existing store.",
        )
    con = connect(file, read_only=True)
    journal = journal_path(str(file))
    leftover = journal is not None and journal.exists() and journal.stat().st_size > 0
    if pending_migrations(con) or leftover:
        con.close()
        open_for_writing(file).con.close()
        con = connect(file, read_only=True)
    return con


def connect(file: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """duckdb.connect within `memory_config(file)`, with a lock held by another process as a user
    error that names it."""
    try:
        return duckdb.connect(str(file), read_only=read_only, config=memory_config(file))
    except duckdb.IOException as exc:
        raise CalibrateError(
            f"cannot open store {file}: {_first_line(exc)}", hint=_hint(exc)
        ) from None


MEMORY_SHARE = 0.25
"""DuckDB's buffers may hold this share of physical memory, between these bounds (bytes)."""
MEMORY_FLOOR_BYTES = 256 << 20
MEMORY_CAP_BYTES = 1 << 30


def memory_config(file: Path | None) -> dict[str, str | bool | int | float | list[str]]:
    """DuckDB's `memory_limit` and `temp_directory` for a store: a quarter of physical memory,
    between 256 MiB and 1 GiB, so a 10M-request ingest stays under 2 GB of resident memory on any
    machine (docs/scale.md), and what does not fit spills to `<store>.tmp/` next to the store
    file (for an in-memory store, a folder in the system temp directory). DuckDB removes its
    spill files when the connection closes."""
    limit = memory_limit_bytes()
    if file is None:
        temp = Path(tempfile.gettempdir()) / f"calibrate-{os.getpid()}.tmp"
    else:
        temp = file.with_name(file.name + ".tmp")
    return {"memory_limit": f"{limit // (1 << 20)}MiB", "temp_directory": str(temp)}


def memory_limit_bytes() -> int:
    """The `memory_limit` every store connection gets (`memory_config`)."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return min(max(int(physical * MEMORY_SHARE), MEMORY_FLOOR_BYTES), MEMORY_CAP_BYTES)


SCRATCH_ROW_BYTES = 200
"""About what one request takes in the outcome base as an in-memory temp table (3 tiers; measured:
2.08 GB for 10M requests)."""


def needs_scratch(requests: int) -> bool:
    """Whether the outcome base of `requests` requests goes to a scratch file: when as a temp table
    it would take more than half of the memory limit (at 1M requests it stays in memory, where it
    builds 0.5 s faster than compressed into a file)."""
    return requests * SCRATCH_ROW_BYTES > memory_limit_bytes() // 2


def scratch_file(file: Path) -> Path:
    """Where a sweep keeps its outcome base for the store `file`: a DuckDB file of this process
    in the store's spill folder (`memory_config`), removed when the store closes."""
    return file.with_name(file.name + ".tmp") / f"outcomes-{os.getpid()}.duckdb"


def attach_scratch(con: duckdb.DuckDBPyConnection, file: Path, name: str) -> Path:
    """Attach a new, writable scratch database for the store `file` as `name` (also on a
    read-only store: the store itself stays read-only); return its path. A file left by a run
    that was killed, with this process's id, is replaced."""
    scratch = scratch_file(file)
    remove_scratch(scratch)
    scratch.parent.mkdir(exist_ok=True)
    quoted = str(scratch).replace("'", "''")
    con.execute(f"ATTACH '{quoted}' AS {name} (READ_WRITE)")
    return scratch


def remove_scratch(scratch: Path) -> None:
    """Delete a scratch database (and its write-ahead log), and the spill folder if it is then
    empty."""
    for path in (scratch, scratch.with_name(scratch.name + ".wal")):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty (spill files, another scratch), or gone
        scratch.parent.rmdir()


def _hint(exc: duckdb.IOException) -> str:
    held = _LOCK.search(str(exc))
    if held is None:
        return "Check that the --db path is a calibrate store you may read and write."
    return (
        f"Another process (PID {held['pid']}, {held['program']}) has this store open. Wait for "
        "it to finish, then run the command again. Commands that only read (sweep, evaluate and "
        "monitor with --db and no logs, labels status, --dry-run) can share a store; a command "
        "that writes needs it alone. Or pass another --db."
    )


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def holds_nothing(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether every table of the store is empty (the schema alone); False when unsure."""
    try:
        tables = con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
            " AND NOT temporary AND table_name <> '_calibrate_migrations'"
        ).fetchall()
        return not any(
            con.execute(f'SELECT EXISTS (SELECT 1 FROM "{name}")').fetchall()[0][0]
            for (name,) in tables
        )
    except duckdb.Error:
        return False


def remove_created(created: tuple[Path, ...]) -> None:
    """Remove what an opening created: the store file with its WAL and journal, then the folders
    it made if they are empty."""
    for path in created:
        if path.is_dir():
            with contextlib.suppress(OSError):  # not empty: something else is in it now
                path.rmdir()
            continue
        for side in (path, *(Path(str(path) + s) for s in _SIDE_FILES)):
            side.unlink(missing_ok=True)


def _missing_dirs(folder: Path) -> tuple[Path, ...]:
    """The folders `folder.mkdir(parents=True)` would create, deepest first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    return tuple(missing)

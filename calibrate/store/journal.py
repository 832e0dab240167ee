"""The replay journal: results made durable the moment they arrive, before DuckDB commits them.

`<store>.replay-journal` sits next to a file store. Replay appends each result as one JSON line
with a single write (the kernel keeps it if the process is killed, even by SIGKILL) and commits to
DuckDB in batches behind it; once everything appended is committed, the journal is emptied.
Opening the store folds a leftover journal in (`recover`), like DuckDB's own WAL: a torn last line
is dropped, earlier lines are applied in order and idempotently. It does not survive a power loss
the way a DuckDB commit does (no fsync): what it guards against is paying twice after a crash.
Replay gets its journal from `Store.open_replay_journal()`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from calibrate.records.replay import CallRecord, JobResult, ShadowAttempt
from calibrate.store import replay_sql

SUFFIX = ".replay-journal"
_TIMES = ("started_at", "finished_at")


def journal_path(db_path: str) -> Path | None:
    """The journal of a file store; None for `:memory:`."""
    return None if db_path == ":memory:" else Path(db_path + SUFFIX)


def encode(result: JobResult, run_id: int) -> bytes:
    calls = [
        {k: v.isoformat() if k in _TIMES else v for k, v in asdict(c).items()} for c in result.calls
    ]
    line = {
        "run_id": run_id,
        "calls": calls,
        "attempts": [asdict(a) for a in result.attempts],
        "replaces": list(result.replaces),
    }
    return (json.dumps(line, separators=(",", ":")) + "\n").encode()


def decode(line: bytes) -> tuple[JobResult, int]:
    data: dict[str, Any] = json.loads(line)
    calls = tuple(CallRecord(**_call_fields(c)) for c in data["calls"])
    attempts = tuple(ShadowAttempt(**a) for a in data["attempts"])
    return JobResult(calls, attempts, tuple(data["replaces"])), int(data["run_id"])


def _call_fields(call: dict[str, Any]) -> dict[str, Any]:
    """A journaled call's fields as JSON gave them, its timestamps parsed back."""
    return {k: datetime.fromisoformat(v) if k in _TIMES else v for k, v in call.items()}


class Journal:
    """Append-only file of results not yet known to be committed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, result: JobResult, run_id: int) -> None:
        """One line, written whole (a short write is continued, never interleaved)."""
        data = memoryview(encode(result, run_id))
        while data:
            data = data[os.write(self._fd, data) :]

    def clear(self) -> None:
        """Everything appended is committed: start empty."""
        os.ftruncate(self._fd, 0)

    def close(self) -> None:
        os.close(self._fd)


def recover(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Apply a leftover journal in one transaction, then empty it; returns the results applied."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    by_run: dict[int, list[JobResult]] = {}
    applied = 0
    for line in path.read_bytes().splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break  # torn by a crash mid-write: that result was never durable
        result, run_id = decode(line)
        by_run.setdefault(run_id, []).append(result)
        applied += 1
    con.execute("BEGIN TRANSACTION")
    try:
        for run_id, results in by_run.items():
            replay_sql.record_results(con, results, run_id, fast=False)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    os.truncate(path, 0)
    return applied

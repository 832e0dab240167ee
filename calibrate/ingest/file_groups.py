"""The file path of ingest: JSONL files read whole by DuckDB, a big file alone or many small ones
in one scan, then checked and merged set-wise by the store.

A group's lines are numbered on from file to file (file i's line 1 is the line after the previous
file's last), so one check, one merge and one transaction cover the group exactly as if its
files were ingested one after the other; the store files each row under its own file and line
(store/ingest/runs.py `set_sources`). Only the lines DuckDB cannot read (invalid JSON, not UTF-8,
...) go through the line path, gathered into batches of batch_rows (each batch scans the store
once), and the raw text of rejected lines is read back from their file. A group whose files
cannot all be read whole (a line too long, damaged gzip data) is left to the caller, which then
takes its files one by one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from calibrate.formats import jsonl, readers
from calibrate.store.core import Store

GROUP_BYTES = 256 << 20
"""Files up to this size are read together, up to this many bytes per scan ..."""
GROUP_FILES = 2_000
"""... and this many files."""

Reject = tuple[int, str | None, str]
"""(line, field, reason) of a rejected row."""


@dataclass(frozen=True, slots=True)
class FileCounts:
    rows_read: int = 0
    rows_kept: int = 0
    rows_rejected: int = 0

    def __add__(self, other: FileCounts) -> FileCounts:
        return FileCounts(
            self.rows_read + other.rows_read,
            self.rows_kept + other.rows_kept,
            self.rows_rejected + other.rows_rejected,
        )

    def as_tuple(self) -> tuple[int, int, int]:
        return self.rows_read, self.rows_kept, self.rows_rejected


@dataclass(frozen=True, slots=True)
class Part:
    """One file of a group: its digest, its lines numbered from `first_line` across the group,
    and the records DuckDB read from it."""

    path: Path
    sha256: str
    size: int
    first_line: int
    lines: int
    records: int


def groups(files: Sequence[Path], together: bool) -> list[list[Path]]:
    """The files in order, in groups read in one scan: consecutive JSONL files of one
    compression, each and all together at most GROUP_BYTES. Other files, and every file unless
    `together`, form groups of one."""
    out: list[list[Path]] = []
    size, kind = 0, None
    for path in files:
        this = path.stat().st_size if together and readers.is_jsonl(path) else GROUP_BYTES + 1
        gzip = jsonl.is_gzip(path) if this <= GROUP_BYTES else None
        joins = out and kind == gzip and gzip is not None
        if joins and size + this <= GROUP_BYTES and len(out[-1]) < GROUP_FILES:
            out[-1].append(path)
            size += this
        else:
            out.append([path])
            size, kind = this, gzip
    return out


def read_group(
    store: Store, paths: Sequence[Path], digests: Sequence[readers.Digest]
) -> tuple[list[Part], list[int]] | None:
    """DuckDB reads the files in one scan (outside a transaction): each file's Part and the
    blank lines across the group, or None when a file cannot be read whole or its records
    cannot be matched to its lines (the caller then takes the files one by one)."""
    counts = store.read_log_files(paths)
    return None if counts is None else number_group(store, paths, digests, counts)


def number_group(
    store: Store, paths: Sequence[Path], digests: Sequence[readers.Digest], counts: Sequence[int]
) -> tuple[list[Part], list[int]] | None:
    """Each file's Part and the blank lines across the group, given the records DuckDB read
    from each file (None, and what it read dropped, when they cannot be matched to lines)."""
    parts: list[Part] = []
    blanks: list[int] = []
    first = 1
    for path, digest, records in zip(paths, digests, counts, strict=True):
        lines = digest.lines
        own: tuple[int, ...] = ()
        if records != lines:
            scan = readers.scan_lines(path)
            if records != scan.lines - len(scan.blanks) or scan.too_long:
                store.discard_log_file()  # the line path rejects the long lines
                return None
            lines, own = scan.lines, scan.blanks
        blanks += [first - 1 + b for b in own]
        parts.append(Part(path, digest.sha256, digest.size, first, int(lines or 0), records))
        first += int(lines or 0)
    return parts, blanks


def check_group(
    store: Store, parts: Sequence[Part], blanks: Sequence[int], run_id: int, batch_rows: int
) -> tuple[list[FileCounts], list[tuple[Path, int, str | None, str]]]:
    """Check and merge what `read_group` read: each file's counts and the group's first few
    rejects (file, line, field, reason); the lines DuckDB could not read, and the raw text of the
    rejected ones, are read back from their file."""
    sources = [(str(p.path), p.sha256, p.first_line) for p in parts if p.lines]
    check = store.check_log_files(blanks, sources, run_id)
    rejected = _Rejected(store, run_id, batch_rows)
    counts, first = [], []
    for part in parts:
        unread, bad = _within(check.unread, part), _within(check.rejected, part)
        base = FileCounts(
            part.records - len(unread), part.records - len(unread) - len(bad), len(bad)
        )
        where = (str(part.path), part.sha256, run_id)
        gather = _Unread(store, where, batch_rows)
        wanted = np.union1d(unread, bad)
        for batch in readers.read_lines(part.path, wanted) if len(wanted) else ():
            line = batch.lines["line"]
            numbered = batch.lines.set_column(0, "line", pc.add(line, part.first_line - 1))
            rejected.add(numbered.filter(pc.is_in(line, pa.array(bad))))
            gather.add(batch.lines.filter(pc.is_in(line, pa.array(unread))), batch.rejects)
        found, own_first = gather.flush(base)
        counts.append(found)
        first += [(part.path, *r) for r in own_first]
    rejected.flush()
    for line, field, reason in store.finish_log_files(run_id):
        part = parts[_part_of(parts, line)]
        first.append((part.path, line - part.first_line + 1, field, reason))
    return counts, sorted(first, key=lambda r: (str(r[0]), r[1]))[:5]


def _within(lines: np.ndarray, part: Part) -> np.ndarray:
    """The lines of `part` among lines numbered across the group, as lines of its file."""
    inside = (lines >= part.first_line) & (lines < part.first_line + part.lines)
    return lines[inside] - (part.first_line - 1)


def _part_of(parts: Sequence[Part], line: int) -> int:
    starts = [p.first_line if p.lines else np.iinfo(np.int64).max for p in parts]
    return max(i for i, s in enumerate(starts) if s <= line)


class _Rejected:
    """The raw text of rejected lines (numbered across the group), stored with their rejects
    batch_rows at a time."""

    def __init__(self, store: Store, run_id: int, batch_rows: int) -> None:
        self._store, self._run_id, self._batch_rows = store, run_id, batch_rows
        self._lines: list[pa.Table] = []
        self._rows = 0

    def add(self, lines: pa.Table) -> None:
        self._lines.append(lines)
        self._rows += lines.num_rows
        if self._rows >= self._batch_rows:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            self._store.quarantine_log_lines(pa.concat_tables(self._lines), self._run_id)
        self._lines, self._rows = [], 0


class _Unread:
    """The lines of a file DuckDB's reader could not read, gathered across blocks of the file and
    sent through the line path in batches of up to batch_rows (each batch scans the store once)."""

    def __init__(self, store: Store, where: tuple[str, str, int], batch_rows: int) -> None:
        self._store, self._where, self._batch_rows = store, where, batch_rows
        self._lines: list[pa.Table] = []
        self._rejects: list[tuple[int, str | None, str, str]] = []
        self._rows, self._read, self._rejected = 0, 0, 0
        self._first: list[Reject] = []

    def add(self, lines: pa.Table, rejects: Iterable[readers.RawReject]) -> None:
        raw = [(r.line, r.field, r.reason, r.raw) for r in rejects]
        if not lines.num_rows and not raw:
            return
        self._lines.append(lines)
        self._rejects += raw
        self._rows += lines.num_rows + len(raw)
        if self._rows >= self._batch_rows:
            self._send()

    def flush(self, counts: FileCounts) -> tuple[FileCounts, list[Reject]]:
        """Send what is left; return the file's counts with these lines added, and their first
        rejects."""
        self._send()
        read = counts.rows_read + self._read
        rejected = counts.rows_rejected + self._rejected
        return FileCounts(read, read - rejected, rejected), self._first

    def _send(self) -> None:
        if not self._rows:
            return
        lines = pa.concat_tables(self._lines)
        result = self._store.ingest_batch(lines, self._rejects, self._where)
        self._read += result.rows_read
        self._rejected += result.rows_rejected
        self._first += result.rejects
        self._lines, self._rejects, self._rows = [], [], 0

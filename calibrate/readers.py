"""Streaming log readers: files -> batches of (line, JSON text) with a bounded number of rows.

JSONL is not parsed here: raw lines go to the store, which validates them in bulk. Parquet and CSV
records are turned into the same JSON objects as JSONL rows. Bytes that are not UTF-8 are rejected
here, per line. Imports pyarrow and the standard library; never duckdb or other stages.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from calibrate import logformat as lf
from calibrate.errors import LogFormatError

BLOCK_BYTES = 8 << 20
_BLANK = re.compile(rb"\n[ \t\r]*(?=\n)")
_SURROGATE = re.compile("[\udc80-\udcff]")
_NUMERIC = {"input_tokens", "confidence", "output_tokens", "cost_usd", "latency_ms", "label"}


@dataclass(frozen=True, slots=True)
class RawReject:
    """A row rejected while reading, before validation."""

    line: int
    field: str | None
    reason: str
    raw: str


@dataclass(frozen=True, slots=True)
class Digest:
    """A file's SHA-256 (of its bytes as stored) and, for plain JSONL, its number of lines."""

    sha256: str
    lines: int | None


@dataclass(frozen=True, slots=True)
class LineScan:
    """The physical lines of a JSONL file: how many, and which are blank (never rows)."""

    lines: int
    blanks: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LineBatch:
    """Up to batch_rows rows: an Arrow table (line int64, text string) and the rows rejected."""

    lines: pa.Table
    rejects: tuple[RawReject, ...]


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files to ingest: the given files plus supported files under given directories, sorted."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and _supported(p)))
        elif path.is_file():
            if not _supported(path):
                raise LogFormatError(
                    f"unsupported log file: {path}",
                    hint="Use .jsonl, .jsonl.gz, .ndjson, .json, .parquet or .csv.",
                )
            found.append(path)
        else:
            raise LogFormatError(f"no such file or directory: {path}", hint="Check the path.")
    return list(dict.fromkeys(found))


def _supported(path: Path) -> bool:
    return path.name.lower().endswith(lf.SUFFIXES)


def file_sha256(path: Path) -> str:
    """SHA-256 of the file's bytes as stored (compressed files are hashed compressed)."""
    return file_digest(path).sha256


def file_digest(path: Path) -> Digest:
    """SHA-256 of the file's bytes; for plain JSONL also its line count, in the same pass."""
    digest, newlines, last = hashlib.sha256(), 0, b"\n"
    count = is_jsonl(path) and not path.name.lower().endswith(".gz")
    with path.open("rb") as fh:
        while block := fh.read(BLOCK_BYTES):
            digest.update(block)
            if count:
                newlines += block.count(b"\n")
            last = block[-1:]
    lines = newlines + (last != b"\n") if count else None
    return Digest(digest.hexdigest(), lines)


def is_jsonl(path: Path) -> bool:
    """Whether the file is JSON lines (plain or gzip), as opposed to Parquet or CSV."""
    return not path.name.lower().endswith((".parquet", ".csv"))


def read_batches(path: Path, batch_rows: int) -> Iterator[LineBatch]:
    """Stream the file's records in batches of at most batch_rows rows."""
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            yield from _parquet_batches(path, batch_rows)
        elif name.endswith(".csv"):
            with path.open("rb") as fh:
                yield from _csv_batches(fh, batch_rows)
        else:
            with _open_jsonl(path) as fh:
                yield from _jsonl_batches(fh, batch_rows)
    except (OSError, EOFError, pa.ArrowException, csv.Error) as exc:
        raise _unreadable(path, exc) from None


def scan_lines(path: Path) -> LineScan:
    """Count a JSONL file's lines and find its blank ones (one pass over the uncompressed bytes)."""
    lines, blanks = 0, []
    try:
        with _open_jsonl(path) as fh:
            for first, data, count in _line_blocks(fh):
                blanks += _blank_lines(data, first)
                lines += count
    except (OSError, EOFError) as exc:
        raise _unreadable(path, exc) from None
    return LineScan(lines, tuple(blanks))


def read_lines(path: Path, wanted: np.ndarray) -> Iterator[LineBatch]:
    """The given physical lines of a JSONL file (sorted, unique), read exactly as read_batches
    reads them, one LineBatch per block of the file that holds some of them."""
    try:
        with _open_jsonl(path) as fh:
            for first, data, count in _line_blocks(fh):
                low, high = np.searchsorted(wanted, [first, first + count])
                if low == high:
                    continue
                want = wanted[low:high]
                for batch in _block_batches(data, first, count):
                    keep = pc.is_in(batch.lines["line"], pa.array(want, pa.int64()))
                    rejects = tuple(r for r in batch.rejects if r.line in want)
                    yield LineBatch(batch.lines.filter(keep), rejects)
    except (OSError, EOFError) as exc:
        raise _unreadable(path, exc) from None


def _open_jsonl(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")


def _unreadable(path: Path, exc: Exception) -> LogFormatError:
    return LogFormatError(
        f"cannot read {path}: {exc}", hint="Check that the file is complete and not corrupt."
    )


# --- JSONL -------------------------------------------------------------------------------------


def _jsonl_batches(fh: IO[bytes], batch_rows: int) -> Iterator[LineBatch]:
    """Emit the lines as LineBatches of at most batch_rows lines."""
    for first, data, _ in _line_chunks(fh, batch_rows):
        yield from _block_batches(data, first, batch_rows)


def _line_chunks(fh: IO[bytes], min_lines: int) -> Iterator[tuple[int, bytes, int]]:
    """(first line number, whole lines, line count): line blocks joined until min_lines lines."""
    pieces: list[bytes] = []
    start = pending = 0
    for first, data, count in _line_blocks(fh):
        start = start if pieces else first
        pieces.append(data)
        pending += count
        if pending >= min_lines:
            yield start, b"".join(pieces), pending
            pieces, pending = [], 0
    if pieces:
        yield start, b"".join(pieces), pending


def _line_blocks(fh: IO[bytes]) -> Iterator[tuple[int, bytes, int]]:
    """(first line number, whole lines, line count) per block read; a final line may lack its
    newline; a UTF-8 byte-order mark at the start of the file is dropped."""
    next_line, rest, first = 1, b"", True
    while True:
        block = fh.read(BLOCK_BYTES)
        if first and block.startswith(codecs.BOM_UTF8):
            block = block[len(codecs.BOM_UTF8) :]
        first = False
        data = rest + block
        cut = len(data) if not block else data.rfind(b"\n") + 1
        rest = data[cut:]
        if cut:
            count = data.count(b"\n", 0, cut) + (0 if data[cut - 1] == 10 else 1)
            yield next_line, data[:cut], count
            next_line += count
        if not block:
            return


def _blank_lines(data: bytes, first_line: int) -> list[int]:
    """Numbers of the lines of data (whole lines from first_line) that hold only JSON whitespace."""
    text = b"\n" + data + (b"" if data.endswith(b"\n") else b"\n")
    found, pos, line = [], 0, first_line - 1
    for match in _BLANK.finditer(text):
        line += text.count(b"\n", pos, match.start() + 1)
        pos = match.start() + 1
        found.append(line)
    return found


def _block_batches(data: bytes, first_line: int, batch_rows: int) -> Iterator[LineBatch]:
    """Split a block of whole lines into batches; lines keep their newline (JSON ignores it)."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
    if not len(ends) or ends[-1] != len(data):
        ends = np.append(ends, len(data))
    starts = np.concatenate(([0], ends[:-1]))
    for lo in range(0, len(ends), batch_rows):
        hi = min(lo + batch_rows, len(ends))
        chunk = data[starts[lo] : ends[hi - 1]]
        numbers = np.arange(first_line + lo, first_line + hi, dtype=np.int64)
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            yield _decode_per_line(
                chunk, starts[lo:hi] - starts[lo], ends[lo:hi] - starts[lo], numbers
            )
            continue
        offsets = np.concatenate(([0], ends[lo:hi] - starts[lo])).astype(np.int32)
        text = pa.StringArray.from_buffers(hi - lo, pa.py_buffer(offsets), pa.py_buffer(chunk))
        yield LineBatch(pa.table({"line": numbers, "text": text}), ())


def _decode_per_line(
    chunk: bytes, starts: np.ndarray, ends: np.ndarray, numbers: np.ndarray
) -> LineBatch:
    keep_lines, keep_text, rejects = [], [], []
    for start, end, number in zip(starts.tolist(), ends.tolist(), numbers.tolist(), strict=True):
        raw = chunk[start:end]
        try:
            keep_text.append(raw.decode("utf-8"))
            keep_lines.append(number)
        except UnicodeDecodeError as exc:
            reason = f"not UTF-8: invalid byte 0x{raw[exc.start]:02x} at col {exc.start + 1}"
            text = raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
            rejects.append(RawReject(number, None, reason, text))
    table = pa.table(
        {"line": pa.array(keep_lines, pa.int64()), "text": pa.array(keep_text, pa.string())}
    )
    return LineBatch(table, tuple(rejects))


# --- records (CSV, Parquet) --------------------------------------------------------------------


class _Records:
    """Collects (line, record) pairs and turns them into LineBatches of JSON text."""

    def __init__(self, batch_rows: int) -> None:
        self.batch_rows = batch_rows
        self.lines: list[int] = []
        self.texts: list[str] = []
        self.rejects: list[RawReject] = []

    def add(self, line: int, record: dict[str, Any] | RawReject) -> None:
        if isinstance(record, RawReject):
            self.rejects.append(record)
        else:
            self.lines.append(line)
            self.texts.append(json.dumps(record, ensure_ascii=False, default=_json_default))

    def full(self) -> bool:
        return len(self.lines) + len(self.rejects) >= self.batch_rows

    def flush(self) -> Iterator[LineBatch]:
        if self.lines or self.rejects:
            table = pa.table(
                {
                    "line": pa.array(self.lines, pa.int64()),
                    "text": pa.array(self.texts, pa.string()),
                }
            )
            yield LineBatch(table, tuple(self.rejects))
        self.lines, self.texts, self.rejects = [], [], []


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
        return stamp.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot represent {type(value).__name__} as JSON")


def _csv_batches(fh: IO[bytes], batch_rows: int) -> Iterator[LineBatch]:
    with io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape", newline="") as text:
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            return
        rows = ((reader.line_num, dict(zip(header, cells, strict=False))) for cells in reader)
        yield from _grouped_batches(rows, batch_rows)


def _grouped_batches(
    rows: Iterable[tuple[int, dict[str, Any]]], batch_rows: int
) -> Iterator[LineBatch]:
    """Flattened rows (one per request x attempt) -> one record per run of equal request_id."""
    out = _Records(batch_rows)
    group: list[tuple[int, dict[str, Any]]] = []
    for line, row in rows:
        if all(v in ("", None) for v in row.values()):
            continue
        if group and row.get("request_id") != group[0][1].get("request_id"):
            out.add(group[0][0], _flat_record(group))
            group = []
            if out.full():
                yield from out.flush()
        group.append((line, row))
    if group:
        out.add(group[0][0], _flat_record(group))
    yield from out.flush()


def _flat_record(group: Sequence[tuple[int, dict[str, Any]]]) -> dict[str, Any] | RawReject:
    first_line, first = group[0]
    request = {k: v for k, v in first.items() if not k.startswith(lf.ATTEMPT_PREFIX)}
    request.pop(lf.LABEL_COLUMN, None)
    record, attempts, labels = _cells(request), [], {}
    raw = json.dumps([row for _, row in group], ensure_ascii=False, default=_json_default)
    if isinstance(record, RawReject):
        return RawReject(first_line, record.field, record.reason, raw)
    for line, row in group:
        for key, value in request.items():
            if row.get(key) != value:
                reason = f"bad value: column {key} differs between rows of request_id (line {line})"
                return RawReject(first_line, key, reason, raw)
        attempt = _cells(
            {
                k[len(lf.ATTEMPT_PREFIX) :]: v
                for k, v in row.items()
                if k.startswith(lf.ATTEMPT_PREFIX)
            }
        )
        if isinstance(attempt, RawReject):
            return RawReject(first_line, f"attempts.{attempt.field}", attempt.reason, raw)
        if attempt:
            attempts.append(attempt)
        label = _cell(lf.LABEL_COLUMN, row.get(lf.LABEL_COLUMN))
        if label is not None:
            labels[str(attempt.get("tier"))] = label
    if attempts:
        record["attempts"] = attempts
    if labels:
        record["labels"] = labels
    return record


def _cells(row: dict[str, Any]) -> dict[str, Any] | RawReject:
    out = {}
    for key, value in row.items():
        if isinstance(value, str) and _SURROGATE.search(value):
            return _utf8_reject(key, value)
        if key in lf.JSON_TEXT_COLUMNS and isinstance(value, str) and value != "":
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                return RawReject(0, key, f"invalid JSON: {key}: {exc.msg} (col {exc.colno})", "")
        value = _cell(key, value)
        if value is not None:
            out[key] = value
    return out


def _utf8_reject(key: str, value: str) -> RawReject:
    col = _SURROGATE.search(value).start()
    byte = ord(value[col]) - 0xDC00
    return RawReject(0, key, f"not UTF-8: invalid byte 0x{byte:02x} at col {col + 1} of {key}", "")


def _cell(key: str, value: Any) -> Any:
    """An empty cell is absent; numeric fields become numbers when they parse as numbers."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    if key in _NUMERIC and isinstance(value, str):
        for parse in (int, float):
            try:
                return parse(value)
            except ValueError:
                pass
    return value


def _parquet_batches(path: Path, batch_rows: int) -> Iterator[LineBatch]:
    parquet = pq.ParquetFile(path)
    flat = f"{lf.ATTEMPT_PREFIX}tier" in parquet.schema_arrow.names
    rows = _parquet_rows(parquet, batch_rows)
    if flat:
        yield from _grouped_batches(rows, batch_rows)
        return
    out = _Records(batch_rows)
    for line, row in rows:
        out.add(line, _nested_record(line, row))
        if out.full():
            yield from out.flush()
    yield from out.flush()


def _parquet_rows(parquet: pq.ParquetFile, batch_rows: int) -> Iterator[tuple[int, dict[str, Any]]]:
    line = 1
    for batch in parquet.iter_batches(batch_size=batch_rows):
        for row in batch.to_pylist():
            yield line, row
            line += 1


def _nested_record(line: int, row: dict[str, Any]) -> dict[str, Any] | RawReject:
    """A Parquet row as a JSON record; nulls are absent (columnar files cannot tell them apart)."""
    record = _cells(row)
    if isinstance(record, RawReject):
        raw = json.dumps(row, ensure_ascii=False, default=_json_default)
        return RawReject(line, record.field, record.reason, raw)
    for key in ("labels", "metadata"):
        if isinstance(record.get(key), list):  # a Parquet MAP arrives as (key, value) pairs
            record[key] = dict(record[key])
        if isinstance(record.get(key), dict):
            record[key] = {k: v for k, v in record[key].items() if v is not None}
    if isinstance(record.get("attempts"), list):
        record["attempts"] = [
            {k: v for k, v in a.items() if v is not None} if isinstance(a, dict) else a
            for a in record["attempts"]
        ]
    return record

"""Streaming log readers: files -> batches of (line, JSON text) with a bounded number of rows.

JSONL lines come from jsonl.py unparsed (the store validates them in bulk). Parquet and CSV records
are turned into the same JSON objects as JSONL rows. Also: which files to ingest and their digests.
Imports pyarrow and the standard library; never duckdb or other stages.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from calibrate.errors import LogFormatError
from calibrate.formats import canonical as lf
from calibrate.formats import jsonl
from calibrate.formats.jsonl import LineBatch, LineScan, RawReject

_SURROGATE = re.compile("[\udc80-\udcff]")
_NUMERIC = {"input_tokens", "confidence", "output_tokens", "cost_usd", "latency_ms", "label"}


@dataclass(frozen=True, slots=True)
class Digest:
    """A file's SHA-256 and size (of its bytes as stored) and, for plain JSONL, its line count
    (None for other files, and when a line may be longer than jsonl.MAX_LINE_BYTES: a block of
    the file without a newline; `scan_lines` then counts and measures the lines)."""

    sha256: str
    lines: int | None
    size: int


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
    digest, newlines, size, last = hashlib.sha256(), 0, 0, b"\n"
    count = is_jsonl(path) and not path.name.lower().endswith(".gz")
    long_line = False
    with path.open("rb") as fh:
        while block := fh.read(jsonl.BLOCK_BYTES):
            digest.update(block)
            if count:  # numpy counts about twice as fast as bytes.count
                found = int(np.count_nonzero(np.frombuffer(block, np.uint8) == 10))
                newlines += found
                # A line over MAX_LINE_BYTES (>= 2 blocks) spans a whole block without newline.
                long_line |= not found and len(block) == jsonl.BLOCK_BYTES
            size += len(block)
            last = block[-1:]
    lines = newlines + (last != b"\n") if count and not long_line else None
    return Digest(digest.hexdigest(), lines, size)


def count_rows(path: Path) -> int:
    """The rows a file holds, cheaply, for a progress total: a Parquet file's rows (from its
    footer), else its lines (gzip decompressed; a CSV's header not counted). For a JSONL file
    without blank lines this is what ingest reads."""
    try:
        if is_parquet(path):
            return int(pq.ParquetFile(path).metadata.num_rows)
        lines, last = 0, b"\n"
        with jsonl.open_lines(path) as fh:
            while block := fh.read(jsonl.BLOCK_BYTES):
                lines += int(np.count_nonzero(np.frombuffer(block, np.uint8) == 10))
                last = block[-1:]
    except (OSError, EOFError, pa.ArrowException):
        return 0  # ingest reports the unreadable file itself
    lines += last != b"\n"
    return max(lines - 1, 0) if path.name.lower().endswith(".csv") else lines


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
                yield from _csv_batches(fh, batch_rows, path)
        else:
            with jsonl.open_lines(path) as fh:
                yield from jsonl.batches(fh, batch_rows)
    except (OSError, EOFError, pa.ArrowException, csv.Error) as exc:
        raise _unreadable(path, exc) from None


def scan_lines(path: Path) -> LineScan:
    """Count a JSONL file's lines and find its blank ones (one pass over the uncompressed bytes)."""
    try:
        return jsonl.scan_lines(path)
    except (OSError, EOFError) as exc:
        raise _unreadable(path, exc) from None


def read_lines(path: Path, wanted: np.ndarray) -> Iterator[LineBatch]:
    """The given physical lines of a JSONL file (sorted, unique), read exactly as read_batches
    reads them, one LineBatch per block of the file that holds some of them."""
    try:
        yield from jsonl.read_lines(path, wanted)
    except (OSError, EOFError) as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: Exception) -> LogFormatError:
    return LogFormatError(
        f"cannot read {path}: {exc}", hint="Check that the file is complete and not corrupt."
    )


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
            self.rejects.append(replace(record, raw=_printable(record.raw)))
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


def _printable(raw: str) -> str:
    """A reject's raw text as UTF-8 can store it: bytes that were not UTF-8 (read as surrogates)
    shown as `\\xff`."""
    try:
        return raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return raw.encode("utf-8", "backslashreplace").decode("utf-8")


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


def _csv_batches(fh: IO[bytes], batch_rows: int, path: Path) -> Iterator[LineBatch]:
    # A cell may be as long as a JSONL line (the csv module's own limit is 128 KiB).
    csv.field_size_limit(max(csv.field_size_limit(), jsonl.MAX_LINE_BYTES))
    with io.TextIOWrapper(fh, encoding="utf-8-sig", errors="surrogateescape", newline="") as text:
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            return
        _check_csv_header(path, header)
        yield from _grouped_batches(_csv_rows(reader, header), batch_rows)


def _csv_rows(reader: Any, header: list[str]) -> Iterator[tuple[int, dict[str, Any] | RawReject]]:
    """(line, row) per CSV record; a record the csv module cannot read (a cell over the limit)
    is a reject, and reading goes on after it."""
    repeated = next((c for i, c in enumerate(header) if c in header[:i]), None)
    not_utf8 = next((c for c in header if _SURROGATE.search(c)), None)
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = f"line too long: {exc}" if "field limit" in str(exc) else f"bad CSV: {exc}"
            yield line, RawReject(line, None, reason, "")
            continue
        if repeated is not None:  # dict() would keep the last column of the name
            reason = f"duplicate key: column {repeated} appears twice in the header"
            yield line, RawReject(reader.line_num, repeated, reason, ",".join(cells))
            continue
        if not_utf8 is not None:
            reject = _utf8_reject("the header", not_utf8)
            yield line, RawReject(reader.line_num, None, reject.reason, ",".join(cells))
            continue
        yield reader.line_num, dict(zip(header, cells, strict=False))


def _check_csv_header(path: Path, header: list[str]) -> None:
    """A flattened CSV names request_id, timestamp and messages or prompt in its header line."""
    missing = [c for c in ("request_id", "timestamp") if c not in header]
    if "messages" not in header and "prompt" not in header:
        missing.append("messages or prompt")
    if missing:
        raise LogFormatError(
            f"{path}: missing columns {', '.join(missing)} (found: {', '.join(header)})",
            hint="A CSV log has one row per request × attempt with the columns of `calibrate "
            "schema` (request_id, timestamp, messages or prompt, attempt_tier, ...).",
        )


def _grouped_batches(
    rows: Iterable[tuple[int, dict[str, Any] | RawReject]], batch_rows: int
) -> Iterator[LineBatch]:
    """Flattened rows (one per request x attempt) -> one record per run of equal request_id."""
    out = _Records(batch_rows)
    group: list[tuple[int, dict[str, Any]]] = []
    for line, row in rows:
        if isinstance(row, RawReject):
            out.add(line, row)
            continue
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
                value = json.loads(value, object_pairs_hook=_distinct_keys)
            except json.JSONDecodeError as exc:
                return RawReject(0, key, f"invalid JSON: {key}: {exc.msg} (col {exc.colno})", "")
            except _RepeatedKey as exc:
                return RawReject(0, key, f"duplicate key: {key}: {exc} appears twice", "")
            except RecursionError:
                return RawReject(0, key, f"invalid JSON: {key}: nested too deeply", "")
        value = _cell(key, value)
        if value is not None:
            out[key] = value
    return out


class _RepeatedKey(ValueError):
    """A JSON object names a key twice (the message is the key)."""


def _distinct_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are distinct (json.loads would keep the last copy silently)."""
    out = dict(pairs)
    if len(out) < len(pairs):
        seen: set[str] = set()
        raise _RepeatedKey(next(k for k, _ in pairs if k in seen or seen.add(k)))  # type: ignore[func-returns-value]
    return out


def _utf8_reject(key: str, value: str) -> RawReject:
    found = _SURROGATE.search(value)
    assert found is not None, "called only for a value holding an escaped surrogate"
    col = found.start()
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


def is_parquet(path: Path) -> bool:
    return path.name.lower().endswith(".parquet")


def read_parquet_rows(path: Path, wanted: np.ndarray, batch_rows: int) -> Iterator[LineBatch]:
    """The given rows (1-based numbers, sorted) of a nested Parquet file, as `read_batches`
    reads them, in batches of at most batch_rows records."""
    try:
        parquet = pq.ParquetFile(path)
        out, first = _Records(batch_rows), 1
        for batch in parquet.iter_batches(batch_size=max(batch_rows, 8192)):
            lines = np.arange(first, first + batch.num_rows)
            first += batch.num_rows
            mask = np.isin(lines, wanted, assume_unique=True)
            if not mask.any():
                continue
            for line, row in zip(lines[mask].tolist(), batch.filter(mask).to_pylist(), strict=True):
                out.add(line, _nested_record(line, row))
                if out.full():
                    yield from out.flush()
        yield from out.flush()
    except (OSError, pa.ArrowException) as exc:
        raise _unreadable(path, exc) from None


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

"""JSON-lines files as physical lines: line blocks, blank lines, batches of (line, text), re-reads.

A line is what lies between newlines (the last one may lack its newline); a UTF-8 byte-order mark
at the start of the file is dropped; lines are numbered from 1. JSON is not parsed here: the store
validates lines in bulk. Bytes that are not UTF-8 are rejected here, per line. Only readers.py
imports this module (its batches for the line path; the scan and re-reads for the file path).
Imports numpy, pyarrow and the standard library; never duckdb or other stages.
"""

from __future__ import annotations

import codecs
import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass
from io import BufferedIOBase
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BLOCK_BYTES = 8 << 20
_BLANK = re.compile(rb"\n[ \t\r]*(?=\n)")


@dataclass(frozen=True, slots=True)
class RawReject:
    """A row rejected while reading, before validation."""

    line: int
    field: str | None
    reason: str
    raw: str


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


def scan_lines(path: Path) -> LineScan:
    """Count a JSONL file's lines and find its blank ones (one pass over the uncompressed bytes)."""
    lines, blanks = 0, []
    with open_lines(path) as fh:
        for first, data, count in _line_blocks(fh):
            blanks += _blank_lines(data, first)
            lines += count
    return LineScan(lines, tuple(blanks))


def read_lines(path: Path, wanted: np.ndarray) -> Iterator[LineBatch]:
    """The given physical lines of a JSONL file (sorted, unique), read exactly as read_batches
    reads them, one LineBatch per block of the file that holds some of them."""
    with open_lines(path) as fh:
        for first, data, count in _line_blocks(fh):
            low, high = np.searchsorted(wanted, [first, first + count])
            if low == high:
                continue
            want = wanted[low:high]
            for batch in _block_batches(data, first, count):
                keep = pc.is_in(batch.lines["line"], pa.array(want, pa.int64()))
                rejects = tuple(r for r in batch.rejects if r.line in want)
                yield LineBatch(batch.lines.filter(keep), rejects)


def open_lines(path: Path) -> BufferedIOBase:
    """The file's bytes, decompressed when its name ends in .gz."""
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")


def batches(fh: BufferedIOBase, batch_rows: int) -> Iterator[LineBatch]:
    """Emit the lines as LineBatches of at most batch_rows lines."""
    for first, data, _ in _line_chunks(fh, batch_rows):
        yield from _block_batches(data, first, batch_rows)


def _line_chunks(fh: BufferedIOBase, min_lines: int) -> Iterator[tuple[int, bytes, int]]:
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


def _line_blocks(fh: BufferedIOBase) -> Iterator[tuple[int, bytes, int]]:
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

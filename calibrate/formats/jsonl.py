"""JSON-lines files as physical lines: line blocks, blank lines, batches of (line, text), re-reads.

A line is what lies between newlines (the last one may lack its newline); a UTF-8 byte-order mark
at the start of the file is dropped; lines are numbered from 1. A file starting with the gzip magic
bytes is decompressed, whatever its name. JSON is not parsed here: the store validates lines in
bulk. What cannot be a row is rejected here, per line, and the lines around it are kept: bytes that
are not UTF-8, a line longer than MAX_LINE_BYTES (never held whole in memory), and damaged gzip
data (a stream that ends early or is corrupt: the line it cuts is the reject; bytes after the last
gzip member: one reject after the last line). Only readers.py imports this module (its batches for
the line path; the scan and re-reads for the file path), and the store asks `is_gzip` and
MAX_LINE_BYTES for DuckDB's reader.
Imports numpy, pyarrow and the standard library; never duckdb or other stages.
"""

from __future__ import annotations

import codecs
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BLOCK_BYTES = 8 << 20
MAX_LINE_BYTES = 16 << 20
"""The longest line a row may have (bytes, line end excluded); DuckDB's reader is given the same."""
_RAW_BYTES = 4096  # what a reject keeps of a line too long to store
_GZIP_MAGIC = b"\x1f\x8b"
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
    """The physical lines of a JSONL file: how many, which are blank (never rows), and whether
    some line is longer than MAX_LINE_BYTES (or cut by damaged gzip data)."""

    lines: int
    blanks: tuple[int, ...]
    too_long: bool


@dataclass(frozen=True, slots=True)
class LineBatch:
    """Up to batch_rows rows: an Arrow table (line int64, text string) and the rows rejected."""

    lines: pa.Table
    rejects: tuple[RawReject, ...]


def scan_lines(path: Path) -> LineScan:
    """Count a JSONL file's lines and find its blank ones (one pass over the uncompressed bytes)."""
    lines, blanks, too_long = 0, [], False
    with open_lines(path) as fh:
        for block in _line_blocks(fh):
            if isinstance(block, RawReject):
                lines += 1
                too_long = True  # too long, or cut by damage: not read whole
                continue
            first, data, count = block
            blanks += _blank_lines(data, first)
            lines += count
            if len(data) > MAX_LINE_BYTES:  # whole lines: only then can one be that long
                too_long |= _longest_line(data) > MAX_LINE_BYTES
    return LineScan(lines, tuple(blanks), too_long)


def read_lines(path: Path, wanted: np.ndarray) -> Iterator[LineBatch]:
    """The given physical lines of a JSONL file (sorted, unique), read exactly as read_batches
    reads them, one LineBatch per block of the file that holds some of them."""
    with open_lines(path) as fh:
        for block in _line_blocks(fh):
            if isinstance(block, RawReject):
                if block.line in wanted:
                    yield LineBatch(_no_lines(), (block,))
                continue
            first, data, count = block
            low, high = np.searchsorted(wanted, [first, first + count])
            if low == high:
                continue
            want = wanted[low:high]
            for batch in _block_batches(data, first, count):
                keep = pc.is_in(batch.lines["line"], pa.array(want, pa.int64()))
                rejects = tuple(r for r in batch.rejects if r.line in want)
                yield LineBatch(batch.lines.filter(keep), rejects)


def is_gzip(path: Path) -> bool:
    """Whether the file's bytes are gzip data (by its first bytes, not its name)."""
    with path.open("rb") as fh:
        return fh.read(len(_GZIP_MAGIC)) == _GZIP_MAGIC


def open_lines(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when they are gzip data (a damaged stream ends early and
    says why in `damage`)."""
    fh = path.open("rb")
    return _Gunzip(fh) if is_gzip(path) else fh  # type: ignore[return-value]


def batches(fh: IO[bytes], batch_rows: int) -> Iterator[LineBatch]:
    """Emit the lines as LineBatches of at most batch_rows lines."""
    for chunk in _line_chunks(fh, batch_rows):
        if isinstance(chunk, RawReject):
            yield LineBatch(_no_lines(), (chunk,))
        else:
            first, data, _ = chunk
            yield from _block_batches(data, first, batch_rows)


Block = tuple[int, bytes, int] | RawReject
"""(first line number, whole lines, line count), or a line rejected while reading."""


def _line_chunks(fh: IO[bytes], min_lines: int) -> Iterator[Block]:
    """Line blocks joined until min_lines lines (a line rejected while reading ends a chunk)."""
    pieces: list[bytes] = []
    start = pending = 0
    for block in _line_blocks(fh):
        if isinstance(block, RawReject):
            if pieces:
                yield start, b"".join(pieces), pending
                pieces, pending = [], 0
            yield block
            continue
        first, data, count = block
        start = start if pieces else first
        pieces.append(data)
        pending += count
        if pending >= min_lines:
            yield start, b"".join(pieces), pending
            pieces, pending = [], 0
    if pieces:
        yield start, b"".join(pieces), pending


def _line_blocks(fh: IO[bytes]) -> Iterator[Block]:
    """Whole lines per block read; a final line may lack its newline; a UTF-8 byte-order mark at
    the start of the file is dropped. A line growing past MAX_LINE_BYTES is skipped to its end
    (never held whole) and rejected; damaged gzip data ends the lines with one reject, for the
    line it cuts."""
    next_line, rest, first = 1, b"", True
    long_line: _LongLine | None = None
    while True:
        block = fh.read(BLOCK_BYTES)
        end_of_file = not block
        if first and block.startswith(codecs.BOM_UTF8):
            block = block[len(codecs.BOM_UTF8) :]
        first = False
        if long_line is not None and not end_of_file:
            newline = block.find(b"\n")
            long_line.size += len(block) if newline < 0 else newline
            if newline < 0:
                continue
            yield long_line.reject(next_line)
            next_line, long_line, block = next_line + 1, None, block[newline + 1 :]
        damage = getattr(fh, "damage", None) if end_of_file else None
        data = rest + block
        cut = len(data) if end_of_file and damage is None else data.rfind(b"\n") + 1
        rest = data[cut:]
        if cut:
            count = data.count(b"\n", 0, cut) + (0 if data[cut - 1] == 10 else 1)
            yield next_line, data[:cut], count
            next_line += count
        if len(rest) > MAX_LINE_BYTES:
            long_line, rest = _LongLine(rest[:_RAW_BYTES], len(rest)), b""
        if end_of_file:
            if damage is not None:
                head = long_line.head if long_line is not None else rest
                yield RawReject(next_line, None, f"damaged file: {damage}", _text(head))
            elif long_line is not None:
                yield long_line.reject(next_line)
            return


@dataclass(slots=True)
class _LongLine:
    """A line past MAX_LINE_BYTES: its first bytes and its size so far."""

    head: bytes
    size: int

    def reject(self, line: int) -> RawReject:
        reason = f"line too long: {self.size} bytes (at most {MAX_LINE_BYTES})"
        return RawReject(line, None, reason, _text(self.head) + "…")


def _text(raw: bytes) -> str:
    return raw[:_RAW_BYTES].rstrip(b"\r\n").decode("utf-8", "backslashreplace")


def _no_lines() -> pa.Table:
    return pa.table({"line": pa.array([], pa.int64()), "text": pa.array([], pa.string())})


def _longest_line(data: bytes) -> int:
    """The length of the longest of these whole lines (bytes, newline excluded)."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    starts = np.concatenate(([0], ends + 1))
    return int((np.append(ends, len(data)) - starts).max())


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
    long = (ends - starts > MAX_LINE_BYTES) if len(data) > MAX_LINE_BYTES else np.zeros(0, bool)
    for lo in range(0, len(ends), batch_rows):
        hi = min(lo + batch_rows, len(ends))
        chunk = data[starts[lo] : ends[hi - 1]]
        numbers = np.arange(first_line + lo, first_line + hi, dtype=np.int64)
        try:
            if long[lo:hi].any():  # with the newline: a line of MAX bytes takes the slow way
                raise UnicodeError  # the slow way below, which rejects the long lines
            chunk.decode("utf-8")
        except UnicodeError:
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
        size = len(raw.rstrip(b"\n").removesuffix(b"\r"))
        if size > MAX_LINE_BYTES:
            rejects.append(_LongLine(raw[:_RAW_BYTES], size).reject(number))
            continue
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


class _Gunzip:
    """The decompressed bytes of a gzip file, member after member, read like a binary file.

    Never raises on damaged data: the bytes end where the damage starts and `damage` says what it
    is (data that ends early, corrupt data, or bytes after a member that start no member; zero
    padding between or after members is skipped, as gzip does)."""

    _CHUNK = 1 << 20
    _PIECE = 1 << 10  # after corrupt data, input is fed again in pieces this small

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._input = b""
        self._member: Any = None  # a zlib decompressor while inside a member
        self._ended = False
        self.damage: str | None = None

    def read(self, size: int) -> bytes:
        """Up to about `size` bytes (more only when corrupt data cut a read short); b"" at the
        end of the data or at its damage."""
        parts: list[bytes] = []
        want = size
        while want > 0 and not self._ended:
            if self._member is None:
                self._between_members()
                continue
            at_end = not self._input
            if at_end:
                self._input = self._fh.read(self._CHUNK)
                at_end = not self._input
            out = self._decompress(want)
            parts.append(out)
            want -= len(out)
            if self._member is not None and at_end and not out and self.damage is None:
                self._fail("the gzip data ends early (the file is truncated)")
        return b"".join(parts)

    def _decompress(self, want: int) -> bytes:
        """Up to `want` bytes of the member from the input; on corrupt data, all that comes
        before it (the input fed again piece by piece)."""
        saved = self._member.copy()
        try:
            out = self._member.decompress(self._input, want)
        except zlib.error:
            self._member = saved
            return self._decompress_pieces()
        self._input = self._member.unconsumed_tail
        if self._member.eof:
            self._input, self._member = self._member.unused_data, None
        return out

    def _decompress_pieces(self) -> bytes:
        parts, data = [], self._input
        for start in range(0, len(data), self._PIECE):
            try:
                parts.append(self._member.decompress(data[start : start + self._PIECE]))
            except zlib.error as exc:
                self._fail(f"corrupt gzip data ({exc})")
                break
            if self._member.eof:
                self._input = self._member.unused_data + data[start + self._PIECE :]
                self._member = None
                break
        else:
            self._input = b""
        return b"".join(parts)

    def _between_members(self) -> None:
        """Start the next member, skip zero padding, or end: at the end of the file, or at bytes
        that start no member (trailing garbage)."""
        self._input = self._input.lstrip(b"\0")
        if len(self._input) < len(_GZIP_MAGIC):
            more = self._fh.read(self._CHUNK)
            if more:
                self._input += more
                return
            if not self._input:
                self._ended = True
                return
        if self._input.startswith(_GZIP_MAGIC):
            self._member = zlib.decompressobj(wbits=31)
            return
        offset = self._fh.tell() - len(self._input)
        self._fail(f"the bytes from offset {offset} on are not gzip data (trailing garbage)")

    def _fail(self, damage: str) -> None:
        self.damage, self._ended = damage, True

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> _Gunzip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""readers: path expansion, line numbering, BOM/CRLF/blank lines, non-UTF-8, CSV grouping."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from calibrate.errors import LogFormatError
from calibrate.formats import readers


def read_all(path: Path, batch_rows: int = 1000) -> tuple[list[dict], list[readers.RawReject]]:
    rows, rejects = [], []
    for batch in readers.read_batches(path, batch_rows):
        assert batch.lines.num_rows + len(batch.rejects) <= batch_rows
        rows += batch.lines.to_pylist()
        rejects += batch.rejects
    return rows, rejects


def test_directories_expand_recursively_sorted_and_skip_other_files(tmp_path: Path) -> None:
    for name in ("b/2.jsonl", "a/1.csv", "a/z/3.parquet", "a/notes.md", "4.jsonl.gz"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")

    found = readers.expand_paths([tmp_path, tmp_path / "b" / "2.jsonl"])

    names = [p.relative_to(tmp_path).as_posix() for p in found]
    assert names == ["4.jsonl.gz", "a/1.csv", "a/z/3.parquet", "b/2.jsonl"]


def test_unsupported_and_missing_paths_are_errors(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(LogFormatError, match="unsupported log file"):
        readers.expand_paths([tmp_path / "x.txt"])
    with pytest.raises(LogFormatError, match="no such file"):
        readers.expand_paths([tmp_path / "missing.jsonl"])


def test_jsonl_lines_keep_physical_numbers_across_batches(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\n{"a": 2}\n' + b'{"a": 3}\n' * 20 + b'{"a": 4}')

    rows, rejects = read_all(log, batch_rows=3)

    assert rejects == []
    assert [r["line"] for r in rows] == list(range(1, 25))
    assert rows[0]["text"] == '{"a": 1}\r\n'  # the BOM is gone; JSON ignores trailing whitespace
    assert rows[1]["text"] == "\n"
    assert rows[-1]["text"] == '{"a": 4}'


def test_a_non_utf8_line_is_rejected_and_its_neighbours_kept(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl.gz"
    log.write_bytes(gzip.compress(b'{"a": 1}\n{"a": "\xc3\x28"}\n{"a": 3}\n'))

    rows, rejects = read_all(log)

    assert [r["line"] for r in rows] == [1, 3]
    assert rejects == [
        readers.RawReject(2, None, "not UTF-8: invalid byte 0xc3 at col 8", '{"a": "\\xc3("}')
    ]


def test_csv_rows_of_one_request_become_one_record(tmp_path: Path) -> None:
    log = tmp_path / "a.csv"
    log.write_text(
        "request_id,timestamp,prompt,metadata,attempt_tier,attempt_confidence,label\n"
        'r-1,2026-10-01T00:00:00Z,hi,"{""k"": 1}",small,0.5,1\n'
        'r-1,2026-10-01T00:00:00Z,hi,"{""k"": 1}",large,high,\n'
        "r-2,2026-10-01T00:00:00Z,yo,,,,\n"
        'r-3,2026-10-01T00:00:00Z,yo,"{bad",small,,\n'
    )

    rows, rejects = read_all(log)

    assert [r["line"] for r in rows] == [2, 4]
    first = json.loads(rows[0]["text"])
    assert first == {
        "request_id": "r-1",
        "timestamp": "2026-10-01T00:00:00Z",
        "prompt": "hi",
        "metadata": {"k": 1},
        "attempts": [{"tier": "small", "confidence": 0.5}, {"tier": "large", "confidence": "high"}],
        "labels": {"small": 1},
    }
    assert json.loads(rows[1]["text"]) == {
        "request_id": "r-2",
        "timestamp": "2026-10-01T00:00:00Z",
        "prompt": "yo",
    }
    assert [(r.line, r.field) for r in rejects] == [(5, "metadata")]
    assert rejects[0].reason.startswith("invalid JSON: metadata: ")


def test_file_sha256_changes_with_content(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_text("{}\n")
    first = readers.file_sha256(log)
    log.write_text("{} \n")
    assert readers.file_sha256(log) != first
    assert len(first) == 64


def test_digest_counts_lines_of_plain_jsonl_only(tmp_path: Path) -> None:
    plain, no_newline, gz = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl.gz"
    plain.write_bytes(b'{"a": 1}\n\n{"a": 2}\n')
    no_newline.write_bytes(b'{"a": 1}\n{"a": 2}')
    gz.write_bytes(gzip.compress(plain.read_bytes()))

    assert readers.file_digest(plain).lines == 3
    assert readers.file_digest(no_newline).lines == 2
    assert readers.file_digest(gz).lines is None
    assert readers.file_digest(plain).sha256 == readers.file_sha256(plain)


def test_scan_finds_blank_and_whitespace_only_lines_everywhere(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl.gz"
    body = b'\xef\xbb\xbf\n{"a": 1}\r\n \t\r\n{"a": 2}\n\n\n{"a": 3}\n  '
    log.write_bytes(gzip.compress(body))

    assert readers.scan_lines(log) == readers.LineScan(8, (1, 3, 5, 6, 8), False)


def test_read_lines_returns_the_wanted_lines_as_read_batches_reads_them(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(b'{"a": 1}\r\n{"a": "\xff"}\n' + b'{"a": 3}\n' * 5 + b'{"a": 9}')
    wanted = np.array([2, 3, 8])

    batches = list(readers.read_lines(log, wanted))

    rows = [r for b in batches for r in b.lines.to_pylist()]
    everything = {r["line"]: r for r in read_all(log)[0]}
    assert rows == [everything[3], everything[8]]
    assert [r.line for b in batches for r in b.rejects] == [2]

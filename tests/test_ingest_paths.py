"""The whole-file path (DuckDB reads the JSONL) gives exactly what the line path gives: same store
contents, same rejects with the same line, field, reason and raw text, same counts."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from calibrate.errors import LogFormatError
from calibrate.formats import readers
from calibrate.ingest import file_groups
from calibrate.ingest.stage import ingest
from calibrate.store.core import Store
from calibrate.store.ingest import file_path

pytestmark = pytest.mark.e2e  # every ingest path on the same inputs: not in `make test-fast`


def clock() -> datetime:
    return datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def attempt(tier: str = "small", **extra: object) -> dict:
    base = {"tier": tier, "model": "m", "source": "prod", "confidence": 0.5, "status": "ok"}
    return base | extra


def request(rid: str, **extra: object) -> dict:
    base = {"request_id": rid, "timestamp": "2026-10-01T09:30:00Z", "prompt": "hi"}
    return base | extra


GOOD = [
    request("g-1", attempts=[attempt(), attempt("large", source="shadow")], labels={"small": 1}),
    request(
        "g-2",
        prompt=None,
        messages=[{"role": "user", "content": 'q "quoted" \\ back\u00e9 \U0001f600'}],
        region="eu",
        app="bot",
        input_tokens=12.0,
        served_tier="small",
        reference="ref",
        metadata={"intent": "x", "n": [1.50, {"z": 12345678901234567890123}]},
    ),
    request("g-3", trace_id="t-3", other=None, metadata={"intent": "y"}),
    request("g-4", trace_id="t-4", metadata={"trace_id": "own"}),
    request("g-5", attempts=[attempt(provider_id="abc", nested={"a": 1})], labels={}),
    request("g-6", attempts=[], labels=None, metadata=None, region=None),
    request("g-7", timestamp="2026-10-01t09:30:00.123456+05:30", attempts=None),
    request("g-8", timestamp="2026-10-01 09:30:00z"),
    request(
        "g-9", attempts=[attempt(confidence=None, cost_usd=0, latency_ms=1e-7, input_tokens=0)]
    ),
    request("g-10", attempts=[attempt(confidence=-3.25e10, output="o\u0000k", status="timeout")]),
    request("g-11", attempts=[attempt(), attempt(source="shadow"), attempt("medium")]),
    request("g-1", attempts=[attempt(), attempt("medium", source="shadow")], labels={"large": 0}),
    request("g-2", prompt=None, messages=[{"role": "user", "content": "other"}]),
    request("12345", attempts=[attempt("1", model="4", output="42"), attempt("t", output="true")]),
    request("g-12", attempts=[{"status": "error", "confidence": None, "tier": "small"}]),
    request("g-13", attempts=[attempt(output='say "hi": \\ \n')], labels={"small": 0.25}),
    request("g-14", x_id="u", metadata={'k"\\y': 1, "\u00e9/\t": [None, 1.5e-7]}),
    request("g-15", x_id=None, metadata={}),
    request("g-16", attempts=[attempt(input_tokens=3.0, output_tokens=7, cost_usd=-0.0)]),
]

BAD = [
    request("b-1", attempts=[attempt(confidence=float("nan"))]),
    request("b-2", attempts=[attempt(confidence=float("inf"))]),
    request("b-3", labels={"small": None}),
    request("b-4", labels={"small": 1.5, "large": "x"}),
    request("b-5", labels={"small": "1"}),
    request("b-6", labels=[1]),
    request("b-7", attempts={"tier": "small"}),
    request("b-8", attempts=[5, attempt()]),
    request("b-9", attempts=[attempt(), None]),
    request("b-10", attempts=[{}]),
    request("b-11", attempts=[attempt(tier="")]),
    request("b-12", attempts=[attempt(tier=5)]),
    request("b-13", attempts=[attempt(source="canary" * 20)]),
    request("b-14", attempts=[attempt(status=True)]),
    request("b-15", attempts=[attempt(model=1)]),
    request("b-16", attempts=[attempt(output=["x"])]),
    request("b-17", attempts=[attempt(input_tokens="3")]),
    request("b-18", attempts=[attempt(output_tokens=1e30)]),
    request("b-19", attempts=[attempt(cost_usd=-1)]),
    request("b-20", attempts=[attempt(latency_ms="fast")]),
    request("b-21", attempts=[attempt(), attempt()]),
    request("b-22", request_id=""),
    request("b-23", request_id=None),
    request("b-24", timestamp=1700000000),
    request("b-25", timestamp="2026-10-01"),
    request("b-26", messages=[{"role": "user", "content": "x"}]),
    request("b-27", prompt=None, messages={"role": "user"}),
    request("b-28", prompt=None, messages=[{"role": "user"}, "x"]),
    request("b-29", prompt=["x"]),
    request("b-30", region=5, app=False),
    request("b-31", input_tokens=-1),
    request("b-32", input_tokens=1.5),
    request("b-33", metadata="x"),
    request("b-34", metadata={"_extra": 1, "intent": "a"}, intent="b"),
    request("g-1", region="elsewhere"),
    request("g-11", attempts=[attempt(confidence=0.9)]),
    request("g-1", labels={"small": 0}),
    request("b-35", served_tier=1.0, reference=True),
    request("b-36", attempts=[attempt(confidence=True)]),
    request("b-37", attempts=[attempt(cost_usd="0.5")]),
    request("b-38", attempts=[attempt(latency_ms=[1])]),
    request("b-39", attempts=[attempt(output_tokens={"n": 1})]),
    request("b-40", attempts=[attempt(confidence="NaN")]),
    request("b-41", attempts=[attempt(input_tokens=-0.5)]),
]

ODD_LINES = [
    '{"request_id": "o-1", "timestamp": "2026-10-01T09:30:00Z" "prompt": "x"}',
    "[1, 2]",
    '"just a string"',
    "5",
    "null",
    '{"request_id": "o-2", "timestamp": "2026-10-01T09:30:00Z", "prompt": "a", "prompt": "b"}',
    '{"request_id": "o-3", "timestamp": "2026-10-01T09:30:00Z", "prompt": "a",}',
    '{"request_id": "o-4", "timestamp": "2026-10-01T09:30:00Z", "prompt": "tab\there"}',
    '{"request_id": "o-5", "timestamp": "2026-10-01T09:30:00Z", "prompt": "p",'
    ' "attempts": [{"tier": "small", "tier": "large"}]}',
    '{"request_id": "o-6", "timestamp": "2026-10-01T09:30:00Z", "prompt": "p",'
    ' "labels": {"small": 1, "small": 0}}',
    '{"request_id": "o-7", "timestamp": "2026-10-01T09:30:00Z", "prompt": "p",'
    ' "attempts": [{"tier": "small", "confidence": Infinity}]}',
    '{"request_id": "o-8", "timestamp": "2026-10-01T09:30:00Z", "prompt": "p",'
    ' "input_tokens": 1e400, "x": -0.0, "y": 1E5, "z": "\\u00e9\\/"}',
    '{"request_id": "o-9",',
    "}",
    '{"request_id": "o-10", "timestamp": "2026-10-01T09:30:00Z", "prompt": "p", "t": 1,'
    ' "metadata": {"a": 1, "a": 2}}',
    '{"request_id": "o-11", "timestamp": "2026-10-01T09:30:00Z", "prompt": "p",'
    ' "attempts": [{"tier": "small", "input_tokens": 12.0, "cost_usd": -0.0, "x": null}]}',
]


def corpus() -> bytes:
    """Good, bad and odd rows, blank and whitespace-only lines, CRLF, a BOM and a bad byte."""
    lines = [json.dumps(r) for r in GOOD + BAD] + ODD_LINES
    out = []
    for i, line in enumerate(lines):
        out.append(line.encode())
        if i % 7 == 3:
            out.append(b"")
        if i % 11 == 5:
            out.append(b"  \t ")
    out.insert(
        20, b'{"request_id": "u-1", "timestamp": "2026-10-01T09:30:00Z", "prompt": "caf\xe9"}'
    )
    out.insert(30, b'{"request_id": "u-2", "prompt": "\xff\xfe"}')
    text = b"\xef\xbb\xbf" + b"\n".join(out[:40]) + b"\r\n" + b"\r\n".join(out[40:])
    return text + b"\n\n   \n"


def snapshot(store: Store) -> dict[str, list[tuple]]:
    """Everything ingest wrote, except run ids."""
    queries = {
        "requests": "SELECT * EXCLUDE (run_id, messages, metadata), messages::VARCHAR,"
        " metadata::VARCHAR FROM requests ORDER BY request_id",
        "attempts": "SELECT * EXCLUDE (run_id, extra), extra::VARCHAR FROM attempts"
        " ORDER BY request_id, tier, source",
        "labels": "SELECT * EXCLUDE (run_id) FROM labels ORDER BY request_id, tier, source",
        "rejects": "SELECT * EXCLUDE (run_id) FROM rejects ORDER BY file, line",
        "files": "SELECT * EXCLUDE (run_id) FROM ingested_files ORDER BY path",
    }
    return {name: store.con.execute(sql).fetchall() for name, sql in queries.items()}


def both_paths(tmp_path: Path, files: list[Path], **options: object) -> list[tuple]:
    """(store, counts) after the whole-file path and after the exact line path. The line path
    with its fast lane (the default for CSV and Parquet) must give exactly what the exact one
    gives, on every file of every test that calls this."""
    paths = {
        "whole": {"whole_files": True},
        "fast": {"whole_files": False},
        "exact": {"whole_files": False, "fast_lane": False},
    }
    results = {}
    for name, path_options in paths.items():
        with Store.open(tmp_path / f"{name}.duckdb") as store:
            summaries = [
                ingest(store, [f], strict=False, clock=clock, **path_options, **options)
                for f in files
            ]
            counts = [
                (s.rows_read, s.rows_kept, s.rows_rejected, s.rejects_by_reason) for s in summaries
            ]
            results[name] = (snapshot(store), counts)
    assert results["fast"] == results["exact"]
    return [results["whole"], results["exact"]]


def test_every_kind_of_row_gives_the_same_store_and_rejects(tmp_path: Path) -> None:
    log = tmp_path / "mixed.jsonl"
    log.write_bytes(corpus())

    whole, lines = both_paths(tmp_path, [log])

    assert whole == lines
    store, [(read, kept, rejected, by_kind)] = whole
    assert (read, kept, rejected) == (81, 21, 60)
    assert len(store["requests"]) == 20 and len(store["rejects"]) == 60
    assert {kind for kind, _ in by_kind} == {
        "wrong type",
        "invalid JSON",
        "duplicate key",
        "missing field",
        "not UTF-8",
        "conflicting attempt",
        "conflicting label",
        "duplicate attempt",
        "duplicate request_id",
        "label out of range",
        "metadata clash",
    }


@pytest.mark.parametrize("batch_rows", [1, 3])
def test_unread_lines_gathered_into_batches_of_any_size_give_the_same_store(
    tmp_path: Path, batch_rows: int
) -> None:
    log = tmp_path / "mixed.jsonl"
    log.write_bytes(corpus())
    results = []
    for rows in (batch_rows, 50_000):
        with Store.open(tmp_path / f"{rows}.duckdb") as store:
            summary = ingest(store, [log], strict=False, clock=clock, batch_rows=rows)
            results.append((snapshot(store), summary.rows_read, summary.rows_rejected))

    assert results[0] == results[1]
    assert results[0][1:] == (81, 60)


def test_a_line_with_a_repeated_key_is_rejected_and_the_next_copy_first_on_every_path(
    tmp_path: Path,
) -> None:
    # A repeated key keeps a line from being read as a MAP and rejects it; the later rows with
    # its request_id are merged in line order (first copy wins), as the exact rule chains do.
    log = tmp_path / "repeated.jsonl"
    log.write_text(
        '{"request_id": "d-1", "timestamp": "2026-10-01T09:30:00Z", "prompt": "a", "prompt": "b"}\n'
        + json.dumps(request("ok-1"))
        + "\n"
        + json.dumps(request("d-1", prompt="c"))
        + "\n"
        + json.dumps(request("d-1", prompt="a", attempts=[attempt()]))
        + "\n"
    )

    whole, lines = both_paths(tmp_path, [log])

    assert whole == lines
    store, [(read, kept, rejected, _)] = whole
    assert (read, kept, rejected) == (4, 2, 2)
    assert [r[-2] for r in store["rejects"]] == [
        "duplicate key: prompt appears twice",
        f"duplicate request_id d-1 with conflicting content (first seen in {log} line 3)",
    ]


def test_the_paths_agree_on_merges_across_files_and_gzip(tmp_path: Path) -> None:
    first = tmp_path / "a.jsonl"
    first.write_bytes(corpus())
    rows = [request("g-1", attempts=[attempt("xl", source="shadow")], labels={"xl": 1})]
    rows += [request("g-3", trace_id="t-3", other=None, metadata={"intent": "y"})]
    rows += [request("g-5", region="moved"), request("n-1")]
    second = tmp_path / "b.jsonl.gz"
    second.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))

    whole, lines = both_paths(tmp_path, [first, second])

    assert whole == lines
    assert whole[1][1] == (4, 3, 1, (("duplicate request_id", 1),))


def test_null_label_is_a_wrong_type_not_a_crash(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_text(json.dumps(request("r-1", labels={"small": None, "large": 1})) + "\n")

    whole, lines = both_paths(tmp_path, [log])

    assert whole == lines
    assert [r[2:5] for r in whole[0]["rejects"]] == [
        (1, "labels.small", "wrong type: labels.small must be a number, got null")
    ]


def test_blank_lines_anywhere_keep_physical_line_numbers(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    body = [json.dumps(request(f"r-{i}")) if i % 5 else "" for i in range(1, 60)]
    log.write_text("\n\n" + "\n".join(body) + "\n \n{bad\n")

    whole, lines = both_paths(tmp_path, [log])

    assert whole == lines
    found = [(r[0], r[1]) for r in whole[0]["requests"]]
    assert ("r-1", datetime(2026, 10, 1, 9, 30, tzinfo=UTC)) in found
    lines_of = {r[0]: r[-3] for r in whole[0]["requests"]}  # ..., source_line, messages, metadata
    assert lines_of["r-1"] == 3 and lines_of["r-59"] == 61
    assert [r[2] for r in whole[0]["rejects"]] == [63]


def test_a_file_of_only_bad_lines_and_an_empty_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"{\n\xff\n[]\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")

    whole, lines = both_paths(tmp_path, [bad, empty])

    assert whole == lines
    assert [c[:3] for c in whole[1]] == [(3, 0, 3), (0, 0, 0)]


def test_strict_names_the_first_bad_lines_of_the_file_and_writes_nothing(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(corpus())

    with Store.open(tmp_path / "s.duckdb") as store:
        with pytest.raises(LogFormatError) as caught:
            ingest(store, [log], strict=True, clock=clock)
        assert store.table_counts()["requests"] == 0

    message = caught.value.message
    assert message.startswith("bad rows with --strict, nothing was written:\n  ")
    assert f"{log}:" in message and message.endswith("more in this file)")


def test_a_request_repeated_by_rows_of_both_lanes_merges(tmp_path: Path) -> None:
    plain = request("m-1", attempts=[attempt()])
    odd = request("m-1", attempts=[attempt("large", source="shadow", trace="x")])
    numeric = request("m-1", attempts=[attempt(output="42")], labels={"small": 1})
    log = tmp_path / "a.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in (plain, odd, numeric, odd)))

    whole, lines = both_paths(tmp_path, [log])

    assert whole == lines
    assert [a[1:3] for a in whole[0]["attempts"]] == [("large", "shadow"), ("small", "prod")]
    assert [r[2:5] for r in whole[0]["rejects"]] == [
        (
            3,
            "attempts[0]",
            "conflicting attempt: request_id m-1 tier small source prod differs from an earlier"
            f" copy (request first seen in {log} line 1)",
        )
    ]


def test_the_file_path_works_within_a_small_duckdb_memory_limit(
    tmp_path: Path, sample_logs: Path
) -> None:
    results = []
    for limit in ("200MB", None):
        with Store.open(tmp_path / f"{limit}.duckdb") as store:
            if limit:
                store.con.execute(f"SET memory_limit = '{limit}'")
            summary = ingest(store, [sample_logs], strict=False, clock=clock)
            results.append((snapshot(store)["requests"], summary.rows_kept))

    assert results[0] == results[1]
    assert results[0][1] == 10_000


def test_a_row_with_several_conflicts_names_the_first_one(tmp_path: Path) -> None:
    first = request("c-1", attempts=[attempt(), attempt("large")], labels={"small": 1, "large": 1})
    later = first | {
        "attempts": [attempt(confidence=0.1), attempt("large", confidence=0.2)],
        "labels": {"small": 0, "large": 0},
    }
    relabeled = first | {"labels": {"small": 0, "large": 0}}
    log = tmp_path / "a.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in (first, later, relabeled)))

    whole, lines = both_paths(tmp_path, [log])

    assert whole == lines
    assert [r[3] for r in whole[0]["rejects"]] == ["attempts[0]", "labels.large"]


@pytest.mark.parametrize("strict", [False, True])
def test_records_numbered_by_rowid_match_row_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strict: bool
) -> None:
    """ing_file's records are numbered from their rowids; row_number() OVER () (the fallback)
    numbers them alike, in a transaction per file or one around several files (--strict)."""
    body = [json.dumps(request(f"r-{i}")) if i % 7 else "" for i in range(1, 3000)]
    files = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    files[0].write_text("\n" + "\n".join(body) + "\n")
    files[1].write_text("\n".join(reversed(body)).replace('"r-', '"s-') + "\n")
    if not strict:
        files[0].write_bytes(files[0].read_bytes() + corpus())
    stores = []
    for numbering in ("rowid", "window"):
        if numbering == "window":
            monkeypatch.setattr(file_path, "_ordinal", lambda con: file_path.ORDINAL_BY_WINDOW)
        with Store.open(tmp_path / f"{numbering}.duckdb") as store:
            ingest(store, files, strict=strict, clock=clock)
            stores.append(snapshot(store))
    assert stores[0] == stores[1]
    assert len(stores[0]["requests"]) >= 2 * 2565


OFF_THE_COUNT = [
    request("n-1", attempts=[attempt(confidence=None, output=None), attempt("large", model=None)]),
    request("n-2", attempts=[attempt(status=None, source=None, cost_usd=None, latency_ms=None)]),
    request("n-3", attempts=[attempt(output='{"answer": "yes", "why": null}')]),
    request("n-4", attempts=[attempt(finish_reason="stop", usage={"total": 3}, x=None)]),
    request("n-5", attempts=[attempt(output='say "x":1', tier='t": 2'), attempt("b", z=1)]),
]
"""Valid rows the `":` count of the fast lane cannot decide (null fields, unknown attempt keys,
`":` inside a string): their attempts are checked again as MAPs, still in the fast lane."""

OFF_THE_COUNT_BAD = [
    '{"request_id": "nb-1", "timestamp": "2026-10-01T09:30:00Z", "prompt": "p",'
    ' "attempts": [{"tier": "small", "confidence": 0.5, "confidence": null}]}',
    '{"request_id": "nb-2", "timestamp": "2026-10-01T09:30:00Z", "prompt": "p",'
    ' "attempts": [{"tier": "small", "output": "a\\": 1", "confidence": "x"}]}',
    '{"request_id": "nb-3", "timestamp": "2026-10-01T09:30:00Z", "prompt": "p",'
    ' "attempts": [{"tier": "small", "x": null, "model": 5}]}',
    '{"request_id": "nb-4", "timestamp": "2026-10-01T09:30:00Z", "prompt": "p",'
    ' "attempts": [{"tier": "small", "x": 1}, {"tier": "small", "output": null}]}',
    '{"request_id": "nb-5", "timestamp": "2026-10-01T09:30:00Z", "prompt": "p",'
    ' "attempts": [{"tier": "small", "status": null, "source": "canary"}]}',
    '{"request_id": "nb-6", "timestamp": "2026-10-01T09:30:00Z", "prompt": "p",'
    ' "attempts": [{"tier": "", "x": 1}, 7]}',
]


def test_rows_off_the_count_take_the_fast_lane_and_match_the_exact_rules(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_text("\n".join([json.dumps(r) for r in OFF_THE_COUNT] + OFF_THE_COUNT_BAD) + "\n")

    whole, lines = both_paths(tmp_path, [log])

    assert whole == lines
    store, [(read, kept, rejected, _)] = whole
    assert (read, kept, rejected) == (11, 5, 6)
    assert [r[3] for r in store["rejects"]] == [
        "attempts[0].confidence",
        "attempts[0].confidence",
        "attempts[0].model",
        "attempts[1]",
        "attempts[0].source",
        "attempts[0].tier",
    ]
    extras = {(a[0], a[1]): a[-1] for a in store["attempts"]}
    assert extras[("n-4", "small")] == '{"finish_reason":"stop","usage":{"total":3},"x":null}'
    assert extras[("n-5", "b")] == '{"z":1}' and extras[("n-1", "small")] is None
    with Store.open(tmp_path / "lanes.duckdb") as fresh:
        fresh.prepare_ingest()
        assert fresh.read_log_files([log]) == [11]
        lanes = fresh.con.execute("SELECT plain, count(*) FROM ing_file GROUP BY ALL").fetchall()
    assert sorted(lanes) == [(False, 6), (True, 5)]


def parquet_rows() -> list[dict]:
    """Rows for the Parquet lane: good ones it inserts itself, and every kind it hands on."""

    def row(rid: str, **extra: object) -> dict:
        base = {
            "request_id": rid,
            "timestamp": datetime(2026, 10, 1, 9, 30, tzinfo=UTC),
            "messages": [{"role": "user", "content": f"q {rid}"}],
            "attempts": [{"tier": "small", "confidence": 0.5, "cost_usd": 0.001}],
            "metadata": {"intent": "x", "n": 2},
            "labels": {"small": 1.0},
            "trace_id": f"t-{rid}",
        }
        return base | extra

    good = [
        row("p-1"),
        row("p-2", metadata={"intent": None, "n": 3}, trace_id=None, labels=None),
        row("p-3", metadata=None, messages=None, prompt='hi \u00e9 "q"', region="eu"),
        row("p-4", attempts=[{"tier": "small", "finish": "stop"}, {"tier": "large"}]),
        row("p-5", attempts=[], input_tokens=7, labels={"small": 0.25, "large": None}),
        row("p-6", attempts=None, metadata=None, trace_id=None),
        row("p-7", attempts=[{"tier": "a", "source": "shadow", "status": "timeout"}]),
    ]
    bad = [
        row("q-1", attempts=[None]),
        row("q-2", attempts=[{"tier": ""}]),
        row("q-3", attempts=[{"tier": "s", "source": "canary"}]),
        row("q-4", attempts=[{"tier": "s", "confidence": float("nan")}]),
        row("q-5", attempts=[{"tier": "s", "cost_usd": -1.0}]),
        row("q-6", attempts=[{"tier": "s"}, {"tier": "s", "source": "prod"}]),
        row("q-7", labels={"small": 1.5}),
        row("q-8", messages=None),
        row("q-9", prompt="also"),
        row("q-10", input_tokens=-2),
        row("q-11", metadata={"intent": "x", "n": 1}, trace_id="t", timestamp=None),
        row("q-12", request_id=""),
        row("p-1", region="elsewhere"),
        row("p-4", attempts=[{"tier": "medium"}]),
    ]
    clash = [row("c-1", metadata={"intent": "x", "n": 1, "trace_id": "own"})]
    return good + bad + clash


PARQUET_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("region", pa.string()),
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("prompt", pa.string()),
        ("input_tokens", pa.int64()),
        (
            "attempts",
            pa.list_(
                pa.struct(
                    [
                        ("tier", pa.string()),
                        ("source", pa.string()),
                        ("status", pa.string()),
                        ("confidence", pa.float64()),
                        ("cost_usd", pa.float64()),
                        ("finish", pa.string()),
                    ]
                )
            ),
        ),
        (
            "metadata",
            pa.struct([("intent", pa.string()), ("n", pa.int32()), ("trace_id", pa.string())]),
        ),
        ("labels", pa.struct([("small", pa.float64()), ("large", pa.float64())])),
        ("trace_id", pa.string()),
    ]
)


def test_the_parquet_lane_gives_what_the_line_path_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = parquet_rows()
    log = tmp_path / "lake.parquet"
    pq.write_table(pa.Table.from_pylist(rows, PARQUET_SCHEMA), log)
    handed_on: list[list[int]] = []
    read_rows = readers.read_parquet_rows

    def spy(path: Path, wanted: np.ndarray, batch_rows: int):  # noqa: ANN202
        handed_on.append(wanted.tolist())
        return read_rows(path, wanted, batch_rows)

    monkeypatch.setattr(readers, "read_parquet_rows", spy)
    stores = {}
    for name, options in (("lane", {}), ("lines", {"whole_files": False, "fast_lane": False})):
        with Store.open(tmp_path / f"{name}.duckdb") as store:
            summary = ingest(store, [log], strict=False, clock=clock, **options)
            stores[name] = (snapshot(store), summary.rows_kept, summary.rows_rejected)

    assert stores["lane"] == stores["lines"]
    assert stores["lane"][1:] == (9, 13)
    first_p1, first_p4 = 1, 4  # a repeated request_id sends every copy to the line path
    assert handed_on == [[first_p1, first_p4, *range(8, len(rows) + 1)]]
    store = stores["lane"][0]
    meta = {r[0]: r[-1] for r in store["requests"]}
    assert meta["p-2"] == '{"n":3}' and meta["p-6"] is None
    assert meta["p-1"] == '{"intent":"x","n":2,"trace_id":"t-p-1"}'
    assert meta["c-1"] == '{"intent":"x","n":1,"trace_id":"own","_extra":{"trace_id":"t-c-1"}}'


def test_the_parquet_lane_reads_maps_naive_and_text_timestamps(tmp_path: Path) -> None:
    schema = pa.schema(
        [
            ("request_id", pa.string()),
            ("timestamp", pa.string()),
            ("prompt", pa.string()),
            ("metadata", pa.map_(pa.string(), pa.string())),
            ("labels", pa.map_(pa.string(), pa.int64())),
            ("when", pa.timestamp("ms")),
        ]
    )
    rows = [
        {
            "request_id": "m-1",
            "timestamp": "2026-10-01T09:30:00+02:00",
            "prompt": "p",
            "metadata": [("a", "1"), ("b", None)],
            "labels": [("small", 1)],
            "when": None,
        },
        {
            "request_id": "m-2",
            "timestamp": "yesterday",
            "prompt": "p",
            "metadata": None,
            "labels": [("small", 2)],
            "when": None,
        },
        {
            "request_id": "m-3",
            "timestamp": "2026-10-01 09:30:00Z",
            "prompt": "p",
            "metadata": [("a", "x"), ("a", "y")],
            "labels": None,
            "when": None,
        },
    ]
    log = tmp_path / "maps.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema), log)
    stores = []
    for options in ({}, {"whole_files": False, "fast_lane": False}):
        with Store.open(tmp_path / f"{len(stores)}.duckdb") as store:
            summary = ingest(store, [log], strict=False, clock=clock, **options)
            stores.append((snapshot(store), summary.rows_kept, summary.rows_rejected))
    assert stores[0] == stores[1]
    assert stores[0][1:] == (2, 1)


def test_small_files_read_in_one_scan_give_what_one_at_a_time_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = corpus().splitlines(keepends=True)
    for k in range(0, len(lines), 13):
        (logs / f"part-{k:03d}.jsonl").write_bytes(b"".join(lines[k : k + 13]))
    (logs / "part-000-copy.jsonl").write_bytes((logs / "part-000.jsonl").read_bytes())
    (logs / "part-500-empty.jsonl").write_bytes(b"")
    later = [request("g-1", region="elsewhere"), request("g-2", attempts=[attempt("xl")])]
    (logs / "part-600.jsonl").write_text("\n\n".join(json.dumps(r) for r in later))
    (logs / "part-700.jsonl.gz").write_bytes(gzip.compress(json.dumps(request("z-1")).encode()))
    zipped = [json.dumps(request(f"z-{i}")) for i in (2, 3)] + [
        "",
        "{bad",
        json.dumps(request("g-1")),
    ]
    (logs / "part-710.jsonl.gz").write_bytes(gzip.compress("\n".join(zipped).encode()))
    scans: list[int] = []
    read = Store.read_log_files

    def spy(store: Store, paths: list[Path]) -> list[int] | None:
        scans.append(len(paths))
        return read(store, paths)

    monkeypatch.setattr(Store, "read_log_files", spy)
    results = {}
    for name, options in (("group", {}), ("alone", {}), ("lines", {"whole_files": False})):
        if name == "alone":
            monkeypatch.setattr(file_groups, "GROUP_FILES", 1)
        with Store.open(tmp_path / f"{name}.duckdb") as store:
            s = ingest(store, [logs], strict=False, clock=clock, **options)
            counts = (s.files, s.files_skipped, s.rows_read, s.rows_kept, s.rows_rejected)
            results[name] = (snapshot(store)["requests"], snapshot(store)["rejects"], counts)
        if name == "group":
            assert scans == [10, 2]  # the plain files in one scan, the gzip files in another

    assert results["group"] == results["alone"] == results["lines"]
    requests, rejects, counts = results["group"]
    assert counts == (12, 1, 88, 25, 63)
    assert {r[-4] for r in requests if r[0] == "z-1"} == {str(logs / "part-700.jsonl.gz")}
    moved = [r for r in rejects if r[0] == str(logs / "part-600.jsonl")]
    assert [(r[2], r[3]) for r in moved] == [(1, "request_id"), (3, "request_id")]
    assert f"first seen in {logs / 'part-000-copy.jsonl'} line 1)" in moved[0][4]

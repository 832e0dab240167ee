"""Progress a user can follow: named stages with totals, as Rich bars on a terminal and one log
line per stage with its time elsewhere (CI); ingest's total is the rows of its files."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from typer.testing import CliRunner

from calibrate.cli import console
from calibrate.cli.app import app
from calibrate.ingest.stage import ingest
from calibrate.records.progress import counter
from calibrate.store import Store

runner = CliRunner()
LINE = re.compile(
    r"^calibrate (\w+): (\w+)(?: ([\d,]+(?:/[\d,]+)?) (\w+))? in \d+\.\d\d s( \(stopped\))?$"
)


class Recorder:
    """A Progress that keeps what it is told."""

    def __init__(self) -> None:
        self.stages: list[list] = []

    def stage(self, name: str, total: int, unit: str = "steps") -> None:
        self.stages.append([name, total, unit, 0])

    def advance(self, n: int = 1) -> None:
        self.stages[-1][3] += n


def clock() -> datetime:
    return datetime(2026, 11, 1, tzinfo=UTC)


def rows(n: int, prefix: str) -> list[dict]:
    return [
        {"request_id": f"{prefix}-{i}", "timestamp": "2026-10-01T09:30:00Z", "prompt": "p"}
        for i in range(n)
    ]


def test_ingest_reports_one_stage_whose_total_is_the_rows_of_its_files(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(7, "a")))
    (logs / "b.jsonl").write_text("\n".join(json.dumps(r) for r in rows(5, "b")))  # no last \n
    (logs / "b-copy.jsonl").write_bytes((logs / "b.jsonl").read_bytes())  # skipped: same bytes
    pq.write_table(pa.Table.from_pylist(rows(4, "c")), logs / "c.parquet")
    seen = Recorder()

    with Store.open(tmp_path / "s.duckdb") as store:
        summary = ingest(store, [logs], strict=False, clock=clock, progress=seen)

    assert seen.stages == [["ingest", 7 + 5 + 5 + 4, "rows", 7 + 5 + 5 + 4]]
    assert summary.rows_read == 7 + 5 + 4 and summary.files_skipped == 1


def test_the_call_counter_starts_its_stage_with_the_total() -> None:
    seen = Recorder()
    update = counter(seen, "calls", "calls")
    for done in (0, 1, 2, 2, 5):
        update(done, 5)

    assert seen.stages == [["calls", 5, "calls", 5]]


def test_outside_a_terminal_each_stage_is_one_line_with_its_time(capsys) -> None:
    with console.stages("ingest") as progress:
        progress.stage("ingest", 1200, "rows")
        progress.advance(1200)
        progress.stage("load", 1)
    with pytest.raises(KeyboardInterrupt), console.stages("replay") as progress:
        progress.stage("calls", 10, "calls")
        progress.advance(3)
        raise KeyboardInterrupt

    lines = capsys.readouterr().err.splitlines()
    assert [LINE.match(line).groups() for line in lines] == [  # type: ignore[union-attr]
        ("ingest", "ingest", "1,200", "rows", None),
        ("ingest", "load", None, None, None),
        ("replay", "calls", "3/10", "calls", " (stopped)"),
    ]


def test_on_a_terminal_each_stage_is_a_bar_with_its_total(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    screen = Console(force_terminal=True, color_system=None, width=100, record=True)
    monkeypatch.setattr(console, "err", lambda: screen)
    with console.stages("sweep") as progress:
        progress.stage("evaluate", 12, "families")
        progress.advance(5)
        progress.stage("certify", 1)

    text = screen.export_text()
    assert "None" not in text
    assert re.search(r"evaluate .*12/12 families", text)  # a finished stage's bar is full
    assert re.search(r"certify .*1/1 steps", text)


@pytest.mark.e2e
def test_a_sweep_in_ci_logs_its_stages_in_order(tmp_path: Path, sample_logs: Path) -> None:
    result = runner.invoke(
        app,
        [
            "sweep",
            str(sample_logs),
            "--tiers",
            str(sample_logs / "tiers.yaml"),
            "--out",
            str(tmp_path / "out"),
            "--no-router",
        ],
    )

    assert result.exit_code == 0, result.stderr
    logged = [m.groups() for m in map(LINE.match, result.stderr.splitlines()) if m]
    assert [stage for _, stage, *_ in logged] == [
        "ingest",
        "load",
        "candidates",
        "evaluate",
        "certify",
        "answers",
        "intervals",
        "report",
        "write",
    ]
    assert logged[0][2:4] == ("10,000", "rows") and logged[3][3] == "families"

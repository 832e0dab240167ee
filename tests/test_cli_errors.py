"""Errors a new user hit (issue 15 §5): each is `Error:`/`Hint:`, exit 1, nothing written.

--out naming a file where a folder is needed (or the reverse) is caught before any work; a path
holding Rich markup (`[`) is printed as written; rejected-row counts read as counts; a CSV with the
wrong columns names the missing ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import monitor_synth as synth
import pytest
from export_support import cascade2, write_routing, write_tiers
from label_support import TIERS_YAML, make_store, query
from typer.testing import CliRunner

from calibrate.cli.app import app

runner = CliRunner()

TIERS = """tiers:
  - {name: small, model: m-small, price: {input_per_mtok: 0.15, output_per_mtok: 0.6}}
  - {name: large, model: m-large, price: {input_per_mtok: 2.5, output_per_mtok: 10}}
"""


def _row(i: int) -> str:
    attempts = [
        {"tier": "small", "source": "prod", "confidence": 0.5 + i / 100, "input_tokens": 10},
        {"tier": "large", "source": "shadow", "confidence": 0.99, "input_tokens": 10},
    ]
    return json.dumps(
        {
            "request_id": f"r-{i}",
            "timestamp": f"2026-10-01T09:{i:02d}:00Z",
            "prompt": f"question {i}",
            "attempts": attempts,
            "labels": {"small": i % 2, "large": 1},
        }
    )


@pytest.fixture
def sweep_inputs(tmp_path: Path) -> tuple[Path, Path]:
    tiers = tmp_path / "tiers.yaml"
    tiers.write_text(TIERS, encoding="utf-8")
    logs = tmp_path / "logs.jsonl"
    logs.write_text("\n".join(_row(i) for i in range(10)) + "\n", encoding="utf-8")
    return logs, tiers


def _files(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _is_user_error(result, start: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"Error: {start}"), result.stderr
    assert "\nHint: " in result.stderr
    assert "Traceback" not in result.output


# --- --out -------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["the file", "below the file"])
def test_sweep_out_naming_a_file_fails_before_the_sweep(
    tmp_path: Path, sweep_inputs: tuple[Path, Path], where: str
) -> None:
    logs, tiers = sweep_inputs
    taken = tmp_path / "results.txt"
    taken.write_text("mine\n", encoding="utf-8")
    before = _files(tmp_path)
    out = taken if where == "the file" else taken / "sub"
    args = ["sweep", str(logs), "--tiers", str(tiers), "--out", str(out), "--no-certify"]
    result = runner.invoke(app, args)
    _is_user_error(result, f"--out {out}")
    assert _files(tmp_path) == before


def test_monitor_out_naming_a_file_fails_before_the_run(tmp_path: Path) -> None:
    logs = synth.write_jsonl(synth.draw(synth.Scenario(days=3, per_day=5), 1), tmp_path / "l.jsonl")
    baseline = tmp_path / "routing.yaml"
    baseline.write_text(synth.routing_yaml(), encoding="utf-8")
    taken = tmp_path / "monitor.txt"
    taken.write_text("mine\n", encoding="utf-8")
    before = _files(tmp_path)
    args = ["monitor", str(logs), "--baseline", str(baseline), "--reference-days", "1"]
    result = runner.invoke(app, [*args, "--out", str(taken)])
    _is_user_error(result, f"--out {taken} is a file")
    assert _files(tmp_path) == before


def test_sample_out_naming_a_folder_is_a_user_error(tmp_path: Path) -> None:
    db, _ = make_store(tmp_path, n=30)
    tiers = tmp_path / "tiers.yaml"
    tiers.write_text(TIERS_YAML, encoding="utf-8")
    folder = tmp_path / "queue"
    folder.mkdir()
    before = _files(tmp_path)
    result = runner.invoke(
        app,
        ["sample", "--n", "5", "--out", str(folder), "--db", str(db), "--tiers", str(tiers)],
    )
    _is_user_error(result, f"--out {folder} is a folder")
    assert f"--out {folder / 'review.csv'}" in result.stderr
    assert _files(tmp_path) == before


def test_export_out_naming_a_folder_is_a_user_error(tmp_path: Path) -> None:
    routing = write_routing(tmp_path / "routing.yaml", cascade2(-0.6))
    tiers = write_tiers(tmp_path / "tiers.yaml")
    folder = tmp_path / "gateway"
    folder.mkdir()
    args = ["export", str(routing), "--to", "vllm-sr", "--tiers", str(tiers)]
    result = runner.invoke(app, [*args, "--out", str(folder)])
    _is_user_error(result, f"--out {folder} is a folder")
    assert not any(folder.iterdir())


# --- Rich markup in user data ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["logs[/x]", "[bold]logs", "a[red]b[/red]"])
def test_a_path_with_brackets_is_printed_as_written(
    tmp_path: Path, sweep_inputs: tuple[Path, Path], name: str
) -> None:
    logs, _ = sweep_inputs
    missing = tmp_path / name / "tiers.yaml"
    result = runner.invoke(app, ["sweep", str(logs), "--tiers", str(missing)])
    _is_user_error(result, f"tiers file not found: {missing}")


def test_ingest_summary_prints_a_bracketed_store_path_as_written(tmp_path: Path) -> None:
    logs = tmp_path / "logs.jsonl"
    logs.write_text(_row(1) + "\n" + '{"request_id": "r-2"}\n', encoding="utf-8")
    db = tmp_path / "[bold]store" / "c[red].duckdb"
    db.parent.mkdir()
    result = runner.invoke(app, ["ingest", str(logs), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert f"See the `rejects` table in {db}." in result.stderr


# --- counts that read as counts ------------------------------------------------------------------


def test_rejected_rows_are_counted_per_reason_in_words(tmp_path: Path) -> None:
    logs = tmp_path / "logs.jsonl"
    bad = [json.dumps({"request_id": f"r-{i}"}) for i in range(2, 5)] + ["{nope"]
    logs.write_text("\n".join([_row(1), *bad]) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["ingest", str(logs), "--db", str(tmp_path / "s.duckdb")])
    assert result.exit_code == 0, result.output
    assert "4 rows rejected: missing field (3 rows), invalid JSON (1 row)." in result.stderr
    assert not re.search(r"missing field: \d", result.stderr)


# --- a CSV with the wrong columns ----------------------------------------------------------------


@pytest.mark.parametrize("rows", [1, 2])
def test_csv_with_the_wrong_columns_names_the_missing_ones(tmp_path: Path, rows: int) -> None:
    logs = tmp_path / "export.csv"
    body = "".join(f"id-{i},2026-10-01 09:00,hello,gpt-4o\n" for i in range(rows))
    logs.write_text("ticket,opened,question,engine\n" + body, encoding="utf-8")
    db = tmp_path / "s.duckdb"
    result = runner.invoke(app, ["ingest", str(logs), "--db", str(db)])
    _is_user_error(result, f"{logs}: missing columns request_id, timestamp, messages or prompt")
    assert "found: ticket, opened, question, engine" in result.stderr
    for table in ("requests", "attempts", "rejects", "ingested_files"):  # nothing stored
        assert query(db, f"select count(*) from {table}") == [(0,)], table


def test_csv_with_the_canonical_columns_still_reads(tmp_path: Path) -> None:
    logs = tmp_path / "ok.csv"
    logs.write_text(
        "request_id,timestamp,prompt,attempt_tier\nr-1,2026-10-01T00:00:00Z,hi,small\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["ingest", str(logs), "--db", str(tmp_path / "s.duckdb"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows_kept"] == 1

"""Command-line behaviour: exit codes, `Error:`/`Hint:` on stderr, no traceback for user errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from calibrate.cli.app import app

runner = CliRunner()

TIERS = """tiers:
  - {name: small, model: m-small, price: {input_per_mtok: 0.15, output_per_mtok: 0.6}}
  - {name: large, model: m-large, price: {input_per_mtok: 2.5, output_per_mtok: 10}}
"""


def row(i: int, labels: dict | None = None, conf: float = 0.9) -> str:
    data = {
        "request_id": f"r-{i}",
        "timestamp": f"2026-10-01T09:{i % 60:02d}:00Z",
        "prompt": f"question {i}",
        "attempts": [
            {
                "tier": "small",
                "model": "m-small",
                "source": "prod",
                "confidence": conf,
                "input_tokens": 10,
                "output_tokens": 5,
                "latency_ms": 100,
                "status": "ok",
            },
            {
                "tier": "large",
                "model": "m-large",
                "source": "shadow",
                "confidence": 0.99,
                "input_tokens": 10,
                "output_tokens": 5,
                "latency_ms": 300,
                "status": "ok",
            },
        ],
    }
    if labels is not None:
        data["labels"] = labels
    return json.dumps(data)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_tiers_file_is_a_user_error(tmp_path: Path) -> None:
    logs = write(tmp_path, "logs.jsonl", row(1) + "\n")
    result = runner.invoke(
        app, ["sweep", str(logs), "--tiers", str(tmp_path / "nope.yaml"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: tiers file not found:")
    assert "Hint:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_unknown_key_in_tiers_names_file_and_field(tmp_path: Path) -> None:
    tiers = write(
        tmp_path, "tiers.yaml", TIERS.replace("model: m-large,", "model: m-large, colour: red,")
    )
    logs = write(tmp_path, "logs.jsonl", row(1) + "\n")
    result = runner.invoke(
        app, ["sweep", str(logs), "--tiers", str(tiers), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert f"{tiers}: tiers.1.colour: unknown key" in result.stderr


def test_no_labels_is_a_user_error_with_a_hint(tmp_path: Path) -> None:
    tiers = write(tmp_path, "tiers.yaml", TIERS)
    logs = write(tmp_path, "logs.jsonl", "\n".join(row(i) for i in range(5)) + "\n")
    result = runner.invoke(
        app, ["sweep", str(logs), "--tiers", str(tiers), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert "Error: no labels for tier(s) small, large" in result.stderr
    assert "Hint:" in result.stderr
    assert not (tmp_path / "o" / "routing.yaml").exists()


def test_usage_error_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["sweep", "--max-quality-drop", "lots"])
    assert result.exit_code == 2


def test_sweep_prices_attempts_without_cost_from_tiers(tmp_path: Path) -> None:
    tiers = write(tmp_path, "tiers.yaml", TIERS)
    lines = [row(i, {"small": 1, "large": 1}, conf=0.5 + i / 100) for i in range(10)]
    logs = write(tmp_path, "logs.jsonl", "\n".join(lines) + "\n")
    out = tmp_path / "o"
    result = runner.invoke(
        app,
        ["sweep", str(logs), "--tiers", str(tiers), "--out", str(out), "--json", "--no-certify"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # (10 labels cannot certify anything, hence --no-certify) every small answer is acceptable, so the cheapest policy is always-small: 10·0.15/1e6 + 5·0.6/1e6
    assert summary["recommendation"]["policy"] == "always:small"
    assert summary["recommendation"]["cost_per_1k_requests_usd"] == round(4.5e-6 * 1000, 6)


def test_store_file_is_used_and_kept_with_db(tmp_path: Path) -> None:
    tiers = write(tmp_path, "tiers.yaml", TIERS)
    lines = [row(i, {"small": i % 2, "large": 1}) for i in range(6)]
    logs = write(tmp_path, "logs.jsonl", "\n".join(lines) + "\n")
    db = tmp_path / "store.duckdb"
    first = runner.invoke(app, ["ingest", str(logs), "--db", str(db), "--json"])
    assert first.exit_code == 0, first.output
    assert db.exists()
    # sweep with no logs reads what the store holds
    result = runner.invoke(
        app, ["sweep", "--db", str(db), "--tiers", str(tiers), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "requests: 6" in (tmp_path / "o" / "routing.yaml").read_text()


def test_every_command_has_help_with_an_example() -> None:
    for command in ("ingest", "sweep", "evaluate", "schema"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0
        assert "Example:" in result.stdout, command


def test_schema_documents_the_log_format() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    for field in ("request_id", "timestamp", "messages", "attempts", "confidence", "labels"):
        assert field in result.stdout

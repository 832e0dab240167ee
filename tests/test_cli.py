"""Command-line behaviour: exit codes, `Error:`/`Hint:` on stderr, no traceback for user errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
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


@pytest.mark.e2e
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


@pytest.mark.e2e
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


def _command_paths(group: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and command group registered on the app, recursively."""
    found = []
    for name, command in getattr(group, "commands", {}).items():
        found.append((*path, name))
        found.extend(_command_paths(command, (*path, name)))
    return found


def _resolve(path: tuple[str, ...]) -> Any:
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


COMMANDS = _command_paths(typer.main.get_command(app))


def test_the_help_test_sees_every_command() -> None:
    for path in [("sweep",), ("labels",), ("labels", "judge"), ("sample",), ("monitor",)]:
        assert path in COMMANDS
    assert len(COMMANDS) >= 13


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help_naming_every_option(path: tuple[str, ...]) -> None:
    command = _resolve(path)
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for param in command.params:
        for name in (*param.opts, *param.secondary_opts):
            if name.startswith("-"):
                assert name in result.stdout, f"{' '.join(path)}: {name} not in --help"
    if not hasattr(command, "commands"):  # a command (not a group) shows how to run it
        assert "Example:" in result.stdout, path


def test_schema_documents_the_log_format() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    for field in ("request_id", "timestamp", "messages", "attempts", "confidence", "labels"):
        assert field in result.stdout


# --- where data lives: one default store for every command (cli/options.py) ---------------------

ROUTING = Path(__file__).parent / "data" / "routing_cascade.yaml"
DEFAULT_STORE = Path(".calibrate") / "calibrate.duckdb"


def _labelled_logs(tmp_path: Path, name: str, ids: range) -> Path:
    lines = [row(i, {"small": i % 2, "large": 1}) for i in ids]
    return write(tmp_path, name, "\n".join(lines) + "\n")


def _stored_requests(path: Path) -> int:
    from calibrate.store import Store

    with Store.open(path) as store:
        return store.table_counts()["requests"]


@pytest.mark.e2e
def test_ingest_then_sweep_evaluate_monitor_without_db_use_the_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "tiers.yaml", TIERS)
    logs = _labelled_logs(tmp_path, "logs.jsonl", range(6))
    assert runner.invoke(app, ["ingest", str(logs)]).exit_code == 0
    assert _stored_requests(tmp_path / DEFAULT_STORE) == 6
    swept = runner.invoke(app, ["sweep", "--tiers", "tiers.yaml", "--out", "o"])
    assert swept.exit_code == 0, swept.output
    assert "requests: 6" in (tmp_path / "o" / "routing.yaml").read_text()
    evaluated = runner.invoke(
        app, ["evaluate", "o/routing.yaml", "--tiers", "tiers.yaml", "--json"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["requests"] == 6
    monitored = runner.invoke(app, ["monitor", "--baseline", "o/routing.yaml", "--json"])
    # one day of logs is too short to monitor; the error shows it read the stored requests' dates
    assert monitored.exit_code == 1, monitored.output
    assert "these logs (2026-10-01..2026-10-01)" in monitored.stderr


NEEDS_A_STORE = [
    ["sweep", "--tiers", "tiers.yaml"],
    ["evaluate", str(ROUTING)],
    ["monitor", "--baseline", str(ROUTING)],
    ["replay", "--tiers", "tiers.yaml", "--dry-run"],
    ["labels", "import", "labels.csv"],
    ["labels", "score"],
    [
        "labels",
        "judge",
        "--judge",
        "http://127.0.0.1:9/v1",
        "--judge-model",
        "m",
        "--judge-price",
        "1,2",
        "--tiers",
        "tiers.yaml",
        "--dry-run",
    ],
    ["labels", "status"],
    ["sample", "--n", "5", "--out", "review.csv", "--tiers", "tiers.yaml"],
]


@pytest.mark.parametrize(
    "args",
    NEEDS_A_STORE,
    ids=[" ".join(a for a in args[:2] if a.isalpha()) for args in NEEDS_A_STORE],
)
def test_a_command_without_a_store_says_so_and_creates_none(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "tiers.yaml", TIERS)
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"Error: no store at {DEFAULT_STORE} (the default store")
    assert "Hint: Run `calibrate ingest LOGS` first" in result.stderr
    assert not (tmp_path / ".calibrate").exists()
    named = runner.invoke(app, [*args, "--db", "typo.duckdb"])
    assert named.exit_code == 1, named.output
    assert named.stderr.startswith("Error: no store at typo.duckdb\n")
    assert not (tmp_path / "typo.duckdb").exists()


@pytest.mark.e2e
def test_sweep_given_logs_without_db_leaves_the_default_store_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "tiers.yaml", TIERS)
    other = _labelled_logs(tmp_path, "other.jsonl", range(100, 104))
    result = runner.invoke(app, ["sweep", str(other), "--tiers", "tiers.yaml", "--out", "o"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / ".calibrate").exists()  # in memory: no store created
    stored = _labelled_logs(tmp_path, "logs.jsonl", range(6))
    assert runner.invoke(app, ["ingest", str(stored)]).exit_code == 0
    result = runner.invoke(app, ["sweep", str(other), "--tiers", "tiers.yaml", "--out", "p"])
    assert result.exit_code == 0, result.output
    assert "requests: 4" in (tmp_path / "p" / "routing.yaml").read_text()
    assert _stored_requests(tmp_path / DEFAULT_STORE) == 6


@pytest.mark.e2e
def test_sweep_json_is_summary_json_built_from_the_result_not_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    args = ["sweep", "sample_logs/", "--tiers", "sample_logs/tiers.yaml", "--no-router"]
    result = runner.invoke(app, [*args, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads((out / "summary.json").read_text("utf-8"))
    read_back = []
    real_read_text = Path.read_text
    monkeypatch.setattr(
        Path,
        "read_text",
        lambda self, *a, **k: read_back.append(self) or real_read_text(self, *a, **k),
    )
    again = runner.invoke(app, [*args, "--out", str(tmp_path / "again"), "--json"])
    assert again.exit_code == 0, again.output
    assert not [p for p in read_back if p.name == "summary.json"]

"""The label commands on the command line: exit codes, `Error:`/`Hint:`, help and README."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from label_support import TIERS_YAML, make_store
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.store import Store

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
COMMANDS = (
    ("labels", "import"),
    ("labels", "score"),
    ("labels", "judge"),
    ("labels", "status"),
    ("sample",),
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    db, _ = make_store(tmp, n=30)
    tiers = tmp / "tiers.yaml"
    tiers.write_text(TIERS_YAML, encoding="utf-8")
    return db, tiers


def test_import_reports_bad_rows_on_stderr_and_exits_0(tmp_path: Path, store) -> None:
    db, _ = store
    path = tmp_path / "l.csv"
    path.write_text("request_id,tier,score\nr-0001,small,1\nr-9999,small,1\n", encoding="utf-8")
    result = runner.invoke(app, ["labels", "import", str(path), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert f"{path}:3: request_id: unknown request_id: r-9999" in result.stderr
    assert "1 label row rejected: unknown request_id (1 row):" in result.stderr
    assert "Conflicts: stored 1 (new 1" in result.stderr
    strict = runner.invoke(app, ["labels", "import", str(path), "--db", str(db), "--strict"])
    assert strict.exit_code == 1
    assert strict.stderr.startswith("Error: bad label rows with --strict, nothing was stored:")
    assert "Hint: Fix these rows" in strict.stderr
    assert "Traceback" not in strict.output


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["labels", "import", "missing.csv"], 1, "Error: label file not found: missing.csv"),
        (["labels", "import", "x.csv", "--source", "log"], 2, "'log' is not one of 'human'"),
        (["labels", "score", "--scorer", "fuzzy"], 2, "'fuzzy' is not one of 'exact'"),
        (["labels", "score", "--scorer", "exact", "--scorers", "s.yaml"], 2, "not both"),
        (["sample", "--n", "5", "--out", "o.csv", "--uniform-share", "0.5"], 1, "below 2/3"),
        (["sample", "--n", "5", "--out", "o.csv", "--threshold", "small"], 2, "TIER=VALUE"),
        (["labels", "judge", "--judge", "medium"], 1, "neither a tier of tiers.yaml"),
        (["labels", "judge", "--judge", "large", "--tier", "tiny"], 1, "--tier tiny: not in"),
    ],
)
def test_user_errors(store, args: list[str], code: int, text: str) -> None:
    db, tiers = store
    extra = ["--db", str(db)]
    if args[0] == "sample" or args[1] == "judge":
        extra += ["--tiers", str(tiers)]
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code == code, result.output
    assert text in result.stderr
    if code == 1:
        assert "Hint:" in result.stderr


def test_score_status_and_sample_print_tables_and_json(tmp_path: Path, store) -> None:
    db, tiers = store
    scored = runner.invoke(app, ["labels", "score", "--db", str(db), "--scorer", "exact"])
    assert scored.exit_code == 0, scored.output
    assert "exact" in scored.stdout
    status = runner.invoke(app, ["labels", "status", "--db", str(db), "--tiers", str(tiers)])
    assert status.exit_code == 0, status.output
    assert "labelled for every tier" in status.stdout
    assert "app=billing" in status.stdout
    data = json.loads(runner.invoke(app, ["labels", "status", "--db", str(db), "--json"]).stdout)
    assert data["usable"] == 10  # every third request has a reference: both tiers scored
    markdown = runner.invoke(app, ["labels", "status", "--db", str(db), "--markdown"]).stdout
    assert markdown.startswith("## Labels\n")
    out = tmp_path / "review.csv"
    sampled = runner.invoke(
        app,
        ["sample", "--n", "6", "--out", str(out), "--db", str(db), "--tiers", str(tiers)],
    )
    assert sampled.exit_code == 0, sampled.output
    assert "uniform" in sampled.stdout
    assert "no thresholds given" in sampled.stderr
    assert out.read_text(encoding="utf-8").startswith("request_id,sample_id,stratum,")


HYBRID_ROUTING = """version: 1
strategy: hybrid
tiers:
  - {name: small, model: m-small, escalate_below: 0.5}
  - {name: large, model: m-large}
rules:
  - {name: disputes, pattern: chargeback, tier: small}
premium_tier: large
objective: {max_quality_drop: 0.02, confidence_level: 0.95}
certified: true
selection: certified
expected: {quality: 0.9}
calibrated_on:
  requests: 30
  labeled: 10
  window: {start: null, end: null}
  logs_sha256: x
"""


def test_sample_takes_a_hybrids_thresholds_and_keyword_rules(tmp_path: Path, store) -> None:
    db, tiers = store
    routing = tmp_path / "routing.yaml"
    routing.write_text(HYBRID_ROUTING, encoding="utf-8")
    args = ["sample", "--n", "6", "--out", str(tmp_path / "r.csv"), "--db", str(db)]
    sampled = runner.invoke(
        app, [*args, "--tiers", str(tiers), "--routing", str(routing), "--json"]
    )
    assert sampled.exit_code == 0, sampled.output
    with Store.open(db) as opened:
        designs = opened.con.execute("SELECT design FROM label_samples").fetchall()
    design = json.loads(designs[-1][0])
    assert design["thresholds"] == {"small": 0.5}
    assert design["rules"] == [["chargeback", "small"]]


def test_every_label_command_has_help_with_an_example() -> None:
    for command in COMMANDS:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, command
        assert "Example:" in result.stdout, command


def _command(path: tuple[str, ...]) -> typer.core.TyperCommand:
    group = typer.main.get_command(app)
    for name in path:
        group = group.commands[name]  # type: ignore[attr-defined]
    return group  # type: ignore[return-value]


def test_commands_md_documents_every_option_of_the_label_commands() -> None:
    reference = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    for command in COMMANDS:
        prefix = "calibrate " + " ".join(command) + " "  # the synopsis line
        (line,) = [ln for ln in reference.splitlines() if ln.startswith(prefix)]
        options = [o for p in _command(command).params for o in p.opts if o.startswith("--")]
        assert options
        for option in options:
            assert option in line, (command, option)
    assert "# Labels" in (ROOT / "docs" / "labels.md").read_text(encoding="utf-8")

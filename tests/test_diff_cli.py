"""`calibrate diff` on the command line: --check exit codes, user errors, and the docs in step."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.diff.compare import Materiality

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "diff"
runner = CliRunner()


def diff(*args: str | Path):
    return runner.invoke(app, ["diff", *(str(a) for a in args)])


@pytest.mark.parametrize(
    ("case", "exit_code"),
    [
        ("threshold_moved", 3),
        ("cascade_to_rules", 3),
        ("older_file", 3),
        ("small_drift", 0),
        ("identical", 0),
    ],
)
def test_check_exits_3_only_for_a_material_change(case: str, exit_code: int) -> None:
    result = diff(DATA / case / "old.yaml", DATA / case / "new.yaml", "--check")
    assert result.exit_code == exit_code, result.output
    assert result.stdout.startswith("## Routing config: ")  # the report is printed either way
    assert result.stderr == ""


def test_without_check_a_material_change_exits_0() -> None:
    result = diff(DATA / "threshold_moved" / "old.yaml", DATA / "threshold_moved" / "new.yaml")
    assert result.exit_code == 0
    assert "material change" in result.stdout


def test_a_bound_option_changes_the_verdict() -> None:
    pair = (DATA / "small_drift" / "old.yaml", DATA / "small_drift" / "new.yaml")
    assert diff(*pair, "--check").exit_code == 0
    tighter = diff(*pair, "--check", "--min-cost-change", "0.02")
    assert tighter.exit_code == 3
    assert "cost per 1k requests: $1.077428 → $1.054803" in tighter.stdout
    as_json = diff(*pair, "--check", "--json", "--min-cost-change", "0.02")
    assert as_json.exit_code == 3 and '"material": true' in as_json.stdout


def test_invalid_file_is_a_user_error_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "routing.yaml"
    text = (DATA / "identical" / "new.yaml").read_text(encoding="utf-8")
    bad.write_text(
        text.replace("certified: true", "certified: true\ncolour: red"), encoding="utf-8"
    )
    result = diff(DATA / "identical" / "old.yaml", bad, "--check")
    assert result.exit_code == 1  # never 3, even with --check
    assert result.stderr.startswith("Error: invalid routing file\n")
    assert f"{bad}: colour: unknown key (not allowed here)" in result.stderr
    assert "Hint: Use a routing.yaml written by `calibrate sweep`, or write one" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = diff(missing, DATA / "identical" / "new.yaml", "--check")
    assert result.exit_code == 1
    assert result.stderr == f"Error: routing file not found: {missing}\nHint: Check the path.\n"


def test_not_yaml_names_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "routing.yaml"
    broken.write_text("version: 1\nstrategy: [cascade\n", encoding="utf-8")
    result = diff(DATA / "identical" / "old.yaml", broken)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {broken}: line ")


@pytest.mark.parametrize(
    "args",
    [
        ["diff", "only-one.yaml"],
        ["diff", "a.yaml", "b.yaml", "--min-cost-change", "-0.1"],
        ["diff", "a.yaml", "b.yaml", "--no-such-option"],
    ],
)
def test_usage_errors_exit_2_never_3(args: list[str]) -> None:
    assert runner.invoke(app, args).exit_code == 2


def test_cli_defaults_are_the_materiality_defaults() -> None:
    command = typer.main.get_command(app).commands["diff"]  # type: ignore[attr-defined]
    defaults = {p.name: p.default for p in command.params}
    for field in fields(Materiality):
        assert defaults[field.name] == field.default, field.name


def test_help_has_an_example_and_the_exit_codes() -> None:
    result = runner.invoke(app, ["diff", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.stdout
    assert "3  only with --check: the change is material" in result.stdout


def test_commands_md_documents_every_diff_option() -> None:
    reference = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    (line,) = [ln for ln in reference.splitlines() if ln.startswith("calibrate diff OLD NEW ")]
    command = typer.main.get_command(app).commands["diff"]  # type: ignore[attr-defined]
    options = [o for p in command.params for o in p.opts if o.startswith("--")]
    assert options, "no options found"
    for option in options:
        assert option in line, option
    section = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    for code in ("0", "1", "2", "3"):
        assert re.search(rf"\b{code}\b", section), code
    assert "examples/github-actions/recalibrate.yml" in section

"""The monthly recalibration recipe (examples/github-actions/recalibrate.yml) cannot rot.

It must validate against GitHub's workflow schema (check-jsonschema's vendored copy, offline), call
only `calibrate` commands and options that exist, and its diff step must treat exit 3 as
"changed" without failing. The diff step's script is run for real with bash and `calibrate`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from calibrate.cli.app import app

pytestmark = pytest.mark.e2e  # the GitHub workflow's commands end to end: not in `make test-fast`

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "examples" / "github-actions" / "recalibrate.yml"
DATA = ROOT / "tests" / "data" / "diff"
SHELL_STOPS = {";", "&&", "||", "|", ">", ">>", "<", "&", ")", "2"}
COMMAND_STARTS = {"", ";", "&&", "||", "|", "!", "then", "else", "do", "(", "$("}


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def steps(workflow: dict) -> list[dict]:
    (job,) = workflow["jobs"].values()
    return job["steps"]


def run_scripts(workflow: dict) -> list[str]:
    return [step["run"] for step in steps(workflow) if "run" in step]


def check_schema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]
        + [str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_workflow_matches_github_schema() -> None:
    result = check_schema(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        WORKFLOW.read_text(encoding="utf-8").replace("runs-on:", "runs-onn:"), encoding="utf-8"
    )
    result = check_schema(broken)
    assert result.returncode == 1
    assert "'runs-on' is a required property" in result.stdout


def test_runs_monthly_off_the_hour_and_on_demand(workflow: dict) -> None:
    triggers = workflow[True]  # PyYAML reads the key `on` as the boolean true
    (schedule,) = triggers["schedule"]
    minute, hour, day, month, weekday = schedule["cron"].split()
    assert int(minute) != 0, "minute :00 is the busiest; scheduled runs may be dropped"
    assert 0 <= int(hour) <= 23 and 1 <= int(day) <= 28
    assert (month, weekday) == ("*", "*")
    assert "workflow_dispatch" in triggers
    assert workflow["permissions"] == {"contents": "write", "pull-requests": "write"}


def test_opens_the_pull_request_only_when_changed(workflow: dict) -> None:
    (diff_step,) = [s for s in steps(workflow) if s.get("id") == "diff"]
    (pr_step,) = [s for s in steps(workflow) if "create-pull-request" in s.get("uses", "")]
    assert pr_step["uses"] == "peter-evans/create-pull-request@v8"
    assert pr_step["if"] == f"steps.{diff_step['id']}.outputs.changed == 'true'"
    assert pr_step["with"]["body-path"] == "${{ env.OUT }}/diff.md"
    assert pr_step["with"]["add-paths"] == "${{ env.ROUTING }}"
    assert "$GITHUB_STEP_SUMMARY" in diff_step["run"]


def test_install_step_does_not_take_the_unrelated_pypi_package(workflow: dict) -> None:
    spec = workflow["env"]["CALIBRATE_PIP_SPEC"]
    assert spec.startswith("calibrate @ git+https://"), spec


# --- every `calibrate …` invocation must parse with the real CLI --------------------------------


def shell_words(script: str) -> list[list[str]]:
    """Each line of a shell script as words (line continuations joined, comments dropped)."""
    lexed = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        lexed.append(list(lexer))
    return lexed


def calibrate_invocations(script: str) -> list[list[str]]:
    """The argument lists of every `calibrate` command in a script (up to a redirect or pipe)."""
    found = []
    for words in shell_words(script):
        for i, word in enumerate(words):
            if word == "calibrate" and (words[i - 1] if i else "") in COMMAND_STARTS:
                args = []
                for arg in words[i + 1 :]:
                    if arg in SHELL_STOPS:
                        break
                    args.append(arg)
                found.append(args)
    return found


def cli_problem(args: list[str]) -> str | None:
    """Why `calibrate ARGS` would not parse, or None when it would."""
    group = typer.main.get_command(app)
    if not args or args[0] not in group.commands:  # type: ignore[attr-defined]
        return f"no such command: calibrate {' '.join(args[:1])}"
    command = group.commands[args[0]]  # type: ignore[attr-defined]
    help_text = CliRunner().invoke(app, [args[0], "--help"]).stdout
    unknown = [
        a.split("=")[0] for a in args[1:] if a.startswith("--") and a.split("=")[0] not in help_text
    ]
    if unknown:
        return f"calibrate {args[0]} --help does not list {', '.join(unknown)}"
    try:
        command.make_context(f"calibrate {args[0]}", list(args[1:]))
    except Exception as exc:  # click's UsageError family (newer Typer vendors its own click)
        if not hasattr(exc, "format_message"):
            raise
        return f"calibrate {' '.join(args)}: {exc.format_message()}"
    return None


def test_every_calibrate_command_in_the_workflow_exists(workflow: dict) -> None:
    invocations = [a for s in run_scripts(workflow) for a in calibrate_invocations(s)]
    assert {a[0] for a in invocations} >= {"sweep", "diff"}, invocations
    assert ["diff", "$ROUTING", "$OUT/routing.yaml", "--check"] in invocations
    problems = [p for a in invocations if (p := cli_problem(a))]
    assert problems == []


def test_the_invocation_check_catches_a_rotten_recipe() -> None:
    script = (
        'set +e\ncalibrate diff "$A" "$B" --chek > out.md\nif ! calibrate sweeep logs; then :; fi\n'
    )
    invocations = calibrate_invocations(script)
    assert invocations == [["diff", "$A", "$B", "--chek"], ["sweeep", "logs"]]
    assert [cli_problem(a) for a in invocations] == [
        "calibrate diff --help does not list --chek",
        "no such command: calibrate sweeep",
    ]
    assert cli_problem(["sweep", "logs", "--seed", "abc"]) is not None  # bad values too
    assert calibrate_invocations("echo 'calibrate diff a b'  # calibrate diff x") == []


# --- the diff step's script, run for real ------------------------------------------------------


def run_diff_step(workflow: dict, tmp_path: Path, committed: Path | None, candidate: Path):
    """Run the diff step with bash as GitHub does (-eo pipefail), `calibrate` from this venv."""
    (step,) = [s for s in steps(workflow) if s.get("id") == "diff"]
    assert "${{" not in step["run"], "pass values through env:, not expressions inside run:"
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(candidate, out / "routing.yaml")
    (out / "report.md").write_text("# calibrate report\n", encoding="utf-8")
    env = {
        **os.environ,
        **workflow["env"],
        "ROUTING": str(committed if committed is not None else tmp_path / "absent.yaml"),
        "OUT": str(out),
        "GITHUB_OUTPUT": str(tmp_path / "github_output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    script = tmp_path / "step.sh"
    script.write_text(step["run"], encoding="utf-8")
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    outputs = tmp_path / "github_output"
    summary = tmp_path / "summary.md"
    return (
        result,
        outputs.read_text() if outputs.exists() else "",
        summary.read_text() if summary.exists() else "",
    )


def test_diff_step_treats_exit_3_as_changed(workflow: dict, tmp_path: Path) -> None:
    pair = DATA / "threshold_moved"
    result, outputs, summary = run_diff_step(
        workflow, tmp_path, pair / "old.yaml", pair / "new.yaml"
    )
    assert result.returncode == 0, result.stderr
    assert outputs == "changed=true\n"
    assert summary.startswith("## Routing config: material change")
    assert "# calibrate report" in summary
    assert (tmp_path / "out" / "diff.md").read_text().startswith("## Routing config: material")


def test_diff_step_without_material_change(workflow: dict, tmp_path: Path) -> None:
    pair = DATA / "identical"
    result, outputs, summary = run_diff_step(
        workflow, tmp_path, pair / "old.yaml", pair / "new.yaml"
    )
    assert result.returncode == 0, result.stderr
    assert outputs == "changed=false\n"
    assert summary.startswith("## Routing config: no material change")


def test_diff_step_fails_on_a_bad_file(workflow: dict, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\n", encoding="utf-8")
    result, outputs, _ = run_diff_step(workflow, tmp_path, bad, DATA / "identical" / "new.yaml")
    assert result.returncode == 1
    assert "Error: invalid routing file" in result.stderr
    assert outputs == ""


def test_diff_step_first_calibration(workflow: dict, tmp_path: Path) -> None:
    result, outputs, summary = run_diff_step(
        workflow, tmp_path, None, DATA / "identical" / "new.yaml"
    )
    assert result.returncode == 0, result.stderr
    assert outputs == "changed=true\n"
    assert summary.startswith("## First calibration")

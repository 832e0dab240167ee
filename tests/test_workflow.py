"""The monthly recalibration recipe (examples/github-actions/recalibrate.yml) cannot rot.

It must validate against GitHub's workflow schema (check-jsonschema's vendored copy, offline), call
only `calibrate` commands and options that exist (with `$EXPORT_TARGET` set to each export target),
and its diff step must treat exit 3 as "changed" without failing. The diff step's and the stage
step's scripts are run for real with bash and `calibrate`, with and without `EXPORT_TARGET`.
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
from export_support import cascade2, cascade3, write_routing, write_tiers
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.export.common import TARGETS

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
    (stage_step,) = [s for s in steps(workflow) if s.get("id") == "stage"]
    assert stage_step["if"] == pr_step["if"]
    assert pr_step["with"]["add-paths"].splitlines() == [
        "${{ env.ROUTING }}",
        "${{ steps.stage.outputs.exported }}",  # empty (ignored) without EXPORT_TARGET
    ]
    assert "$GITHUB_STEP_SUMMARY" in diff_step["run"]
    assert workflow["env"]["EXPORT_TARGET"] == "", "exporting is opt-in"


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


@pytest.mark.parametrize("target", TARGETS)
def test_every_calibrate_command_in_the_workflow_exists(workflow: dict, target: str) -> None:
    invocations = [
        [target if a == "$EXPORT_TARGET" else a for a in args]
        for s in run_scripts(workflow)
        for args in calibrate_invocations(s)
    ]
    assert {a[0] for a in invocations} >= {"sweep", "diff", "export"}, invocations
    assert ["diff", "$ROUTING", "$OUT/routing.yaml", "--check"] in invocations
    assert [
        "diff", "$ROUTING", "$OUT/routing.yaml", "--check", "--export-to", target, "--tiers", "$TIERS"
    ] in invocations  # fmt: skip
    assert ["export", "$ROUTING", "--to", target, "--tiers", "$TIERS", "--json"] in invocations
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
    assert cli_problem(["diff", "a", "b", "--export-to", "$EXPORT_TARGET"]) is not None
    assert calibrate_invocations("echo 'calibrate diff a b'  # calibrate diff x") == []


# --- the diff step's script, run for real ------------------------------------------------------


def run_step(workflow: dict, step_id: str, cwd: Path, env: dict[str, str]):
    """Run a step's script with bash as GitHub does (-eo pipefail) in `cwd`, `calibrate` and
    `python` from this venv; returns (result, $GITHUB_OUTPUT's text)."""
    (step,) = [s for s in steps(workflow) if s.get("id") == step_id]
    assert "${{" not in step["run"], "pass values through env:, not expressions inside run:"
    outputs = cwd / "github_output"
    env = {
        **os.environ,
        **workflow["env"],
        "GITHUB_OUTPUT": str(outputs),
        "GITHUB_STEP_SUMMARY": str(cwd / "summary.md"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        **env,
    }
    script = cwd / f"{step_id}.sh"
    script.write_text(step["run"], encoding="utf-8")
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, outputs.read_text() if outputs.exists() else ""


def run_diff_step(
    workflow: dict, tmp_path: Path, committed: Path | None, candidate: Path, **env: str
):
    """The diff step on a committed routing.yaml (None: none yet) and a sweep's candidate."""
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(candidate, out / "routing.yaml")
    (out / "report.md").write_text("# calibrate report\n", encoding="utf-8")
    env = {
        "ROUTING": str(committed if committed is not None else tmp_path / "absent.yaml"),
        "OUT": str(out),
        **env,
    }
    result, outputs = run_step(workflow, "diff", tmp_path, env)
    summary = tmp_path / "summary.md"
    return result, outputs, summary.read_text() if summary.exists() else ""


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


# --- with EXPORT_TARGET: the diff explains the exported file, the stage step writes it ---------


@pytest.fixture
def cascades(tmp_path: Path) -> dict[str, Path]:
    """A committed 2-tier cascade, a candidate with a moved threshold, a 3-tier candidate vLLM SR
    cannot express (its steps' thresholds differ), and the tiers file."""
    data = tmp_path / "data"
    data.mkdir()
    return {
        "committed": write_routing(data / "committed.yaml", cascade2(-0.6)),
        "moved": write_routing(data / "moved.yaml", cascade2(-0.45)),
        "three": write_routing(data / "three.yaml", cascade3(-0.6, -0.9)),
        "tiers": write_tiers(data / "tiers.yaml"),
    }


def test_diff_step_with_export_target_explains_the_exported_file(
    workflow: dict, tmp_path: Path, cascades: dict[str, Path]
) -> None:
    result, outputs, summary = run_diff_step(
        workflow,
        tmp_path,
        cascades["committed"],
        cascades["moved"],
        EXPORT_TARGET="vllm-sr",
        TIERS=str(cascades["tiers"]),
    )
    assert result.returncode == 0, result.stderr
    assert outputs == "changed=true\n"
    diff_md = (tmp_path / "out" / "diff.md").read_text()
    assert diff_md.startswith("## Routing config: material change")
    assert "### Exported vllm-sr config" in diff_md and "### Exported vllm-sr config" in summary
    assert "+        threshold: 0.85\n" in diff_md


def test_diff_step_with_an_inexpressible_candidate_still_reports(
    workflow: dict, tmp_path: Path, cascades: dict[str, Path]
) -> None:
    result, outputs, _ = run_diff_step(
        workflow,
        tmp_path,
        cascades["committed"],
        cascades["three"],
        EXPORT_TARGET="vllm-sr",
        TIERS=str(cascades["tiers"]),
    )
    assert result.returncode == 0, result.stderr
    assert outputs == "changed=true\n"
    assert "cannot be exported to vllm-sr" in (tmp_path / "out" / "diff.md").read_text()


def test_link_step_points_the_summary_and_the_pull_request_at_the_charts(
    workflow: dict, tmp_path: Path
) -> None:
    """report.md links no image; after the upload, the run's summary and the pull request's body
    (diff.md) get a link to the outputs, where report.html holds the charts."""
    (link,) = [s for s in steps(workflow) if s.get("id") == "link"]
    (upload,) = [s for s in steps(workflow) if s.get("id") == "upload"]
    order = [s.get("id") for s in steps(workflow)]
    pr = next(
        i for i, s in enumerate(steps(workflow)) if "create-pull-request" in s.get("uses", "")
    )
    assert order.index("upload") < order.index("link") < pr
    assert upload["uses"].startswith("actions/upload-artifact@")
    assert link["env"]["ARTIFACT_URL"] == "${{ steps.upload.outputs.artifact-url }}"
    out = tmp_path / "out"
    out.mkdir()
    (out / "diff.md").write_text("## Routing config: material change\n", encoding="utf-8")
    url = "https://github.com/o/r/actions/runs/1/artifacts/2"
    result, _ = run_step(workflow, "link", tmp_path, {"OUT": str(out), "ARTIFACT_URL": url})
    assert result.returncode == 0, result.stderr
    for text in ((out / "diff.md").read_text(), (tmp_path / "summary.md").read_text()):
        assert text.rstrip().endswith(f"report.html in the run's outputs ({url}).")


def run_stage_step(workflow: dict, tmp_path: Path, candidate: Path, tiers: Path, **env: str):
    """The stage step in a fresh checkout holding the committed routing.yaml (relative paths, as
    in the workflow)."""
    repo = tmp_path / "repo"
    (repo / "out").mkdir(parents=True)
    (repo / "routing.yaml").write_text("committed\n", encoding="utf-8")
    shutil.copy(candidate, repo / "out" / "routing.yaml")
    shutil.copy(tiers, repo / "tiers.yaml")
    env = {"ROUTING": "routing.yaml", "OUT": "out", "TIERS": "tiers.yaml", **env}
    return (repo, *run_step(workflow, "stage", repo, env))


@pytest.mark.parametrize(
    ("target", "name"), [("vllm-sr", "vllm-sr.yaml"), ("portkey", "portkey.json")]
)
def test_stage_step_exports_beside_routing_yaml(
    workflow: dict, tmp_path: Path, cascades: dict[str, Path], target: str, name: str
) -> None:
    repo, result, outputs = run_stage_step(
        workflow, tmp_path, cascades["moved"], cascades["tiers"], EXPORT_TARGET=target
    )
    assert result.returncode == 0, result.stderr
    assert (repo / "routing.yaml").read_text() == cascades["moved"].read_text()
    assert outputs == f"exported={name}\n"  # the path create-pull-request adds
    assert (repo / name).read_text().strip()
    assert sorted(p.name for p in repo.iterdir() if p.is_file()) == sorted(
        ["routing.yaml", "tiers.yaml", name, "stage.sh", "github_output"]
    )


def test_stage_step_without_export_target_stages_routing_yaml_only(
    workflow: dict, tmp_path: Path, cascades: dict[str, Path]
) -> None:
    repo, result, outputs = run_stage_step(workflow, tmp_path, cascades["moved"], cascades["tiers"])
    assert result.returncode == 0, result.stderr
    assert (repo / "routing.yaml").read_text() == cascades["moved"].read_text()
    assert outputs == ""
    assert not any((repo / n).exists() for n in ("vllm-sr.yaml", "portkey.json", "litellm.yaml"))


def test_stage_step_fails_when_the_gateway_cannot_express_the_candidate(
    workflow: dict, tmp_path: Path, cascades: dict[str, Path]
) -> None:
    repo, result, outputs = run_stage_step(
        workflow, tmp_path, cascades["three"], cascades["tiers"], EXPORT_TARGET="vllm-sr"
    )
    assert result.returncode == 1
    assert "Error: cannot export to vllm-sr" in result.stderr
    assert outputs == "" and not (repo / "vllm-sr.yaml").exists()

"""`--help` and `--version` read well at 80 columns, and every `calibrate …` command the README shows
parses: the subcommand exists and names only options it has."""

from __future__ import annotations

import functools
import re
from enum import Enum
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import pytest
import typer
from typer.testing import CliRunner

import calibrate
from calibrate.cli import export as cli_export
from calibrate.cli import labels as cli_labels
from calibrate.cli import sweep as cli_sweep
from calibrate.cli.app import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
ROOT_COMMAND: Any = typer.main.get_command(app)


def _command_paths(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The app itself and every command and group registered on it, recursively."""
    found = [path]
    for name, command in getattr(group, "commands", {}).items():
        found.extend(_command_paths(command, (*path, name)))
    return found


def _resolve(path: tuple[str, ...]) -> Any:
    command = ROOT_COMMAND
    for name in path:
        command = command.commands[name]
    return command


COMMANDS = _command_paths(ROOT_COMMAND)


@functools.cache
def _help(path: tuple[str, ...]) -> str:
    """The command's --help at 80 columns (it must exit 0); each command rendered once."""
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "calibrate")
def test_help_fits_80_columns_and_shows_every_option_whole(path: tuple[str, ...]) -> None:
    text = _help(path)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80 or _only_examples_overflow(lines), text
    assert "…" not in text, "a truncated name or help text"
    for param in _resolve(path).params:
        for name in (*param.opts, *param.secondary_opts):
            if name.startswith("-"):
                # the whole name, followed by a space, a comma or the end of the line
                assert re.search(rf"(^|\s){re.escape(name)}(\s|,|$)", text, re.M), (path, name)
        if getattr(param, "is_flag", False):
            row = next(line for line in lines if line.strip().startswith(param.opts[0]))
            assert "<bool>" not in row and "BOOLEAN" not in row, row
        choices = _choices(param)
        if choices:
            assert f"{param.opts[0]} <{'|'.join(choices)}>" in text, (path, param.name)


def _choices(param: Any) -> tuple[str, ...]:
    """The fixed values an option accepts (a Literal or an Enum annotation), else ()."""
    annotation = param.type_descriptor.annotation
    if get_origin(annotation) in (Union, UnionType):
        (annotation,) = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is Literal:
        return tuple(str(a) for a in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return tuple(str(member.value) for member in annotation)
    return ()


def _only_examples_overflow(lines: list[str]) -> bool:
    """Example command lines (indented 6, verbatim) may run past 80 columns: they must stay
    copyable in one piece."""
    return all(line.startswith("      calibrate ") for line in lines if len(line) > 80)


def test_no_help_says_bool_or_str_for_a_choice() -> None:
    text = "\n".join(_help(path) for path in COMMANDS)
    assert "<bool>" not in text
    assert "--per-segment <app|region|intent>" in text
    assert "--source <human|reference|judge>" in text
    assert "--to <vllm-sr|portkey|litellm>" in text
    assert "--by <region|app>" in text


def test_prose_paragraphs_are_rewrapped_not_hard_wrapped() -> None:
    """A docstring line break mid-sentence is not kept: the sentence flows to the full width."""
    text = _help(("sweep",))
    assert "without LOGS it sweeps what the store already holds" in " ".join(text.split())
    assert not any(line.rstrip().endswith("sweeps what") for line in text.splitlines())


def test_the_choices_are_the_ones_the_stages_accept() -> None:
    from calibrate.export.common import TARGETS
    from calibrate.labels.scorers import Kind
    from calibrate.monitor.stage import SEGMENT_COLUMNS

    assert get_args(cli_export.Target) == TARGETS
    assert get_args(cli_labels.ScorerKind) == get_args(Kind)
    per_segment = next(p for p in _resolve(("sweep",)).params if p.name == "per_segment")
    assert set(_choices(per_segment)) == {"app", "region", "intent"}  # segment_columns()
    by = next(p for p in _resolve(("monitor",)).params if p.name == "by")
    assert set(_choices(by)) == set(SEGMENT_COLUMNS)
    assert [c.value for c in cli_sweep.CertifyOn] == ["drop", "regret"]


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"calibrate {calibrate.__version__}"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{calibrate.__version__}"' in pyproject


# --- every `calibrate …` command in the README parses --------------------------------------------


def _readme_commands() -> list[str]:
    """The `calibrate …` commands of README.md: each line of its code blocks that runs one
    (continuations joined, comments and redirections cut), and each inline code span that starts
    with one (e.g. the command table's `calibrate ingest PATH… [--db FILE]`)."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.split(r"\s#|\s>|\s\|", line)[0]
            found = re.search(r"(?:^|[\s/:])calibrate\s+(\S.*)", line)
            if found:
                commands.append(found.group(1).strip())
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    commands += re.findall(r"`calibrate\s+([a-z][^`]*)`", prose)
    return commands


README_COMMANDS = _readme_commands()


def test_the_readme_shows_commands() -> None:
    assert len(README_COMMANDS) >= 10
    assert any(command.startswith("sweep logs/ --tiers") for command in README_COMMANDS)
    assert any(command.startswith("labels judge --judge") for command in README_COMMANDS)


@pytest.mark.parametrize("command", README_COMMANDS)
def test_every_readme_command_parses(command: str) -> None:
    words = command.split()
    group = ROOT_COMMAND
    path: list[str] = []
    while words and hasattr(group, "commands") and re.fullmatch(r"[a-z][a-z-]*", words[0]):
        name = words.pop(0)
        assert name in group.commands, f"`calibrate {' '.join([*path, name])}`: no such command"
        group = group.commands[name]
        path.append(name)
    _help(tuple(path))  # exits 0
    known = {name for param in group.params for name in (*param.opts, *param.secondary_opts)}
    for option in re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", command):
        assert option in known, f"`calibrate {' '.join(path)}` has no option {option}"

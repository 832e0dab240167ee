"""The documentation stays true and short: the README is a front page (≤ 1,500 words), every
relative link in README.md and docs/*.md resolves (file, and heading anchor when it names one),
docs/commands.md lists every command with exactly the options `--help` has, the `calibrate …`
lines of the docs' code blocks parse, and the README's certification table quotes
docs/certification.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from test_cli_help import ROOT_COMMAND, _command_paths, _resolve

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MARKDOWN = [README, *DOCS]
MAX_README_WORDS = 1500

FENCE = re.compile(r"^```[^\n]*\n.*?^```[ \t]*$", re.S | re.M)
OPTION = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")


def _prose(text: str) -> str:
    """The Markdown without fenced code blocks and inline code spans (links there are not links)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def _code_lines(text: str) -> list[str]:
    """The lines of the fenced code blocks."""
    return [line for block in FENCE.findall(text) for line in block.splitlines()[1:-1]]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# --- the README is a front page ------------------------------------------------------------------


def test_the_readme_is_at_most_1500_words() -> None:
    words = len(README.read_text(encoding="utf-8").split())  # as `wc -w` counts them
    assert words <= MAX_README_WORDS, f"README.md has {words} words; move detail to docs/"


def test_the_readme_keeps_the_two_commands_and_the_screenshot() -> None:
    text = README.read_text(encoding="utf-8")
    code = "\n".join(_code_lines(text))
    assert re.search(r"^make demo\s", code, re.M)
    assert re.search(r"^make test\s+# the whole test suite: about \d+ minutes", code, re.M)
    assert re.search(r"^make test-fast\s", code, re.M)
    assert "](docs/report-screenshot.png)" in text
    assert (ROOT / "docs" / "report-screenshot.png").is_file()


# --- links -----------------------------------------------------------------------------------------


def _links(path: Path) -> list[str]:
    """The targets of the inline links and images of a Markdown file, outside code."""
    return re.findall(
        r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", _prose(path.read_text())
    )


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: formatting dropped, lower case, punctuation removed, spaces
    to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").replace("*", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (GitHub numbers repeated slugs -1, -2, …)."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", path.read_text()), re.M):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


LINKS = [
    (path, target)
    for path in MARKDOWN
    for target in _links(path)
    if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
]


def test_the_docs_have_relative_links() -> None:
    assert len(LINKS) >= 40
    assert any(target.startswith("docs/") for path, target in LINKS if path == README)


@pytest.mark.parametrize(("path", "target"), LINKS, ids=[f"{_rel(p)}->{t}" for p, t in LINKS])
def test_every_relative_link_resolves(path: Path, target: str) -> None:
    file_part, _, anchor = target.partition("#")
    linked = (path.parent / file_part).resolve() if file_part else path
    assert linked.is_relative_to(ROOT), f"{_rel(path)}: {target} leaves the repository"
    assert linked.exists(), f"{_rel(path)}: {target} does not exist"
    if anchor and linked.suffix == ".md":
        assert anchor in _anchors(linked), f"{_rel(path)}: {target}: no such heading"


def test_no_doc_links_to_design_md() -> None:
    """DESIGN.md is not in the repository."""
    for path in MARKDOWN:
        assert "DESIGN.md" not in path.read_text(), _rel(path)


def test_the_slug_matches_github() -> None:
    assert _slug("Portkey gateway (`--to portkey`)") == "portkey-gateway---to-portkey"
    assert _slug("`calibrate labels import`") == "calibrate-labels-import"
    assert _slug("tiers.yaml") == "tiersyaml"
    assert _slug("The store: one writer, many readers") == "the-store-one-writer-many-readers"


# --- docs/commands.md against the Typer app --------------------------------------------------------


def _options(command: Any) -> set[str]:
    return {n for p in command.params for n in (*p.opts, *p.secondary_opts) if n.startswith("--")}


COMMANDS = _command_paths(ROOT_COMMAND)


def _command_sections() -> dict[tuple[str, ...], str]:
    """docs/commands.md's sections headed `calibrate …` (a heading is the whole code span), each
    up to the next heading."""
    text = (ROOT / "docs" / "commands.md").read_text()
    sections: dict[tuple[str, ...], str] = {}
    current: tuple[str, ...] | None = None
    in_fence = False
    for line in text.splitlines():
        in_fence ^= line.startswith("```")
        heading = None if in_fence else re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            named = re.fullmatch(r"`calibrate((?: [a-z][a-z-]*)*)`", heading.group(1).strip())
            current = tuple(named.group(1).split()) if named else None
            if current is not None:
                assert current not in sections, f"two sections for calibrate {' '.join(current)}"
                sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections


SECTIONS = _command_sections()


def _documented_options(section: str) -> tuple[set[str], set[str]]:
    """(options in the first cell of the section's table rows, options in its synopsis lines)."""
    table = set()
    for row in re.findall(r"^\|(.*)$", _strip_comments(section), re.M):
        first = re.split(r"(?<!\\)\|", row)[0]
        table.update(OPTION.findall(first))
    synopsis = {o for line in _code_lines(section) for o in OPTION.findall(line)}
    return table, synopsis


def _strip_comments(text: str) -> str:
    return re.sub(r"<!--.*?-->", "", text, flags=re.S)


def test_every_command_has_a_section_in_commands_md() -> None:
    missing = [" ".join(p) for p in COMMANDS if p not in SECTIONS]
    assert not missing, f"docs/commands.md has no section for: {missing}"
    unknown = [" ".join(p) for p in SECTIONS if p not in COMMANDS]
    assert not unknown, f"docs/commands.md documents commands that do not exist: {unknown}"


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "calibrate")
def test_commands_md_lists_exactly_the_options_of_each_command(path: tuple[str, ...]) -> None:
    name = " ".join(("calibrate", *path))
    known = _options(_resolve(path))
    table, synopsis = _documented_options(SECTIONS[path])
    assert not (table | synopsis) - known, f"{name}: documented but not in --help"
    assert not known - table, f"{name}: in --help but not in its docs/commands.md table"
    for line in _code_lines(SECTIONS[path]):
        if line.startswith("calibrate"):
            assert re.match(rf"{re.escape(name)}(\s|$)", line), (name, line)


def test_the_options_found_are_the_ones_in_the_tables() -> None:
    table, synopsis = _documented_options(SECTIONS[("sweep",)])
    assert {"--router", "--no-router", "--per-segment", "--certify-on"} <= table
    assert "--max-quality-drop" in synopsis
    assert "--help" not in table


# --- `calibrate …` lines in the docs' code blocks parse --------------------------------------------


def _doc_commands() -> list[tuple[str, str]]:
    """(file, command) for each line of a code block in docs/*.md (fenced, or indented by 4) that
    runs `calibrate …`; comments, redirections and pipes cut."""
    found = []
    for path in DOCS:
        text = path.read_text()
        lines = _code_lines(text) + re.findall(r"^ {4}(calibrate\s.*)$", FENCE.sub("", text), re.M)
        for line in lines:
            line = re.split(r"\s#|\s>|\s\|\s", line.strip())[0]
            if line.startswith("calibrate "):
                found.append((_rel(path), line.removeprefix("calibrate ").strip()))
    return found


DOC_COMMANDS = _doc_commands()


def test_the_docs_show_commands() -> None:
    assert len(DOC_COMMANDS) >= 30
    assert {file for file, _ in DOC_COMMANDS} >= {"docs/commands.md", "docs/deploy.md"}


@pytest.mark.parametrize(
    ("file", "command"), DOC_COMMANDS, ids=[f"{f}: {c}" for f, c in DOC_COMMANDS]
)
def test_every_doc_command_parses(file: str, command: str) -> None:
    words = command.split()
    group = ROOT_COMMAND
    path: list[str] = []
    while words and hasattr(group, "commands") and re.fullmatch(r"[a-z][a-z-]*", words[0]):
        name = words.pop(0)
        assert name in group.commands, (
            f"{file}: `calibrate {' '.join([*path, name])}`: no such command"
        )
        group = group.commands[name]
        path.append(name)
    known = _options(group)
    for option in OPTION.findall(command):
        assert option in known, f"{file}: `calibrate {' '.join(path)}` has no option {option}"


# --- the certification table of the README quotes docs/certification.md ---------------------------


def _table(text: str, first_header: str) -> list[dict[str, str]]:
    """The rows of the Markdown table whose header starts with `first_header`, as dicts."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)))
    return rows


def test_the_readme_certification_table_quotes_docs_certification() -> None:
    readme = _table(README.read_text(), "population")
    full = {
        (row["population"], row["labels"]): row
        for row in _table((ROOT / "docs" / "certification.md").read_text(), "population")
    }
    assert len(readme) >= 4
    for row in readme:
        for column, cell in row.items():
            labels = re.match(r"([\d,]+) labels", column)
            if not labels:
                continue
            source = full[(row["population"], labels.group(1))]
            regret, drop = (part.strip() for part in cell.split("→"))
            assert (regret, drop) == (
                source["savings kept regret"],
                source["savings kept drop"],
            ), (row["population"], column)

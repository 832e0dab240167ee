"""The pieces the sweep report and the monitor report share: a table block, Markdown-light inline
text (**bold** and `code`) rendered to HTML, tables in Markdown and HTML, and the base style.

Each report keeps its own page layout; this module holds what they render the same way (blocks,
sections, number formats), so the reports cannot drift apart in how a table or a code span looks.

Markdown-light text mixes our markup with data from the logs and configs (intents, request ids,
rule names and patterns, model names). Every Markdown writer (report.md, monitor.md, the diff's
Markdown, the labels section) passes its text through `safe_markdown` (table cells through
`markdown_cell`), so data lands in a pull-request body or a job summary as text: it can open no
HTML tag, comment or autolink (`<` before a letter, `/`, `!` or `?`), no link, image or link
definition (`]` before `(`, `[` or `:`), no character reference (`&` before `#` or a letter), and a
backslash in data cannot undo those escapes. Code spans are left as they are (Markdown renders them
literally), and characters that only restyle text (`*`, `_`, `~`) are left alone, so our own prose
renders byte for byte as before."""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass

BASE_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}"
    "table{border-collapse:collapse;margin:.5rem 0 1.5rem}th,td{border:1px solid #d0d7de;padding:.3rem .6rem;"
    "text-align:right}th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}"
    "code{background:#f6f8fa;padding:0 .2rem}div.table{overflow-x:auto;max-width:100%}"
    "p,li{overflow-wrap:anywhere}@media (max-width:50rem){th,td{padding:.2rem .35rem;font-size:.85rem}}"
)


@dataclass(frozen=True, slots=True)
class Table:
    """A table block: header and rows of text cells (Markdown-light)."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Chart:
    """A chart file of the output folder (inline SVG in HTML, an image link in Markdown)."""

    file: str
    title: str


@dataclass(frozen=True, slots=True)
class Bullets:
    """A list block: one Markdown-light item each."""

    items: tuple[str, ...]


Block = (
    str | Table | Chart | Bullets
)  # a paragraph (Markdown-light: **bold** and `code` only), table, chart or list
Section = tuple[str, tuple[Block, ...]]


def pct(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.1%}"


def usd(x: float) -> str:
    return f"${x:.4f}"


def ms(x: float) -> str:
    return f"{x:,.0f} ms"


def num(x: float | None, digits: int) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def inline_html(text: str) -> str:
    """Escape `text` and turn **bold** and `code` spans into HTML."""
    escaped = html.escape(text)
    parts = escaped.split("**")
    escaped = "".join(p if i % 2 == 0 else f"<strong>{p}</strong>" for i, p in enumerate(parts))
    parts = escaped.split("`")
    return "".join(p if i % 2 == 0 else f"<code>{p}</code>" for i, p in enumerate(parts))


_BACKTICKS = re.compile(r"`+")
_UNSAFE = re.compile(r"""\\(?=[!-/:-@\[-`{-~])|<(?=[A-Za-z/!?])|&(?=[#A-Za-z])|\](?=[(\[:])""")
"""What data could start markup with: a backslash before ASCII punctuation, `<` opening a tag,
comment or autolink, `&` opening a character reference, `]` closing a link, image or definition."""


def safe_markdown(text: str) -> str:
    """Markdown-light text as GitHub Markdown: our **bold** and `code` spans render, and nothing in
    the data can start HTML, a link, an image or a character reference (backslash-escaped; code
    spans, found as CommonMark finds them, are kept verbatim)."""
    spans = _code_spans(text)
    out, pos = [], 0
    for match in _UNSAFE.finditer(text):
        if not any(start <= match.start() < end for start, end in spans):
            out += [text[pos : match.start()], "\\"]
            pos = match.start()
    return "".join(out) + text[pos:]


def markdown_cell(text: str) -> str:
    """`safe_markdown` for a table cell: on one line, `|` escaped."""
    return safe_markdown(text).replace("\r", " ").replace("\n", " ").replace("|", "\\|")


def _code_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each code span: a backtick run up to the next run of the same length."""
    runs = [m.span() for m in _BACKTICKS.finditer(text)]
    spans, i = [], 0
    while i < len(runs):
        start, end = runs[i]
        close = next(
            (k for k in range(i + 1, len(runs)) if runs[k][1] - runs[k][0] == end - start), None
        )
        if close is None:
            i += 1
            continue
        spans.append((start, runs[close][1]))
        i = close + 1
    return spans


def table_markdown(table: Table) -> list[str]:
    """GitHub-flavoured Markdown lines of a table, then a blank line."""
    return [
        "| " + " | ".join(map(markdown_cell, table.header)) + " |",
        "|" + "|".join("---" for _ in table.header) + "|",
        *("| " + " | ".join(map(markdown_cell, row)) + " |" for row in table.rows),
        "",
    ]


def bullets_markdown(bullets: Bullets) -> list[str]:
    """Markdown lines of a list, then a blank line."""
    items = (safe_markdown(i).replace("\r", " ").replace("\n", " ") for i in bullets.items)
    return [*(f"- {item}" for item in items), ""]


def bullets_html(bullets: Bullets) -> str:
    return "<ul>" + "".join(f"<li>{inline_html(i)}</li>" for i in bullets.items) + "</ul>"


def table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    rows = "".join(
        "<tr>" + "".join(f"<td>{inline_html(c)}</td>" for c in row) + "</tr>" for row in table.rows
    )
    markup = f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    return f'<div class="table">{markup}</div>'  # scrolls sideways on a narrow screen

"""The pieces the sweep report and the monitor report share: a table block, Markdown-light inline
text (**bold** and `code`) rendered to HTML, tables in Markdown and HTML, and the base style.

Each report keeps its own page layout; this module holds what they render the same way (blocks,
sections, number formats), so the reports cannot drift apart in how a table or a code span looks."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

BASE_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}"
    "table{border-collapse:collapse;margin:.5rem 0 1.5rem}th,td{border:1px solid #d0d7de;padding:.3rem .6rem;"
    "text-align:right}th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}"
    "code{background:#f6f8fa;padding:0 .2rem}"
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


Block = (
    str | Table | Chart
)  # a paragraph (Markdown-light: **bold** and `code` only), table or chart
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


def table_markdown(table: Table) -> list[str]:
    """GitHub-flavoured Markdown lines of a table, then a blank line."""
    return [
        "| " + " | ".join(table.header) + " |",
        "|" + "|".join("---" for _ in table.header) + "|",
        *("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table.rows),
        "",
    ]


def table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    rows = "".join(
        "<tr>" + "".join(f"<td>{inline_html(c)}</td>" for c in row) + "</tr>" for row in table.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"

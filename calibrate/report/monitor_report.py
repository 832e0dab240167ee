"""Rendering a monitor run: monitor.json (the canonical form), monitor.md, monitor.html (with
inline SVG time-series charts) and the terminal text.

The result becomes a small document model (headings, paragraphs, tables, charts) rendered as
Markdown and as one self-contained HTML file, so both say the same thing; charts appear only in
the HTML. Nothing here computes statistics, and no output carries a clock time: the same inputs
and seed give byte-identical files.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path

from calibrate.monitor.stage import Chunk, MonitorResult
from calibrate.report.blocks import (
    BASE_CSS,
    Table,
    inline_html,
    safe_markdown,
    table_html,
    table_markdown,
)
from calibrate.report.monitor_charts import (
    Chart,
    cusum_chart,
    escalation_chart,
    health_chart,
    psi_chart,
    quality_chart,
    render_svg,
)
from calibrate.report.monitor_json import as_json
from calibrate.stats.intervals import Interval

OUTPUT_FILES = ("monitor.json", "monitor.md", "monitor.html")


Block = str | Table | Chart
Section = tuple[str, tuple[Block, ...]]


def write_outputs(result: MonitorResult, out_dir: Path) -> dict[str, Path]:
    """Write monitor.json, monitor.md and monitor.html atomically; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = sections(result)
    texts = {
        "monitor.json": json.dumps(as_json(result), indent=2, ensure_ascii=False) + "\n",
        "monitor.md": render_markdown(doc),
        "monitor.html": render_html(doc),
    }
    paths = {}
    for name, text in texts.items():
        path, tmp = out_dir / name, out_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        paths[name] = path
    return paths


# --- document -----------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.1%}"


def _span(i: Interval) -> str:
    if not (math.isfinite(i.low) and math.isfinite(i.high)):
        return "–"
    return f"{i.low:.1%}–{i.high:.1%}"


def _usd(x: float | None) -> str:
    return "–" if x is None else f"${x:.4f}"


def _intro(result: MonitorResult) -> str:
    cal = ", ".join(
        f"{c.tier}: {c.method or 'none'} on {c.labeled} labels" for c in result.calibration
    )
    expected = (
        f" routing.yaml expected an escalation rate of {_pct(result.expected_escalation_rate)}."
        if result.expected_escalation_rate is not None
        else ""
    )
    return (
        f"Deployed policy: **{result.policy}**. Logs {result.logs_start}..{result.logs_end}, "
        f"{result.requests:,} requests ({result.unevaluable:,} without the attempts the policy needs). "
        f"Reference window {result.reference.start}..{result.reference.end} ({result.reference.note}); the "
        f"detectors watch {result.monitored_start}..{result.logs_end} with a false-alarm rate of at most "
        f"{result.options.false_alarm_rate:.0%} per run on stationary traffic.{expected} "
        f"P(correct) mapping refitted on the reference window: {cal}."
    )


def _verdict(result: MonitorResult) -> tuple[Block, ...]:
    if result.recalibration_due:
        head = "**Recalibration is due** (`--check` exits 3):"
    else:
        head = "**Recalibration is not due**: no drift alarm."
    lines = [f"- {reason}" for reason in result.reasons]
    others = [a for a in result.alarms if not a.recalibrate]
    if others:
        lines.append("")
        lines.append("Also (these do not make recalibration due):")
        lines += [f"- {a.summary}" for a in others]
    return (head, "\n".join(lines)) if lines else (head,)


def _alarm_blocks(result: MonitorResult) -> tuple[Block, ...]:
    if not result.alarms:
        return ("None.",)
    table = Table(
        ("first day", "kind", "segment", "dangerous", "recalibrate"),
        tuple(
            (
                str(a.first_day),
                a.kind,
                a.segment,
                "yes" if a.dangerous else "no",
                "yes" if a.recalibrate else "no",
            )
            for a in result.alarms
        ),
    )
    evidence = [
        f"**{a.first_day} {a.kind} ({a.segment})**: {a.summary}\n"
        + "\n".join(f"  - {e}" for e in a.evidence)
        for a in result.alarms
    ]
    return (table, *evidence)


_SERIES_HEADER = (
    "start",
    "ref",
    "requests",
    "escalation",
    "95% interval",
    "est. quality",
    "est. kept quality",
    "labeled",
    "measured quality",
    "95% interval",
    "cost / 1k",
)


def _series_table(chunks: list[Chunk]) -> Table:
    return Table(
        _SERIES_HEADER,
        tuple(
            (
                str(c.start),
                "ref" if c.reference else "",
                f"{c.summary.requests:,}",
                _pct(c.summary.escalation_rate),
                _span(c.escalation_interval),
                _pct(c.summary.estimated_quality),
                _pct(c.summary.estimated_kept_quality),
                str(c.summary.served_labeled),
                _pct(c.measured_quality),
                _span(c.measured_interval) if c.summary.served_labeled else "–",
                _usd(c.summary.cost_per_1k_usd),
            )
            for c in chunks
        ),
    )


def _series_sections(result: MonitorResult) -> list[Section]:
    out: list[Section] = []
    segments = list(dict.fromkeys(c.segment for c in result.chunks))
    for segment in segments:
        weeks = [c for c in result.chunks if c.segment == segment and c.period == "week"]
        out.append((f"Weekly: {segment}", (_series_table(weeks),)))
    days = [c for c in result.chunks if c.segment == "all" and c.period == "day"]
    out.append(
        (
            "Daily: all",
            (
                escalation_chart(result),
                cusum_chart(result),
                quality_chart(result),
                _series_table(days),
            ),
        )
    )
    return out


def _detector_blocks(result: MonitorResult) -> tuple[Block, ...]:
    if not result.detectors:
        return ("A single-tier policy never escalates: no escalation detector.",)
    text = (
        "Two one-sided CUSUMs (k = 0.5) on the daily escalation rate standardised by its "
        "binomial SE plus the between-day variance τ² of the reference; h is simulated so that a "
        "stationary run of this length and these volumes alarms with probability α."
    )
    table = Table(
        ("segment", "reference rate", "τ", "α", "h", "rose (fired)", "fell (fired)"),
        tuple(
            (
                d.segment,
                _pct(d.p0),
                f"{math.sqrt(d.tau2):.4f}",
                f"{d.alpha:.4f}",
                f"{d.h:.2f}",
                str(d.first_up or "–"),
                str(d.first_down or "–"),
            )
            for d in result.detectors
        ),
    )
    return (text, table, *_quality_blocks(result))


def _quality_blocks(result: MonitorResult) -> tuple[Block, ...]:
    if not result.quality:
        return ("Too few labeled kept requests for the weekly labeled-quality test.",)
    table = Table(
        ("week", "labeled", "acceptable", "p-value", "α", "fell"),
        tuple(
            (
                f"{q.start}..{q.end}",
                str(q.labeled),
                _pct(q.acceptable / q.labeled),
                f"{q.p_value:.3g}",
                f"{q.alpha:.3g}",
                "yes" if q.fell else "",
            )
            for q in result.quality
        ),
    )
    text = (
        "Measured quality of the kept requests per monitored week against the reference "
        "(one-sided Fisher exact test, Bonferroni over the weeks):"
    )
    return (text, table)


def _psi_blocks(result: MonitorResult) -> tuple[Block, ...]:
    weeks = [p for p in result.psi if p.period == "week"]
    if not weeks:
        return ("No tier has enough confidences in the reference window for PSI.",)
    daily_above = sum(p.above for p in result.psi if p.period == "day")
    text = (
        "PSI of each tier's confidence against the reference window (10 bins at the reference "
        "deciles). A chunk alarms above max(0.1, (1/n + 1/m)·χ²₉(1 − α)); the limit grows "
        f"for small chunks. Days above their limit: {daily_above}."
    )
    table = Table(
        ("tier", "start", "end", "requests", "PSI", "limit", "above"),
        tuple(
            (
                p.tier,
                str(p.start),
                str(p.end),
                f"{p.requests:,}",
                f"{p.psi:.4f}",
                f"{p.limit:.4f}",
                "yes" if p.above else "",
            )
            for p in weeks
        ),
    )
    return (text, psi_chart(result), table)


def _health_blocks(result: MonitorResult) -> tuple[Block, ...]:
    h = result.health
    text = (
        "Requests whose intended tier failed in production (a failed `prod` attempt) and that "
        "a cheaper tier served. A region-day is flagged when that count is improbably high for "
        "the region's reference rate; an outage window is a run of days with such traffic that "
        f"contains a flagged day. Requests with a failed prod attempt: {h.failed_requests:,}."
    )
    if not h.outages:
        return (text, "No outage window.")
    table = Table(
        ("region", "from", "to", "requests", "degraded", "share", "fallbacks"),
        tuple(
            (
                o.region,
                str(o.start),
                str(o.end),
                f"{o.requests:,}",
                f"{o.degraded:,}",
                _pct(o.share),
                "; ".join(f"{a} → {b}: {n}" for a, b, n in o.fallbacks),
            )
            for o in h.outages
        ),
    )
    return (text, table, health_chart(result))


def sections(result: MonitorResult) -> tuple[Section, ...]:
    """The document both monitor.md and monitor.html are rendered from."""
    return (
        ("calibrate monitor", (_intro(result),)),
        ("Verdict", _verdict(result)),
        ("Alarms", _alarm_blocks(result)),
        *_series_sections(result),
        ("Detectors", _detector_blocks(result)),
        ("Confidence drift (PSI)", _psi_blocks(result)),
        ("Regional health", _health_blocks(result)),
    )


# --- rendering ----------------------------------------------------------------------------------


def render_markdown(doc: tuple[Section, ...]) -> str:
    """GitHub Markdown (charts are HTML-only)."""
    out = []
    for i, (title, blocks) in enumerate(doc):
        out.append(f"{'#' if i == 0 else '##'} {safe_markdown(title)}\n")
        for block in blocks:
            if isinstance(block, Table):
                out.extend(table_markdown(block))
            elif isinstance(block, Chart):
                continue
            else:
                out.append(safe_markdown(block) + "\n")
    return "\n".join(out).rstrip() + "\n"


def _paragraph_html(text: str) -> str:
    lines = text.split("\n")
    items = [ln for ln in lines if ln.lstrip().startswith("- ")]
    if not items:
        return f"<p>{inline_html(text)}</p>"
    out, open_list = [], False
    for line in lines:
        if line.lstrip().startswith("- "):
            if not open_list:
                out.append("<ul>")
                open_list = True
            out.append(f"<li>{inline_html(line.lstrip()[2:])}</li>")
        else:
            if open_list:
                out.append("</ul>")
                open_list = False
            if line.strip():
                out.append(f"<p>{inline_html(line)}</p>")
    if open_list:
        out.append("</ul>")
    return "".join(out)


_CSS = BASE_CSS + "figure{margin:1rem 0}figcaption{font-weight:600}"


def render_html(doc: tuple[Section, ...]) -> str:
    """One self-contained HTML page with the inline SVG charts."""
    body = []
    for i, (title, blocks) in enumerate(doc):
        tag = "h1" if i == 0 else "h2"
        body.append(f"<{tag}>{html.escape(title)}</{tag}>")
        for block in blocks:
            if isinstance(block, Table):
                body.append(table_html(block))
            elif isinstance(block, Chart):
                body.append(render_svg(block))
            else:
                body.append(_paragraph_html(block))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>calibrate monitor</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def terminal_text(result: MonitorResult) -> str:
    """What `calibrate monitor` prints: the verdict, the alarms and the weekly table of `all`."""
    weeks = [c for c in result.chunks if c.segment == "all" and c.period == "week"]
    table = _series_table(weeks)
    widths = [max(len(h), *(len(row[k]) for row in table.rows)) for k, h in enumerate(table.header)]
    lines = [_intro(result).replace("**", ""), "", *_verdict_lines(result), "", "Weekly (all):"]
    lines.append("  ".join(h.rjust(w) for h, w in zip(table.header, widths, strict=True)))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in table.rows]
    for o in result.health.outages:
        lines.append(
            f"Outage {o.region} {o.start}..{o.end}: {o.degraded} of {o.requests:,} requests "
            f"served below the intended tier ({_pct(o.share)})."
        )
    return "\n".join(lines)


def _verdict_lines(result: MonitorResult) -> list[str]:
    head = "Recalibration is due:" if result.recalibration_due else "Recalibration is not due."
    lines = [head]
    due = [a for a in result.alarms if a.recalibrate]
    others = [a for a in result.alarms if not a.recalibrate]
    for group, title in ((due, None), (others, "Also (these do not make recalibration due):")):
        if group and title:
            lines.append(title)
        for a in group:
            lines.append(f"- [{a.first_day} {a.kind}, {a.segment}] {a.summary}")
            lines += [f"    {e}" for e in a.evidence]
    return lines

"""Rendering a sweep: report.md, report.html, summary.json, frontier.csv and routing.yaml.

The sweep result becomes a small document model (headings, paragraphs, tables) rendered twice, as
GitHub Markdown and as one self-contained HTML file, so both say the same thing. JSON is built
from the same rows. Nothing here computes metrics, and no output carries a clock time: the same
inputs give byte-identical files.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from calibrate.policies import METRICS
from calibrate.routing import METRIC_DIGITS, dump_routing, round_metric, routing_from
from calibrate.sweep import SweepResult

_TOP_POLICIES = 12


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


Block = str | Table  # a paragraph (Markdown-light: **bold** and `code` only) or a table
Section = tuple[str, tuple[Block, ...]]


def write_outputs(result: SweepResult, out_dir: Path) -> dict[str, Path]:
    """Write the five outputs atomically (temp file + rename); return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = sections(result)
    texts = {
        "routing.yaml": dump_routing(build_routing(result)),
        "frontier.csv": frontier_csv(result.frontier),
        "summary.json": json.dumps(summary(result), indent=2, sort_keys=False) + "\n",
        "report.md": render_markdown(doc),
        "report.html": render_html(doc),
    }
    paths = {}
    for name, text in texts.items():
        path = out_dir / name
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        paths[name] = path
    return paths


def build_routing(result: SweepResult):
    rec = result.recommendation
    models = {t.name: t.model for t in result.tiers.tiers}
    return routing_from(
        rec.row,
        models,
        result.tiers.names[-1],
        result.objective,
        rec.method,
        rec.certified,
        result.window,
    )


def frontier_csv(frontier: pl.DataFrame) -> str:
    """One row per evaluated policy, fixed precision, in evaluation order."""
    rounded = frontier.with_columns(
        [
            pl.col(m).round(METRIC_DIGITS[m] + 2) for m in METRICS
        ]  # CSV keeps 2 more digits than YAML
    )
    return rounded.write_csv(float_precision=None, null_value="")


def _metrics(row: dict) -> dict:
    return {m: _json_float(round_metric(m, row[m])) for m in METRICS}


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else x


def _policy(row: dict) -> dict:
    return {
        "policy": row["policy"],
        "strategy": row["strategy"],
        "tiers": row["tiers"].split(">"),
        "thresholds": [float(t) for t in row["thresholds"].split(";")] if row["thresholds"] else [],
        "cutoff_tokens": row["cutoff_tokens"],
        **_metrics(row),
    }


def summary(result: SweepResult) -> dict:
    """The canonical machine-readable result (summary.json)."""
    w = result.window
    always = result.frontier.filter(pl.col("strategy") == "always")
    return {
        "version": 1,
        "requests": w.requests,
        "labeled": w.labeled,
        "rejected": result.rejected,
        "incomplete": w.incomplete,
        "window": {"start": w.start, "end": w.end},
        "logs_sha256": w.logs_sha256,
        "tiers": list(result.tiers.names),
        "objective": {
            "max_quality_drop": result.objective.max_quality_drop,
            "confidence_level": result.objective.confidence_level,
        },
        "selection": {
            "method": result.recommendation.method,
            "certified": result.recommendation.certified,
            "reason": result.recommendation.reason,
        },
        "recommendation": _policy(result.recommendation.row),
        "baselines": [_policy(r) for r in always.iter_rows(named=True)],
        "pareto": [_policy(r) for r in result.frontier.filter("pareto").iter_rows(named=True)],
        "break_even": [
            {
                "cheap": b.cheap,
                "expensive": b.expensive,
                "escalation_rate": _json_float(round(b.escalation_rate, 4)),
            }
            for b in result.break_even
        ],
        "confidence_auroc": {
            t: (None if v is None else round(v, 4)) for t, v in result.auroc.items()
        },
        "warnings": list(result.warnings),
        "policies_evaluated": result.frontier.height,
    }


# ---- the document -------------------------------------------------------------------------


def _pct(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.1%}"


def _usd(x: float) -> str:
    return f"${x:.4f}"


def _ms(x: float) -> str:
    return f"{x:,.0f} ms"


def _policy_table(rows: list[dict]) -> Table:
    header = ("policy", "quality", "drop", "escalation", "cost / 1k req", "savings", "p50", "p95")
    body = tuple(
        (
            f"`{r['policy']}`",
            f"{r['quality']:.4f}",
            f"{r['quality_drop']:+.4f}",
            _pct(r["escalation_rate"]),
            _usd(r["cost_per_1k_requests_usd"]),
            _pct(r["savings_vs_premium"]),
            _ms(r["latency_p50_ms"]),
            _ms(r["latency_p95_ms"]),
        )
        for r in rows
    )
    return Table(header, body)


def _headline(result: SweepResult) -> str:
    r = result.recommendation.row
    premium = result.tiers.names[-1]
    if r["strategy"] == "cascade":
        names, taus = r["tiers"].split(">"), r["thresholds"].split(";")
        steps = "; ".join(
            f"escalate from {n} when confidence < {t}" for n, t in zip(names, taus, strict=False)
        )
        what = f"a cascade {' → '.join(names)} ({steps})"
    elif r["strategy"] == "length":
        names = r["tiers"].split(">")
        what = f"route requests of at most {r['cutoff_tokens']} input tokens to {names[0]}, the rest to {names[1]}"
    else:
        what = f"always {r['tiers']}"
    return (
        f"**Recommended: {what}.** {_pct(r['savings_vs_premium'])} cheaper than always-{premium}; "
        f"measured quality drop {r['quality_drop']:+.4f} (limit {result.objective.max_quality_drop:g}); "
        f"escalation rate {_pct(r['escalation_rate'])}; p95 latency {_ms(r['latency_p95_ms'])}."
    )


def _pareto_near(frontier: pl.DataFrame, cost: float) -> pl.DataFrame:
    """The Pareto points closest in cost to the recommendation, half cheaper and half dearer."""
    pareto = frontier.filter("pareto").sort("cost_per_1k_requests_usd", "policy")
    cheaper = pareto.filter(pl.col("cost_per_1k_requests_usd") < cost).tail(_TOP_POLICIES // 2)
    dearer = pareto.filter(pl.col("cost_per_1k_requests_usd") >= cost).head(_TOP_POLICIES // 2)
    return pl.concat([cheaper, dearer])


def sections(result: SweepResult) -> tuple[Section, ...]:
    """The report's content, shared by Markdown and HTML."""
    f, w = result.frontier, result.window
    rec = result.recommendation
    certify_note = (
        "Selection: empirical (`--no-certify`): the measured drop is a point estimate with no "
        "statistical guarantee."
        if not result.objective.certify
        else "Selection: empirical. Certified selection (a guarantee at the requested confidence) is "
        "not available yet, so this recommendation carries no statistical guarantee."
    )
    pareto = _pareto_near(f, rec.row["cost_per_1k_requests_usd"])
    be = Table(
        (
            "cheap tier",
            "expensive tier",
            "cost / 1k (cheap)",
            "cost / 1k (expensive)",
            "break-even escalation",
        ),
        tuple(
            (
                b.cheap,
                b.expensive,
                _usd(b.cheap_cost_per_1k_usd),
                _usd(b.expensive_cost_per_1k_usd),
                _pct(b.escalation_rate),
            )
            for b in result.break_even
        ),
    )
    auroc = Table(
        ("tier", "confidence AUROC"),
        tuple((t, "n/a" if v is None else f"{v:.3f}") for t, v in result.auroc.items()),
    )
    data = (
        f"{w.requests} requests ({w.labeled} labeled for every tier) from {w.start} to {w.end}; "
        f"{result.rejected} rows rejected at ingest; {w.incomplete} requests incomplete. "
        f"{f.height} policies evaluated exactly. Logs digest `{w.logs_sha256[:16]}`."
    )
    return (
        ("calibrate report", (_headline(result), rec.reason + ".", certify_note, data)),
        ("Recommendation", (_policy_table([rec.row]),)),
        ("Warnings", tuple(result.warnings) or ("None.",)),
        (
            "Baselines",
            (_policy_table(list(f.filter(pl.col("strategy") == "always").iter_rows(named=True))),),
        ),
        (
            "Cost–quality frontier (Pareto points around the recommendation)",
            (_policy_table(list(pareto.iter_rows(named=True))),),
        ),
        (
            "Break-even escalation rates",
            (
                "A cascade from the cheap to the expensive tier costs more than always-expensive when it "
                "escalates more than this share of requests (e* = 1 − c_cheap / c_expensive).",
                be,
            ),
        ),
        (
            "Confidence signal",
            (
                "AUROC of each tier's confidence for an acceptable answer on labeled requests "
                "(0.5 = no signal).",
                auroc,
            ),
        ),
    )


def render_markdown(doc: tuple[Section, ...]) -> str:
    out = []
    for i, (title, blocks) in enumerate(doc):
        out.append(f"{'#' if i == 0 else '##'} {title}\n")
        for block in blocks:
            if isinstance(block, Table):
                out.append("| " + " | ".join(block.header) + " |")
                out.append("|" + "|".join("---" for _ in block.header) + "|")
                out.extend("| " + " | ".join(row) + " |" for row in block.rows)
                out.append("")
            elif title == "Warnings" and block != "None.":
                out.append(f"- {block}")
            else:
                out.append(block + "\n")
        if title == "Warnings" and blocks != ("None.",):
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def _inline_html(text: str) -> str:
    escaped = html.escape(text)
    parts = escaped.split("**")
    escaped = "".join(p if i % 2 == 0 else f"<strong>{p}</strong>" for i, p in enumerate(parts))
    parts = escaped.split("`")
    return "".join(p if i % 2 == 0 else f"<code>{p}</code>" for i, p in enumerate(parts))


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}"
    "table{border-collapse:collapse;margin:.5rem 0 1.5rem}th,td{border:1px solid #d0d7de;padding:.3rem .6rem;"
    "text-align:right}th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}"
    "code{background:#f6f8fa;padding:0 .2rem}"
)


def render_html(doc: tuple[Section, ...]) -> str:
    body = []
    for i, (title, blocks) in enumerate(doc):
        body.append(f"<h{1 if i == 0 else 2}>{html.escape(title)}</h{1 if i == 0 else 2}>")
        for block in blocks:
            if isinstance(block, Table):
                head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
                rows = "".join(
                    "<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>"
                    for row in block.rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            else:
                body.append(f"<p>{_inline_html(block)}</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>calibrate report</title>'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )

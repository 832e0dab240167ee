"""Words for the label summaries: the "Labels" section of a report, as Markdown. Pure text.

`coverage_markdown(coverage)` renders what `calibrate labels status` shows — labels per tier and
source, per app and region, what no estimate can use, the labelling queue, and the judge's cost
and agreement with humans — for report.md (or a pull request).
"""

from __future__ import annotations

from calibrate.records.labels import Agreement, Coverage
from calibrate.report.blocks import markdown_cell, safe_markdown


def _pct(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def _interval(bounds: tuple[float, float]) -> str:
    return f"[{bounds[0]:.3f}, {bounds[1]:.3f}]"


def agreement_line(agreement: Agreement | None) -> str:
    """One sentence on the judge versus humans (or that they never overlap)."""
    if agreement is None:
        return "No answer is labelled by both a human and the judge, so the judge is unchecked."
    a = agreement
    level = f"{a.level:.0%}"
    return (
        f"On {a.overlap} answers labelled by both, the judge agrees with humans on "
        f"{a.agreement:.1%} ({level} interval {_interval(a.agreement_interval)}); its miss rate "
        f"(judge says acceptable, human says not) is {a.miss_rate:.1%} "
        f"{_interval(a.miss_rate_interval)}: {a.misses} of the {a.human_unacceptable} answers "
        "humans rejected."
    )


def coverage_markdown(coverage: Coverage) -> str:
    """The report's "Labels" section."""
    c = coverage
    lines = [
        "## Labels",
        "",
        f"{c.usable} of {c.complete} requests with an answer from every tier are labelled for "
        f"every tier ({_pct(c.usable, c.complete)}); {c.weighted} of them carry a sampling "
        "weight (1/inclusion probability), which every quality estimate uses.",
        "",
        "| tier | labels by source | used |",
        "|---|---|---:|",
    ]
    for tier, sources, used in c.by_tier:
        text = ", ".join(f"{src} {n}" for src, n in sources) or "none"
        lines.append(f"| {markdown_cell(tier)} | {markdown_cell(text)} | {used} |")
    lines += [
        "",
        "| segment | requests | labelled | share | weighted |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in c.segments:
        lines.append(
            f"| {markdown_cell(s.column + '=' + (s.value or '(none)'))} | {s.requests} | {s.usable} | "
            f"{_pct(s.usable, s.requests)} | {s.weighted} |"
        )
    lines += ["", "Requests no estimate can use:", ""]
    lines.append(
        f"- labelled for some tiers but not all: {c.partial}"
        + (f" (e.g. {safe_markdown(', '.join(c.partial_examples))})" if c.partial_examples else "")
    )
    lines.append(
        f"- labelled but missing an answer from some tier: {c.incomplete_labeled}"
        + (
            f" (e.g. {safe_markdown(', '.join(c.incomplete_examples))})"
            if c.incomplete_examples
            else ""
        )
    )
    lines.append(f"- labels for tiers outside the tier list: {c.other_tier_labels}")
    lines.append(f"- rejected label rows (table `label_rejects`): {c.rejected_rows}")
    lines += [
        "",
        f"Labelling queues: {c.queued} requests sampled, {c.queued_labeled} labelled for every "
        "tier.",
        "",
        f"Judge: {c.judge_calls} calls (${c.judge_cost_usd:.4f}), {c.judge_unparsable} unusable "
        "replies. " + agreement_line(c.agreement),
    ]
    if c.notes:
        lines += ["", *(f"- Note: {safe_markdown(n)}" for n in c.notes)]
    return "\n".join(lines) + "\n"

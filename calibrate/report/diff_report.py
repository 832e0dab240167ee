"""Words for a `ConfigDiff`: the reasons it is material, Markdown for a pull request, and JSON.

Pure text: writes nothing and prints nothing. The JSON is the diff's fields plus `material` and
`reasons`; the Markdown is derived from the same diff, with fixed precision and stable order.
Imports only `diff` (and `routing` through it) and, for the section on an exported gateway config
(`calibrate diff --export-to`), `export.changes`; never `cli` or `console`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

from calibrate.diff.compare import (
    ConfigDiff,
    KeywordRuleChange,
    MetricChange,
    RuleChange,
    ThresholdChange,
)
from calibrate.export.changes import ExportChange, ExportSide
from calibrate.report.blocks import markdown_cell, safe_markdown

LABELS = {
    "quality": "quality",
    "quality_drop": "quality drop",
    "escalation_rate": "escalation rate",
    "cost_per_1k_requests_usd": "cost per 1k requests",
    "savings_vs_premium": "savings vs premium",
    "latency_p50_ms": "latency p50",
    "latency_p95_ms": "latency p95",
}
_RATES = ("escalation_rate", "savings_vs_premium")
NONE = "—"


def render_json(diff: ConfigDiff) -> str:
    """The canonical machine-readable form."""
    data = {"material": diff.material, "reasons": reasons(diff), **asdict(diff)}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render_markdown(diff: ConfigDiff) -> str:
    """GitHub-flavoured Markdown, ready for a pull-request body or a job summary."""
    sections = [
        _headline(diff),
        _overview(diff),
        _thresholds_section(diff),
        _rules_section(diff),
        _keyword_rules_section(diff),
        _metrics_section(diff),
        _provenance_section(diff),
        _materiality_note(diff),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


# --- reasons --------------------------------------------------------------------------------


def reasons(diff: ConfigDiff) -> list[str]:
    """One line per material finding, in the order a reviewer should read them."""
    found = []
    if diff.old_strategy != diff.new_strategy:
        found.append(f"strategy changed: {diff.old_strategy} → {diff.new_strategy}")
    found += [_tier_reason(t.name, t.status, t.old_model, t.new_model) for t in diff.tiers]
    if diff.old_premium_tier != diff.new_premium_tier:
        found.append(f"premium tier changed: {diff.old_premium_tier} → {diff.new_premium_tier}")
    if diff.objective.changed:
        found.append(f"objective changed: {_objective(diff, 'old')} → {_objective(diff, 'new')}")
    if diff.certification.lost:
        c = diff.certification
        found.append(f"no longer certified (selection {c.old_selection} → {c.new_selection})")
    if diff.quality_limit.newly_breached:
        found.append(_limit_reason(diff))
    found += [_threshold_reason(t) for t in diff.thresholds if t.material]
    found += [_rule_reason(r) for r in diff.rules if r.material]
    found += [_keyword_reason(k) for k in diff.keyword_rules if k.material]
    found += [_metric_reason(m) for m in diff.metrics if m.material]
    return [r for r in found if r]


def _tier_reason(name: str, status: str, old_model: str | None, new_model: str | None) -> str:
    return {
        "unchanged": "",
        "added": f"tier {name} added (model {new_model})",
        "removed": f"tier {name} removed (was model {old_model})",
        "model changed": f"tier {name}: model {old_model} → {new_model}",
        "moved": f"tier {name} moved in the tier order",
    }[status]


def _limit_reason(diff: ConfigDiff) -> str:
    q = diff.quality_limit
    before = (
        f"it was {_num(q.old_upper)}, within {q.old_limit:g}"
        if q.old_breached is False
        else "the old file has no quality-drop interval"
    )
    return (
        f"the quality-drop interval now reaches {_num(q.new_upper)}, above the limit "
        f"{q.new_limit:g} ({before})"
    )


def _threshold_reason(t: ThresholdChange) -> str:
    if t.status == "moved":
        text = f"{t.tier}: escalate_below {_num(t.old)} → {_num(t.new)} ({t.change:+.4f})"
        if t.old_p_correct is not None or t.new_p_correct is not None:
            text += f", P(correct) at the threshold {_p_correct(t)}"
        return text
    side, value = ("old", t.old) if t.status == "only old" else ("new", t.new)
    return f"{t.tier}: threshold {_num(value)} only in the {side} file; {t.note}"


def _rule_reason(change: RuleChange) -> str:
    old = _rule(change.old_max_input_tokens, change.status == "only new")
    new = _rule(change.new_max_input_tokens, change.status == "only old")
    if change.status == "only new":
        return f"rule added: {new} → {change.tier}"
    if change.status == "only old":
        return f"rule removed: {old} → {change.tier}"
    moved = "" if change.relative_change is None else f" ({change.relative_change:+.1%})"
    return f"rule for {change.tier}: {old} → {new}{moved}"


def _keyword_reason(k: KeywordRuleChange) -> str:
    if k.status == "only new":
        return f"keyword rule added: `{k.pattern}` → {k.new_tier} (rule {k.new_position})"
    if k.status == "only old":
        return f"keyword rule removed: `{k.pattern}` → {k.old_tier} (was rule {k.old_position})"
    if k.status == "retargeted":
        return f"keyword rule `{k.pattern}` now routes to {k.new_tier} (was {k.old_tier})"
    return (
        f"keyword rule `{k.pattern}` moved from rule {k.old_position} to rule {k.new_position} "
        "(first match wins)"
    )


def _metric_reason(m: MetricChange) -> str:
    label = LABELS.get(m.name, m.name)
    return f"{label}: {_metric(m.name, m.old)} → {_metric(m.name, m.new)}, {_change(m)}"


# --- formatting -----------------------------------------------------------------------------


def _num(value: float | None, digits: int = 4) -> str:
    return NONE if value is None else f"{value:.{digits}f}"


def _metric(name: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if name in _RATES:
        return f"{value:.1%}"
    if name.startswith("latency"):
        return f"{value:,.0f} ms"
    if name.startswith("cost"):
        return f"${value:.6f}"
    return f"{value:.4f}"


def _change(m: MetricChange) -> str:
    """new − old in the metric's units, with the relative change for cost and latency."""
    if m.change is None:
        return NONE
    if m.change == 0:
        return "no change"
    if m.name in _RATES:
        return f"{m.change * 100:+.1f} pp"
    if m.name.startswith("latency"):
        absolute = f"{m.change:+,.0f} ms"
    elif m.name.startswith("cost"):
        absolute = f"{'+' if m.change > 0 else '-'}${abs(m.change):.6f}"
    else:
        return f"{m.change:+.4f}"
    return absolute if m.relative_change is None else f"{absolute} ({m.relative_change:+.1%})"


def _bound(name: str, bound: tuple[str, float] | None) -> str:
    if bound is None:
        return ""
    kind, size = bound
    if kind == "relative":
        return f"{size * 100:g}%"
    return f"{size * 100:g} pp" if name in _RATES else f"{size:g}"


def _verdict(material: bool, bound: str) -> str:
    if not bound:
        return "**yes**" if material else "no"
    return f"**yes** (≥ {bound})" if material else f"no (< {bound})"


def _interval(name: str, interval: tuple[float, float] | None) -> str:
    if interval is None:
        return NONE
    return f"[{_metric(name, interval[0])}, {_metric(name, interval[1])}]"


def _rule(max_input_tokens: int | None, absent: bool) -> str:
    if absent:
        return NONE
    return "everything else" if max_input_tokens is None else f"input_tokens ≤ {max_input_tokens:,}"


def _objective(diff: ConfigDiff, side: str) -> str:
    o = diff.objective
    drop, level, options = (
        (o.old_max_quality_drop, o.old_confidence_level, o.old_options)
        if side == "old"
        else (o.new_max_quality_drop, o.new_confidence_level, o.new_options)
    )
    extra = "".join(f", {k} {v}" for k, v in options)
    return f"quality drop ≤ {drop:g} at confidence {level:g}{extra}"


def _row(*cells: str) -> str:
    return "| " + " | ".join(map(markdown_cell, cells)) + " |"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = [_row(*header), _row(*("---" for _ in header)), *(_row(*r) for r in rows)]
    return "\n".join(lines)


def _pair(old: str, new: str) -> tuple[str, str]:
    """Old and new cells; the new one in bold when it differs."""
    return old, (new if new == old else f"**{new}**")


# --- sections -------------------------------------------------------------------------------


def _headline(diff: ConfigDiff) -> str:
    files = safe_markdown(f"`{diff.old_path}` → `{diff.new_path}`")
    if not diff.material:
        return (
            f"## Routing config: no material change\n\n{files}\n\n"
            "Nothing crossed a materiality bound (`calibrate diff --check` exits 0)."
        )
    lines = [f"- {safe_markdown(r)}" for r in reasons(diff)]
    return (
        f"## Routing config: material change\n\n{files}\n\n"
        "What changed (`calibrate diff --check` exits 3):\n\n" + "\n".join(lines)
    )


def _tier_path(diff: ConfigDiff, side: str) -> str:
    tiers = sorted(
        (
            (t.old_position, t.name, t.old_model)
            if side == "old"
            else (t.new_position, t.name, t.new_model)
            for t in diff.tiers
        ),
        key=lambda x: x[0] or 0,
    )
    return " → ".join(f"{name} ({model})" for pos, name, model in tiers if pos is not None)


def _certified(flag: bool, selection: str) -> str:
    return f"{'yes' if flag else 'no'} (selection: {selection})"


def _limit(upper: float | None, limit: float, breached: bool | None) -> str:
    if breached is None:
        return "no interval in the file"
    return f"upper end {_num(upper)} {'>' if breached else '≤'} {limit:g}"


def _overview(diff: ConfigDiff) -> str:
    c, q = diff.certification, diff.quality_limit
    rows = [
        ("strategy", *_pair(diff.old_strategy, diff.new_strategy)),
        ("tiers", *_pair(_tier_path(diff, "old"), _tier_path(diff, "new"))),
        ("premium tier", *_pair(diff.old_premium_tier, diff.new_premium_tier)),
        (
            "certified",
            *_pair(_certified(c.old, c.old_selection), _certified(c.new, c.new_selection)),
        ),
        ("objective", *_pair(_objective(diff, "old"), _objective(diff, "new"))),
        (
            "quality-drop interval vs limit",
            *_pair(
                _limit(q.old_upper, q.old_limit, q.old_breached),
                _limit(q.new_upper, q.new_limit, q.new_breached),
            ),
        ),
    ]
    return _table(("", "old", "new"), rows)


def _meaning(t: ThresholdChange) -> str:
    if t.status != "moved":
        return t.note or "same threshold"
    if t.change is not None and t.change < 0:
        return f"lower: fewer requests escalate from {t.tier}; more stay on it"
    return f"higher: more requests escalate from {t.tier} to {t.new_escalates_to}"


def _p_correct(t: ThresholdChange) -> str:
    def one(value: float | None, present: bool) -> str:
        if not present:
            return NONE
        return "not recorded" if value is None else _num(value)

    return f"{one(t.old_p_correct, t.old is not None)} → {one(t.new_p_correct, t.new is not None)}"


def _threshold_row(t: ThresholdChange, bound: str) -> tuple[str, ...]:
    path = f"{t.tier} → {t.new_escalates_to or t.old_escalates_to}"
    if t.old_escalates_to and t.new_escalates_to and t.old_escalates_to != t.new_escalates_to:
        path += f" (was → {t.old_escalates_to})"
    return (
        path,
        f"{_num(t.old)} → {_num(t.new)}",
        NONE if t.change is None else ("no change" if t.change == 0 else f"{t.change:+.4f}"),
        _p_correct(t),
        _verdict(t.material, bound if t.status in ("moved", "unchanged") else ""),
        _meaning(t),
    )


def _thresholds_section(diff: ConfigDiff) -> str:
    if not diff.thresholds:
        return ""
    bound = f"{diff.materiality.min_threshold_change:g}"
    rows = [_threshold_row(t, bound) for t in diff.thresholds]
    table = _table(
        (
            "escalation",
            "escalate below",
            "change",
            "P(correct) at the threshold",
            "material",
            "meaning",
        ),
        rows,
    )
    escalation = next((m for m in diff.metrics if m.name == "escalation_rate"), None)
    lines = [
        "### Thresholds",
        "A request escalates when its confidence is below the tier's threshold; P(correct) is the "
        "calibrated probability of an acceptable answer at that confidence.",
        table,
    ]
    if escalation is not None:
        lines.append(
            "Escalation rate (requests not served by the first tier): "
            f"{_metric(escalation.name, escalation.old)} → {_metric(escalation.name, escalation.new)} "
            f"({_change(escalation)})."
        )
    return "\n\n".join(lines)


def _rules_section(diff: ConfigDiff) -> str:
    if not diff.rules:
        return ""
    bound = f"{diff.materiality.min_cutoff_change * 100:g}%"
    rows = [
        (
            r.tier,
            _rule(r.old_max_input_tokens, r.status == "only new"),
            _rule(r.new_max_input_tokens, r.status == "only old"),
            NONE if r.relative_change is None else f"{r.relative_change:+.1%}",
            _verdict(r.material, bound if r.status in ("moved", "unchanged") else ""),
        )
        for r in diff.rules
    ]
    return "### Rules\n\n" + _table(("routes to", "old", "new", "change", "material"), rows)


def _keyword_rules_section(diff: ConfigDiff) -> str:
    if not diff.keyword_rules:
        return ""
    rows = [
        (
            f"`{k.pattern}`",
            NONE if k.old_tier is None else f"{k.old_tier} (rule {k.old_position})",
            NONE if k.new_tier is None else f"{k.new_tier} (rule {k.new_position})",
            k.status,
            _verdict(k.material, ""),
        )
        for k in diff.keyword_rules
    ]
    header = ("pattern", "old", "new", "change", "material")
    return "### Keyword rules\n\n" + _table(header, rows)


def _metrics_section(diff: ConfigDiff) -> str:
    rows = [
        (
            LABELS.get(m.name, m.name),
            _metric(m.name, m.old),
            _metric(m.name, m.new),
            _change(m) if m.status == "compared" else m.status,
            _interval(m.name, m.old_interval),
            _interval(m.name, m.new_interval),
            _verdict(m.material, _bound(m.name, m.bound)) if m.bound else "not checked",
        )
        for m in diff.metrics
    ]
    header = ("metric", "old", "new", "change", "old interval", "new interval", "material")
    return "### Expected metrics\n\n" + _table(header, rows)


def _provenance_section(diff: ConfigDiff) -> str:
    old, new = diff.old_data, diff.new_data
    rows = [
        ("requests", *_pair(f"{old.requests:,}", f"{new.requests:,}")),
        ("labeled", *_pair(f"{old.labeled:,}", f"{new.labeled:,}")),
        (
            "window",
            *_pair(
                f"{old.window_start or '?'} → {old.window_end or '?'}",
                f"{new.window_start or '?'} → {new.window_end or '?'}",
            ),
        ),
        ("logs sha256", *_pair(f"`{old.logs_sha256[:12]}`", f"`{new.logs_sha256[:12]}`")),
    ]
    return "### Calibrated on\n\n" + _table(("", "old", "new"), rows)


def _materiality_note(diff: ConfigDiff) -> str:
    m = diff.materiality
    return (
        f"_Material: a threshold move ≥ {m.min_threshold_change:g}, a rule cutoff move "
        f"≥ {m.min_cutoff_change * 100:g}%, cost ≥ {m.min_cost_change * 100:g}%, quality or "
        f"quality drop ≥ {m.min_quality_change:g}, escalation rate ≥ "
        f"{m.min_escalation_change * 100:g} pp, latency ≥ {m.min_latency_change * 100:g}%; and "
        "always a strategy, tier, premium-tier or objective change, certified → uncertified, or a "
        "quality-drop interval newly above its limit._"
    )


# --- the exported gateway config (`calibrate diff --export-to`) -----------------------------


def render_markdown_with_export(diff: ConfigDiff, change: ExportChange) -> str:
    """The Markdown of `render_markdown`, then the section on the exported file."""
    return render_markdown(diff) + "\n" + export_section(change) + "\n"


def render_json_with_export(diff: ConfigDiff, change: ExportChange) -> str:
    """The JSON of `render_json` with an `export` key (`export_json`)."""
    data = {**json.loads(render_json(diff)), "export": export_json(change)}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def export_json(change: ExportChange) -> dict:
    def side(s: ExportSide) -> dict:
        e = s.export
        return {
            "routing": s.routing_path,
            "exported": e is not None,
            "refused": s.refused,
            "exact": [] if e is None else list(e.exact),
            "approximated": [] if e is None else list(e.approximated),
            "not_expressed": [] if e is None else list(e.not_expressed),
        }

    return {
        "target": change.target,
        "changed": change.changed,
        "old": side(change.old),
        "new": side(change.new),
        "thresholds": [asdict(t) for t in change.thresholds],
        "unified_diff": change.unified_diff,
    }


def _fenced(text: str, info: str = "") -> str:
    """A fenced code block that no backtick run inside `text` can close."""
    run = current = 0
    for ch in text:
        current = current + 1 if ch == "`" else 0
        run = max(run, current)
    fence = "`" * max(3, run + 1)
    return f"{fence}{info}\n{text.rstrip(chr(10))}\n{fence}"


def _export_side_line(label: str, s: ExportSide, target: str) -> str:
    if s.export is not None:
        return ""
    return f"The {label} routing.yaml (`{s.routing_path}`) cannot be exported to {target}:\n\n" + (
        _fenced(s.refused or "", "text")
    )


def _export_threshold_table(change: ExportChange) -> str:
    rows = [
        (
            t.tier,
            f"{_num(t.old_escalate_below)} → {_num(t.new_escalate_below)}",
            f"{_num(t.old_value)} → {_num(t.new_value)}",
            NONE if t.change is None else ("no change" if t.change == 0 else f"{t.change:+.4f}"),
            t.scale,
            f"`{t.field}`",
        )
        for t in change.thresholds
    ]
    header = (
        "tier",
        "escalate_below (routing.yaml)",
        f"{change.target} threshold",
        "change",
        f"{change.target} scale",
        "where",
    )
    return _table(header, rows)


def export_section(change: ExportChange) -> str:
    """`### Exported <target> config`: threshold changes on the target's scale, then the unified
    diff of the two exported files (or why a side could not be exported)."""
    target = change.target
    lines = [
        f"### Exported {target} config",
        f"Both files exported with `calibrate export --to {target}` (same tiers file).",
    ]
    refusals = [
        _export_side_line("old", change.old, target),
        _export_side_line("new", change.new, target),
    ]
    lines += [r for r in refusals if r]
    if change.thresholds:
        lines.append(_export_threshold_table(change))
    if change.changed is False:
        moved = any(t.status != "unchanged" for t in change.thresholds)
        lines.append(
            "The exported file does not change"
            + (
                ": the thresholds that moved are held outside it (see `where`); deploy the new "
                "routing.yaml there."
                if moved
                else "."
            )
        )
    elif change.changed:
        lines.append(_fenced(change.unified_diff, "diff"))
    new = change.new.export
    if new is not None and new.approximated:
        lines.append(
            "The new export approximates:\n\n" + "\n".join(f"- {a}" for a in new.approximated)
        )
    return "\n\n".join(lines)

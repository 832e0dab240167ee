"""Rendering a sweep: report.md, report.html, summary.json, frontier.csv and routing.yaml.

The sweep result becomes a small document model (headings, paragraphs, tables) rendered twice, as
GitHub Markdown and as one self-contained HTML file, so both say the same thing (the charts are
inline SVG in the HTML; report.md names them but links no image, so it reads whole in a pull request
body or a job summary, where a relative image breaks); summary.json
comes from `summary_json.py`. Nothing here computes metrics, and no output carries a clock time: the same
inputs give byte-identical files.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from calibrate.config.routing import (
    GENERATED_BY,
    METRIC_DIGITS,
    ROUTER_FILE,
    Certification,
    CertifiedStage,
    ObjectiveSpec,
    RoutingConfig,
    Rule,
    dump_routing,
    round_metric,
    routing_from,
)
from calibrate.policies.frontier import frame_policies, frontier_rows
from calibrate.policies.router_files import router_json
from calibrate.records.policy import METRICS, Policy, threshold_display
from calibrate.report.blocks import (
    BASE_CSS,
    Block,
    Bullets,
    Chart,
    Section,
    Table,
    bullets_html,
    bullets_markdown,
    inline_html,
    ms,
    num,
    pct,
    safe_markdown,
    table_html,
    table_markdown,
    usd,
)
from calibrate.report.first_screen import (
    decision_line,
    premium_row,
    saves_and_costs,
    silent_under_escalation,
    terms,
    warnings_blocks,
)
from calibrate.report.framing import (
    escalation_band,
    evidence_text,
    framing_lines,
    risk_claim,
    uncertified_note,
)
from calibrate.report.strategies import (
    certified_cell,
    consensus_section,
    endpoint_health_section,
    keyword_rules_section,
    policy_table,
    strategy_comparison,
)
from calibrate.report.summary_json import summary_text
from calibrate.sweep.check import BIASED_WARNING
from calibrate.sweep.diagnostics import DAILY_VOLUMES
from calibrate.sweep.failure_modes import HARD_GAP
from calibrate.sweep.stage import CertificationRecord, Decision, SweepResult
from calibrate.sweep.verdict import RULE_IN_WORDS

if TYPE_CHECKING:  # matplotlib loads when charts are drawn (`write_outputs`), not on import
    from calibrate.report.chart_render import ChartFile

_TOP_POLICIES = 12


def write_outputs(result: SweepResult, out_dir: Path) -> dict[str, Path]:
    """Write the five outputs and the chart files atomically (temp file + rename); return their
    paths."""
    from calibrate.report.charts import chart_files  # here: matplotlib loads when drawing

    out_dir.mkdir(parents=True, exist_ok=True)
    charts = chart_files(result)
    doc = sections(result, frozenset(charts))
    texts = {
        "routing.yaml": dump_routing(build_routing(result.decision)),
        "frontier.csv": frontier_csv(result.report.frontier),
        "summary.json": summary_text(result),
        "report.md": render_markdown(doc, charts),
        "report.html": render_html(doc, charts),
        **{name: chart.svg for name, chart in charts.items()},
    }
    if result.decision.router is not None:
        texts[ROUTER_FILE] = router_json(result.decision.router)
    paths = {}
    for name, text in texts.items():
        path = out_dir / name
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        paths[name] = path
    return paths


def build_routing(decision: Decision) -> RoutingConfig:
    """routing.yaml of a sweep's decision."""
    rec, objective = decision.recommendation, decision.objective
    return routing_from(
        rec.row,
        {t.name: t.model for t in decision.tiers.tiers},
        decision.premium,
        ObjectiveSpec(
            max_quality_drop=objective.max_quality_drop,
            confidence_level=objective.confidence_level,
            max_relative_drop=objective.max_relative_drop,
            per_segment=objective.per_segment,
            max_latency_p95_ms=objective.max_latency_p95_ms,
            escalation_band=objective.escalation_band,
            max_cost_per_1k_usd=objective.max_cost_per_1k_usd,
        ),
        "fallback" if rec.fallback and rec.method == "certified" else rec.method,
        rec.certified,
        decision.window,
        classifier_cost_per_1k=decision.classifier_cost_per_1k,
        confidence={
            tier: (method, scale)
            for tier, (method, scale) in decision.confidence_methods.items()
            if scale is not None
        },
        keyword_rules=tuple(
            Rule(name=r.name, pattern=r.pattern, tier=r.tier)
            for r in (decision.keyword_rules.rules if decision.keyword_rules else ())
        ),
        p_correct={tier: round(p, 4) for tier, p in decision.p_correct.items()},
        intervals={
            name: (round_metric(name, i.low), round_metric(name, i.high))
            for name, i in decision.intervals.items()
        },
        generated_by=GENERATED_BY,
        certification=_certification(decision.certification),
    )


def _certification(record: CertificationRecord | None) -> Certification | None:
    """routing.yaml's `certification` block: ε, δ and bounds to 6 decimals, p-values to 4
    significant digits."""
    if record is None:
        return None
    return Certification(
        test=record.test,
        method=record.method,
        max_quality_drop=round(record.max_drop, 6),
        delta=round(record.delta, 6),
        labels=record.labels,
        stages=tuple(
            CertifiedStage(
                tier=s.tier,
                max_quality_drop=round(s.max_regret, 6),
                delta=round(s.delta, 6),
                measured=round(
                    s.drop if s.drop is not None else s.regret_count / max(s.labeled, 1), 6
                ),
                upper_bound=round(s.drop_ucb if s.drop_ucb is not None else s.regret_ucb, 6),
                p_value=float(f"{s.p_value if s.p_value is not None else 1.0:.4g}"),
            )
            for s in record.stages
        ),
        exceed_risk=None if record.exceed_risk is None else float(f"{record.exceed_risk:.4g}"),
    )


def frontier_csv(frontier: pl.DataFrame) -> str:
    """One row per evaluated policy, fixed precision, in evaluation order; the policy's tiers and
    thresholds as text."""
    policies = frame_policies(frontier)
    rounded = frontier.with_columns(
        pl.Series("tiers", [p.tiers_text for p in policies], dtype=pl.Utf8),
        pl.Series("thresholds", [p.thresholds_text for p in policies], dtype=pl.Utf8),
        *(pl.col(m).round(METRIC_DIGITS[m] + 2) for m in METRICS),  # 2 more digits than YAML
    )
    return rounded.write_csv(float_precision=None, null_value="")


def _policy_words(policy: Policy) -> str:
    """A policy in words."""
    keywords = "the keyword rules first, then " if policy.keyword_rules_first else ""
    names = policy.tiers
    if policy.cascading:
        steps = "; ".join(
            f"escalate from {n} when confidence < {threshold_display(t)}"
            for n, t in zip(names, policy.thresholds, strict=False)
        )
        what = f"{keywords}a cascade {' → '.join(names)} ({steps})"
    elif policy.strategy in ("length", "rules"):
        if policy.cutoff_tokens is None:
            what = f"{keywords}every other request to {names[1]}"
        else:
            what = (
                f"{keywords}requests of at most {policy.cutoff_tokens} input tokens to "
                f"{names[0]}, the rest to {names[1]}"
            )
    elif policy.strategy == "router":
        tau = ",".join(threshold_display(t) for t in policy.thresholds)
        what = f"the learned router: {names[0]} when its score ≥ {tau}, else {names[1]}"
    else:
        what = f"always {policy.tiers_text}"
    return what


def _headline(result: SweepResult) -> str:
    decision = result.decision
    rec, eps = decision.recommendation, result.report.evidence.max_regret
    r, premium = rec.row.metrics, decision.premium
    what = _policy_words(rec.row.policy)
    level = decision.objective.confidence_level
    if rec.certified and not rec.fallback:
        claim = (
            f"quality within {eps:.4g} of always-{premium} at {level:.0%} confidence (certified)"
        )
    elif rec.method == "budget":
        claim = "the best measured quality under the budget (not certified)"
    elif rec.fallback:
        claim = "the safe fallback: nothing cheaper could be certified"
    else:
        claim = (
            f"measured quality drop {r.quality_drop:+.4f} (limit {eps:.4g}, not certified: no "
            f"guarantee; {risk_claim(result.report.evidence)})"
        )
    verdict = "Chosen with --policy" if rec.method == "chosen" else "Recommended"
    base = premium_row(result).metrics
    return (
        f"**{verdict}: {what}.** {pct(r.savings_vs_premium)} cheaper than always-{premium}; "
        f"{claim}; escalation rate {pct(r.escalation_rate)}; latency p50 "
        f"{ms(base.latency_p50_ms)} → {ms(r.latency_p50_ms)} and **p95 "
        f"{ms(base.latency_p95_ms)} → {ms(r.latency_p95_ms)}** against always-{premium}."
    )


def _near(frontier: pl.DataFrame, flag: str, recommended: str) -> pl.DataFrame:
    """The policies flagged `flag` (`pareto` or `certified_pareto`) closest in cost to the
    recommendation, half cheaper and half dearer, and the recommendation itself."""
    cost = pl.col("cost_per_1k_requests_usd")
    is_rec = pl.col("policy") == recommended
    rec = frontier.filter(is_rec)
    at = rec["cost_per_1k_requests_usd"][0]
    others = frontier.filter(pl.col(flag) & ~is_rec).sort(cost, "policy")
    cheaper = others.filter(cost < at).tail(_TOP_POLICIES // 2)
    dearer = others.filter(cost >= at).head(_TOP_POLICIES // 2)
    return pl.concat([cheaper, rec, dearer]).sort(cost, "policy")


def _frontier_table(frame: pl.DataFrame, recommended: str) -> Table:
    """Policies with a certified column; the recommendation marked."""
    table = policy_table(rows := frontier_rows(frame))
    return Table(
        (table.header[0], "certified", *table.header[1:]),
        tuple(
            (
                cells[0] + (" **(recommended)**" if r.policy.id == recommended else ""),
                certified_cell(r),
                *cells[1:],
            )
            for r, cells in zip(rows, table.rows, strict=True)
        ),
    )


def _frontiers_note(result: SweepResult) -> str:
    """The two frontiers, and why the recommendation is not on the measured one."""
    f, rec = result.report.frontier, result.decision.recommendation
    r = rec.row.metrics
    what = (
        "Two frontiers. The measured frontier (`pareto` in frontier.csv) holds the policies no "
        "other policy beats on both measured cost and measured quality. The certified frontier "
        "(`certified_pareto`) holds the certified policies no other certified policy beats; "
        "certification selects from it."
    )
    better = f.filter(
        (pl.col("cost_per_1k_requests_usd") < r.cost_per_1k_requests_usd)
        & (pl.col("quality") >= r.quality)
    )
    if better.is_empty():
        return what + " The recommendation is on the measured frontier."
    count, certified = better.height, int(better["certified"].sum())
    cheaper = f"{count} policies are cheaper with equal or better measured quality"
    if rec.certified and rec.method == "certified":
        level = result.decision.objective.confidence_level
        on = f.filter(pl.col("recommended"))["certified_pareto"].any()
        return (
            f"{what} The recommendation is the cheapest certified policy"
            + (
                ", so it is on the certified frontier but not on the measured one"
                if on
                else " meeting the constraints; it is not on the measured frontier"
            )
            + f": {cheaper}, and "
            + (
                "none of them is certified"
                if not certified
                else f"the {certified} certified ones among them miss a constraint (latency, "
                "escalation band or budget)"
            )
            + f". A measured quality is a point estimate on {result.decision.window.labeled:,} "
            f"labels; a certificate needs the drop's upper confidence bound within ε at "
            f"{level:.0%} confidence (and the tested family's share of δ), which the cheaper ones "
            "could not show."
        )
    if rec.fallback and rec.method == "certified":
        return (
            f"{what} Nothing cheaper than always-premium could be certified, so the "
            f"recommendation is always-premium: {cheaper}, none of them certified."
        )
    return f"{what} The recommendation is not on the measured frontier: {cheaper}."


def _frontier_blocks(result: SweepResult, chart: tuple[Block, ...]) -> tuple[Block, ...]:
    f, recommended = result.report.frontier, result.decision.recommendation.row.policy.id
    certified = _near(f, "certified_pareto", recommended)
    return (
        *chart,
        _frontiers_note(result),
        "Certified frontier around the recommendation:",
        _frontier_table(certified, recommended)
        if f["certified_pareto"].any()
        else "No policy was certified, so the certified frontier is empty."
        if result.decision.objective.certify
        else "Certification was off (--no-certify), so there is no certified frontier.",
        "Measured frontier around the recommendation (listed even when it is not on it):",
        _frontier_table(_near(f, "pareto", recommended), recommended),
    )


def _selection_note(result: SweepResult) -> str:
    decision, ev = result.decision, result.report.evidence
    rec, objective = decision.recommendation, decision.objective
    if not objective.certify:
        return "Selection: empirical (`--no-certify`). " + uncertified_note(
            result, bool(_biased_first(result))
        )
    if rec.method == "budget":
        return (
            f"**No policy under the budget of ${objective.max_cost_per_1k_usd:g} per 1k "
            "requests could be certified**; the recommendation is the best measured quality under "
            "it. " + uncertified_note(result, False)
        )
    if rec.fallback:
        return (
            f"Selection: the always-{decision.premium} fallback; the first lines say why and "
            "what more labels would likely certify."
        )
    if not rec.certified:  # --policy, uncertified
        return uncertified_note(result, False)
    stages = evidence_text(ev)
    per_segment = ""
    if ev.segments == ("(other)",):
        per_segment = (
            f" Per {objective.per_segment}: every segment has too few labels to be "
            "certified alone, so they were tested as one pool (a marginal guarantee only)."
        )
    elif ev.segments:
        per_segment = (
            f" Per {objective.per_segment}: the drop holds within each of "
            f"{', '.join(ev.segments)} (segments with too few labels are pooled as (other))."
        )
    return (
        f"Certified over {ev.certifiable_families} policy families (δ split equally among them). "
        f"Evidence: {stages}.{per_segment}"
    )


def _intervals_note(result: SweepResult) -> str:
    iv, level = result.decision.intervals, result.decision.objective.confidence_level
    parts = []
    for name, label in (
        ("quality", "quality"),
        ("quality_drop", "quality drop"),
        ("savings_vs_premium", "savings"),
        ("escalation_rate", "escalation rate"),
    ):
        i = iv[name]
        if name in ("savings_vs_premium", "escalation_rate"):
            low, high = pct(i.low), pct(i.high)
        else:
            sign = "+" if name == "quality_drop" else ""
            low, high = f"{i.low:{sign}.4f}", f"{i.high:{sign}.4f}"
        parts.append(f"{label} {low} to {high}")
    return (
        f"{level:.0%} intervals for the recommendation: "
        + "; ".join(parts)
        + ". Quality and drop: "
        "paired bootstrap over labeled requests (seeded); savings: delta method; escalation: Wilson. "
        "They are conditional on the chosen policy"
        + (
            "; the certificate above is the guarantee."
            if result.decision.recommendation.certified
            else "."
        )
    )


def _calibration_table(result: SweepResult) -> Table:
    decision = result.decision
    thresholds = decision.recommendation.row.policy.thresholds_by_tier()
    rows = []
    for c in result.report.calibration:
        tau, p = thresholds.get(c.tier), decision.p_correct.get(c.tier)
        at = (
            ""
            if tau is None or p is None
            else f"escalate below {threshold_display(tau)} ≈ P(correct) < {p:.2f}"
        )
        rows.append(
            (
                c.tier,
                str(c.labeled),
                num(c.auroc, 3),
                num(c.ece, 3),
                num(c.brier, 3),
                c.method or "n/a",
                at,
            )
        )
    return Table(
        ("tier", "labeled", "AUROC", "ECE", "Brier", "mapping", "recommended threshold"),
        tuple(rows),
    )


def _failure_blocks(result: SweepResult) -> tuple[Block, ...]:
    fm = result.report.failure_modes
    over = (
        f"Over-escalation: the recommendation escalates {pct(fm.escalation_rate)} of requests "
        f"(sends them past its cheapest tier); {escalation_band()}"
        + (
            "; **it costs more than always-premium**."
            if fm.costs_more_than_premium
            else "; it still costs less than always-premium."
        )
    )
    kept = (
        f"Silent under-escalation: kept requests (served below the premium tier) score "
        f"{num(fm.kept_quality, 4)} on {fm.kept_labeled} labeled ones, where the premium tier "
        f"scores {num(fm.kept_premium_quality, 4)} on the same requests."
    )
    alt = result.report.evidence.alternative
    hard_header = (
        "segment",
        "labeled",
        "cheapest tier",
        "premium",
        "escalated (recommended)",
        "escalated (empirical)" if alt else "",
    )
    hard = Table(
        tuple(h for h in hard_header if h),
        tuple(
            tuple(
                v
                for v in (
                    f"{s.column}={s.value}",
                    str(s.labeled),
                    num(s.cheapest_quality, 3),
                    num(s.premium_quality, 3),
                    pct(s.escalation_rate),
                    pct(s.alt_escalation_rate) if alt else None,
                )
                if v is not None
            )
            for s in fm.hard
        ),
    )
    names = ", ".join(f"`{s.value}`" for s in fm.hard if s.column == "intent") or "none"
    return (
        over,
        kept + " Per segment: the section Silent under-escalation at the top.",
        f"Hard intents (the cheapest tier alone trails premium by {HARD_GAP:.0%} more than its overall gap of {fm.cheapest_gap:.1%}): {names}.",
        hard,
    )


def _k_tier_note(result: SweepResult) -> str:
    """The k-tier formula E[C] = Σ_j c_j Π_{i<j} e_i with the observed step rates, next to the
    exact cost (they differ when a tier's cost depends on which requests reach it)."""
    row = result.decision.recommendation.row
    if row.policy.strategy != "cascade":
        return ""
    names = row.policy.tiers
    break_even = result.report.break_even
    cost = {b.cheap: b.cheap_cost_per_1k_usd for b in break_even}
    cost |= {b.expensive: b.expensive_cost_per_1k_usd for b in break_even}
    rate = {(b.cheap, b.expensive): b.observed_rate for b in break_even}
    total, reach = 0.0, 1.0
    for j, name in enumerate(names):
        total += cost[name] * reach
        if j + 1 < len(names):
            reach *= rate.get((name, names[j + 1])) or 0.0
    return (
        f" The k-tier formula E[C] = Σ c_j·Π e_i with these rates and each tier's mean cost gives "
        f"{usd(total)} per 1k requests; the exact replay gives "
        f"{usd(row.metrics.cost_per_1k_requests_usd)} "
        "(they differ when the requests that reach a tier cost more or less than its average)."
    )


def _economics_blocks(result: SweepResult) -> tuple[Block, ...]:
    report, decision = result.report, result.decision
    e = report.economics
    be = Table(
        (
            "cheap tier",
            "expensive tier",
            "cost / 1k (cheap)",
            "cost / 1k (expensive)",
            "break-even e*",
            "observed",
        ),
        tuple(
            (
                b.cheap,
                b.expensive,
                usd(b.cheap_cost_per_1k_usd),
                usd(b.expensive_cost_per_1k_usd),
                pct(b.escalation_rate),
                pct(b.observed_rate) if b.observed_rate is not None else "",
            )
            for b in report.break_even
        ),
    )
    monthly = Table(
        ("policy", *(f"{v:,}/day" for v in DAILY_VOLUMES)),
        tuple(
            (f"`{p.display_id}`", *(f"${c:,.0f}" for c in costs)) for p, costs in e.monthly_cost_usd
        ),
    )
    volume = (
        f"{e.break_even_requests_per_month:,.0f} requests per month"
        if e.break_even_requests_per_month is not None
        else "never (the recommendation saves nothing per request)"
    )
    return (
        "A cascade from the cheap to the expensive tier costs more than always-expensive when it "
        "escalates more than e* = 1 − c_cheap / c_expensive of the requests reaching it; "
        "observed = the recommendation's rate at that step." + _k_tier_note(result),
        be,
        f"Fixed calibration overhead: ${e.fixed_monthly_usd:,.2f} per month "
        f"({decision.window.labeled} labels at ${report.overheads.label_cost_usd:g} each, plus "
        f"${report.overheads.fixed_monthly_usd:,.2f} other"
        + (
            f", plus ${report.router_fixed_monthly_usd:,.2f} hosting the learned router"
            if decision.recommendation.row.policy.strategy == "router"
            and report.router_fixed_monthly_usd
            else ""
        )
        + "). Savings per request "
        f"${e.savings_per_request_usd:.6f}, so routing pays for its calibration above {volume}. "
        f"p95 latency overhead vs always-{decision.premium}: {e.latency_p95_overhead_ms:+,.0f} ms.",
        "Monthly cost (30 days; policies other than the baselines include the fixed overhead"
        + (
            f"; the learned router's also its hosting, ${report.router_fixed_monthly_usd:,.2f} "
            "per month (--classifier-monthly-usd)"
            if report.router_fixed_monthly_usd
            else ""
        )
        + "):",
        monthly,
    )


def _biased_first(result: SweepResult) -> tuple[str, ...]:
    """With --allow-biased on a set production routing selected, the report's first line says the
    estimate is biased (the warning `sweep/check.py` wrote)."""
    biased = [w for w in result.report.warnings if w.startswith(BIASED_WARNING)]
    return (f"**{biased[0]}**",) if biased else ()


def sections(result: SweepResult, charts: frozenset[str] = frozenset()) -> tuple[Section, ...]:
    """The report's content, shared by Markdown and HTML (`charts`: the chart files written)."""

    def chart(file: str, title: str) -> tuple[Block, ...]:
        return (Chart(file, title),) if file in charts else ()

    report, decision = result.report, result.decision
    f, w = report.frontier, decision.window
    rec = decision.recommendation
    data = (
        f"{w.requests} requests ({w.labeled} labeled for every tier) from {w.start} to {w.end}; "
        f"{report.rejected} rows rejected at ingest; {w.incomplete} requests incomplete. "
        f"{f.height} policies evaluated exactly. Logs digest `{w.logs_sha256[:16]}`."
    )
    ev = report.evidence
    if ev.weighted_labels:
        data += (
            f" {ev.weighted_labels} labeled requests come from a stratified sample: quality is the "
            "Hájek estimate weighted by 1/inclusion probability, and certification uses only the "
            f"{ev.certification_labels} labels of the uniform stratum (and unsampled labels)."
        )
    return (
        (
            "calibrate report",
            (
                *_biased_first(result),
                decision_line(result),
                _headline(result),
                *framing_lines(result),
                *saves_and_costs(result),
                *warnings_blocks(result),
            ),
        ),
        silent_under_escalation(result),
        (
            "How sure is this: the statistical detail",
            (
                rec.reason[:1].upper() + rec.reason[1:] + ".",
                _selection_note(result),
                _intervals_note(result),
                data,
                "The terms, one sentence each:",
                terms(result),
                RULE_IN_WORDS,
            ),
        ),
        strategy_comparison(result),
        endpoint_health_section(result),
        *keyword_rules_section(result),
        *consensus_section(result),
        (
            "Failure modes",
            _failure_blocks(result) + chart("segments.svg", "Kept-request quality per intent"),
        ),
        (
            "Baselines",
            (policy_table(frontier_rows(f.filter(pl.col("strategy") == "always"))),),
        ),
        (
            "Cost–quality frontier: certified and measured",
            _frontier_blocks(result, chart("frontier.svg", "Cost–quality frontier")),
        ),
        (
            "Thresholds",
            chart("thresholds.svg", "Quality and escalation rate against the threshold")
            or ("No two-tier cascade to plot.",),
        ),
        (
            "Escalation over time",
            chart("escalation_by_region.svg", "Escalation rate per region, by week")
            or ("No timestamps to plot.",),
        ),
        ("Break-even and monthly cost", _economics_blocks(result)),
        (
            "Confidence signal",
            (
                "Per tier on its labeled requests: AUROC for an acceptable answer (0.5 = no signal), "
                "ECE (10 equal-mass bins) and Brier score of the raw confidence, and the mapping to "
                "P(correct) (isotonic with ≥ 1,000 labels, else Platt).",
                _calibration_table(result),
                *chart("reliability.svg", "Reliability per tier"),
            ),
        ),
    )


def render_markdown(doc: tuple[Section, ...], charts: Mapping[str, ChartFile] | None = None) -> str:
    charts = charts or {}
    out = []
    for i, (title, blocks) in enumerate(doc):
        out.append(f"{'#' if i == 0 else '##'} {safe_markdown(title)}\n")
        for block in blocks:
            if isinstance(block, Chart):  # no image: report.md must read whole in a PR body
                out.append(f"_Chart in report.html: {safe_markdown(block.title)}._\n")
                if block.file in charts:
                    out.append(f"*{safe_markdown(charts[block.file].caption)}*\n")
            elif isinstance(block, Table):
                out.extend(table_markdown(block))
            elif isinstance(block, Bullets):
                out.extend(bullets_markdown(block))
            else:
                out.append(safe_markdown(block) + "\n")
    return "\n".join(out).rstrip() + "\n"


_CSS = BASE_CSS + (
    "figure.chart{margin:1rem 0}figure.chart svg{max-width:100%;height:auto}"
    "figcaption{color:#57606a;font-size:.85rem;max-width:48rem}"
)


def render_html(doc: tuple[Section, ...], charts: Mapping[str, ChartFile] | None = None) -> str:
    charts = charts or {}
    body = []
    for i, (title, blocks) in enumerate(doc):
        body.append(f"<h{1 if i == 0 else 2}>{html.escape(title)}</h{1 if i == 0 else 2}>")
        for block in blocks:
            if isinstance(block, Chart):
                chart = charts[block.file]
                body.append(
                    f'<figure class="chart" id="{html.escape(block.file)}">{chart.svg}'
                    f"<figcaption><strong>{html.escape(block.title)}.</strong> "
                    f"{html.escape(chart.caption)}</figcaption></figure>"
                )
            elif isinstance(block, Table):
                body.append(table_html(block))
            elif isinstance(block, Bullets):
                body.append(bullets_html(block))
            else:
                body.append(f"<p>{inline_html(block)}</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>calibrate report</title>'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )

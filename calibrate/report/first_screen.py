"""The sweep report's first screen and its plain-words glossary: the decision line, what the
recommendation saves and costs against always-premium (and production as logged), the list of
every warning, the "Silent under-escalation" section, the terms the statistical detail uses (one
sentence each) and the decision rule in words.

Rendering only: the decision comes from `sweep/verdict.py`, the segments from
`sweep/failure_modes.py`, the numbers from the sweep result. `warnings` is the one list the top of
the report shows: a new warning or note about the recommendation goes there.
"""

from __future__ import annotations

import polars as pl

from calibrate.policies.frontier import frontier_row
from calibrate.records.policy import FrontierRow, Policy
from calibrate.report.blocks import Block, Bullets, Section, Table, ms, num, pct, usd
from calibrate.sweep.check import BIASED_WARNING
from calibrate.sweep.failure_modes import MIN_LABELED, UNDER_GAP, SegmentRow
from calibrate.sweep.stage import SweepResult


def premium_row(result: SweepResult) -> FrontierRow:
    """Always-premium's frontier row: the reference of every drop and saving."""
    premium = Policy.always(result.decision.premium).id
    f = result.report.frontier
    return frontier_row(f.filter(pl.col("policy") == premium).row(0, named=True))


def decision_line(result: SweepResult) -> str:
    """**Decision: ….** and why, in one sentence."""
    verdict = result.report.verdict
    why = verdict.why[:1].upper() + verdict.why[1:]
    return f"**Decision: {verdict.action}.** {why}."


def saves_and_costs(result: SweepResult) -> tuple[Block, ...]:
    """The recommendation against always-premium (and production as logged, when the logs show
    it): cost, quality with the drop's interval and bound, escalation, p50/p95 latency."""
    decision, production = result.decision, result.report.production
    rec, premium = decision.recommendation, decision.premium
    r, p, iv = rec.row.metrics, premium_row(result).metrics, decision.intervals
    level = f"{decision.objective.confidence_level:.0%}"
    prod = production.metrics if production is not None else None
    savings, drop = iv["savings_vs_premium"], iv["quality_drop"]
    bound = (
        f"≤ {result.report.evidence.max_regret:.4g} at {level} confidence (certified)"
        if rec.certified
        else "none (not certified)"
    )
    rows: list[tuple[str, ...]] = [
        (
            "cost / 1k requests",
            usd(p.cost_per_1k_requests_usd),
            usd(r.cost_per_1k_requests_usd),
            f"{pct(r.savings_vs_premium)} cheaper ({level}: {pct(savings.low)} to "
            f"{pct(savings.high)})",
        ),
        (
            "quality",
            f"{p.quality:.4f}",
            f"{r.quality:.4f}",
            f"drop {r.quality_drop:+.4f} ({level}: {drop.low:+.4f} to {drop.high:+.4f})",
        ),
        ("guaranteed quality drop", "0 (the reference)", bound, ""),
        ("escalation rate", pct(p.escalation_rate), pct(r.escalation_rate), ""),
        (
            "p50 latency",
            ms(p.latency_p50_ms),
            ms(r.latency_p50_ms),
            f"{r.latency_p50_ms - p.latency_p50_ms:+,.0f} ms",
        ),
        (
            "p95 latency",
            ms(p.latency_p95_ms),
            ms(r.latency_p95_ms),
            f"{r.latency_p95_ms - p.latency_p95_ms:+,.0f} ms",
        ),
    ]
    header: tuple[str, ...] = ("", f"always-{premium}", "recommended", f"vs always-{premium}")
    if prod is not None:
        header = (*header[:2], "production as logged", *header[2:])
        cells = (
            usd(prod.cost_per_1k_requests_usd),
            f"{prod.quality:.4f}",
            "none (not certified)",
            pct(prod.escalation_rate),
            ms(prod.latency_p50_ms),
            ms(prod.latency_p95_ms),
        )
        rows = [(*row[:2], cell, *row[2:]) for row, cell in zip(rows, cells, strict=True)]
    return (Table(header, tuple(rows)), _production_note(result))


def _production_note(result: SweepResult) -> str:
    production, requests = result.report.production, result.decision.window.requests
    if production is None:
        return (
            "The logs show no production routing on most of these requests (no `prod` attempt "
            "that served them), so the current config is unknown and is not compared."
        )
    served = ", ".join(f"{t} {share:.1%}" for t, share in production.served_share)
    return (
        f"Production as logged: what the logs' `prod` attempts did on {production.requests:,} of "
        f"the {requests:,} requests (served by {served}), priced and timed like a policy; its "
        f"quality is measured on {production.labeled:,} labeled requests, not certified."
    )


def warnings(result: SweepResult) -> tuple[str, ...]:
    """Every warning about the recommendation, in the order the top of the report lists them
    (the biased-estimate warning is not repeated: it is the report's first line)."""
    under = silent_segments(result)
    found = []
    if under:
        names = ", ".join(f"{s.column} `{s.value}`" for s in under)
        found.append(
            f"**Silent under-escalation** in {len(under)} segment(s): {names} (the next section)."
        )
    found += [w for w in result.report.warnings if not w.startswith(BIASED_WARNING)]
    return tuple(found)


def warnings_blocks(result: SweepResult) -> tuple[Block, ...]:
    found = warnings(result)
    return ("**Warnings**", Bullets(found)) if found else ("**Warnings**: none.",)


def silent_segments(result: SweepResult) -> tuple[SegmentRow, ...]:
    """The segments whose kept requests score clearly below premium on the same requests: intents
    first (the --high-stakes ones first), then apps and regions; the largest gap first."""
    high = result.report.high_stakes
    return tuple(
        sorted(
            result.report.failure_modes.under_escalated,
            key=lambda s: (s.column != "intent", s.value not in high, -(s.kept_gap or 0.0)),
        )
    )


def silent_under_escalation(result: SweepResult) -> Section:
    """Where the recommendation quietly keeps requests on a tier that answers them worse."""
    premium = result.decision.premium
    rule = f"at least {UNDER_GAP:.2f} below on at least {MIN_LABELED} labeled kept requests"
    segments = silent_segments(result)
    if not segments:
        return (
            "Silent under-escalation",
            (
                f"None found: in no intent, app or region do the requests the recommendation "
                f"keeps below {premium} score clearly below {premium} on the same requests "
                f"({rule}).",
            ),
        )
    high = result.report.high_stakes
    rows = tuple(
        (
            f"{s.column}={s.value}",
            "yes" if s.column == "intent" and s.value in high else "",
            str(s.kept_labeled),
            num(s.kept_quality, 3),
            num(s.kept_premium_quality, 3),
            f"{s.kept_gap:+.3f}" if s.kept_gap is not None else "n/a",
        )
        for s in segments
    )
    header = ("segment", "high-stakes", "kept labeled", "kept quality", f"{premium} on the same")
    table = Table((*header, "gap"), rows)
    if not high:  # no --high-stakes: no such column
        table = Table(
            tuple(h for h in table.header if h != "high-stakes"), tuple(r[:1] + r[2:] for r in rows)
        )
    examples = "; ".join(f"{s.value}: {', '.join(s.examples)}" for s in segments if s.examples)
    blocks: list[Block] = [
        f"Under the recommendation these segments keep requests on a cheaper tier whose answers "
        f"score clearly below what {premium} gave the same requests ({rule}). The overall "
        "quality, and any guarantee on it, averages over them; no cost dashboard shows them.",
        table,
    ]
    if examples:
        blocks.append(
            f"Example requests kept and answered wrong where {premium} was right: {examples}."
        )
    blocks.append(
        "To act: certify within each intent (`--per-segment intent`), send these intents to "
        f"{premium} with a keyword rule (`--rules`), or label more of their requests."
    )
    return ("Silent under-escalation", tuple(blocks))


def terms(result: SweepResult) -> Bullets:
    """The words of the statistical detail, one sentence each."""
    objective, premium = result.decision.objective, result.decision.premium
    families = result.report.evidence.certifiable_families
    return Bullets(
        (
            "Quality: the mean label of the answer served (1 = acceptable), over the requests "
            "labeled for every tier.",
            f"Quality drop: always-{premium}'s mean label minus the policy's mean label on the "
            "same labeled requests (positive: worse than premium).",
            "Regret event: a labeled request a cheaper tier answered unacceptably (label below 0.5) "
            f"while {premium}'s answer was acceptable; the regret rate ignores the requests where "
            "the cheaper tier is right and premium wrong, so it is at least the drop for 0/1 labels.",
            f"Certified: Learn-then-Test showed from the labels that the policy's drop is at most "
            f"ε = {result.report.evidence.max_regret:.4g} with probability at least "
            f"{objective.confidence_level:g}; single tiers are baselines, not certified "
            f"(always-{premium} is the reference, with drop 0 by definition).",
            f"δ = {objective.delta:.2g}: the chance a certificate is wrong; it is split "
            f"equally among the {families} policy families tested (and the stages of a cascade), "
            "so testing many policies keeps the overall chance within δ.",
            "Upper bound: the largest regret rate (or drop) the labels allow at a stage's share "
            "of δ; a stage passes when it is at most ε.",
            "Interval: the range holding the true value with the stated confidence; quality and "
            "drop by a paired bootstrap over labeled requests, savings by the delta method, "
            "escalation by Wilson's interval for a proportion.",
            "Measured frontier: the policies no other policy beats on both measured cost and "
            "quality; certified frontier: the same among certified policies only.",
        )
    )

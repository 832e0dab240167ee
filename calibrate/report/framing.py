"""What the sweep report says about what was certified, in words: the evidence line of each test,
the top lines when the certified pick leaves savings on the table or does not pay back its labels,
the risk of an uncertified pick, the definitions of regret and quality drop, and the healthy
escalation band with its source.

Pure text from the sweep result (`sweep/stage.py` computes every number); `sweep_report.py` places
the lines.
"""

from __future__ import annotations

from calibrate.report.blocks import pct
from calibrate.sweep.failure_modes import HEALTHY_ESCALATION
from calibrate.sweep.stage import Evidence, LabelsNeeded, SweepResult

DROP_METHOD = (
    "drop test: a betting test for bounded means on the paired differences premium − served; "
    "Waudby-Smith & Ramdas, 'Estimating means of bounded random variables by betting', JRSSB 2024"
)


def evidence_text(ev: Evidence) -> str:
    """The certified recommendation's stage evidence, in the words of the test that passed it."""
    if not ev.stages:
        return (
            "always-premium has no regret" if ev.test == "regret" else "always-premium has no drop"
        )
    if ev.test == "regret":
        return "; ".join(
            f"{s.tier}: {s.regret_count} regret events in {s.labeled} labeled requests, upper "
            f"bound {s.regret_ucb:.4f} ≤ {s.max_regret:.4g} at δ = {s.delta:.4g}"
            for s in ev.stages
        )
    stages = "; ".join(
        f"{s.tier}: measured drop {s.drop or 0.0:+.4f} over {s.labeled:,} labeled requests"
        + ("" if s.drop_ucb is None else f", upper confidence bound {s.drop_ucb:+.4f}")
        + f" ≤ {s.max_regret:.4g}, p-value {_p(s.p_value)} ≤ δ = {s.delta:.4g}"
        for s in ev.stages
    )
    return f"{stages} ({DROP_METHOD})"


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.2g}"


def labels_hint(needed: LabelsNeeded) -> str:
    """The labels that would likely certify a cheaper certifiable policy."""
    return (
        f"About {needed.more_labels:,} more uniformly sampled labels would likely certify "
        f"`{needed.policy.display_id}` (saving {pct(needed.savings_vs_premium)})."
    )


NO_HINT = (
    "No cheaper certifiable policy is within reach of more labels: those within the limit "
    "measure a drop (or regret) at the limit itself."
)


def framing_lines(result: SweepResult) -> tuple[str, ...]:
    """The report's first lines after the headline: a fallback to always-premium or a certified
    pick saving less than half of the best measured policy (each with the labels that would likely
    certify a cheaper policy), and a pick whose savings do not pay back its calibration."""
    lines = (_fallback(result), _shortfall(result), _payback(result))
    return tuple(line for line in lines if line)


def _fallback(result: SweepResult) -> str:
    decision, ev = result.decision, result.report.evidence
    rec = decision.recommendation
    if not rec.fallback or rec.method == "budget" or not decision.objective.certify:
        return ""
    alt = ev.alternative.row.policy if ev.alternative else None
    more = labels_hint(ev.labels_needed) if ev.labels_needed else NO_HINT
    return (
        f"**Nothing cheaper than always-{decision.premium} could be certified** with "
        f"{decision.window.labeled} labels. The best empirical policy is "
        f"`{alt.display_id if alt else 'none'}`. {more}"
    )


def _shortfall(result: SweepResult) -> str:
    ev, decision = result.report.evidence, result.decision
    if not ev.shortfall or ev.alternative is None:
        return ""
    rec, best = decision.recommendation.row, ev.alternative.row
    line = (
        f"**The certified pick saves {pct(rec.metrics.savings_vs_premium)}, less than half of "
        f"the {pct(best.metrics.savings_vs_premium)} the best measured policy at the target, "
        f"`{best.policy.display_id}`, saves (measured, not certified).** "
    )
    return line + (labels_hint(ev.labels_needed) if ev.labels_needed else NO_HINT)


def _payback(result: SweepResult) -> str:
    report, decision = result.report, result.decision
    e, rec = report.economics, decision.recommendation.row
    if rec.policy.strategy == "always" or e.pays_back is not False or e.requests_per_month is None:
        return ""
    source = (
        "--requests-per-month"
        if report.overheads.requests_per_month is not None
        else "these logs' rate; set yours with --requests-per-month"
    )
    volume = e.requests_per_month
    saved = max(e.savings_per_request_usd, 0.0) * volume
    when = (
        f"it pays back above {e.break_even_requests_per_month:,.0f} requests per month"
        if e.break_even_requests_per_month is not None
        else "it saves nothing per request"
    )
    return (
        f"**At {volume:,.0f} requests per month ({source}) this pick saves ${saved:,.2f} a month, "
        f"less than the ${e.fixed_monthly_usd:,.2f} a month its calibration costs "
        f"({decision.window.labeled:,} labels at ${report.overheads.label_cost_usd:g} each and "
        f"the fixed costs); {when}.**"
    )


def risk_claim(ev: Evidence) -> str:
    """Next to an uncertified pick's measured drop: the risk that its drop exceeds ε."""
    if ev.exceed_risk is None:
        return "no valid bound on the risk that it exceeds the limit"
    return f"risk that it exceeds the limit: {_risk(ev.exceed_risk)}"


def _risk(risk: float) -> str:
    return (
        "below 0.1%"
        if risk < 0.001
        else f"up to {risk:.1%}"
        if risk < 0.01
        else f"up to {risk:.0%}"
    )


def uncertified_note(result: SweepResult, biased: bool) -> str:
    """What an uncertified pick's measured drop and risk mean (`--no-certify`, `--policy`, budget
    mode)."""
    ev, rec = result.report.evidence, result.decision.recommendation
    note = (
        "An uncertified pick has no guarantee: its measured drop is a point estimate on the "
        "labels that chose it, so it is biased low (it was picked for meeting the limit). "
    )
    if ev.exceed_risk is not None:
        return note + (
            f"Its risk of exceeding the limit, {_risk(ev.exceed_risk)}, is the least δ at which "
            f"the {ev.test} test would certify it: the largest p-value of 'drop > ε' from "
            "escalating everything down to its thresholds, times its stages and the "
            f"{ev.certifiable_families} certifiable policy families (the price of choosing it "
            "among them; docs/certification.md)."
        )
    why = (
        "the labelled set was selected by production routing"
        if biased
        else "a learned router is fitted on these labels"
        if rec.row.policy.strategy == "router"
        else "only policies ending at the premium tier can be tested against it"
    )
    return note + f"No valid bound on its risk exists: {why}."


def definitions(premium: str) -> str:
    """Regret and quality drop, one sentence each."""
    return (
        f"Terms: the **quality drop** of a policy is always-{premium}'s mean label minus the "
        "policy's mean label on the same labeled requests (positive means worse than premium). "
        "**Regret** is the share of requests a cheaper tier answered unacceptably (label below "
        f"0.5) while {premium}'s answer was acceptable; it ignores the requests where the cheaper "
        "tier is right and premium wrong, so it is at least the drop for 0/1 labels."
    )


def escalation_band() -> str:
    """The healthy escalation band, stated once with its source."""
    low, high = HEALTHY_ESCALATION
    return (
        f"the healthy band is {low:.0%}–{high:.0%} for every strategy, a rule of thumb of this "
        f"tool rather than a published norm: below {low:.0%}, check that the cheaper tier's "
        f"confidence is informative; above {high:.0%}, many requests pay for a dearer tier (a "
        "cascade for both) and the savings shrink towards the break-even rates below"
    )

"""The words of `monitor`'s alarms: what fired, when, in which segment, on what evidence, and
whether it makes recalibration due.

A falling escalation rate is the dangerous direction (methods.md §4.1): more traffic stays on the
cheaper tier. It is read as benign only when the estimated quality of the kept requests held up to
match (no fall beyond 2 standard errors) *and* labels arriving since the change confirm it; the label-free estimate alone cannot see a
cheap tier that became overconfident. A rising escalation rate reports its cost impact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from calibrate.stats.intervals import Interval, wilson
from calibrate.stats.regional_health import Outage

MIN_LABELS = 30  # labeled kept requests needed before labels may confirm or contradict


@dataclass(frozen=True, slots=True)
class Summary:
    """The deployed config over a set of requests (one segment, one stretch of days)."""

    requests: int
    escalated: int
    kept: int  # served by a tier before the config's last
    estimated_quality: float | None
    estimated_kept_quality: float | None
    estimated_kept_se: float
    kept_labeled: int
    kept_acceptable: int
    served_labeled: int
    served_acceptable: int
    cost_per_1k_usd: float | None
    escalation_cost_usd: float | None  # mean extra cost of one escalated request
    requests_per_day: float

    @property
    def escalation_rate(self) -> float:
        return self.escalated / self.requests if self.requests else float("nan")

    @property
    def measured_kept_quality(self) -> float | None:
        return self.kept_acceptable / self.kept_labeled if self.kept_labeled else None

    def kept_interval(self, level: float) -> Interval:
        return wilson(self.kept_acceptable, self.kept_labeled, level)


@dataclass(frozen=True, slots=True)
class Change:
    """A CUSUM alarm on the escalation rate: where, when it fired, when the change began."""

    segment: str
    fired: date
    onset: date
    statistic: float
    h: float
    alpha: float
    monitored_days: int


@dataclass(frozen=True, slots=True)
class QualityPoint:
    """Measured quality of the kept requests in one monitored 7-day block against the reference
    (one-sided Fisher exact test for a fall, at `alpha`)."""

    start: date
    end: date
    labeled: int
    acceptable: int
    p_value: float
    alpha: float

    @property
    def fell(self) -> bool:
        return self.p_value < self.alpha


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm: kind, segment, first day it fired, its verdict in words and its evidence."""

    kind: str  # escalation_down | escalation_up | quality_down | confidence_shift | outage
    segment: str
    first_day: date
    dangerous: bool
    recalibrate: bool
    summary: str
    evidence: tuple[str, ...]


def pct(value: float | None) -> str:
    """A rate as a percentage with one decimal ('n/a' when unknown)."""
    return "n/a" if value is None else f"{value:.1%}"


def _rate_line(ref: Summary, now: Summary, change: Change, level: float) -> str:
    a, b = wilson(ref.escalated, ref.requests, level), wilson(now.escalated, now.requests, level)
    return (
        f"escalation rate {pct(ref.escalation_rate)} in the reference "
        f"({ref.requests:,} requests, {pct(a.low)}–{pct(a.high)}) → {pct(now.escalation_rate)} "
        f"since {change.onset} ({now.requests:,} requests, {pct(b.low)}–{pct(b.high)})"
    )


def _cusum_line(change: Change, side: str) -> str:
    return (
        f"{side} CUSUM {change.statistic:.2f} > h = {change.h:.2f} on {change.fired} "
        f"(k = 0.5; h set for a {change.alpha:.2%} false-alarm rate over "
        f"{change.monitored_days} monitored days); change began around {change.onset}"
    )


def _estimate_line(ref: Summary, now: Summary) -> str:
    return (
        f"estimated quality of kept requests (mean calibrated P(correct), no labels) "
        f"{pct(ref.estimated_kept_quality)} → {pct(now.estimated_kept_quality)}; "
        f"of all served answers {pct(ref.estimated_quality)} → {pct(now.estimated_quality)}"
    )


def _labels_line(ref: Summary, now: Summary, level: float) -> str:
    if now.kept_labeled == 0:
        return f"no labeled kept requests since the change (reference: {ref.kept_labeled})"
    a, b = ref.kept_interval(level), now.kept_interval(level)
    return (
        f"measured quality of kept requests {pct(ref.measured_kept_quality)} "
        f"({ref.kept_labeled} labels, {pct(a.low)}–{pct(a.high)}) → "
        f"{pct(now.measured_kept_quality)} ({now.kept_labeled} labels, {pct(b.low)}–{pct(b.high)})"
    )


def escalation_up(
    ref: Summary, now: Summary, change: Change, level: float, extra: tuple[str, ...] = ()
) -> Alarm:
    """A rising escalation rate: more is sent up; report what it costs."""
    delta = now.escalation_rate - ref.escalation_rate
    summary = (
        f"The escalation rate rose from {pct(ref.escalation_rate)} to "
        f"{pct(now.escalation_rate)} ({change.segment}, since about {change.onset}; "
        f"fired {change.fired}): {_cost_words(ref, now, delta)}"
    )
    evidence = (
        _rate_line(ref, now, change, level),
        _cusum_line(change, "upper"),
        _estimate_line(ref, now),
        _measured_cost_line(ref, now),
        *extra,
    )
    return Alarm("escalation_up", change.segment, change.fired, False, True, summary, evidence)


def _cost_words(ref: Summary, now: Summary, delta: float) -> str:
    if ref.escalation_cost_usd is None:
        return "the cost impact is unknown (the logs carry no cost_usd for the escalated tiers)."
    per_1k = delta * ref.escalation_cost_usd * 1000
    per_day = delta * ref.escalation_cost_usd * now.requests_per_day
    share = (
        f" (+{per_1k / ref.cost_per_1k_usd:.0%} of the reference cost)"
        if ref.cost_per_1k_usd
        else ""
    )
    return (
        f"+{delta * 100:.1f} points of escalation ≈ +${per_1k:.4f} per 1k requests{share}, "
        f"≈ +${per_day:.4f} per day at {now.requests_per_day:,.0f} requests/day."
    )


def _measured_cost_line(ref: Summary, now: Summary) -> str:
    def usd(v: float | None) -> str:
        return "n/a" if v is None else f"${v:.4f}"

    return f"cost per 1k requests {usd(ref.cost_per_1k_usd)} → {usd(now.cost_per_1k_usd)}"


def escalation_down(
    ref: Summary, now: Summary, change: Change, level: float, extra: tuple[str, ...] = ()
) -> Alarm:
    """A falling escalation rate: dangerous unless the estimate held up and labels agree."""
    fell = (
        f"The escalation rate fell from {pct(ref.escalation_rate)} to {pct(now.escalation_rate)} "
        f"({change.segment}, since about {change.onset}; fired {change.fired})"
    )
    verdict, dangerous = _fall_verdict(ref, now, level)
    evidence = (
        _rate_line(ref, now, change, level),
        _cusum_line(change, "lower"),
        _estimate_line(ref, now),
        _labels_line(ref, now, level),
        *extra,
    )
    summary = f"{fell}. {verdict}"
    return Alarm(
        "escalation_down", change.segment, change.fired, dangerous, True, summary, evidence
    )


def _fall_verdict(ref: Summary, now: Summary, level: float) -> tuple[str, bool]:
    """The words for a fall, and whether it is dangerous."""
    reasons = []
    if not _estimate_rose(ref, now):
        reasons.append(
            "there is no matching rise in estimated quality (the estimated quality of kept "
            "requests fell)"
        )
    contradiction = _labels_contradict(ref, now, level)
    if contradiction:
        reasons.append(
            f"labels show {contradiction}: the cheaper tier is overconfident (its confidence "
            "rose while its accuracy fell)"
        )
    if reasons:
        return (
            f"DANGEROUS: {'; and '.join(reasons)}. More traffic stays on the cheaper tier than "
            "the threshold was calibrated for: raise the threshold now and recalibrate.",
            True,
        )
    if not _labels_cover(ref, now):
        return (
            "DANGEROUS until labels say otherwise: the estimated quality held up, as easier "
            "traffic would explain, but the estimate cannot see an overconfident cheaper tier "
            f"and only {now.kept_labeled} of the {now.kept:,} kept requests since the change are "
            f"labeled (need {MIN_LABELS}, at half the reference's labeling rate or more). Label "
            "a sample of them.",
            True,
        )
    return (
        "Consistent with easier traffic: the estimated quality of kept requests held up to "
        "match and the labels since the change agree. Recalibrating may save cost.",
        False,
    )


def _labels_cover(ref: Summary, now: Summary) -> bool:
    """Enough labels since the change to vouch for it: MIN_LABELS kept requests, labeled at half
    the reference's rate or more (so a few days of pre-change labels cannot vouch for weeks)."""
    if now.kept_labeled < MIN_LABELS or not now.kept or not ref.kept:
        return False
    return now.kept_labeled / now.kept >= 0.5 * ref.kept_labeled / ref.kept


def _estimate_rose(ref: Summary, now: Summary) -> bool:
    """The estimated quality of kept requests did not fall beyond its sampling noise (2 SE): what
    easier traffic, with the calibration still holding, would show."""
    if ref.estimated_kept_quality is None or now.estimated_kept_quality is None:
        return False
    noise = 2.0 * (ref.estimated_kept_se**2 + now.estimated_kept_se**2) ** 0.5
    return now.estimated_kept_quality >= ref.estimated_kept_quality - noise


def _labels_contradict(ref: Summary, now: Summary, level: float) -> str:
    """Words for a significant fall of measured kept quality (against the reference, or below what
    the estimate claims for the same period); '' when the labels do not contradict."""
    if now.kept_labeled < MIN_LABELS:
        return ""
    measured = now.kept_interval(level)
    if ref.kept_labeled >= MIN_LABELS and measured.high < ref.kept_interval(level).low:
        return (
            f"the measured quality of kept requests fell from {pct(ref.measured_kept_quality)} "
            f"to {pct(now.measured_kept_quality)}"
        )
    claimed = now.estimated_kept_quality
    if claimed is not None and measured.high < claimed:
        return (
            f"the measured quality of kept requests is {pct(now.measured_kept_quality)} "
            f"(at most {pct(measured.high)}) where the estimate claims {pct(claimed)}"
        )
    return ""


def confidence_shift(
    tier: str, chunk: str, fired: date, value: float, limit: float, sizes: tuple[int, int]
) -> Alarm:
    """A tier's confidence distribution moved beyond what sampling noise explains."""
    summary = (
        f"{tier}'s confidence distribution shifted: PSI {value:.3f} in {chunk} "
        f"(limit {limit:.3f}); the threshold may no longer mean what it meant at calibration."
    )
    evidence = (
        f"PSI over 10 reference-decile bins, {sizes[1]:,} requests vs {sizes[0]:,} in the "
        f"reference; limit max(0.1, (1/n + 1/m)·χ²(1 − α)) with α Bonferroni-split over chunks",
    )
    return Alarm("confidence_shift", "all", fired, False, True, summary, evidence)


def outage(o: Outage) -> Alarm:
    """Traffic in one region got a cheaper tier than intended because a tier failed."""
    moves = ", ".join(f"{n} intended for {a} served by {b}" for a, b, n in o.fallbacks)
    summary = (
        f"{o.region}: from {o.start} to {o.end}, {o.degraded} requests ({o.share:.1%} of the "
        f"region's {o.requests:,}) got a cheaper tier than intended because a tier failed."
    )
    return Alarm(
        "outage", f"region={o.region}", o.start, False, False, summary, (f"fallbacks: {moves}",)
    )


def quality_fell(point: QualityPoint, ref: Summary, level: float) -> Alarm:
    """Labels show the kept requests got worse: the silent failure, seen directly."""
    now = wilson(point.acceptable, point.labeled, level)
    measured = point.acceptable / point.labeled
    summary = (
        f"DANGEROUS: labels show the quality of kept requests fell from "
        f"{pct(ref.measured_kept_quality)} in the reference to {pct(measured)} in "
        f"{point.start}..{point.end}: requests stay on a cheaper tier that now answers worse. "
        "Raise the threshold and recalibrate."
    )
    evidence = (
        f"{point.acceptable} of {point.labeled} labeled kept requests acceptable "
        f"({pct(now.low)}–{pct(now.high)}) vs {ref.kept_acceptable} of {ref.kept_labeled} in the "
        f"reference; one-sided Fisher exact p = {point.p_value:.2g} < α = {point.alpha:.2g} "
        "(Bonferroni over the monitored weeks)",
    )
    return Alarm("quality_down", "all", point.end, True, True, summary, evidence)

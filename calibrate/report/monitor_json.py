"""monitor.json: every number a monitor run shows, in one JSON-ready dict (the canonical form the
Markdown, HTML and terminal views agree with). Floats are rounded, NaN becomes null, dates are ISO.
"""

from __future__ import annotations

import math
from datetime import date

from calibrate.monitor.alarms import Alarm, QualityPoint
from calibrate.monitor.stage import Chunk, Detector, MonitorResult, PsiPoint
from calibrate.stats.intervals import Interval
from calibrate.stats.regional_health import Health, Outage


def _num(x: float | None, digits: int = 6) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), digits) + 0.0


def _interval(i: Interval) -> list[float | None]:
    return [_num(i.low), _num(i.high)]


def _chunk_json(c: Chunk) -> dict:
    s = c.summary
    return {
        "segment": c.segment,
        "period": c.period,
        "start": str(c.start),
        "end": str(c.end),
        "reference": c.reference,
        "requests": s.requests,
        "escalated": s.escalated,
        "escalation_rate": _num(s.escalation_rate),
        "escalation_interval": _interval(c.escalation_interval),
        "estimated_quality": _num(s.estimated_quality),
        "estimated_kept_quality": _num(s.estimated_kept_quality),
        "labeled": s.served_labeled,
        "measured_quality": _num(c.measured_quality),
        "measured_interval": _interval(c.measured_interval),
        "cost_per_1k_requests_usd": _num(s.cost_per_1k_usd),
    }


def _date(d: date | None) -> str | None:
    return None if d is None else str(d)


def _alarm(a: Alarm) -> dict:
    return {
        "kind": a.kind,
        "segment": a.segment,
        "first_day": str(a.first_day),
        "dangerous": a.dangerous,
        "recalibrate": a.recalibrate,
        "summary": a.summary,
        "evidence": list(a.evidence),
    }


def _detector(d: Detector) -> dict:
    return {
        "segment": d.segment,
        "alpha": _num(d.alpha),
        "p0": _num(d.p0),
        "tau": _num(math.sqrt(d.tau2)),
        "h": _num(d.h),
        "first_up": _date(d.first_up),
        "first_down": _date(d.first_down),
        "days": [str(x) for x in d.days],
        "rates": [_num(x) for x in d.rates],
        "upper": [_num(x) for x in d.upper],
        "lower": [_num(x) for x in d.lower],
    }


def _quality_test(q: QualityPoint) -> dict:
    return {
        "start": str(q.start),
        "end": str(q.end),
        "labeled": q.labeled,
        "acceptable": q.acceptable,
        "p_value": _num(q.p_value, 8),
        "alpha": _num(q.alpha, 8),
        "fell": q.fell,
    }


def _psi(p: PsiPoint) -> dict:
    return {
        "tier": p.tier,
        "period": p.period,
        "start": str(p.start),
        "end": str(p.end),
        "requests": p.requests,
        "psi": _num(p.psi),
        "limit": _num(p.limit),
        "above": p.above,
    }


def _outage(o: Outage) -> dict:
    return {
        "region": o.region,
        "start": str(o.start),
        "end": str(o.end),
        "requests": o.requests,
        "degraded": o.degraded,
        "share": _num(o.share),
        "fallbacks": [{"intended": a, "served": b, "requests": n} for a, b, n in o.fallbacks],
    }


def _health(h: Health) -> dict:
    return {
        "base_rates": {name: _num(rate) for name, rate in h.base_rates},
        "failed_requests": h.failed_requests,
        "outages": [_outage(o) for o in h.outages],
        "days": [
            {
                "region": d.region,
                "day": str(d.day),
                "requests": d.requests,
                "degraded": d.degraded,
                "flagged": d.flagged,
            }
            for d in h.days
            if d.degraded
        ],
    }


def as_json(result: MonitorResult) -> dict:
    """Every number the views show, in one JSON-ready dict (stable key order)."""
    return {
        "policy": result.policy,
        "tiers": list(result.tiers),
        "logs": {"start": str(result.logs_start), "end": str(result.logs_end)},
        "reference": {
            "start": str(result.reference.start),
            "end": str(result.reference.end),
            "source": result.reference.source,
            "note": result.reference.note,
        },
        "monitored_start": str(result.monitored_start),
        "requests": result.requests,
        "unevaluable": result.unevaluable,
        "by": result.options.by,
        "false_alarm_rate": result.options.false_alarm_rate,
        "expected_escalation_rate": _num(result.expected_escalation_rate),
        "recalibration_due": result.recalibration_due,
        "reasons": list(result.reasons),
        "alarms": [_alarm(a) for a in result.alarms],
        "calibration": [
            {"tier": c.tier, "method": c.method, "labeled": c.labeled} for c in result.calibration
        ],
        "detectors": [_detector(d) for d in result.detectors],
        "chunks": [_chunk_json(c) for c in result.chunks],
        "quality_tests": [_quality_test(q) for q in result.quality],
        "psi": [_psi(p) for p in result.psi],
        "health": _health(result.health),
    }

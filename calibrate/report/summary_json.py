"""summary.json: the canonical machine-readable result of a sweep.

The same numbers as routing.yaml and report.md, rounded the same way (`routing.round_metric`), with
NaN and infinities as null so every JSON reader accepts it. Nothing here computes a metric.
"""

from __future__ import annotations

import math

import polars as pl

from calibrate.config.routing import METRICS, round_metric
from calibrate.sweep.stage import SweepResult


def _metrics(row: dict) -> dict:
    return {m: _json_float(round_metric(m, row[m])) for m in METRICS}


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else x


def _policy(row: dict) -> dict:
    return {
        "policy": row["policy"],
        "strategy": row["strategy"],
        "tiers": row["tiers"].split("+" if row["strategy"] == "consensus" else ">"),
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
            "fallback": result.recommendation.fallback,
            "max_regret": round(result.evidence.max_regret, 6),
            "selection_check": None
            if result.evidence.selection_check is None
            else {
                "drop": [
                    round(result.evidence.selection_check.drop.low, 4),
                    round(result.evidence.selection_check.drop.high, 4),
                ],
                "exceed_share": round(result.evidence.selection_check.exceed_share, 4),
            },
            "labels_needed": None
            if result.evidence.labels_needed is None
            else {
                "policy": result.evidence.labels_needed[0],
                "more_labels": result.evidence.labels_needed[1],
            },
            "stages": [
                {
                    "tier": st.tier,
                    "labeled": st.labeled,
                    "regret_count": st.regret_count,
                    "regret_ucb": round(st.regret_ucb, 6),
                    "delta": round(st.delta, 6),
                }
                for st in result.evidence.stages
            ],
        },
        "intervals": {
            name: [_json_round(i.low, 4), _json_round(i.high, 4)]
            for name, i in result.evidence.intervals.items()
        },
        "recommendation": _policy(result.recommendation.row),
        "baselines": [_policy(r) for r in always.iter_rows(named=True)],
        "pareto": [_policy(r) for r in result.frontier.filter("pareto").iter_rows(named=True)],
        "break_even": [
            {
                "cheap": b.cheap,
                "expensive": b.expensive,
                "escalation_rate": _json_float(round(b.escalation_rate, 4)),
                "observed_rate": _json_round(b.observed_rate, 4),
            }
            for b in result.break_even
        ],
        "confidence": [_calibration_json(c) for c in result.calibration],
        "failure_modes": {
            "escalation_rate": round(result.failure_modes.escalation_rate, 4),
            "hard_segments": [_segment_json(s) for s in result.failure_modes.hard],
            "under_escalated_segments": [
                f"{s.column}={s.value}" for s in result.failure_modes.under_escalated
            ],
        },
        "economics": {
            "fixed_monthly_usd": round(result.economics.fixed_monthly_usd, 2),
            "break_even_requests_per_month": _json_round(
                result.economics.break_even_requests_per_month, 0
            ),
            "latency_p95_overhead_ms": round(result.economics.latency_p95_overhead_ms, 1),
        },
        "warnings": list(result.warnings),
        "policies_evaluated": result.frontier.height,
        "keyword_rules": [
            {
                "name": h.name,
                "pattern": h.pattern,
                "tier": h.tier,
                "hits": h.hits,
                "labeled": h.labeled,
                "quality_by_tier": {t: _json_round(q, 4) for t, q in h.quality_by_tier},
                "fine_on_cheapest": h.fine_on_cheapest,
            }
            for h in result.rule_hits
        ],
        "consensus_high_stakes": []
        if result.consensus_slices is None
        else [
            {
                "intent": r["slice"],
                "policy": r["policy"],
                "requests": r["requests"],
                "labeled": r["labeled"],
                "quality": _json_round(r["quality"], 4),
                "gain_vs_premium": _json_round(r["gain_vs_premium"], 4),
                "cost_per_1k_requests_usd": round(r["cost_per_1k_requests_usd"], 6),
            }
            for r in result.consensus_slices.iter_rows(named=True)
        ],
    }


def _json_round(x: float | None, digits: int) -> float | None:
    return None if x is None else _json_float(round(x, digits))


def _segment_json(s) -> dict:
    return {
        "segment": f"{s.column}={s.value}",
        "labeled": s.labeled,
        "cheapest_quality": _json_round(s.cheapest_quality, 4),
        "premium_quality": _json_round(s.premium_quality, 4),
        "escalation_rate": round(s.escalation_rate, 4),
        "empirical_escalation_rate": _json_round(s.alt_escalation_rate, 4),
    }


def _calibration_json(c) -> dict:
    return {
        "tier": c.tier,
        "labeled": c.labeled,
        "auroc": _json_round(c.auroc, 4),
        "ece": _json_round(c.ece, 4),
        "brier": _json_round(c.brier, 4),
        "mapping": c.method,
        "reliability": [[round(x, 4), round(y, 4), k] for x, y, k in c.curve],
    }


# ---- the document -------------------------------------------------------------------------

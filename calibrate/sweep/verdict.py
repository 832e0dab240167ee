"""The decision a sweep report opens with (deploy, keep the current config, do not deploy, and why)
and the current config it is weighed against: production as the logs show it.

Production as logged. On each evaluated request the logs' `prod` attempts say which tiers
production called and which one served (`Store.production_paths`). Measured like a policy on the
same requests (cost: every called tier's attempt, as the sweep prices a cascade; latency: their
sum; quality: the serving tier's label; escalation: more than one tier called), it is what runs
today. It is known when at least `MIN_PRODUCTION_COVERAGE` of the evaluated requests have a
serving prod tier (shadow-only logs have none).

The rule, in this order (docs/report.md):
1. **do not deploy** when the estimate is biased (`--allow-biased` on a set production routing
   selected): the numbers describe that subset, not the traffic;
2. **keep the current config** when production as logged costs no more than the pick and scores
   at least as well on the same labeled requests (with a fallback to always-premium: production
   already serves every request from premium);
3. when nothing could be certified and the sweep fell back to always-premium: **deploy** it when
   production as logged costs more and scores no better on the same labeled requests (always-premium
   then saves money at no measured loss), else **do not deploy**;
4. **do not deploy** when, in budget mode, nothing under the budget could be certified, when the
   pick saves nothing against always-premium, or when an uncertified pick (`--policy`) measures a
   drop above the limit;
5. **deploy** otherwise: the pick is certified, or chosen without certification (`--no-certify`,
   `--policy`), which the reason says, and it saves money; the reason adds a **but** naming any
   --high-stakes intent the pick silently under-escalates (a caveat, not a veto: the per-intent gap
   is a screen, not a test).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np

from calibrate.policies.assignment import Assignment
from calibrate.policies.grid import PERCENTILES, percentile_rank
from calibrate.records.outcomes import Outcomes
from calibrate.records.policy import PolicyMetrics
from calibrate.records.sections import ProductionSums
from calibrate.sweep.selection import Objective, Recommendation

MIN_PRODUCTION_COVERAGE = 0.9
"""Production is known when at least this share of the evaluated requests has a serving prod tier."""

RULE_IN_WORDS = (
    "How the decision is made: **do not deploy** when the estimate is biased (--allow-biased); "
    "**keep the current config** when production as logged costs no more than the "
    "recommendation and scores at least as well on the same labeled requests; when nothing could "
    "be certified and the sweep fell back to always-premium, **deploy** it only if production as "
    "logged costs more and scores no better, else **do not deploy**; **do not deploy** when "
    "nothing under a budget could be certified, when the pick saves nothing against "
    "always-premium, or when an uncertified `--policy` measures a drop above the limit; "
    "**deploy** otherwise (the pick is certified, or chosen without a certificate, which the "
    "decision says); a deploy names any --high-stakes intent the pick silently under-escalates "
    "(the certificate averages over all traffic; the gap per intent has no test of its own)."
)
"""The rule of the module docstring as the report states it."""

_SLACK = 1e-9  # float sums of the same costs in another order

Action = Literal["deploy", "keep the current config", "do not deploy"]


@dataclass(frozen=True)
class Production:
    """Production as logged on the evaluated requests it served (module docstring), and the
    recommendation's cost and quality on the same requests (the paired comparison)."""

    requests: int
    labeled: int
    metrics: PolicyMetrics
    served_share: tuple[tuple[str, float], ...]
    recommended_cost_per_1k_usd: float
    recommended_quality: float

    def dominates(self) -> bool:
        """At most the recommendation's cost and at least its quality, on the same requests."""
        m = self.metrics
        cost_ok = m.cost_per_1k_requests_usd <= self.recommended_cost_per_1k_usd * (1 + _SLACK)
        return cost_ok and m.quality >= self.recommended_quality - _SLACK

    def beaten(self) -> bool:
        """The recommendation costs less and scores at least as well, on the same requests."""
        m = self.metrics
        cheaper = self.recommended_cost_per_1k_usd < m.cost_per_1k_requests_usd * (1 - _SLACK)
        return cheaper and self.recommended_quality >= m.quality - _SLACK

    def serves_only(self, tier: str) -> bool:
        return self.served_share == ((tier, 1.0),)


@dataclass(frozen=True)
class Verdict:
    """The decision and why, in one sentence (Markdown-light)."""

    action: Action
    why: str


def production_as_logged(
    outcomes: Outcomes,
    called: np.ndarray,
    served: np.ndarray,
    chosen: Assignment,
    weights: np.ndarray | None = None,
) -> Production | None:
    """Production measured like a policy on the requests it served (None: fewer than
    `MIN_PRODUCTION_COVERAGE` of them, or none labeled); quality Hájek-weighted with `weights`."""
    known = served >= 0
    n = int(known.sum())
    if not outcomes.n or n < MIN_PRODUCTION_COVERAGE * outcomes.n:
        return None
    labeled = known & outcomes.labeled
    if not labeled.any():
        return None
    rows = np.flatnonzero(known)
    cost = np.where(called[rows], np.nan_to_num(outcomes.cost_usd[rows]), 0.0).sum(axis=1)
    latency = np.where(called[rows], outcomes.latency_ms[rows], 0.0).sum(axis=1)
    label = outcomes.label[np.flatnonzero(labeled), served[labeled]]
    w = None if weights is None else weights[labeled]
    quality = float(np.average(label, weights=w))
    premium_quality = float(np.average(outcomes.label[labeled, -1], weights=w))
    premium_cost = float(outcomes.cost_usd[rows, -1].sum())
    p50, p95 = np.sort(latency)[[percentile_rank(p, n) - 1 for p in PERCENTILES]]
    shares = np.bincount(served[rows], minlength=len(outcomes.tiers)) / n
    return Production(
        requests=n,
        labeled=int(labeled.sum()),
        metrics=PolicyMetrics(
            quality=quality,
            quality_drop=premium_quality - quality,
            escalation_rate=float((called[rows].sum(axis=1) > 1).mean()),
            cost_per_1k_requests_usd=float(cost.mean() * 1000.0),
            savings_vs_premium=1.0 - float(cost.sum()) / premium_cost if premium_cost else 0.0,
            latency_p50_ms=float(p50),
            latency_p95_ms=float(p95),
        ),
        served_share=tuple(
            (t, float(s)) for t, s in zip(outcomes.tiers, shares, strict=True) if s > 0
        ),
        recommended_cost_per_1k_usd=float(chosen.cost_usd[rows].mean() * 1000.0),
        recommended_quality=float(np.average(chosen.label[labeled], weights=w)),
    )


def production_of_sums(
    labeled: Outcomes,
    chosen: Assignment,
    requests: int,
    sums: ProductionSums,
    weights: np.ndarray | None = None,
) -> Production | None:
    """`production_as_logged` from the labeled rows (`labeled`, the chosen policy walked on
    them, `weights` per labeled row), the number of evaluated requests and production's sums
    over all of them. Costs are exact sums of nano-USD (the grid engine's money) where
    `production_as_logged` sums floats."""
    n = sums.requests
    if not requests or n < MIN_PRODUCTION_COVERAGE * requests:
        return None
    served = _labeled_served(labeled, sums)
    known = served >= 0
    if not known.any():
        return None
    label = labeled.label[np.flatnonzero(known), served[known]]
    w = None if weights is None else weights[known]
    quality = float(np.average(label, weights=w))
    premium_quality = float(np.average(labeled.label[known, -1], weights=w))
    cost, premium_cost = sums.cost_nano_usd, sums.premium_nano_usd
    shares = [(t, c / n) for t, c in zip(labeled.tiers, sums.served, strict=True) if c > 0]
    return Production(
        requests=n,
        labeled=int(known.sum()),
        metrics=PolicyMetrics(
            quality=quality,
            quality_drop=premium_quality - quality,
            escalation_rate=float(sums.escalated / n),
            cost_per_1k_requests_usd=float(Fraction(cost, n * 10**9)) * 1000.0,
            savings_vs_premium=1.0 - float(Fraction(cost, premium_cost)) if premium_cost else 0.0,
            latency_p50_ms=sums.latency_p50_ms,
            latency_p95_ms=sums.latency_p95_ms,
        ),
        served_share=tuple(shares),
        recommended_cost_per_1k_usd=float(Fraction(sums.chosen_nano_usd, n * 10**9)) * 1000.0,
        recommended_quality=float(np.average(chosen.label[known], weights=w)),
    )


def _labeled_served(labeled: Outcomes, sums: ProductionSums) -> np.ndarray:
    """The tier production served on each labeled request (in `labeled`'s row order)."""
    if np.array_equal(sums.labeled_ids, labeled.request_ids):
        return sums.labeled_served
    at = {rid: i for i, rid in enumerate(sums.labeled_ids.tolist())}
    return sums.labeled_served[[at[rid] for rid in labeled.request_ids.tolist()]]


def decide(
    rec: Recommendation,
    objective: Objective,
    premium: str,
    max_drop: float,
    *,
    biased: bool,
    production: Production | None,
    labels: int,
    high_stakes_under: tuple[str, ...] = (),
) -> Verdict:
    """The rule of the module docstring (`high_stakes_under`: the --high-stakes intents whose
    kept requests score clearly below premium under the pick)."""
    pick, m = f"`{rec.row.policy.display_id}`", rec.row.metrics
    if biased:
        return Verdict(
            "do not deploy",
            "the estimate is biased: production routing selected the requests it was measured "
            "on (--allow-biased), so its numbers describe that subset, not the traffic",
        )
    if production is not None and production.dominates():
        return Verdict("keep the current config", _keep(production, pick, premium, rec))
    if rec.fallback and rec.method == "budget":
        return Verdict(
            "do not deploy",
            f"no policy under the budget of ${objective.max_cost_per_1k_usd:g} per 1k requests "
            f"could be certified; {pick} is only the best measured quality under it",
        )
    if rec.fallback and production is not None and production.beaten():
        saves = production.metrics.cost_per_1k_requests_usd - production.recommended_cost_per_1k_usd
        return Verdict(
            "deploy",
            f"nothing cheaper than always-{premium} could be certified, but always-{premium} "
            f"costs ${saves:.4f} less per 1k requests than production as logged and scores at "
            f"least as well on the same {production.labeled:,} labeled requests",
        )
    if rec.fallback:
        return Verdict(
            "do not deploy",
            f"no policy cheaper than always-{premium} could be certified with {labels:,} labels, "
            f"so the sweep fell back to always-{premium}, which saves nothing",
        )
    if m.savings_vs_premium <= 0:
        return Verdict(
            "do not deploy", f"{pick} costs no less than always-{premium}, so it saves nothing"
        )
    if not rec.certified and m.quality_drop > max_drop + 1e-12:
        return Verdict(
            "do not deploy",
            f"{pick} is not certified and its measured quality drop {m.quality_drop:+.4f} is "
            f"above the limit {max_drop:.4g}",
        )
    why = _deploy(rec, objective, premium, max_drop, production)
    if high_stakes_under:
        names = ", ".join(f"`{name}`" for name in high_stakes_under)
        why += (
            f"; **but** it keeps requests of the high-stakes intent(s) {names} on a cheaper tier "
            f"that answers them clearly worse than {premium} (the next section): before deploying, "
            f"send them to {premium} with a keyword rule (`--rules`) or label more of them"
        )
    return Verdict("deploy", why)


def _keep(production: Production, pick: str, premium: str, rec: Recommendation) -> str:
    m = production.metrics
    if rec.fallback and production.serves_only(premium):
        return (
            f"nothing cheaper than always-{premium} could be certified, and production already "
            f"serves every request from {premium}"
        )
    return (
        f"production as logged costs ${m.cost_per_1k_requests_usd:.4f} per 1k requests against "
        f"${production.recommended_cost_per_1k_usd:.4f} for {pick} and scores {m.quality:.4f} "
        f"against {production.recommended_quality:.4f} on the same {production.labeled:,} labeled "
        "requests, so deploying the recommendation would not improve on it"
    )


def _deploy(
    rec: Recommendation,
    objective: Objective,
    premium: str,
    max_drop: float,
    production: Production | None,
) -> str:
    pick, m = f"`{rec.row.policy.display_id}`", rec.row.metrics
    saves = f"costs {m.savings_vs_premium:.1%} less than always-{premium}"
    if rec.certified:
        why = (
            f"{pick} is certified to lose at most {max_drop:.4g} of always-{premium}'s quality "
            f"at {objective.confidence_level:.0%} confidence and {saves}"
        )
    else:
        how = "chosen with --policy" if rec.method == "chosen" else "--no-certify"
        why = (
            f"{pick} {saves} and measures a quality drop of {m.quality_drop:+.4f} (limit "
            f"{max_drop:.4g}), but it is not certified ({how}): no statistical guarantee"
        )
    if production is None:
        return why
    p = production.metrics
    delta = production.recommended_cost_per_1k_usd - p.cost_per_1k_requests_usd
    if delta <= 0:
        return f"{why}, and it is no dearer than production as logged"
    within = "above" if p.quality_drop > max_drop + 1e-12 else "within"
    return (
        f"{why}; it costs ${delta:.4f} more per 1k requests than production as logged, whose "
        f"measured quality drop {p.quality_drop:+.4f} is {within} the limit"
        + ("" if within == "above" else " but is not certified")
    )

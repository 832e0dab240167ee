"""The report's sections about strategies: the best policy of each strategy side by side, endpoint
health, what each keyword rule catches, and consensus on the high-stakes intents.

Rendering only: the numbers come from the sweep result (`sweep.py`, `consensus.py`,
`keyword_rules.py`, `endpoint_health.py`).
"""

from __future__ import annotations

import math

import polars as pl

from calibrate.policies.frontier import frontier_row
from calibrate.records.policy import FrontierRow, PolicyMetrics
from calibrate.report.blocks import Block, Section, Table, ms, num, pct, usd
from calibrate.sweep.stage import SweepResult


def policy_table(rows: list[FrontierRow]) -> Table:
    header = ("policy", "quality", "drop", "escalation", "cost / 1k req", "savings", "p50", "p95")
    body = tuple((f"`{r.policy.display_id}`", *_metric_cells(r.metrics)) for r in rows)
    return Table(header, body)


def certified_cell(row: FrontierRow) -> str:
    """Whether a policy is certified, as every table shows it: "—" for a single tier (a baseline:
    certification is a statement relative to always-premium, whose drop is 0 by definition),
    "n/a" for strategies never certified (the learned router, consensus)."""
    strategy = row.policy.strategy
    if strategy == "always":
        return "—"
    if strategy in ("router", "consensus"):
        return "n/a"
    return "yes" if row.certified else "no"


def _metric_cells(m: PolicyMetrics) -> tuple[str, ...]:
    return (
        f"{m.quality:.4f}",
        f"{m.quality_drop:+.4f}",
        pct(m.escalation_rate),
        usd(m.cost_per_1k_requests_usd),
        pct(m.savings_vs_premium),
        ms(m.latency_p50_ms),
        ms(m.latency_p95_ms),
    )


_STRATEGY_NAMES = {
    "always": "single tier",
    "length": "rules (input length)",
    "rules": "keyword rules + length",
    "router": "learned router",
    "cascade": "cascade",
    "hybrid": "keyword rules + cascade",
    "consensus": "consensus",
}


def strategy_comparison(result: SweepResult) -> Section:
    """The best policy of each strategy at the same quality target: the cheapest whose measured
    drop is ≤ the limit, and the cheapest certified one where the strategy can be certified."""
    limit = result.report.evidence.max_regret
    f = result.report.frontier.with_row_index("_row")
    header: tuple[str, ...] = ("strategy", "best at the target", "certified", "quality", "drop")
    header += ("escalation", "cost / 1k req", "savings", "p50", "p95")
    rows: list[tuple[str, ...]] = []
    for kind, name in _STRATEGY_NAMES.items():
        family = f.filter(pl.col("strategy") == kind).sort(
            ["cost_per_1k_requests_usd", "quality", "_row"], descending=[False, True, False]
        )
        if family.is_empty():
            continue
        within = family.filter(pl.col("quality_drop") <= limit + 1e-12)
        best_quality = family.sort(["quality", "_row"], descending=[True, False]).head(1)
        picks = [("measured", within.head(1) if within.height else best_quality)]
        if kind in (
            "length",
            "rules",
            "cascade",
            "hybrid",
        ):  # a router is never certified, premium is the reference
            picks.append(("certified", family.filter(pl.col("certified")).head(1)))
        for how, pick in picks:
            if pick.is_empty():
                rows.append((name, f"none ({how})", "no", *("–",) * 7))
                continue
            r = frontier_row(pick.row(0, named=True))
            certified = certified_cell(r)
            misses = " (misses the target)" if r.metrics.quality_drop > limit + 1e-12 else ""
            policy = f"`{r.policy.display_id}`{misses}"
            rows.append((name, policy, certified, *_metric_cells(r.metrics)))
    note = (
        f"Target: quality drop vs always-premium at most {limit:.4g}. Per strategy, the cheapest "
        "policy whose measured drop meets it (else its best-quality policy, marked), and the "
        "cheapest certified one (Learn-then-Test). Certification is a statement relative to "
        "always-premium, so single tiers, the baselines, show — (always-premium has drop 0 by "
        "definition). "
        "The learned router is evaluated on cross-fitted scores and is never certified (its scores "
        "were fitted on these labels); its cost includes --classifier-cost-usd. Routers and rules "
        "decide before any call and pay one tier; cascades pay every tier they touch (in a "
        "hybrid, only the requests no keyword rule matches); consensus "
        "pays every tier of its set (escalation 100%) and is never certified."
    )
    return ("Strategies side by side", (note, Table(header, tuple(rows))))


UNHEALTHY_RATE = 0.05  # error + timeout share of a tier's prod attempts in a region on a day
_UNHEALTHY_ROWS = 20


def endpoint_health_section(result: SweepResult) -> Section:
    """Strategy 4, endpoint health: outage windows, traffic silently served by a cheaper tier per
    region, and the unhealthy tier × region × days (prod latency, error/timeout, fallback)."""
    found = result.report.endpoint_health
    if found is None or found.table.is_empty():
        return ("Endpoint health", ("No production attempts in the logs.",))
    outages = Table(
        ("region", "intended → served", "from", "to", "requests", "served cheaper"),
        tuple(
            (
                o.region,
                ", ".join(f"{a} → {b} ({n})" for a, b, n in o.fallbacks),
                o.start.isoformat(),
                o.end.isoformat(),
                str(o.requests),
                pct(o.share),
            )
            for o in found.health.outages
        ),
    )
    downgraded = "; ".join(f"{r} {n}" for r, n in found.downgraded_by_region().items())
    bad = found.table.filter(
        (pl.col("error_rate") + pl.col("timeout_rate") >= UNHEALTHY_RATE)
        | (pl.col("fallback_share") > 0)
    ).head(_UNHEALTHY_ROWS)
    unhealthy = Table(
        ("tier", "region", "day", "attempts", "p50", "p95", "errors", "timeouts", "fell back"),
        tuple(
            (
                r["tier"],
                r["region"],
                r["day"].isoformat(),
                str(r["attempts"]),
                "n/a" if r["latency_p50_ms"] is None else ms(r["latency_p50_ms"]),
                "n/a" if r["latency_p95_ms"] is None else ms(r["latency_p95_ms"]),
                pct(r["error_rate"]),
                pct(r["timeout_rate"]),
                pct(r["fallback_share"]),
            )
            for r in bad.iter_rows(named=True)
        ),
    )
    blocks: tuple[Block, ...] = (
        "Production attempts only. An outage window is a run of days in which a region's traffic "
        "fell back to a cheaper tier, with at least one day improbably high for the region "
        "(the detector `calibrate monitor` uses).",
        outages if outages.rows else "No outage window.",
        f"Requests served by a cheaper tier because the intended one failed, per region: {downgraded}.",
        f"Tier × region × days with ≥ {UNHEALTHY_RATE:.0%} errors or timeouts, or any fallback "
        f"(first {_UNHEALTHY_ROWS}):",
        unhealthy if unhealthy.rows else "None.",
    )
    return ("Endpoint health", blocks)


def keyword_rules_section(result: SweepResult) -> tuple[Section, ...]:
    """What each keyword rule of --rules catches (none without a rules file)."""
    hits = result.report.rule_hits
    if not hits:
        return ()
    tiers = [t for t, _ in hits[0].quality_by_tier]
    header = ("rule", "pattern", "tier", "hits", "labeled", *(f"quality on {t}" for t in tiers))
    rows = tuple(
        (
            h.name + (" (fine on the cheapest tier)" if h.fine_on_cheapest else ""),
            f"`{h.pattern}`",
            h.tier,
            str(h.hits),
            str(h.labeled),
            *(num(q, 4) for _, q in h.quality_by_tier),
        )
        for h in hits
    )
    note = (
        "First match wins. Quality is the mean label of each tier's answer on the rule's labeled "
        "hits; a rule sending its hits to a dearer tier although the cheapest tier answers them "
        "about as well as the premium one is marked. The sweep also puts the rules in front of "
        "input-length cutoffs (strategy `rules`) and of cascades ending at the premium tier "
        "(strategy `hybrid`); a ruled request is served by its rule's tier alone."
    )
    return (("Keyword rules", (note, Table(header, rows))),)


def consensus_section(result: SweepResult) -> tuple[Section, ...]:
    """Consensus against always-premium on each high-stakes intent the user named (none when
    no intent was named or there are fewer than 3 tiers)."""
    found = result.report.consensus_slices
    if found is None:
        return ()
    rows = []
    for r in found.iter_rows(named=True):
        gain, extra = r["gain_vs_premium"], r["extra_cost_per_1k_usd"]
        premium = r["strategy"] == "always"
        rescued = gain * 1000.0
        per_answer = "–" if premium else usd(extra / rescued) if rescued > 0 else "never"
        rows.append(
            (
                r["slice"],
                f"`{r['policy']}`",
                f"{r['requests']:,}",
                f"{r['labeled']:,}",
                "n/a"
                if r["quality"] is None or math.isnan(r["quality"])
                else f"{r['quality']:.4f}",
                "–" if premium else f"{gain:+.4f}",
                usd(r["cost_per_1k_requests_usd"]),
                "–" if premium else usd(extra),
                per_answer,
            )
        )
    header: tuple[str, ...] = ("intent", "policy", "requests", "labeled", "quality")
    header += ("gain vs premium", "cost / 1k req", "extra / 1k req", "per answer rescued")
    note = (
        "Consensus (every tier of the set answers; the majority of the normalised answers wins, a "
        "tie goes to the dearest tier's) against always-premium on the intents named with "
        "--high-stakes. It pays where its quality gain is worth the extra cost: `per answer "
        "rescued` is the extra spend per additional acceptable answer (extra cost per 1k requests "
        "÷ the gain × 1,000); `never` means it answers no better than premium there."
    )
    return (("Consensus on high-stakes intents", (note, Table(header, tuple(rows)))),)

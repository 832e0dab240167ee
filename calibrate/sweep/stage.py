"""Stage: evaluate every candidate policy on the stored data, certify, choose one, and gather the
evidence behind it.

`run_sweep(store, tiers, objective, strategies=…)` reads the outcome table once, evaluates the
always-tier baselines, every cascade over an ordered subset of 2–4 tiers, the input-length rules,
the learned router (on the prompts or a precomputed embedding), keyword rules in front of length
rules and cascades (with `--rules`) and consensus sets exactly, marks the Pareto frontier,
certifies the families (unless `--no-certify`) and selects (or takes the `--policy` row). Then, for
the chosen policy: intervals, per-tier confidence diagnostics, failure modes per segment, the
economics, endpoint health, keyword-rule hits and consensus on the high-stakes intents. The result
is a `Decision` (what routing.yaml and router.json are written from) and a `SweepReport` (what only
the reports need). It writes nothing; rendering and files belong to `report`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import polars as pl

from calibrate.config.tiers import TiersConfig, price_table
from calibrate.errors import ConfigError, DataError
from calibrate.policies.assignment import Assignment, assign, served_labels, take_rows
from calibrate.policies.consensus import consensus_frame_from_cells, consensus_slices_from_cells
from calibrate.policies.families import (
    Family,
    policy_index,
    premium_family,
    sweep_columns,
)
from calibrate.policies.family_cells import SqlStopRows, evaluate_families_from_cells
from calibrate.policies.frontier import frontier_row
from calibrate.policies.keyword_rules import RuleHits, RulesFile, rule_hits
from calibrate.policies.optimum import measured_optima
from calibrate.policies.optimum_cells import measured_optima_from
from calibrate.policies.router import RouterFit
from calibrate.records.labels import ACCEPTABLE
from calibrate.records.outcomes import DataWindow, Outcomes
from calibrate.records.policy import FrontierRow, Policy
from calibrate.records.progress import NO_PROGRESS, Progress
from calibrate.records.sections import SectionSums
from calibrate.stats import bounded_mean
from calibrate.stats.estimators import hajek_mean, weighted_paired_difference
from calibrate.stats.intervals import (
    Interval,
    bootstrap_quality,
    mean_interval,
    policy_intervals_of_sums,
    savings_interval,
    wilson,
)
from calibrate.stats.reliability import TierCalibration, tier_calibrations
from calibrate.store import Store
from calibrate.store.aggregates_sql import Query, known_intents, label_counts
from calibrate.store.outcome_rows_sql import OutcomeRows
from calibrate.store.sections_sql import ROUTER_SCORE, RULE_TIER, section_sums
from calibrate.store.sql_engine import SqlEngine
from calibrate.sweep import check
from calibrate.sweep.candidates import Candidates, Source, Strategies, candidates, needs_requests
from calibrate.sweep.certify import (
    TESTS,
    Budget,
    Stage,
    Test,
    certifiable,
    certify_families,
    clopper_pearson_lower,
    exceed_risk,
    labels_to_certify,
    labels_to_certify_drop,
    segment_groups,
)
from calibrate.sweep.confidence_scale import stored_scales
from calibrate.sweep.diagnostics import (
    BreakEven,
    Economics,
    break_even_of_sums,
    economics,
    warnings_for,
)
from calibrate.sweep.endpoint_health import EndpointHealth, endpoint_health
from calibrate.sweep.failure_modes import (
    FailureModes,
    escalation_timeline_of_sums,
    failure_modes_of_sums,
    segment_columns,
)
from calibrate.sweep.selection import (
    CERTIFICATION_METHODS,
    Objective,
    Recommendation,
    constrained,
    mark_certified_pareto,
    mark_pareto,
    measured_target,
    select_certified,
    select_chosen,
    select_empirical,
)
from calibrate.sweep.verdict import Production, Verdict, decide, production_of_sums
from calibrate.sweep.weighting import hajek_scaled, uniform_only


@dataclass(frozen=True)
class Overheads:
    """Fixed costs of keeping a routing policy calibrated, for the break-even volume, and the
    traffic they are paid back from (`requests_per_month`; None: the logs' own rate)."""

    label_cost_usd: float = 1.0
    fixed_monthly_usd: float = 0.0
    requests_per_month: float | None = None


@dataclass(frozen=True)
class LabelsNeeded:
    """Roughly how many more uniformly sampled labels would likely certify `policy` (a certifiable
    policy cheaper than the recommendation), and what it saves versus always-premium."""

    policy: Policy
    more_labels: int
    savings_vs_premium: float


@dataclass(frozen=True)
class Evidence:
    """Why the recommendation can be trusted (or how far it is from being certified).

    `alternative`: the best measured policy meeting the target (the empirical pick) when it is not
    the recommendation; `shortfall`: the certified recommendation saves less than half of what it
    saves; `labels_needed`: after a fallback or a shortfall, the labels that would likely certify a
    cheaper certifiable policy; `exceed_risk`: for an uncertified recommendation, the risk that
    its drop exceeds ε (`certify.exceed_risk`; None when nothing can bound it)."""

    max_regret: float
    stages: tuple[Stage, ...]
    certifiable_families: int
    segments: tuple[str, ...]
    alternative: Recommendation | None
    labels_needed: LabelsNeeded | None
    exceed_risk: float | None
    weighted_labels: int
    certification_labels: int
    test: Test = "drop"
    shortfall: bool = False


@dataclass(frozen=True)
class CertificationRecord:
    """How routing.yaml's `certified` was decided: the test and its method, ε and δ as tested,
    the labels it used, the recommendation's stage evidence (empty when it is uncertified or
    always-premium) and, when it is uncertified, the risk that its drop exceeds ε."""

    test: Test
    method: str
    max_drop: float
    delta: float
    labels: int
    stages: tuple[Stage, ...]
    exceed_risk: float | None


@dataclass(frozen=True)
class Decision:
    """What gets deployed: routing.yaml (and router.json) are written from this alone.

    `intervals`: the recommendation's metrics at the objective's confidence level; `p_correct`:
    per deciding tier of a cascade, the calibrated P(correct) at its threshold; `keyword_rules`:
    the rules file the `rules` and `hybrid` strategies apply first; `router`: the learned router,
    when the sweep fitted one, and its price per 1k requests."""

    tiers: TiersConfig
    objective: Objective
    window: DataWindow
    recommendation: Recommendation
    intervals: dict[str, Interval]
    p_correct: dict[str, float]
    keyword_rules: RulesFile | None = None
    router: RouterFit | None = None
    classifier_cost_per_1k: float = 0.0
    confidence_scales: tuple[tuple[str, str], ...] = ()  # (tier, scale its confidences are on)
    certification: CertificationRecord | None = None

    @property
    def premium(self) -> str:
        """The premium tier (the last of tiers.yaml), the reference of every quality drop."""
        return self.tiers.names[-1]

    @property
    def confidence_methods(self) -> dict[str, tuple[str, str | None]]:
        """Per tier, its confidence method (tiers.yaml) and the scale its confidences are on
        (None: the tier has no confidence)."""
        scales = dict(self.confidence_scales)
        return {t.name: (t.confidence, scales.get(t.name, t.scale)) for t in self.tiers.tiers}


@dataclass(frozen=True)
class SweepReport:
    """What only the reports need: every policy evaluated and the evidence around the decision."""

    frontier: pl.DataFrame
    rejected: int
    evidence: Evidence
    break_even: tuple[BreakEven, ...]
    calibration: tuple[TierCalibration, ...]
    failure_modes: FailureModes
    timeline: pl.DataFrame
    economics: Economics
    overheads: Overheads
    warnings: tuple[str, ...]
    verdict: Verdict
    production: Production | None = None
    """Production as logged on the evaluated requests (`verdict.py`), when the logs show it."""
    high_stakes: tuple[str, ...] = ()
    """The intents named with --high-stakes."""
    endpoint_health: EndpointHealth | None = None
    rule_hits: tuple[RuleHits, ...] = ()
    consensus_slices: pl.DataFrame | None = None
    router_fixed_monthly_usd: float = 0.0


@dataclass(frozen=True)
class SweepResult:
    """The decision and the report around it."""

    decision: Decision
    report: SweepReport


def run_sweep(
    store: Store,
    tiers: TiersConfig,
    objective: Objective,
    *,
    grid_size: dict[int, int] | None = None,
    seed: int = 0,
    overheads: Overheads | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    strategies: Strategies | None = None,
    progress: Progress | None = None,
    source: Source | None = None,
) -> SweepResult:
    """Evaluate all candidate policies, recommend one and collect its evidence; `progress` hears
    of each stage (load, router, evaluate with its families, certify, answers, intervals, report).
    `source`: the outcome relation built elsewhere (Spark); by default the store's."""
    overheads = overheads or Overheads()
    strategies = strategies or Strategies()
    progress = progress or NO_PROGRESS
    progress.stage("load", 1)
    rows = None if source else store.outcome_rows(tiers.names, price_table(tiers))
    bias = check.preflight(store, tiers.names, objective, built=rows is not None)  # raises
    scales = stored_scales(store, tiers)  # raises on mixed scales
    if bias is not None:
        objective = replace(objective, certify=False)
    source = source or _source(store, tiers, strategies, rows)
    high_stakes = _intent_slices(source, strategies.high_stakes)
    labels = _labels(store, tiers, source.labeled)
    progress.stage("router" if strategies.router.enabled else "candidates", 1)
    scaled = _scaled(source, store, tiers) if labels.weighted else source
    found = candidates(store, scaled, strategies, grid_size, seed)
    progress.stage("evaluate", len(found.families), "families")
    on_progress = _advancing(progress, on_progress)
    ticks = _ticks(found, on_progress)
    stop_rows = SqlStopRows(source.query, source.rows.relation)
    per_request = scaled.per_request
    frontier = mark_pareto(
        evaluate_families_from_cells(labels.scored, found.families, stop_rows, per_request, ticks)
    )
    progress.stage("certify", 1)
    index = policy_index(source.labeled, found.families)
    trial = _certify(labels.iid, found.families, index, frontier, objective)
    grid_frontier = mark_certified_pareto(trial.frontier)
    frontier = _with_optima(
        labels.scored, per_request, found.families, grid_frontier, index, objective, trial.budget,
        source.engine,
    )  # fmt: skip
    empirical = select_empirical(frontier, objective, trial.budget.max_regret)
    recommendation = _select(frontier, objective, empirical, trial.budget, tiers)
    rec = recommendation.row
    frontier = frontier.with_columns(recommended=pl.col("policy") == rec.policy.id)
    alternative = empirical if objective.certify and empirical.row.policy != rec.policy else None
    evidence = _evidence(
        labels, found.families, index, frontier, grid_frontier, objective, trial, recommendation,
        alternative, biased=bias is not None,
    )  # fmt: skip
    calibration = tier_calibrations(source.labeled, labels.weights_or_none)
    progress.stage("answers", 1)
    rejected = store.rejected_rows()
    labeled = source.labeled
    answers = store.answer_codes(labeled.request_ids.tolist(), labeled.tiers)
    router, keyword_rules = strategies.router, strategies.keyword_rules
    sums = _section_sums(store, source, found, index, rec.policy, alternative)
    chosen = assign(labeled, *index[rec.policy.id])
    weights = labels.weights_or_none
    production = production_of_sums(labeled, chosen, sums.requests, sums.production, weights)
    window = store.data_window_of(
        sums.requests, sums.labeled, source.rows.incomplete, sums.ts_range
    )
    if source.logs_sha256 is not None:  # the relation was built from files the store never saw
        window = replace(window, logs_sha256=source.logs_sha256)
    progress.stage("intervals", 1)
    decision = Decision(
        tiers=tiers,
        objective=objective,
        window=window,
        recommendation=recommendation,
        intervals=policy_intervals_of_sums(
            chosen.label,
            labeled.label[:, -1],
            weights,
            sums.cost,
            sums.escalated,
            seed,
            objective.confidence_level,
        ),  # fmt: skip
        p_correct=_p_correct(rec.policy, calibration),
        keyword_rules=keyword_rules,
        router=found.router,
        classifier_cost_per_1k=router.cost_usd_per_1k,
        confidence_scales=tuple(sorted(scales.scales.items())),
        certification=_certification_record(objective, trial, evidence),
    )
    modes = failure_modes_of_sums(labeled, chosen, sums, rec.metrics.savings_vs_premium, weights)
    progress.stage("report", 1)
    report = SweepReport(
        frontier=_with_consensus(source, answers, frontier),
        rejected=rejected,
        evidence=evidence,
        break_even=tuple(break_even_of_sums(frontier, tiers.names, sums)),
        calibration=calibration,
        failure_modes=modes,
        timeline=escalation_timeline_of_sums(sums),
        economics=economics(
            frontier,
            rec,
            Policy.always(tiers.names[-1]),
            labeled.n,
            overheads.label_cost_usd,
            overheads.fixed_monthly_usd,
            trial.budget.max_regret,
            {"router": router.fixed_monthly_usd},
            _volume(overheads, window),
        ),
        overheads=overheads,
        verdict=decide(
            recommendation,
            objective,
            tiers.names[-1],
            trial.budget.max_regret,
            biased=bias is not None,
            production=production,
            labels=labeled.n,
            high_stakes_under=tuple(
                s.value
                for s in modes.under_escalated
                if s.column == "intent" and s.value in strategies.high_stakes
            ),
        ),
        production=production,
        high_stakes=strategies.high_stakes,
        endpoint_health=None if source.external else endpoint_health(store),
        rule_hits=_rule_hits(keyword_rules, found, source),
        router_fixed_monthly_usd=router.fixed_monthly_usd,
        consensus_slices=consensus_slices_from_cells(
            labeled, answers, high_stakes, source.query, source.rows.relation
        )
        if high_stakes
        else None,
        warnings=((bias,) if bias else ())
        + tuple(
            warnings_for(
                rec,
                {c.tier: c.auroc for c in calibration},
                source.rows.incomplete,
                rejected,
            )
        )
        + tuple(w for w in [router.skipped(source.rows.requests)] if w and not found.embedded)
        + scales.warnings,
    )
    return SweepResult(decision, report)


def _source(
    store: Store, tiers: TiersConfig, strategies: Strategies, rows: OutcomeRows | None
) -> Source:
    """The outcome relation built in the store (`rows`), its labeled rows, and every request in
    memory only when keyword rules or the router read them."""
    prices = price_table(tiers)
    rows = rows or store.outcome_rows(tiers.names, prices)
    labeled = store.labeled_outcomes(rows)
    _require_labels(labeled, rows, store.sql_engine().query)
    per_request = None
    if needs_requests(store, rows, strategies):
        per_request = store.outcomes(tiers.names, prices)
    return Source(rows, store.sql_engine(), labeled, per_request)


def _scaled(source: Source, store: Store, tiers: TiersConfig) -> Source:
    """`source` with every request's labels Hájek-scaled by their 1/π weights (the engine's
    input, like `_Labels.scored`; called only when the labels carry such weights)."""
    if source.per_request is None:
        return source
    weights = store.label_weights(tiers.names).for_requests(source.per_request.request_ids)
    return replace(source, per_request=hajek_scaled(source.per_request, weights))


def _section_sums(
    store: Store,
    source: Source,
    found: Candidates,
    index: dict[str, tuple[Family, tuple]],
    policy: Policy,
    alternative: Recommendation | None,
) -> SectionSums:
    """The chosen policy's (and the alternative's) sums over every request, in SQL; a router's
    scores and the keyword rules' tiers are added to the relation first when they decide."""
    family = index[policy.id][0]
    other = alternative.row.policy if alternative else None
    for f in (family, index[other.id][0] if other else None):
        if f is None or f.request_ids is None:  # routers and keyword rules carry their ids
            continue
        if f.scores is not None:
            store.add_request_column(source.rows, ROUTER_SCORE, f.request_ids, f.scores)
        if f.forced is not None:
            store.add_request_column(source.rows, RULE_TIER, f.request_ids, f.forced)
    return section_sums(
        source.query, source.rows.relation, source.rows.tiers, policy, other, family.overhead_usd
    )


def _rule_hits(rules: RulesFile | None, found: Candidates, source: Source) -> tuple[RuleHits, ...]:
    """Each keyword rule's hits over every request and its quality on the labeled ones."""
    if rules is None or found.rule_winner is None or source.per_request is None:
        return ()
    return rule_hits(rules, found.rule_winner, source.per_request)


def _p_correct(policy: Policy, calibration: tuple[TierCalibration, ...]) -> dict[str, float]:
    """Per deciding tier of a cascade: the calibrated P(correct) at its threshold (when the tier
    has a mapping)."""
    thresholds = policy.thresholds_by_tier()
    return {
        c.tier: p
        for c in calibration
        if (tau := thresholds.get(c.tier)) is not None and (p := c.p_correct(tau)) is not None
    }


@dataclass(frozen=True)
class _Labels:
    """The outcome table as each use needs it: `scored` (labels Hájek-scaled when they carry
    1/π weights) for the engine, `iid` (the uniform stratum only) for certification."""

    outcomes: Outcomes
    weights: np.ndarray
    weighted: bool
    scored: Outcomes
    iid: Outcomes

    @property
    def weights_or_none(self) -> np.ndarray | None:
        return self.weights if self.weighted else None


def _labels(store: Store, tiers: TiersConfig, outcomes: Outcomes) -> _Labels:
    label_weights = store.label_weights(tiers.names)
    weights = label_weights.for_requests(outcomes.request_ids)
    weighted = bool((weights[outcomes.labeled] != 1.0).any())
    if not weighted:
        return _Labels(outcomes, weights, False, outcomes, outcomes)
    iid = uniform_only(outcomes, label_weights.strata_for(outcomes.request_ids))
    return _Labels(outcomes, weights, True, hajek_scaled(outcomes, weights), iid)


def _advancing(
    progress: Progress, on_progress: Callable[[int, int], None] | None
) -> Callable[[int, int], None]:
    """The per-family callback, advancing `progress` by one family each time as well."""

    def tick(done: int, total: int) -> None:
        progress.advance()
        if on_progress is not None:
            on_progress(done, total)

    return tick


def _ticks(found: Candidates, on_progress: Callable[[int, int], None] | None):
    """The per-family progress callback: (families done, families)."""
    done = iter(range(1, len(found.families) + 1))

    def tick(_: Family) -> None:
        if on_progress is not None:
            on_progress(next(done), len(found.families))

    return tick


@dataclass(frozen=True)
class _Trial:
    """Certification's outcome: the frontier with its `certified` column, each certified policy's
    certificate, the risk budget and the segments tested within."""

    frontier: pl.DataFrame
    certified: dict
    certificates: list
    budget: Budget
    segments: np.ndarray | None


def _certify(
    iid: Outcomes,
    families: list[Family],
    index: dict[str, tuple[Family, tuple]],
    frontier: pl.DataFrame,
    objective: Objective,
) -> _Trial:
    budget = risk_budget(iid, objective)
    certificates, segments = [], _segments(iid, objective)
    if segments is not None:
        segments = segment_groups(iid, families, budget, segments)
    if objective.certify:
        certificates = certify_families(iid, families, budget, segments)
    certified = {
        pid: cert
        for cert in certificates
        for pid, (family, option) in index.items()
        if family == cert.family and option in cert.options
    }
    frontier = frontier.with_columns(certified=pl.col("policy").is_in(list(certified)))
    return _Trial(frontier, certified, certificates, budget, segments)


def _with_optima(
    labeled: Outcomes,
    per_request: Outcomes | None,
    families: list[Family],
    frontier: pl.DataFrame,
    index: dict[str, tuple[Family, tuple]],
    objective: Objective,
    budget: Budget,
    engine: SqlEngine,
) -> pl.DataFrame:
    """The frontier plus each cascade family's measured optimum where it beats the family's grid
    (never certified: its thresholds were searched on the labels), added to `index` too. The
    search reads the labeled requests and SQL aggregates over every request; keyword-rule
    families (whose rule tier is per request) search `per_request`."""
    target = measured_target(objective, budget.max_regret)
    optima = measured_optima_from(labeled, families, frontier, target, engine)
    rows = [optima.rows] if optima.rows is not None else []
    index.update(optima.index)
    ruled = [f for f in families if f.forced is not None]
    if ruled and per_request is not None:
        columns = sweep_columns(per_request, [*ruled, premium_family(per_request)])
        more = measured_optima(per_request, ruled, frontier, columns, target)
        if more.rows is not None:
            rows.append(more.rows)
            index.update(more.index)
    if not rows:
        return frontier
    found = pl.concat(rows, how="vertical")
    flags = [c for c in frontier.columns if c not in found.columns]  # pareto, certified, …
    extra = found.with_columns(**{c: pl.lit(False) for c in flags})
    merged = pl.concat([frontier, extra.select(frontier.columns)], how="vertical")
    return mark_pareto(merged.drop("pareto")).select(frontier.columns)


def _select(
    frontier: pl.DataFrame,
    objective: Objective,
    empirical: Recommendation,
    budget: Budget,
    tiers: TiersConfig,
) -> Recommendation:
    """The user's `--policy`, else the certified selection, else the empirical one."""
    if objective.chosen_policy is not None:
        return select_chosen(frontier, objective.chosen_policy, budget.max_regret)
    if objective.certify:
        premium = Policy.always(tiers.names[-1])
        return select_certified(frontier, objective, premium, budget.max_regret)
    return empirical


def _evidence(
    labels: _Labels,
    families: list[Family],
    index: dict[str, tuple[Family, tuple]],
    frontier: pl.DataFrame,
    grid_frontier: pl.DataFrame,
    objective: Objective,
    trial: _Trial,
    recommendation: Recommendation,
    alternative: Recommendation | None,
    biased: bool = False,
) -> Evidence:
    """Why the recommendation can be trusted, or how far it is from being certified."""
    outcomes, iid, budget = labels.outcomes, labels.iid, trial.budget
    rec = recommendation.row
    cert = trial.certified.get(rec.policy.id)
    shortfall = (
        recommendation.method == "certified"
        and not recommendation.fallback
        and alternative is not None
        and rec.metrics.savings_vs_premium < alternative.row.metrics.savings_vs_premium / 2
    )
    needed = None
    if recommendation.fallback or shortfall:
        needed = _labels_needed(  # grid policies only: a measured optimum is never certified
            iid, index, grid_frontier, objective, budget, len(trial.certificates), rec
        )
    risk = None
    if not recommendation.certified and not biased:
        family, option = index[rec.policy.id]
        # a measured optimum's family (thresholds at every labeled confidence) joins the count:
        # fixed-sequence testing along its path is valid at any resolution of the path
        tested = families if any(f is family for f in families) else [*families, family]
        risk = exceed_risk(iid, tested, family, option, budget)
    return Evidence(
        max_regret=budget.max_regret,
        stages=cert.stages if cert is not None else (),
        certifiable_families=sum(certifiable(f, len(outcomes.tiers) - 1) for f in families),
        segments=() if trial.segments is None else tuple(sorted({str(v) for v in trial.segments})),
        alternative=alternative,
        labels_needed=needed,
        exceed_risk=risk,
        weighted_labels=int((labels.weights[outcomes.labeled] != 1.0).sum()),
        certification_labels=int(iid.labeled.sum()),
        test=budget.test,
        shortfall=shortfall,
    )


def _certification_record(
    objective: Objective, trial: _Trial, evidence: Evidence
) -> CertificationRecord:
    """What routing.yaml records of the certification (or, with --no-certify, of the risk)."""
    return CertificationRecord(
        test=trial.budget.test,
        method=CERTIFICATION_METHODS[trial.budget.test],
        max_drop=trial.budget.max_regret,
        delta=trial.budget.delta,
        labels=evidence.certification_labels,
        stages=evidence.stages,
        exceed_risk=evidence.exceed_risk,
    )


def _volume(overheads: Overheads, window: DataWindow) -> float | None:
    """The user's requests per month: `--requests-per-month`, else the logs' own rate over 30 days
    (None without a time span)."""
    if overheads.requests_per_month is not None:
        return overheads.requests_per_month
    if window.start is None or window.end is None:
        return None
    start, end = (
        datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (window.start, window.end)
    )
    seconds = (end - start).total_seconds()
    return window.requests * 30 * 86_400 / seconds if seconds > 0 else None


def _intent_slices(source: Source, intents: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The intents of each high-stakes slice: each named intent, and all of them together."""
    if not intents:
        return {}
    known = known_intents(source.query, source.rows.relation)
    unknown = [i for i in intents if i not in known]
    if unknown:
        raise ConfigError(
            f"--high-stakes: unknown intent(s) {', '.join(unknown)}",
            hint=f"Intents in these logs: {', '.join(known) or 'none'}.",
        )
    slices: dict[str, tuple[str, ...]] = {i: (i,) for i in intents}
    if len(intents) > 1:
        slices["all high-stakes"] = tuple(intents)
    return slices


def _with_consensus(source: Source, answers: np.ndarray, frontier: pl.DataFrame) -> pl.DataFrame:
    """The frontier plus one row per consensus set (never certified nor recommended), with the
    Pareto flags recomputed over all rows."""
    extra = consensus_frame_from_cells(source.labeled, answers, source.query, source.rows.relation)
    if extra is None:
        return frontier
    extra = extra.with_columns(
        pareto=False, certified=False, certified_pareto=False, recommended=False
    )
    rows = pl.concat([frontier, extra.select(frontier.columns)], how="vertical")
    return mark_pareto(rows.drop("pareto")).select(frontier.columns)


def _require_labels(labeled: Outcomes, rows: OutcomeRows, query: Query) -> None:
    if rows.requests == 0 or labeled.n:
        return
    counts = label_counts(query, rows.relation, len(rows.tiers))
    missing = [t for t, n in zip(rows.tiers, counts, strict=True) if n == 0]
    what = (
        f"no labels for tier(s) {', '.join(missing)}"
        if missing
        else "no request is labeled for every tier"
    )
    raise DataError(
        f"{what}, so quality cannot be compared with the premium tier",
        hint="Add `labels` for every tier to a sample of requests (or import labels), "
        "or drop the unlabeled tier from tiers.yaml.",
    )


def risk_budget(outcomes: Outcomes, objective: Objective) -> Budget:
    """The allowed regret rate or drop (`objective.certify_on`): ε, or for a relative drop
    ε′·LCB(premium quality) at δ/2 (the other half of δ is left for certification). The regret
    test's LCB is Clopper–Pearson on premium's acceptable rate; the drop test's is on premium's mean
    label (Clopper–Pearson when every label is 0 or 1, else the betting bound for bounded means)."""
    test = objective.certify_on
    if test not in TESTS:
        raise ConfigError(
            f"--certify-on {test}: unknown test",
            hint=f"Use one of: {', '.join(TESTS)}.",
        )
    if objective.max_relative_drop is None:
        return Budget(objective.max_quality_drop, objective.delta, test)
    premium = outcomes.label[outcomes.labeled, -1]
    premium_ok = premium >= ACCEPTABLE
    binary = test == "regret" or bool(np.isin(premium, (0.0, 1.0)).all())
    if not objective.certify:
        quality = premium_ok.mean() if binary else premium.mean()
        return Budget(objective.max_relative_drop * float(quality), objective.delta, test)
    if binary:
        successes = int(premium_ok.sum())
        lower = clopper_pearson_lower(successes, int(premium_ok.size), objective.delta / 2)
    else:
        lower = bounded_mean.lower_bound(premium, objective.delta / 2)
    return Budget(objective.max_relative_drop * lower, objective.delta / 2, test)


def _segments(outcomes: Outcomes, objective: Objective) -> np.ndarray | None:
    if objective.per_segment is None:
        return None
    columns = segment_columns(outcomes)
    if objective.per_segment not in columns:
        raise ConfigError(
            f"unknown segment column {objective.per_segment!r}",
            hint=f"Use one of: {', '.join(columns)}.",
        )
    return columns[objective.per_segment]


_HINT_CANDIDATES = 500  # the cheapest candidates the labels hint examines


def _labels_needed(
    outcomes: Outcomes,
    index: dict[str, tuple[Family, tuple]],
    frontier: pl.DataFrame,
    objective: Objective,
    budget: Budget,
    families: int,
    pick: FrontierRow,
) -> LabelsNeeded | None:
    """Roughly how many more uniform labels would likely certify a cheaper policy than `pick`:
    among the uncertified policies that could be certified (ending at the premium tier: never the
    premium baseline, a learned router or a consensus set) and measure a drop within ε, the
    cheapest whose *likely* drop (regret, for the regret test), its measured value plus one
    standard error, is within ½ε, else ¾ε, else ε. The count is for that likely value: a policy
    measured just under the limit was picked for its luck on these labels, like the empirical
    pick. A count the labels in hand already reach is no answer (the policy failed for another
    reason, e.g. a stricter option before it in the fixed sequence)."""
    premium, have = len(outcomes.tiers) - 1, int(outcomes.labeled.sum())
    pool = constrained(frontier, objective).filter(
        ~pl.col("certified")
        & (pl.col("cost_per_1k_requests_usd") < pick.metrics.cost_per_1k_requests_usd)
        & (pl.col("quality_drop") <= budget.max_regret + 1e-12)
    )
    ids = [p for p in pool["policy"] if certifiable(index[p][0], premium)]
    ids = (
        pool.filter(pl.col("policy").is_in(ids))
        .sort(["cost_per_1k_requests_usd", "quality", "_row"], descending=[False, True, False])
        .head(_HINT_CANDIDATES)["policy"]
        .to_list()
    )
    if not ids or have < 2:
        return None
    loss = _losses(take_rows(outcomes, outcomes.labeled), [index[p] for p in ids], budget.test)
    likely = loss.mean(axis=1) + loss.std(axis=1, ddof=1) / np.sqrt(have)
    for margin in (0.5, 0.75, 1.0):
        hits = np.flatnonzero(likely <= budget.max_regret * margin)
        if not hits.size:
            continue
        k = int(hits[0])
        family = index[ids[k]][0]
        total = _labels_to_certify(loss[k], likely[k], family, budget, families)
        if total is not None and total > have:
            target = frontier_row(frontier.filter(pl.col("policy") == ids[k]).row(0, named=True))
            return LabelsNeeded(target.policy, total - have, target.metrics.savings_vs_premium)
    return None


def _losses(labeled: Outcomes, policies: list[tuple[Family, tuple]], test: Test) -> np.ndarray:
    """(policies × labeled requests): each request's drop (premium − served) or regret."""
    served = served_labels(labeled, policies).astype(np.float64)
    premium = labeled.label[:, -1][None, :]
    if test == "drop":
        return premium - served
    return ((served < ACCEPTABLE) & (premium >= ACCEPTABLE)).astype(np.float64)


def _labels_to_certify(
    loss: np.ndarray, likely: float, family: Family, budget: Budget, families: int
) -> int | None:
    """The labels one policy would need if its mean loss were `likely` (the loss spread evenly
    over its stages, each tested at its share of ε and δ)."""
    stages = max(len(family.grids), 1)
    share = Budget(
        budget.max_regret / stages, budget.delta / max(families, 1) / stages, budget.test
    )
    if budget.test == "drop":
        shifted = Budget(share.max_regret - (likely - loss.mean()) / stages, share.delta, "drop")
        return labels_to_certify_drop(loss / stages, shifted)
    return labels_to_certify(likely / stages, share)


def _per_1k(interval: Interval) -> Interval:
    return Interval(interval.low * 1000.0, interval.high * 1000.0)


def policy_intervals(
    outcomes: Outcomes,
    chosen: Assignment,
    weights: np.ndarray | None,
    seed: int,
    level: float,
) -> dict[str, Interval]:
    """The intervals of one policy's metrics (routing.yaml's `intervals`; `evaluate` computes the
    same for new logs). Quality and drop: paired bootstrap, or with label weights the Hájek
    estimators; cost: normal approximation; savings: delta method; escalation: Wilson."""
    labeled = outcomes.labeled
    served, premium = chosen.label[labeled], outcomes.label[labeled, -1]
    if weights is None:
        quality, drop = bootstrap_quality(served, premium, np.random.default_rng(seed), level)
    else:
        q = hajek_mean(served, weights[labeled], level)
        d = weighted_paired_difference(premium, served, weights[labeled], level)
        quality, drop = Interval(q.low, q.high), Interval(d.low, d.high)
    escalated = int(chosen.escalated.sum())
    return {
        "quality": quality,
        "quality_drop": drop,
        "cost_per_1k_requests_usd": _per_1k(mean_interval(chosen.cost_usd, level)),
        "savings_vs_premium": savings_interval(chosen.cost_usd, outcomes.cost_usd[:, -1], level),
        "escalation_rate": wilson(escalated, outcomes.n, level),
    }

"""Which policy families a sweep evaluates, and the options of the optional strategies.

`candidates(store, source, strategies, …)` returns the default families (always-tier, cascades,
length rules; their grids found in SQL over the outcome relation), the keyword-rule families when a
rules file is given (`rules` and `hybrid`), and the learned router's family: on a precomputed
embedding when every request has one, else on the prompts' n-grams (skipped above
`--router-max-requests`). Only keyword rules and the router read each request (its prompt or
embedding): `source.per_request` holds every request then, and is None otherwise. The prompts are
read once, for the rules and the router alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from calibrate.policies.embedding_router import embedding_matrix, fit_embedding_router
from calibrate.policies.families import DEFAULT_GRID, Family, threshold_grid
from calibrate.policies.family_cells import sql_families, sql_keyword_families
from calibrate.policies.keyword_rules import RulesFile, first_match, rule_tiers
from calibrate.policies.router import RouterFit, fit_router
from calibrate.records.labels import ACCEPTABLE
from calibrate.records.outcomes import Outcomes
from calibrate.store import Store
from calibrate.store.aggregates_sql import Query
from calibrate.store.outcome_rows_sql import OutcomeRows
from calibrate.store.sql_engine import SqlEngine


@dataclass(frozen=True)
class RouterOptions:
    """The learned router: whether to fit it, and what running it costs (priced into its policies'
    cost). `clock` (seconds) measures its inference time."""

    enabled: bool = True
    cost_usd_per_1k: float = 0.0
    clock: Callable[[], float] | None = None
    max_requests: int = 200_000
    fixed_monthly_usd: float = 0.0  # hosting the classifier, whatever the volume
    embedding_key: str = "embedding"  # metadata key of a precomputed prompt embedding

    def skipped(self, requests: int) -> str | None:
        """Why the router is not fitted on this many requests (None when it is)."""
        if not self.enabled or requests <= self.max_requests:
            return None
        return (
            f"The learned router was skipped: {requests:,} requests is more than "
            f"--router-max-requests {self.max_requests:,} (its n-gram step would take minutes); "
            "raise the limit to include it."
        )


@dataclass(frozen=True)
class Strategies:
    """The optional strategies of a sweep: the learned router, keyword rules (put in front of
    length cutoffs and cascades) and the high-stakes intents consensus is reported on."""

    router: RouterOptions = RouterOptions()
    keyword_rules: RulesFile | None = None
    high_stakes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Candidates:
    """Every family to evaluate, the fitted router, and each request's first matching keyword
    rule (`keyword_rules.first_match`; None without a rules file)."""

    families: list[Family]
    router: RouterFit | None
    rule_winner: np.ndarray | None
    embedded: bool


@dataclass(frozen=True)
class Source:
    """What a sweep reads: the outcome relation in a SQL engine (`rows`; `engine` runs aggregate
    queries over it: the store's DuckDB, or Spark), its labeled requests, and every request in
    memory only when keyword rules or the router need them (`per_request`, else None).
    `external`: the relation is not the store's (Spark): the store then holds the labeled
    requests alone, and what needs every stored request (endpoint health) is left out."""

    rows: OutcomeRows
    engine: SqlEngine
    labeled: Outcomes
    per_request: Outcomes | None
    external: bool = False
    logs_sha256: str | None = (
        None  # the digest of what the relation was built from, if not the store
    )

    @property
    def query(self) -> Query:
        return self.engine.query


def needs_requests(store: Store, rows: OutcomeRows, strategies: Strategies) -> bool:
    """Whether keyword rules or the learned router will read every request."""
    router = strategies.router
    if strategies.keyword_rules is not None:
        return True
    if not router.enabled or len(rows.tiers) < 2:
        return False
    return not router.skipped(rows.requests) or store.any_embedding(router.embedding_key)


def candidates(
    store: Store,
    source: Source,
    strategies: Strategies,
    grid_size: dict[int, int] | None,
    seed: int,
) -> Candidates:
    """The default families, then keyword-rule families (with `--rules`) and the router."""
    router, keyword_rules = strategies.router, strategies.keyword_rules
    k, relation = len(source.rows.tiers), source.rows.relation
    families = sql_families(source.query, relation, k, grid_size)
    outcomes = source.per_request
    if outcomes is None:
        return Candidates(families, None, None, False)
    winner = None
    embedded = _embeddings(store, outcomes, router)
    texts = _prompt_texts(store, outcomes, keyword_rules, router, embedded is not None)
    if keyword_rules is not None:
        winner = first_match([r.pattern for r in keyword_rules.rules], texts)
        pairs = [(r.pattern, r.tier) for r in keyword_rules.rules]
        forced = rule_tiers(pairs, winner, outcomes.tiers)
        families += sql_keyword_families(
            source.query, relation, k, forced, outcomes.request_ids, grid_size
        )
    fitted = _fit_router(texts, embedded, outcomes, router, seed)
    if fitted is not None:
        families.append(router_family(outcomes, fitted, router, grid_size))
    return Candidates(families, fitted, winner, embedded is not None)


def _embeddings(store: Store, outcomes: Outcomes, options: RouterOptions) -> np.ndarray | None:
    """The requests' precomputed embeddings (None when the router is off or none has one)."""
    if not options.enabled or len(outcomes.tiers) < 2:
        return None
    vectors = store.embeddings(outcomes.request_ids.tolist(), options.embedding_key)
    return embedding_matrix(vectors, options.embedding_key)


def _routes_on_text(options: RouterOptions, outcomes: Outcomes, embedded: bool) -> bool:
    """The TF-IDF router runs: enabled, no embeddings, not too many requests."""
    return (
        options.enabled
        and len(outcomes.tiers) >= 2
        and not embedded
        and not options.skipped(outcomes.n)
    )


def _prompt_texts(
    store: Store,
    outcomes: Outcomes,
    keyword_rules: RulesFile | None,
    options: RouterOptions,
    embedded: bool,
) -> list[str]:
    """The prompts, read once when keyword rules or the TF-IDF router need them (else empty)."""
    if keyword_rules is None and not _routes_on_text(options, outcomes, embedded):
        return []
    return store.prompt_texts(outcomes.request_ids.tolist())


def _fit_router(
    texts: list[str],
    embedded: np.ndarray | None,
    outcomes: Outcomes,
    options: RouterOptions,
    seed: int,
) -> RouterFit | None:
    """The cheapest tier's router on the embeddings when the logs have them, else on the prompts
    (None when disabled, skipped or the labels are one-sided)."""
    import time  # the default clock; callers pass their own for reproducible timings

    clock = options.clock or time.perf_counter
    ids, acceptable = outcomes.request_ids.tolist(), outcomes.label[:, 0] >= ACCEPTABLE
    target = (ids, acceptable, outcomes.labeled, outcomes.tiers[0])
    if embedded is not None:
        key = options.embedding_key
        return fit_embedding_router(embedded, *target, key, seed=seed, clock=clock)
    if not _routes_on_text(options, outcomes, embedded=False):
        return None
    return fit_router(texts, *target, seed=seed, clock=clock)


def router_family(
    outcomes: Outcomes,
    fitted: RouterFit,
    options: RouterOptions,
    grid_size: dict[int, int] | None = None,
) -> Family:
    """Cheapest tier vs premium, decided up front on the router's scores (thresholds from the
    score distribution, like a 2-tier cascade's)."""
    size = {**DEFAULT_GRID, **(grid_size or {})}[2]
    return Family(
        "router",
        (0, len(outcomes.tiers) - 1),
        (threshold_grid(fitted.scores, size),),
        scores=fitted.scores,
        overhead_usd=options.cost_usd_per_1k / 1000.0,
        request_ids=outcomes.request_ids,
    )

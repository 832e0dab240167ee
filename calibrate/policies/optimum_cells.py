"""The measured optimum (`optimum`) from the labeled requests and SQL aggregates, without a
per-request array of every request.

The search needs an unlabeled request only through its class bin per deciding tier, and a class
bin is a function of how many labeled confidences lie below the request's confidence (plus, with
an escalation band, whether it reaches the band's floor). `store.optimum_sql.cells_sql` groups
`outcome_rows` by those keys once, over every deciding tier (requests, exact nano-USD cost per
tier, lowest confidence per tier); each family's rows are its marginal, then the labeled requests
(which carry the scores) at no cost. The grid engine's `evaluate_sums` runs on them unchanged,
weighted, so every sum is the same exact integer as on the requests. The row of each optimum
(its cost, first-stage count and latency percentiles over every request) is one more query.

Memory: the cells, at most min(requests, Π_j (2·labeled confidences_j + 4)) rows, plus the
labeled requests; the search's own arrays are bounded by `optimum.CELL_LIMIT` as before.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from calibrate.policies.assignment import take_rows
from calibrate.policies.families import Family, family_policies, measured, premium_family
from calibrate.policies.frontier import policy_columns
from calibrate.policies.grid import PERCENTILES, percentile_rank, quantize_score
from calibrate.policies.optimum import Classes, Optima, Search, Space, Target, search_optima
from calibrate.records.outcomes import Outcomes
from calibrate.store.optimum_sql import (
    SqlEngine,
    band_floor_sql,
    cells_sql,
    confidence_count_sql,
    policy_sql,
    register_marks,
)
from calibrate.store.outcome_rows_sql import RELATION


def measured_optima_from(
    labeled: Outcomes,
    families: list[Family],
    frontier: pl.DataFrame,
    target: Target,
    engine: SqlEngine,
    relation: str = RELATION,
) -> Optima:
    """`optimum.measured_optima` from the labeled requests (`labeled`; unlabeled rows in it are
    dropped) and aggregates over `relation` (the sweep's `outcome_rows` in `engine`): the same
    optima, bit for bit. Families with keyword rules (`forced`) are left out."""
    rows = labeled.labeled
    if labeled.n == 0 or not rows.any():
        return Optima(None, {})
    labeled = labeled if rows.all() else take_rows(labeled, rows)
    wanted = [f for f in families if f.forced is None]
    search = CellSearch(labeled, wanted, target, engine, relation)
    if search.requests == 0:
        return Optima(None, {})
    return search_optima(search, wanted, frontier, labeled.tiers, search.row)


class CellSearch(Search):
    """`optimum.Search` on cells of requests: one query for every family's cells."""

    def __init__(
        self,
        labeled: Outcomes,
        families: list[Family],
        target: Target,
        engine: SqlEngine,
        relation: str,
    ) -> None:
        self.outcomes, self.target, self.engine, self.relation = labeled, target, engine, relation
        self.tiers: dict[int, Classes] = {}
        self.upto: dict[int, np.ndarray] = {}
        k = len(labeled.tiers)
        deciding = sorted({j for f in families for j in f.path[:-1]})
        marks = {j: _marks(labeled.confidence[:, j]) for j in deciding}
        self.floors = self._floors(deciding) if target.escalation_band is not None else {}
        register_marks(engine, marks)
        cells = engine.query(cells_sql(relation, k, marks, self.floors))
        self.cells = {name: np.asarray(v) for name, v in cells.items()}
        self.requests = int(self.cells["requests"].sum())
        self.marks = marks
        self.scores = [quantize_score(labeled.label[:, j]) for j in range(k)]
        self.premium_score = float(self.scores[premium_family(labeled).path[0]].sum())

    def _floors(self, deciding: list[int]) -> dict[int, float]:
        """Per deciding tier, the lowest first-stage threshold escalating at least the band's low
        end (`Search._band_floor`, by counts and one order statistic in SQL)."""
        assert self.target.escalation_band is not None
        low = self.target.escalation_band[0]
        floors = {}
        for j in deciding:
            counts = self.engine.query(confidence_count_sql(self.relation, j))
            signals, n = int(counts["signals"][0]), int(counts["requests"][0])
            most = _most_kept(n, signals, low)
            if most is None:
                continue
            found = self.engine.query(band_floor_sql(self.relation, j, signals - most))["floor"]
            if found.size and found[0] is not None and not _is_nan(found[0]):
                floors[j] = float(found[0])
        return floors

    def classes_of(self, j: int) -> Classes:
        """Tier j's classes: a group's threshold is the lowest confidence of its cells."""
        if j not in self.tiers:
            marks, g = self.marks[j], self.cells[f"g_{j}"].astype(np.int64)
            inside = (g >= 0) & (g <= marks.size)
            lowest = np.full(marks.size + 1, np.inf)
            np.minimum.at(lowest, g[inside], self.cells[f"low_{j}"][inside].astype(np.float64))
            present = np.isfinite(lowest)
            self.upto[j] = np.cumsum(present)
            self.tiers[j] = Classes(lowest[present], marks, np.empty(0, np.int64))
        return self.tiers[j]

    def space(self, family: Family) -> Space:
        path = family.path
        stages = [self.classes_of(j) for j in path[:-1]]
        floor = self.floors.get(path[0])
        flagged = floor is not None and not np.isin(floor, stages[0].reps)
        if flagged:
            stages[0] = Classes(
                np.sort(np.r_[stages[0].reps, floor]), stages[0].marks, stages[0].bins
            )
        keys = [self.cells[f"g_{j}"].astype(np.int64) for j in path[:-1]]
        if flagged:
            keys.append(self.cells[f"f_{path[0]}"].astype(np.int64))
        cell, inverse = _distinct(keys)
        size = cell.shape[0]
        weights = np.bincount(inverse, self.cells["requests"].astype(np.float64), size)
        bins = []
        for s, j in enumerate(path[:-1]):
            b = _class_bins(self.upto[j], cell[:, s])
            if s == 0 and flagged:
                b = b + cell[:, -1]
            labeled_bins = _labeled_bins(stages[s].reps, self.outcomes.confidence[:, j])
            bins.append(np.r_[b, labeled_bins])
        tier_cost = [
            np.bincount(inverse, self.cells[f"cost_{j}"].astype(np.float64), size) for j in path
        ]
        zeros = np.zeros(self.outcomes.n)
        cost = tuple(np.r_[np.sum(tier_cost[: s + 1], axis=0), zeros] for s in range(len(path)))
        score = tuple(self.scores[j] for j in path)
        return Space(
            self,
            family,
            tuple(stages),
            tuple(c.reps for c in stages),
            tuple(bins),
            (cost, score),
            np.arange(size, size + self.outcomes.n),
            np.r_[weights, zeros],
        )

    def row(self, one: Family) -> pl.DataFrame:
        """The frontier row of a one-policy family, as `evaluate_families` makes it."""
        thresholds = [float(g[0]) if g.size else math.inf for g in one.grids]
        n = self.requests
        ranks = [percentile_rank(p, n) for p in PERCENTILES]
        got = self.engine.query(policy_sql(self.relation, one.path, thresholds, ranks))
        cost, kept = float(got["cost"][0]), int(got["kept"][0])
        score = self._score(one.path, thresholds)
        premium_cost = float(np.sum(self.cells[f"cost_{premium_family(self.outcomes).path[0]}"]))
        m = measured(
            one,
            n,
            self.outcomes.n,
            (np.array([cost]), np.array([score]), np.array([kept])),
            self.premium_score,
        )
        policies = family_policies(self.outcomes, one, [(0,) * len(one.grids)])
        return pl.DataFrame(
            {
                **policy_columns(policies),
                "requests": [n],
                "labeled": [self.outcomes.n],
                "quality": m.quality,
                "quality_drop": m.quality_drop,
                "escalation_rate": m.escalation_rate,
                "cost_per_1k_requests_usd": m.cost_per_1k_requests_usd,
                "savings_vs_premium": 1.0 - np.array([cost]) / premium_cost,
                "latency_p50_ms": np.array([float(got["p0"][0])]) / 1000.0,
                "latency_p95_ms": np.array([float(got["p1"][0])]) / 1000.0,
            }
        )

    def _score(self, path: tuple[int, ...], thresholds: list[float]) -> float:
        """Σ micro-score of the labeled requests under the cascade rule."""
        from calibrate.policies.cascade import cascade_stops

        stop = cascade_stops(self.outcomes.confidence[:, list(path[:-1])], thresholds)
        served = np.array(path)[stop]
        rows = np.arange(self.outcomes.n)
        return float(np.stack(self.scores, axis=1)[rows, served].sum())


def _distinct(keys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of the key columns (each ≥ -1) and each row's index among them, by one
    sort of a combined integer key."""
    combined = np.zeros(keys[0].size, dtype=np.int64)
    for key in keys:
        combined = combined * np.int64(int(key.max(initial=0)) + 2) + (key + 1)
    distinct, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    return np.stack([key[first] for key in keys], axis=1), inverse.reshape(-1)


def _marks(confidence: np.ndarray) -> np.ndarray:
    marks = np.unique(confidence)
    return marks[np.isfinite(marks)]


def _is_nan(x) -> bool:
    try:
        return math.isnan(float(x))
    except TypeError:
        return True


def _most_kept(requests: int, signals: int, low: float) -> int | None:
    """The most requests the first stage may keep with an escalation rate ≥ `low`, computed as
    `families.measured` does (None: not even keeping none reaches it)."""

    def reaches(kept: int) -> bool:
        return bool(1.0 - (np.int64(kept) + 0) / requests >= low)

    if not reaches(0):
        return None
    lo, hi = 0, signals  # reaches(lo) holds
    if reaches(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if reaches(mid) else (lo, mid)
    return lo


def _class_bins(upto: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Class bins of cells from their key g (-1: no signal, 0..m: marks below, m + 1: +inf);
    `upto[g]`: the groups up to g holding a request (`optimum.classes`' cumsum(present))."""
    out = np.zeros(g.size, dtype=np.int64)
    inside = (g >= 0) & (g < upto.size)
    out[inside] = upto[g[inside]]
    out[g == upto.size] = upto[-1]
    return out


def _labeled_bins(reps: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    bins = np.searchsorted(reps, confidence, side="right").astype(np.int64)
    bins[np.isnan(confidence)] = 0
    return bins

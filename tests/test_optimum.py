"""The measured optimum (`policies.optimum`): the recommended cascade costs what an exhaustive
search over every threshold finds, for 2, 3 and 4 tiers, and its search never touches
certification."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from outcomes_support import random_outcomes
from test_certify import sweep_outcomes

from calibrate.demo.optimum_gap import exhaustive_cost, population
from calibrate.policies import optimum
from calibrate.policies.assignment import assign
from calibrate.policies.cascade import cascade_stops, keeps, threshold_bins
from calibrate.policies.families import (
    default_families,
    evaluate_families,
    evaluate_family,
    premium_family,
    stage_bins,
    stop_money,
    sweep_columns,
)
from calibrate.policies.grid import evaluate_sums
from calibrate.records.outcomes import Outcomes
from calibrate.sweep.selection import Objective, measured_target, select_empirical

pytestmark = pytest.mark.e2e  # exhaustive searches: not in `make test-fast`


def every_policy(o: Outcomes) -> dict[str, np.ndarray]:
    """Every always-one-tier policy and cascade (any ordered subset of the tiers), trying every
    distinct confidence of every deciding tier as its threshold (and +inf): plain loops over the
    cascade rule. Per policy: total cost (nano-USD), quality drop vs the last tier, escalation
    rate, and whether it is an always-tier policy."""
    labeled, rows = o.labeled, np.arange(o.n)
    cost = np.rint(o.cost_usd * 1e9)
    score = np.rint(np.nan_to_num(o.label) * 1e6)
    premium = score[labeled, -1].sum() / 1e6 / labeled.sum()
    found: list[tuple[float, float, float, bool]] = []
    k = len(o.tiers)
    paths = [p for size in range(1, k + 1) for p in itertools.combinations(range(k), size)]
    for path in paths:
        deciding = list(path[:-1])
        values = [[*np.unique(o.confidence[:, j][np.isfinite(o.confidence[:, j])]), math.inf]
                  for j in deciding]  # fmt: skip
        paid = np.cumsum(cost[:, list(path)], axis=1)
        for thresholds in itertools.product(*values):
            stop = cascade_stops(o.confidence[:, deciding], thresholds)
            served = np.array(path)[stop[labeled]]
            quality = score[rows[labeled], served].sum() / 1e6 / labeled.sum()
            total = float(paid[rows, stop].sum())
            found.append((total, premium - quality, float((stop > 0).mean()), len(path) == 1))
    columns = np.array(found, dtype=np.float64).T
    return {"cost": columns[0], "drop": columns[1], "escalation": columns[2], "always": columns[3]}


def brute_force_cost(o: Outcomes, max_drop: float) -> float:
    """The least total cost (nano-USD) of a policy of `every_policy` meeting max_drop."""
    policies = every_policy(o)
    return float(policies["cost"][policies["drop"] <= max_drop + 1e-12].min())


def picks(o: Outcomes, objective: Objective, grid_size: dict[int, int]) -> tuple:
    """The rows `select_empirical` picks among always-tier and cascade rows: on the grid alone,
    and with the measured optima as `sweep.stage` adds them."""
    families = [f for f in default_families(o, grid_size) if f.kind in ("always", "cascade")]
    columns = sweep_columns(o, [*families, premium_family(o)])
    grid = evaluate_families(o, families, columns=columns)
    max_drop = objective.max_quality_drop
    target = measured_target(objective, max_drop)
    found = optimum.measured_optima(o, families, grid, columns, target)
    rows = grid if found.rows is None else pl.concat([grid, found.rows])
    for pid, (family, option) in found.index.items():  # each added row walks as it measures
        walked = assign(o, family, option).cost_usd.sum() / o.n * 1000
        row = rows.filter(pl.col("policy") == pid)
        assert walked == pytest.approx(row["cost_per_1k_requests_usd"][0], rel=1e-12)
    return tuple(select_empirical(r, objective, max_drop).row for r in (grid, rows))


def pick(o: Outcomes, objective: Objective, grid_size: dict[int, int]):
    return picks(o, objective, grid_size)[1]


def measured_pick(o: Outcomes, max_drop: float, grid_size: dict[int, int]) -> tuple[float, float]:
    """Total nano-USD of the cheapest always-tier or cascade row meeting max_drop: on the grid
    alone, and with the measured optima."""
    objective = Objective(max_quality_drop=max_drop, certify=False)
    grid, with_optima = (
        r.metrics.cost_per_1k_requests_usd * o.n / 1000 * 1e9
        for r in picks(o, objective, grid_size)
    )
    return grid, with_optima


CASES = {  # tiers → (requests, confidence digits, grid sizes): more distinct values than grid
    2: (200, None, {2: 50}),
    3: (100, None, {}),
    4: (48, 2, {4: 4}),  # the default 12 points take long at 48 requests (latency ranks)
}


@pytest.mark.parametrize("k", [2, 3, 4])
def test_recommended_cascade_costs_the_exhaustive_optimum(k: int) -> None:
    """Seeded populations, every request labeled: the cheapest policy meeting the drop limit among
    the grid rows plus the measured optima costs exactly what the brute force finds (the grid
    alone is more than 0.5% dearer in some of these cases)."""
    n, digits, sizes = CASES[k]
    grid_gap = []
    for seed, max_drop in itertools.product(range(3), (0.01, 0.03)):
        o = population(seed, n, k, digits=digits)
        exact = brute_force_cost(o, max_drop)
        grid, measured = measured_pick(o, max_drop, sizes)
        assert measured == pytest.approx(exact, rel=1e-12), (seed, max_drop)
        grid_gap.append(grid / exact)
    assert max(grid_gap) > 1.005


def test_the_reduction_to_class_thresholds_is_exact() -> None:
    """`demo.optimum_gap.exhaustive_cost` (bench/optimum_gap.py's reference at 10k requests) tries
    only the smallest confidence above each labeled one: the same optimum as every distinct
    confidence, with unlabeled requests, ties and missing confidences."""
    for k, n in ((2, 150), (3, 60), (4, 30)):
        for seed in range(3):
            o = population(10 + seed, n, k, labeled_share=0.6, digits=2)
            for max_drop in (0.0, 0.02, 0.05):
                assert exhaustive_cost(o, max_drop) == brute_force_cost(o, max_drop)


@pytest.mark.parametrize("k", [2, 3])
def test_escalation_band_and_budget_are_met_exactly(k: int) -> None:
    """With an escalation band (always-tier policies exempt, as the selection has it), the
    cheapest policy within it; with a budget, the best quality under it: both what the brute
    force finds (30% of the requests labeled: a class spans unlabeled confidences too, and the
    band's low end may cut through one, as it does in some of these cases)."""
    n, digits, sizes = CASES[k]
    for seed, low in itertools.product((0, 2, 3), (0.5, 0.65)):
        o = population(seed, n, k, labeled_share=0.3, digits=digits)
        policies = every_policy(o)
        meets = policies["drop"] <= 0.03 + 1e-12
        band = (low, 0.95)
        within = (policies["always"] == 1) | (
            (policies["escalation"] >= band[0]) & (policies["escalation"] <= band[1])
        )
        objective = Objective(max_quality_drop=0.03, certify=False, escalation_band=band)
        row = pick(o, objective, sizes)
        cost = row.metrics.cost_per_1k_requests_usd * o.n / 1000 * 1e9
        assert cost == pytest.approx(policies["cost"][meets & within].min(), rel=1e-12)
        budget = float(np.median(policies["cost"][meets])) / o.n * 1000 / 1e9
        objective = Objective(max_quality_drop=0.03, certify=False, max_cost_per_1k_usd=budget)
        under = meets & (policies["cost"] / o.n * 1000 / 1e9 <= budget + 1e-12)
        best = 1.0 - policies["drop"][under].min()  # quality relative to premium's
        premium = o.label[o.labeled, -1].mean()
        assert pick(o, objective, sizes).metrics.quality == pytest.approx(premium - 1 + best)


@pytest.mark.parametrize(("k", "limit"), [(3, 4096), (4, 4096)])
def test_windows_stay_within_half_a_percent(
    k: int, limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Too many class combinations to evaluate at once (the limit lowered so that windows cover
    a smaller share of the classes than the real limit does at 1,500 labels): the local searches
    from the best strided combinations end within 0.5% of the exhaustive optimum, never dearer
    than the grid."""
    monkeypatch.setattr(optimum, "CELL_LIMIT", limit)
    n, digits, sizes = CASES[k]
    for seed, max_drop in itertools.product(range(3), (0.01, 0.03)):
        o = population(seed, n, k, digits=digits)
        exact = exhaustive_cost(o, max_drop)
        grid, measured = measured_pick(o, max_drop, sizes)
        assert measured <= grid
        assert measured <= 1.005 * exact, (seed, max_drop, measured / exact)


def test_classes_keep_what_each_threshold_keeps_at_no_more_cost() -> None:
    """Every threshold (data values, values between them, beyond them, +inf) maps to a class that
    keeps the same labeled requests and a superset of all requests; its bins are the rule's."""
    rng = np.random.default_rng(5)
    conf = rng.choice(np.round(rng.uniform(0, 1, 40), 2), size=300)
    conf[:5] = [np.nan, np.nan, -np.inf, 0.0, 1.0]
    labeled = rng.uniform(size=300) < 0.3
    classes = optimum.classes(conf, labeled)
    assert np.array_equal(classes.bins, threshold_bins(conf, classes.reps))
    with_inf = optimum.classes(np.r_[conf, np.inf], np.r_[labeled, True])  # kept by every class
    assert np.array_equal(with_inf.reps, classes.reps) and with_inf.bins[-1] == classes.reps.size
    finite = np.unique(conf[np.isfinite(conf)])
    for tau in [*finite, *(finite[:-1] + np.diff(finite) / 2), -1.0, 2.0, np.inf]:
        a = classes.option_of(float(tau))
        rep = float(classes.reps[a]) if a < classes.reps.size else math.inf
        kept, by_class = keeps(conf, float(tau)), keeps(conf, rep)
        assert np.array_equal(kept[labeled], by_class[labeled]), tau
        assert not (kept & ~by_class).any(), tau


@pytest.mark.parametrize("k", [2, 3, 4])
def test_cost_and_score_sums_are_the_engines(k: int) -> None:
    o = random_outcomes(30 + k, n=300, k=k)
    families = [f for f in default_families(o, {2: 9, 3: 5, 4: 3}) if f.kind == "cascade"]
    columns = sweep_columns(o, families)
    for family in families:
        full = evaluate_family(o, family, columns)
        sums = evaluate_sums(
            stage_bins(o, family, columns),
            [g.size + 1 for g in family.grids],
            *stop_money(columns, family),
            columns.labeled_rows,
        )
        assert np.array_equal(sums.cost_nano_usd.reshape(-1), full.cost_nano_usd)
        assert np.array_equal(sums.score_micro.reshape(-1), full.score_micro)
        first = np.broadcast_to(
            sums.first_stop.reshape((-1,) + (1,) * (len(family.grids) - 1)),
            sums.cost_nano_usd.shape,
        )
        assert np.array_equal(first.reshape(-1), full.stop_counts[:, 0])


@pytest.mark.parametrize("k", [2, 3, 4])
def test_no_certify_sweep_recommends_the_optimum(tmp_path: Path, k: int) -> None:
    """The whole sweep with --no-certify on 1,500 requests, 10% labeled: the recommendation meets
    the limit and costs at most 0.5% more than the exhaustive optimum over always-tier and
    cascade policies (another strategy may be cheaper still)."""
    o = population(40 + k, 1500, k, labeled_share=0.1)
    objective = Objective(max_quality_drop=0.02, certify=False)
    result = sweep_outcomes(tmp_path, o, objective)
    rec = result.decision.recommendation
    assert not rec.certified and rec.row.metrics.quality_drop <= 0.02 + 1e-12
    cost = rec.row.metrics.cost_per_1k_requests_usd * o.n / 1000 * 1e9
    assert cost <= 1.005 * exhaustive_cost(o, 0.02)


def test_measured_optima_are_never_certified(tmp_path: Path) -> None:
    """With certification on, the optima join the frontier (thresholds off the label-free grids)
    but are never certified: certification tests the grids' families only."""
    o = population(7, 3000, 3, labeled_share=0.3)
    result = sweep_outcomes(tmp_path, o, Objective(max_quality_drop=0.03))
    frontier = result.report.frontier
    grids = {f.path: f.grids for f in default_families(o) if f.kind == "cascade"}

    def on_grid(row: dict) -> bool:
        path = tuple(o.tiers.index(t) for t in row["tiers"])
        pairs = zip(row["thresholds"], grids[path], strict=True)
        return all(math.isinf(t) or t in set(g.tolist()) for t, g in pairs)

    cascades = frontier.filter(pl.col("strategy") == "cascade").iter_rows(named=True)
    optima = [row for row in cascades if not on_grid(row)]
    assert optima and not any(row["certified"] for row in optima)
    assert frontier["certified"].any()

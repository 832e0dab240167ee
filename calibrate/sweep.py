"""Stage: evaluate every candidate policy on the stored data and choose one.

`run_sweep(store, tiers, objective)` reads the outcome table once, evaluates the always-tier
baselines, every cascade over an ordered subset of 2–4 tiers and the input-length rules exactly,
marks the Pareto frontier, and asks the selector for a recommendation. It writes nothing; rendering
and files belong to `report`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from calibrate.diagnostics import BreakEven, break_even, confidence_auroc, warnings_for
from calibrate.policies import Family, default_families, evaluate_families
from calibrate.records import DataWindow
from calibrate.selection import Objective, Recommendation, Selector, mark_pareto, select_empirical
from calibrate.settings import TiersConfig
from calibrate.store import Store


@dataclass(frozen=True)
class SweepResult:
    """Everything the outputs are rendered from."""

    tiers: TiersConfig
    objective: Objective
    window: DataWindow
    rejected: int
    frontier: pl.DataFrame
    recommendation: Recommendation
    break_even: tuple[BreakEven, ...]
    auroc: dict[str, float | None]
    warnings: tuple[str, ...]


def price_table(tiers: TiersConfig) -> dict[str, tuple[float, float]]:
    """Per-tier (input, output) USD per Mtok, for attempts whose log has no cost."""
    return {
        t.name: (t.price.input_per_mtok, t.price.output_per_mtok)
        for t in tiers.tiers
        if t.price is not None
    }


def run_sweep(
    store: Store,
    tiers: TiersConfig,
    objective: Objective,
    *,
    grid_size: dict[int, int] | None = None,
    selector: Selector = select_empirical,
    on_progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Evaluate all candidate policies and recommend one."""
    outcomes = store.outcomes(tiers.names, price_table(tiers))
    families = default_families(outcomes, grid_size)
    done = iter(range(1, len(families) + 1))

    def tick(_: Family) -> None:
        if on_progress is not None:
            on_progress(next(done), len(families))

    frontier = mark_pareto(evaluate_families(outcomes, families, tick))
    recommendation = selector(frontier, objective)
    frontier = frontier.with_columns(recommended=pl.col("policy") == recommendation.row["policy"])
    auroc = confidence_auroc(outcomes)
    rejected = store.rejected_rows()
    return SweepResult(
        tiers=tiers,
        objective=objective,
        window=store.data_window(outcomes),
        rejected=rejected,
        frontier=frontier,
        recommendation=recommendation,
        break_even=tuple(break_even(frontier, tiers.names)),
        auroc=auroc,
        warnings=tuple(warnings_for(recommendation.row, auroc, outcomes.incomplete, rejected)),
    )

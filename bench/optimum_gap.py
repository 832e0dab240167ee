"""The recommended cascade's cost against the exhaustive optimum on simulated logs (issue 17 §4).

Per tier count and seed: a population of `calibrate.demo.optimum_gap` (10,000 requests by
default, a share of them labeled), the cheapest always-tier or cascade policy whose measured drop
meets the limit on the grid alone and with the measured optima (the sweep's empirical pick), both
divided by the exhaustive optimum over every threshold. Prints the ratios and the time of the
search. Never used by tests (tests/test_optimum.py checks the same at small n).
"""

from __future__ import annotations

import argparse
import statistics
import time

import polars as pl

from calibrate.demo.optimum_gap import exhaustive_cost, population
from calibrate.policies.families import (
    default_families,
    evaluate_families,
    premium_family,
    sweep_columns,
)
from calibrate.policies.optimum import measured_optima
from calibrate.sweep.selection import Objective, measured_target, select_empirical


def picks(o, max_drop: float) -> tuple[float, float, float]:
    """Total nano-USD of the grid's pick and the pick with the optima, and the search's seconds."""
    families = [f for f in default_families(o) if f.kind in ("always", "cascade")]
    columns = sweep_columns(o, [*families, premium_family(o)])
    grid = evaluate_families(o, families, columns=columns)
    objective = Objective(max_quality_drop=max_drop, certify=False)
    t0 = time.perf_counter()
    found = measured_optima(o, families, grid, columns, measured_target(objective, max_drop))
    seconds = time.perf_counter() - t0
    rows = grid if found.rows is None else pl.concat([grid, found.rows])

    def total(frame: pl.DataFrame) -> float:
        row = select_empirical(frame, objective, max_drop).row
        return row.metrics.cost_per_1k_requests_usd * o.n / 1000 * 1e9

    return total(grid), total(rows), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--labeled", type=float, default=0.15, help="share of requests labeled")
    parser.add_argument("--tiers", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-drop", type=float, default=0.02)
    args = parser.parse_args()
    for k in args.tiers:
        grid_ratios, ratios, times = [], [], []
        for seed in range(args.seeds):
            o = population(seed, args.requests, k, labeled_share=args.labeled)
            exact = exhaustive_cost(o, args.max_drop)
            grid, measured, seconds = picks(o, args.max_drop)
            grid_ratios.append(grid / exact)
            ratios.append(measured / exact)
            times.append(seconds)
            print(
                f"  {k} tiers, seed {seed}: {int(o.labeled.sum()):,} labeled; grid "
                f"{grid / exact:.4f}x, with the measured optima {measured / exact:.4f}x "
                f"(search {seconds:.2f} s)",
                flush=True,
            )
        print(
            f"{k} tiers, {args.requests:,} requests: worst grid {max(grid_ratios):.4f}x, worst "
            f"recommended {max(ratios):.4f}x the exhaustive optimum "
            f"({'meets' if max(ratios) <= 1.005 else 'MISSES'} target ≤ 1.005x); "
            f"search median {statistics.median(times):.2f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""Policy families (always-one-tier, cascades, input-length rules) and their metrics table.

`evaluate_families(outcomes, families)` turns each family into bins and a stop table for the grid
engine (`policy_grid`) and returns one Polars row per policy with the metrics every command shares:
quality, quality_drop, escalation_rate, cost_per_1k_requests_usd, savings_vs_premium,
latency_p50_ms, latency_p95_ms, plus the counts requests and labeled. The premium reference is the
last (most expensive) tier of tiers.yaml.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from calibrate.errors import DataError
from calibrate.policy_grid import (
    GridResult,
    StopTable,
    evaluate_grid,
    percentile_rank,
    quantize_ms,
    quantize_score,
    quantize_usd,
)
from calibrate.records import Outcomes

METRICS = (
    "quality",
    "quality_drop",
    "escalation_rate",
    "cost_per_1k_requests_usd",
    "savings_vs_premium",
    "latency_p50_ms",
    "latency_p95_ms",
)
DEFAULT_GRID = {2: 200, 3: 30, 4: 12}


@dataclass(frozen=True)
class Family:
    """A set of policies sharing a tier path. kind: always | cascade | length.

    `grids[j]` are the candidate values of decision stage j: confidence thresholds (ascending; the
    policy keeps a request iff confidence ≥ τ, plus τ=+inf) or token cutoffs (descending; the
    cheaper tier gets requests with input_tokens ≤ N, plus "none").
    """

    kind: str
    path: tuple[int, ...]
    grids: tuple[np.ndarray, ...] = ()


def threshold_grid(values: np.ndarray, size: int) -> np.ndarray:
    """Candidate thresholds from the unlabeled distribution: every distinct value when there are at
    most `size`, else `size` quantiles rounded to 4 significant digits. Labels are never consulted."""
    ordered = np.sort(values[np.isfinite(values)])
    distinct = ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if ordered.size else ordered
    if distinct.size <= size:
        return distinct
    picks = ordered[np.round(np.linspace(0, ordered.size - 1, size)).astype(np.int64)]
    return np.unique(np.array([float(f"{q:.4g}") for q in picks]))


def cutoff_grid(tokens: np.ndarray, size: int) -> np.ndarray:
    """Candidate input-length cutoffs (descending integers)."""
    if tokens.size == 0:
        return np.array([], dtype=np.int64)
    qs = np.floor(np.quantile(tokens, np.linspace(0, 1, size))).astype(np.int64)
    return np.unique(qs[qs < tokens.max()])[::-1]  # a cutoff at the maximum is just always-cheap


def default_families(outcomes: Outcomes, grid_size: dict[int, int] | None = None) -> list[Family]:
    """Always-tier baselines, cascades over every ordered subset of 2–4 tiers, length rules per pair."""
    sizes = {**DEFAULT_GRID, **(grid_size or {})}
    k = len(outcomes.tiers)
    families = [Family("always", (j,)) for j in range(k)]
    cutoffs = cutoff_grid(outcomes.input_tokens, sizes[2] // 4)
    for pair in itertools.combinations(range(k), 2):
        families.append(Family("length", pair, (cutoffs,)))
    for size in range(2, k + 1):
        for path in itertools.combinations(range(k), size):
            grids = tuple(threshold_grid(outcomes.confidence[:, j], sizes[size]) for j in path[:-1])
            families.append(Family("cascade", path, grids))
    return families


def stage_bins(outcomes: Outcomes, family: Family) -> list[np.ndarray]:
    """Per decision stage, each request's bin: the policy with option a keeps it iff bin > a."""
    bins = []
    for j, grid in zip(family.path[:-1], family.grids, strict=True):
        if family.kind == "cascade":
            conf = outcomes.confidence[:, j]
            b = np.searchsorted(grid, conf, side="right")
            b[np.isnan(conf)] = 0  # no signal: always escalates
        else:
            b = grid.size - np.searchsorted(grid[::-1], outcomes.input_tokens, side="left")
        bins.append(b.astype(np.int64))
    return bins


def quantized(outcomes: Outcomes) -> StopTable:
    """Every tier's own cost, latency and score as exact integers (computed once per sweep)."""
    return StopTable(
        cost_nano_usd=quantize_usd(outcomes.cost_usd),
        latency_us=quantize_ms(outcomes.latency_ms),
        score_micro=quantize_score(outcomes.label),
        labeled=outcomes.labeled,
    )


def stop_table(per_tier: StopTable, family: Family) -> StopTable:
    """Cost/latency/score of stopping at each tier of the path (cascades pay every tier touched)."""
    path = list(family.path)
    cost, latency = per_tier.cost_nano_usd[:, path], per_tier.latency_us[:, path]
    if family.kind == "cascade":
        cost, latency = np.cumsum(cost, axis=1), np.cumsum(latency, axis=1)
    return StopTable(cost, latency, per_tier.score_micro[:, path], per_tier.labeled)


def evaluate_family(
    outcomes: Outcomes, family: Family, per_tier: StopTable | None = None
) -> GridResult:
    """Exact metrics for every policy of one family."""
    stops = stop_table(per_tier if per_tier is not None else quantized(outcomes), family)
    if family.kind == "always":
        return _single_tier(stops)
    n_options = [g.size + 1 for g in family.grids]
    return evaluate_grid(stage_bins(outcomes, family), n_options, stops)


def _single_tier(stops: StopTable) -> GridResult:
    n = stops.cost_nano_usd.shape[0]
    lat = stops.latency_us[:, 0]
    r50, r95 = percentile_rank(50, n) - 1, percentile_rank(95, n) - 1
    lat = np.partition(lat, [r50, r95])
    return GridResult(
        options=np.zeros((1, 0), dtype=np.int64),
        requests=n,
        labeled=int(stops.labeled.sum()),
        stop_counts=np.array([[n]], dtype=np.int64),
        cost_nano_usd=np.array([stops.cost_nano_usd[:, 0].sum()]),
        score_micro=np.array([(stops.score_micro[:, 0] * stops.labeled).sum()]),
        latency_p50_us=np.array([lat[r50]]),
        latency_p95_us=np.array([lat[r95]]),
    )


def evaluate_families(outcomes: Outcomes, families: list[Family], on_family=None) -> pl.DataFrame:
    """One row per policy: its parameters and metrics (premium = the last tier of `outcomes`)."""
    if outcomes.n == 0:
        raise DataError(
            "no request has an attempt for every tier",
            hint="Ingest logs with shadow attempts for each tier in tiers.yaml, or run `calibrate replay`.",
        )
    per_tier = quantized(outcomes)
    premium = _single_tier(stop_table(per_tier, Family("always", (len(outcomes.tiers) - 1,))))
    frames = []
    for family in families:
        result = evaluate_family(outcomes, family, per_tier)
        frames.append(_family_frame(outcomes, family, result, premium))
        if on_family is not None:
            on_family(family)
    return pl.concat(frames, how="vertical")


def _family_frame(
    outcomes: Outcomes, family: Family, res: GridResult, premium: GridResult
) -> pl.DataFrame:
    names = [outcomes.tiers[j] for j in family.path]
    n, labeled = res.requests, res.labeled
    quality = res.score_micro / 1e6 / labeled if labeled else np.full(len(res.score_micro), np.nan)
    quality_p = premium.score_micro[0] / 1e6 / labeled if labeled else math.nan
    params = [_params(family, opt) for opt in res.options]
    return pl.DataFrame(
        {
            "policy": [_policy_id(family.kind, names, p) for p in params],
            "strategy": [family.kind] * len(params),
            "tiers": [">".join(names)] * len(params),
            "thresholds": [
                ";".join(_fmt_threshold(t) for t in p) if family.kind == "cascade" else ""
                for p in params
            ],
            "cutoff_tokens": [
                int(p[0]) if family.kind == "length" and p[0] is not None else None for p in params
            ],
            "requests": [n] * len(params),
            "labeled": [labeled] * len(params),
            "quality": quality,
            "quality_drop": quality_p - quality,
            "escalation_rate": 1.0 - res.stop_counts[:, 0] / n,
            "cost_per_1k_requests_usd": res.cost_nano_usd / 1e9 / n * 1000.0,
            "savings_vs_premium": 1.0 - res.cost_nano_usd / premium.cost_nano_usd[0],
            "latency_p50_ms": res.latency_p50_us / 1000.0,
            "latency_p95_ms": res.latency_p95_us / 1000.0,
        },
        schema_overrides={"cutoff_tokens": pl.Int64},
    )


def _params(family: Family, option: np.ndarray) -> tuple:
    """Option indices → parameter values (τ, +inf for 'escalate all'; cutoff, None for 'no cutoff')."""
    values = []
    for grid, a in zip(family.grids, option, strict=True):
        if a < grid.size:
            values.append(grid[a].item())
        else:
            values.append(math.inf if family.kind == "cascade" else None)
    return tuple(values)


def _fmt_threshold(t: float) -> str:
    return "inf" if math.isinf(t) else repr(float(t))


def _policy_id(kind: str, names: list[str], params: tuple) -> str:
    path = ">".join(names)
    if kind == "always":
        return f"always:{path}"
    if kind == "length":
        cutoff = params[0]
        return f"length:{path}@<={cutoff}" if cutoff is not None else f"length:{path}@none"
    return f"cascade:{path}@" + ",".join(_fmt_threshold(t) for t in params)


def policy_index(outcomes: Outcomes, families: list[Family]) -> dict[str, tuple[Family, tuple]]:
    """Policy id → (family, option vector): how to walk one frontier row request by request."""
    index: dict[str, tuple[Family, tuple]] = {}
    for family in families:
        names = [outcomes.tiers[j] for j in family.path]
        for option in itertools.product(*(range(g.size + 1) for g in family.grids)):
            params = _params(family, np.array(option, dtype=np.int64))
            index[_policy_id(family.kind, names, params)] = (family, option)
    return index

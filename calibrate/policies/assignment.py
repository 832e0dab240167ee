"""Which tier serves each request under one policy, and what that request costs and scores.

The grid engine (`grid`) only keeps sums. Intervals, segment breakdowns and certification need the
per-request picture of a single policy: `assign(outcomes, family, option)` walks every request
through the policy's decision stages, vectorized, by the rule of `cascade` (a request stops at the
first stage that keeps it; escalations pay every tier touched).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from calibrate.policies.cascade import first_stop, threshold_bins
from calibrate.policies.families import Family, without_forced
from calibrate.records.labels import ACCEPTABLE
from calibrate.records.outcomes import Outcomes
from calibrate.records.policy import CONFIDENCE_STRATEGIES, THRESHOLD_STRATEGIES


@dataclass(frozen=True)
class Assignment:
    """Per request: the stage of `path` it stopped at (-1: a keyword rule decided), the tier index
    that served it, what it paid and the served answer's label."""

    path: tuple[int, ...]
    stage: np.ndarray
    served_tier: np.ndarray
    escalated: np.ndarray
    cost_usd: np.ndarray
    latency_ms: np.ndarray
    label: np.ndarray


def stop_stage(bins: list[np.ndarray], option: tuple[int, ...], n: int) -> np.ndarray:
    """Index into the path of the stage each request stops at (option a keeps iff bin > a)."""
    return first_stop([b > a for b, a in zip(bins, option, strict=True)], n)


def decision_bins(outcomes: Outcomes, family: Family) -> list[np.ndarray]:
    """Per decision stage, each request's bin (option a keeps it iff bin > a): the rank of its
    confidence in the ascending threshold grid (0 without a signal), or how many of the descending
    cutoffs its input length is within. The engine computes the same bins by faster means."""
    bins = []
    for j, grid in zip(family.path[:-1], family.grids, strict=True):
        if family.kind in THRESHOLD_STRATEGIES:
            conf = (
                family.scores_of(outcomes) if family.kind == "router" else outcomes.confidence[:, j]
            )
            bins.append(threshold_bins(conf, grid))
        else:
            b = grid.size - np.searchsorted(grid[::-1], outcomes.input_tokens, side="left")
            bins.append(b.astype(np.int64))
    return without_forced(bins, family.forced_of(outcomes))


def assign(outcomes: Outcomes, family: Family, option: tuple[int, ...]) -> Assignment:
    """Walk every request through one policy of `family` (option = one index per stage)."""
    n = outcomes.n
    path = np.array(family.path)
    stage = stop_stage(decision_bins(outcomes, family), option, n)
    served = path[stage]
    rows = np.arange(n)
    if family.kind in CONFIDENCE_STRATEGIES:
        touched = np.arange(len(path))[None, :] <= stage[:, None]
        cost = (outcomes.cost_usd[:, path] * touched).sum(axis=1)
        latency = (outcomes.latency_ms[:, path] * touched).sum(axis=1)
    else:
        cost, latency = outcomes.cost_usd[rows, served], outcomes.latency_ms[rows, served]
        cost = cost + family.overhead_usd
    escalated = stage > 0
    forced = family.forced_of(outcomes)
    if forced is not None:  # a keyword rule's tier serves alone
        ruled = forced >= 0
        served = np.where(ruled, forced, served)
        stage = np.where(ruled, -1, stage)
        escalated = np.where(ruled, forced > path[0], escalated)
        cost = np.where(ruled, outcomes.cost_usd[rows, served], cost)
        latency = np.where(ruled, outcomes.latency_ms[rows, served], latency)
    return Assignment(
        path=family.path,
        stage=stage,
        served_tier=served,
        escalated=escalated,
        cost_usd=cost,
        latency_ms=latency,
        label=outcomes.label[rows, served],
    )


def regret(outcomes: Outcomes, served_tier: np.ndarray) -> np.ndarray:
    """Per labeled request: served by a cheaper tier whose answer is unacceptable while the
    premium's is acceptable. Its rate bounds the quality drop from above (methods.md §1.1)."""
    rows = np.arange(outcomes.n)
    served_ok = outcomes.label[rows, served_tier] >= ACCEPTABLE
    premium_ok = outcomes.label[:, -1] >= ACCEPTABLE
    return ~served_ok & premium_ok


def take_rows(outcomes: Outcomes, mask: np.ndarray) -> Outcomes:
    """The same outcomes restricted to the rows in `mask`."""
    n = outcomes.n
    return dataclasses.replace(
        outcomes,
        **{
            f.name: getattr(outcomes, f.name)[mask]
            for f in dataclasses.fields(outcomes)
            if isinstance(getattr(outcomes, f.name), np.ndarray)
            and getattr(outcomes, f.name).shape[:1] == (n,)
        },
    )


def served_labels(outcomes: Outcomes, policies: list[tuple[Family, tuple[int, ...]]]) -> np.ndarray:
    """(policies × requests) label of the answer each policy serves (bins computed once per family)."""
    out = np.empty((len(policies), outcomes.n), dtype=np.float32)
    rows = np.arange(outcomes.n)
    cache: dict[int, tuple[list[np.ndarray], np.ndarray | None]] = {}
    for p, (family, option) in enumerate(policies):
        if id(family) not in cache:
            cache[id(family)] = (decision_bins(outcomes, family), family.forced_of(outcomes))
        bins, forced = cache[id(family)]
        served = np.array(family.path)[stop_stage(bins, option, outcomes.n)]
        if forced is not None:
            served = np.where(forced >= 0, forced, served)
        out[p] = outcomes.label[rows, served]
    return out

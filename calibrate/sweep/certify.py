"""Certified thresholds: Learn-then-Test with fixed-sequence testing, on the regret or on the drop.

Two tests, chosen by `Budget.test` (`--certify-on`); both keep everything below the same.

`regret`: the loss is the *regret* of a request (methods.md §1.1, loss A): it was served by a cheaper tier
whose answer is unacceptable while the premium tier's answer is acceptable. Its rate bounds the
quality drop versus always-premium from above, and it only grows as a threshold is lowered, so each
decision stage is tested from its most conservative option (escalate everything) towards the
cheapest, stopping at the first option whose hypothesis "regret > ε" cannot be rejected at level δ
(p-value = BinomCDF(errors; n, ε), the exact Clopper–Pearson test). Every option passed on the way is
certified; the grid was fixed from unlabeled confidences before any label was read.

`drop`: the hypothesis is the quality drop itself, "drop > ε", tested on the paired per-request
differences d = label_premium − label_served ∈ [−1, 1] (fractional labels as they are; 0 for a
request the option escalates to premium), mapped to x = (d + 1)/2 ∈ [0, 1] and tested with the
betting test for bounded means of `stats.bounded_mean` (Waudby-Smith & Ramdas 2024). Unlike the
regret, the drop credits the requests where the cheaper tier is right and premium wrong, so it
certifies policies whose regret exceeds ε while their drop does not. The drop is not monotone in the
threshold; fixed-sequence testing does not need it to be (Learn-then-Test), it only stops earlier.
An option that keeps no request at a stage (escalate everything, no keyword rule deciding) adds
exactly 0 to the drop, so its hypothesis is false by construction and is rejected without a test.
The labeled requests are tested in one order fixed by a constant seed, independent of the labels.

Budgets: δ is split equally over the certifiable families (Bonferroni: the recommendation is chosen
among them), and inside a k-tier cascade both ε and δ are split equally over its k−1 stages, which
are certified one after the other (stage j is tested on the requests the certified stages before it
escalate). Only policies that end at the premium tier can be certified. With `segments`, a stage
passes only if the regret rate within *every* segment passes at δ/G.

`exceed_risk` turns the same procedure around for a policy that was not certified: the least δ at
which it would have been (the fixed-sequence adjusted p-value along its own path, times the same
Bonferroni factors), the risk the report puts next to an uncertified pick. `labels_to_certify*`
estimate the labels a test would need.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import beta, binom

from calibrate.policies.assignment import decision_bins
from calibrate.policies.families import Family
from calibrate.records.labels import ACCEPTABLE
from calibrate.records.outcomes import Outcomes
from calibrate.stats import bounded_mean

Test = Literal["regret", "drop"]
TESTS: tuple[Test, ...] = ("regret", "drop")
CERTIFICATION_ORDER_SEED = 17  # the betting test's order of the labeled requests (label-free)
_OPTIONS_AT_ONCE = 16  # options whose (options × labeled) drop contributions are built at once


@dataclass(frozen=True)
class Stage:
    """Evidence for one decision stage of a certified policy: the regret events and their
    Clopper–Pearson bound and the pooled binomial p-value (the regret test), or with the drop test
    its measured drop contribution, its betting upper bound and p-value (`max_regret` is then the
    stage's allowed drop)."""

    tier: str
    option: int
    labeled: int
    regret_count: int
    regret_ucb: float
    max_regret: float
    delta: float
    test: Test = "regret"
    drop: float | None = None
    drop_ucb: float | None = None
    p_value: float | None = None


@dataclass(frozen=True)
class Certificate:
    """What one family certified: the option vectors (cheapest last) and the stage evidence of the
    cheapest. `options` is empty when even escalating everything could not be certified."""

    family: Family
    options: tuple[tuple[int, ...], ...]
    stages: tuple[Stage, ...]


@dataclass(frozen=True)
class Budget:
    """The risk budget: regret rate (`test="regret"`) or quality drop (`test="drop"`) at most
    `max_regret` with probability at least 1 − `delta`."""

    max_regret: float
    delta: float
    test: Test = "regret"


def certifiable(family: Family, premium: int) -> bool:
    """A policy can only be compared with always-premium if it ends there (or never leaves a
    cheaper tier, which is tested as one hypothesis). A learned router is not: its scores were
    fitted on these labels (cross-fitted, but not independent of them), so Learn-then-Test's
    exchangeability does not hold; it is compared empirically only."""
    if family.kind == "router":
        return False
    if family.kind == "always":
        return family.path[0] != premium
    return family.path[-1] == premium


def certify_families(
    outcomes: Outcomes,
    families: list[Family],
    budget: Budget,
    segments: np.ndarray | None = None,
    bounds: bool = True,
) -> list[Certificate]:
    """Certify every certifiable family with δ split equally among them (segments: see
    `segment_groups`; bounds=False leaves out the drop test's upper bounds, for simulations)."""
    todo = _certifiable(outcomes, families)
    share = Budget(budget.max_regret, budget.delta / max(len(todo), 1), budget.test)
    return [certify_family(outcomes, f, share, segments, bounds) for f in todo]


def _certifiable(outcomes: Outcomes, families: list[Family]) -> list[Family]:
    premium = len(outcomes.tiers) - 1
    return [f for f in families if certifiable(f, premium)]


def segment_groups(
    outcomes: Outcomes, families: list[Family], budget: Budget, segments: np.ndarray
) -> np.ndarray:
    """The segments to test within: those with too few labels to pass even with zero regret
    events at the tightest stage budget are pooled into one."""
    todo = _certifiable(outcomes, families)
    stages = max((len(f.grids) for f in todo), default=1) or 1
    groups = len({str(v) for v in segments})
    tightest = Budget(
        budget.max_regret / stages, budget.delta / max(len(todo), 1) / stages / groups, budget.test
    )
    return pool_small_segments(segments, outcomes.labeled, min_labels(tightest))


def certify_family(
    outcomes: Outcomes,
    family: Family,
    budget: Budget,
    segments: np.ndarray | None = None,
    bounds: bool = True,
) -> Certificate:
    """Certify one family's stages in order; the certified options of the last stage vary."""
    if budget.test not in TESTS:
        raise ValueError(f"unknown certification test {budget.test!r}")
    labeled = outcomes.labeled
    premium_ok = outcomes.label[:, -1] >= ACCEPTABLE
    if family.kind == "always":
        bins, options_per_stage = [np.ones(outcomes.n, dtype=np.int64)], [1]
    else:
        bins, options_per_stage = (
            decision_bins(outcomes, family),
            [g.size + 1 for g in family.grids],
        )
    stages_n = len(bins)
    stage_budget = Budget(budget.max_regret / stages_n, budget.delta / stages_n, budget.test)
    reach = labeled.copy()
    chosen: list[int] = []
    evidence: list[Stage] = []
    passed: list[int] = []
    ruled = _ruled_regret(outcomes, family, premium_ok)
    drop = _DropTest(outcomes, family, segments) if budget.test == "drop" else None
    for j, (b, n_options) in enumerate(zip(bins, options_per_stage, strict=True)):
        tier = family.path[j]
        regret_rows = reach & (outcomes.label[:, tier] < ACCEPTABLE) & premium_ok
        errors = _errors_by_option(b, regret_rows, n_options, segments)
        if j == 0 and ruled is not None:  # the keyword rules' regret, the same for every option
            errors = errors + _errors_by_option(ruled, ruled > 0, 1, segments)[:, :1]
        if drop is None:
            passed = _fixed_sequence(errors, labeled, segments, stage_budget)
        else:
            passed = drop.fixed_sequence(j, b, reach, n_options, stage_budget)
        if not passed:
            return Certificate(family, (), tuple(evidence))
        best = passed[-1] if family.kind != "always" else 0
        chosen.append(best)
        total = int(errors[0][best]) if segments is None else int(errors.sum(axis=0)[best])
        n = int(labeled.sum())
        stage = Stage(
            tier=outcomes.tiers[tier],
            option=best,
            labeled=n,
            regret_count=total,
            regret_ucb=clopper_pearson_upper(total, n, stage_budget.delta),
            max_regret=stage_budget.max_regret,
            delta=stage_budget.delta,
            p_value=float(binom.cdf(total, n, stage_budget.max_regret)) if n else 1.0,
        )
        evidence.append(stage if drop is None else drop.evidence(stage, j, b, reach, best, bounds))
        reach = reach & ~(b > best)
    head = tuple(chosen[:-1])
    options = tuple((*head, a) for a in passed) if family.kind != "always" else ((),)
    return Certificate(family, options, tuple(evidence))


class _DropTest:
    """The drop test's per-family state: the labeled requests in the certification order, their
    segment codes, and the keyword rules' drop (added at stage 0 under every option)."""

    def __init__(self, outcomes: Outcomes, family: Family, segments: np.ndarray | None) -> None:
        self.outcomes, self.family = outcomes, family
        labeled_rows = np.flatnonzero(outcomes.labeled)
        order = np.random.default_rng(CERTIFICATION_ORDER_SEED).permutation(labeled_rows.size)
        self.rows = labeled_rows[order]
        if segments is None:
            self.codes = np.zeros(self.rows.size, dtype=np.int64)
        else:
            _, codes = np.unique(segments, return_inverse=True)
            self.codes = codes[self.rows]
        self.groups = [self.rows[self.codes == g] for g in np.unique(self.codes)]
        forced = family.forced_of(outcomes)
        self.ruled = np.zeros(outcomes.n)
        if forced is not None:
            ruled = (forced >= 0) & outcomes.labeled
            at = np.where(ruled, forced, 0)
            served = outcomes.label[np.arange(outcomes.n), at]
            self.ruled = np.where(ruled, outcomes.label[:, -1] - served, 0.0)
        premium = len(outcomes.tiers) - 1
        self.ruled_nonzero = forced is not None and bool(
            ((forced >= 0) & (forced != premium)).any()
        )

    def contributions(
        self, j: int, bins: np.ndarray, reach: np.ndarray, options: np.ndarray, rows: np.ndarray
    ) -> np.ndarray:
        """(options × rows) drop contribution of each request at stage j: d where the option keeps
        it here, 0 where it goes on (plus, at stage 0, a keyword rule's drop)."""
        tier = self.family.path[j]
        d = self.outcomes.label[rows, -1] - self.outcomes.label[rows, tier]
        d = np.where(reach[rows], d, 0.0)
        kept = bins[rows][None, :] > options[:, None]
        out = np.where(kept, d[None, :], 0.0)
        return out + self.ruled[rows][None, :] if j == 0 else out

    def free(self, j: int) -> bool:
        """Whether the most conservative option of stage j keeps nothing (adds exactly 0)."""
        return self.family.kind != "always" and (j > 0 or not self.ruled_nonzero)

    def p_values(
        self,
        j: int,
        bins: np.ndarray,
        reach: np.ndarray,
        options: np.ndarray,
        budget: Budget,
        top: int,
    ) -> np.ndarray:
        """Each option's p-value of "its stage-j drop > the stage's ε" over all labeled requests
        (the bet tuned for the stage's level); 0 for the free most conservative option `top`."""
        level = budget.delta / len(self.groups)
        null_mean = (1.0 + budget.max_regret) / 2.0
        out = np.empty(options.size)
        for lo in range(0, options.size, _OPTIONS_AT_ONCE):
            chunk = options[lo : lo + _OPTIONS_AT_ONCE]
            x = (1.0 + self.contributions(j, bins, reach, chunk, self.rows)) / 2.0
            out[lo : lo + chunk.size] = bounded_mean.p_values(x, null_mean, level)
        return np.where((options == top) & self.free(j), 0.0, out)

    def fixed_sequence(
        self, j: int, bins: np.ndarray, reach: np.ndarray, n_options: int, budget: Budget
    ) -> list[int]:
        """Options passed, from the most conservative down; stops at the first failure (an
        option passes when every segment's test rejects; `bounded_mean.leading_rejections` reads
        little past the first failure and each test only until it rejects)."""
        level = budget.delta / len(self.groups)
        null_mean = (1.0 + budget.max_regret) / 2.0
        top = n_options - 1
        free = int(self.free(j))  # the most conservative option keeps nothing: adds exactly 0
        options = np.arange(top - free, -1, -1)
        passing = options.size
        for rows in self.groups:
            values = self._values_at(j, bins, reach, rows)
            passing = _leading_passes(values, options, passing, null_mean, level)
        return list(range(top, top - free - passing, -1))

    def _values_at(
        self, j: int, bins: np.ndarray, reach: np.ndarray, rows: np.ndarray
    ) -> _StageValues:
        """`rows`' bins at stage j and their drop contributions when an option keeps them here
        and when it sends them on."""
        tier = self.family.path[j]
        d = self.outcomes.label[rows, -1] - self.outcomes.label[rows, tier]
        d = np.where(reach[rows], d, 0.0)
        if j == 0:
            ruled = self.ruled[rows]
            return _StageValues(bins[rows], d + ruled, 0.0 + ruled)
        return _StageValues(bins[rows], d, np.zeros(rows.size))

    def evidence(
        self, stage: Stage, j: int, bins: np.ndarray, reach: np.ndarray, best: int, bounds: bool
    ) -> Stage:
        """The stage's measured drop contribution, its upper bound and p-value (over all
        segments together; each segment passed on its own)."""
        level = stage.delta / len(self.groups)
        d = self.contributions(j, bins, reach, np.array([best]), self.rows)[0]
        x = (1.0 + d) / 2.0
        p = float(bounded_mean.p_values(x, (1.0 + stage.max_regret) / 2.0, level)[0])
        return dataclasses.replace(
            stage,
            test="drop",
            drop=float(d.mean()) if d.size else 0.0,
            drop_ucb=2.0 * bounded_mean.upper_bound(x, level) - 1.0 if bounds else None,
            p_value=p,
        )


@dataclass(frozen=True)
class _StageValues:
    """The labeled requests of one segment at one stage, in the certification order: their bins
    and drop contributions when kept here and when sent on. Option a's contributions are
    where(bins > a, kept, went_on), element for element what `_DropTest.contributions` gives."""

    bins: np.ndarray
    kept: np.ndarray
    went_on: np.ndarray

    def in_range(self) -> bool:
        """Whether every contribution an option can give is in [−1, 1] (x in [0, 1]), as labels
        in [0, 1] give (no option keeps a request in bin 0)."""
        used = (self.kept[self.bins > 0], self.went_on)
        return all(bool(((v >= -1.0) & (v <= 1.0)).all()) for v in used)


def _leading_passes(
    values: _StageValues, options: np.ndarray, k: int, null_mean: float, level: float
) -> int:
    """How many of the first k `options`, in order, this segment's test rejects before the
    first it does not."""
    x_of, n = _drop_x(values, options), values.bins.size
    if values.in_range():
        return bounded_mean.leading_rejections(x_of, k, n, null_mean, level)
    for a in range(k):  # labels out of [0, 1]: each option's test over all of its requests
        if not bounded_mean.rejects(x_of(np.array([a]), 0, n), null_mean, level)[0]:
            return a
    return k


def _drop_x(
    values: _StageValues, options: np.ndarray
) -> Callable[[np.ndarray, int, int], np.ndarray]:
    """x = (1 + contribution) / 2 of options[rows] over requests lo … hi, built as the betting
    test reads them (labeled requests: no NaN)."""

    def x_of(rows: np.ndarray, lo: int, hi: int) -> np.ndarray:
        kept = values.bins[None, lo:hi] > options[rows][:, None]
        return (1.0 + np.where(kept, values.kept[None, lo:hi], values.went_on[None, lo:hi])) / 2.0

    return x_of


def exceed_risk(
    outcomes: Outcomes,
    families: list[Family],
    family: Family,
    option: tuple[int, ...],
    budget: Budget,
) -> float | None:
    """The risk that one uncertified policy's drop (regret, for the regret test) exceeds ε, as the
    least δ at which the certification above would accept it: along the policy's own path, each
    stage's fixed-sequence adjusted p-value (the largest p-value from the most conservative option
    down to the policy's), times the stages and the certifiable families (the Bonferroni factors
    that pay for choosing it among them), capped at 1. A valid p-value of "drop > ε" whatever rule
    chose the policy; betting tuned for the stage level at `budget.delta`. None when no certificate
    can cover the policy (a learned router, a path not ending at the premium tier)."""
    premium = len(outcomes.tiers) - 1
    if family.kind == "always" and family.path[0] == premium:
        return 0.0  # the reference itself: its drop is exactly 0
    todo = _certifiable(outcomes, families)
    if not any(f is family for f in todo):
        return None
    if family.kind == "always":
        bins, n_options, option = [np.ones(outcomes.n, dtype=np.int64)], [1], (0,)
    else:
        bins, n_options = decision_bins(outcomes, family), [g.size + 1 for g in family.grids]
    stages = len(bins)
    share = Budget(budget.max_regret / stages, budget.delta / len(todo) / stages, budget.test)
    drop = _DropTest(outcomes, family, None) if budget.test == "drop" else None
    premium_ok = outcomes.label[:, -1] >= ACCEPTABLE
    ruled = _ruled_regret(outcomes, family, premium_ok)
    n = int(outcomes.labeled.sum())
    reach, worst = outcomes.labeled.copy(), 0.0
    for j, (b, top, a) in enumerate(zip(bins, n_options, option, strict=True)):
        sequence = np.arange(top - 1, a - 1, -1)  # the most conservative option first
        if drop is not None:
            p = drop.p_values(j, b, reach, sequence, share, top - 1)
        else:
            regret_rows = reach & (outcomes.label[:, family.path[j]] < ACCEPTABLE) & premium_ok
            errors = _errors_by_option(b, regret_rows, top, None)[0][sequence]
            if j == 0 and ruled is not None:
                errors = errors + int(ruled.sum())
            p = binom.cdf(errors, n, share.max_regret) if n else np.ones(sequence.size)
        worst = max(worst, float(p.max(initial=0.0)))
        reach = reach & ~(b > a)
    return min(1.0, worst * stages * len(todo))


def _ruled_regret(outcomes: Outcomes, family: Family, premium_ok: np.ndarray) -> np.ndarray | None:
    """1 where a keyword rule serves a labeled request an unacceptable answer that the premium
    tier answers acceptably, else 0 (None without rules). Ruled requests sit in bin 0 at every
    stage, so the stages never count them; their regret is added to stage 0 under every option."""
    forced = family.forced_of(outcomes)
    if forced is None:
        return None
    rows = np.arange(outcomes.n)
    ruled = forced >= 0
    served_ok = outcomes.label[rows, np.where(ruled, forced, 0)] >= ACCEPTABLE
    return (ruled & outcomes.labeled & ~served_ok & premium_ok).astype(np.int64)


def _errors_by_option(
    bins: np.ndarray, regret_rows: np.ndarray, n_options: int, segments: np.ndarray | None
) -> np.ndarray:
    """errors[g, a]: regret events kept at this stage by option a (kept iff bin > a), per segment
    (one row when there are no segments)."""
    if segments is None:
        codes, n_groups = np.zeros(bins.size, dtype=np.int64), 1
    else:
        _, codes = np.unique(segments, return_inverse=True)
        n_groups = int(codes.max()) + 1 if codes.size else 1
    flat = codes[regret_rows] * (n_options + 1) + bins[regret_rows]
    counts = np.bincount(flat, minlength=n_groups * (n_options + 1)).reshape(n_groups, -1)
    kept_above = counts[:, ::-1].cumsum(axis=1)[:, ::-1]  # kept_above[:, b] = Σ counts[:, ≥ b]
    return kept_above[:, 1 : n_options + 1]  # option a keeps bins > a


def _fixed_sequence(
    errors: np.ndarray, labeled: np.ndarray, segments: np.ndarray | None, budget: Budget
) -> list[int]:
    """Options passed, from the most conservative (largest index) down; stops at the first failure."""
    if segments is None:
        n = np.array([labeled.sum()])
    else:
        _, codes = np.unique(segments, return_inverse=True)
        n = np.bincount(codes[labeled], minlength=errors.shape[0])
    level = budget.delta / errors.shape[0]
    p_values = binom.cdf(errors, n[:, None], budget.max_regret)
    worst = np.where(n[:, None] > 0, p_values, 1.0).max(axis=0)
    passed = []
    for a in range(errors.shape[1] - 1, -1, -1):
        if worst[a] > level:
            break
        passed.append(a)
    return passed


def pool_small_segments(
    segments: np.ndarray, labeled: np.ndarray, min_labeled: int, other: str = "(other)"
) -> np.ndarray:
    """Segments with fewer than `min_labeled` labeled requests cannot pass any test on their own;
    they are tested together as one pooled segment."""
    values, codes = np.unique(segments.astype(str), return_inverse=True)
    counts = np.bincount(codes[labeled], minlength=values.size)
    small = counts[codes] < min_labeled
    return np.where(small, other, segments.astype(str)).astype(object)


def min_labels(budget: Budget) -> int:
    """Labels a (segment of a) test needs to pass even with zero regret events: ⌈ln δ / ln(1−ε)⌉."""
    return math.ceil(math.log(budget.delta) / math.log1p(-budget.max_regret))


def clopper_pearson_upper(errors: int, n: int, delta: float) -> float:
    """One-sided upper confidence bound at level 1 − δ for a binomial rate."""
    if n == 0:
        return 1.0
    if errors >= n:
        return 1.0
    return float(beta.ppf(1.0 - delta, errors + 1, n - errors))


def clopper_pearson_lower(successes: int, n: int, delta: float) -> float:
    """One-sided lower confidence bound at level 1 − δ for a binomial rate."""
    if n == 0 or successes == 0:
        return 0.0
    return float(beta.ppf(delta, successes, n - successes + 1))


def labels_to_certify(regret_rate: float, budget: Budget, limit: int = 10_000_000) -> int | None:
    """Roughly how many uniformly sampled labels would certify a policy whose regret rate is
    `regret_rate` (None when it is not below the allowed rate: no label count will do)."""
    if regret_rate >= budget.max_regret:
        return None

    def passes(n: int) -> bool:
        return binom.cdf(math.floor(regret_rate * n), n, budget.max_regret) <= budget.delta

    return _least_passing(passes, limit)


def labels_to_certify_drop(drop: np.ndarray, budget: Budget, limit: int = 2_000_000) -> int | None:
    """Roughly how many uniformly sampled labels would let the drop test certify a policy whose
    per-request drops (premium − served, on the labeled requests) are `drop`: the least n at which
    the test passes on n requests repeating their pattern (None when the mean drop is not below the
    allowed drop: no label count will do)."""
    if drop.size == 0 or float(drop.mean()) >= budget.max_regret:
        return None
    order = np.random.default_rng(CERTIFICATION_ORDER_SEED).permutation(drop.size)
    pattern = (1.0 + drop[order]) / 2.0
    null_mean = (1.0 + budget.max_regret) / 2.0

    def passes(n: int) -> bool:
        return bool(bounded_mean.rejects(np.resize(pattern, n), null_mean, budget.delta)[0])

    return _least_passing(passes, limit)


def _least_passing(passes: Callable[[int], bool], limit: int) -> int | None:
    """The least label count n ≥ 16 at which `passes(n)` holds (it is monotone in n): doubling,
    then bisection; None past `limit`."""
    high = 16
    while not passes(high):
        high *= 2
        if high > limit:
            return None
    low = high // 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if passes(mid) else (mid, high)
    return high

"""Validity and power of certification, by simulation (docs/certification.md; not part of the runtime).

A population is a finite table of requests (confidences, labels, costs for 2–4 tiers) generated from
a seed. Drawing n labeled requests *with replacement* from it is exactly i.i.d. sampling, and every
policy's true quality drop and cost are its exact values on the whole table. The threshold grids
come from the population's confidences (unlabeled data), as the sweep makes them, before any draw.

Each draw is certified with the regret test and with the drop test (`sweep.certify`, the functions
the sweep calls, δ split over the certifiable families and stages as in the sweep). Per draw:
- violation: some certified policy's true drop exceeds ε (the guarantee bounds its rate by δ);
- the pick: the cheapest certified policy (always-premium when none), and the share of the
  achievable savings it keeps (achievable: the cheapest policy whose true drop is ≤ ε).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from calibrate.policies.assignment import take_rows
from calibrate.policies.families import Family, default_families, evaluate_families, policy_index
from calibrate.records.outcomes import Outcomes
from calibrate.sweep.certify import TESTS, Budget, Test, certifiable, certify_families
from calibrate.sweep.weighting import uniform_only

POPULATION_SIZE = 60_000
_SLACK = 1e-9


@dataclass(frozen=True)
class Population:
    """A finite population, its certifiable families and every policy's true drop and cost.
    `targeted` (optional) marks the rows a stratified labelling sample over-samples."""

    name: str
    outcomes: Outcomes
    families: list[Family]
    truth: dict[tuple[int, tuple[int, ...]], tuple[float, float]]
    premium_cost: float
    achievable_savings: float
    targeted: np.ndarray | None = None


def _outcomes(confidence: np.ndarray, label: np.ndarray, cost: tuple[float, ...]) -> Outcomes:
    n, k = label.shape
    text = np.array(["x"] * n, dtype=object)
    conf = np.column_stack([confidence, np.ones(n)]) if confidence.ndim == 2 else confidence
    return Outcomes(
        tiers=tuple(f"t{j}" for j in range(k)),
        request_ids=np.array([f"r{i}" for i in range(n)], dtype=object),
        timestamp_s=np.zeros(n),
        region=text,
        app=text,
        intent=text,
        input_tokens=np.full(n, 100),
        confidence=conf,
        cost_usd=np.tile(np.array(cost), (n, 1)),
        latency_ms=np.full((n, k), 100.0),
        label=label.astype(np.float64),
        incomplete=0,
    )


def population(
    name: str,
    confidence: np.ndarray,
    label: np.ndarray,
    cost: tuple[float, ...],
    max_drop: float,
    targeted: np.ndarray | None = None,
) -> Population:
    """The population with its families (always-tier and cascades, as the sweep makes them) and
    the exact drop and cost of every certifiable policy."""
    outcomes = _outcomes(confidence, label, cost)
    premium = len(cost) - 1
    families = [
        f
        for f in default_families(outcomes)
        if f.kind in ("always", "cascade") and certifiable(f, premium)
    ]
    frontier = evaluate_families(outcomes, families)
    index = policy_index(outcomes, families)
    position = {id(f): i for i, f in enumerate(families)}
    truth = {}
    for row in frontier.iter_rows(named=True):
        family, option = index[row["policy"]]
        truth[(position[id(family)], tuple(option))] = (
            float(row["quality_drop"]),
            float(row["cost_per_1k_requests_usd"]),
        )
    premium_cost = float(outcomes.cost_usd[:, -1].mean() * 1000.0)
    feasible = [c for d, c in truth.values() if d <= max_drop + _SLACK]
    best = min(feasible, default=premium_cost)
    return Population(
        name, outcomes, families, truth, premium_cost, 1.0 - best / premium_cost, targeted
    )


# --- the populations -------------------------------------------------------------------------


def rescue(rng: np.random.Generator, max_drop: float) -> Population:
    """Regret ≫ drop: premium is right 85% of the time independently of the cheap tier, so on
    many requests the cheap tier is right and premium wrong; the cheap tier is right with
    probability 0.62 + 0.36c."""
    n = POPULATION_SIZE
    c = rng.uniform(size=n)
    cheap = rng.uniform(size=n) < 0.62 + 0.36 * c
    premium = rng.uniform(size=n) < 0.85
    return population("rescue (regret ≫ drop)", c[:, None], np.column_stack([cheap, premium]),
                      (0.1, 1.0), max_drop)  # fmt: skip


def nested(rng: np.random.Generator, max_drop: float) -> Population:
    """Premium right whenever the cheap tier is (regret = drop): the binomial test's home ground."""
    n = POPULATION_SIZE
    c = rng.uniform(size=n)
    cheap = rng.uniform(size=n) >= 0.6 * (1 - c) ** 2
    premium = cheap | (rng.uniform(size=n) < 0.7)
    return population("nested (regret = drop)", c[:, None], np.column_stack([cheap, premium]),
                      (0.1, 1.0), max_drop)  # fmt: skip


def edge(rng: np.random.Generator, max_drop: float) -> Population:
    """Drop ≈ ε (adversarial): the top 20% of confidences carry a drop of 1.1ε in all, the middle
    half none (a plateau of policies whose drop sits just above ε), the bottom a large one."""
    n = POPULATION_SIZE
    c = rng.uniform(size=n)
    premium = rng.uniform(size=n) < 0.9
    cheap_rate = np.where(c > 0.8, 0.9 - 1.1 * max_drop / 0.2, np.where(c > 0.3, 0.9, 0.6))
    cheap = rng.uniform(size=n) < cheap_rate
    return population("edge (drop ≈ ε)", c[:, None], np.column_stack([cheap, premium]),
                      (0.1, 1.0), max_drop)  # fmt: skip


def weak(rng: np.random.Generator, max_drop: float) -> Population:
    """A barely informative confidence: the cheap tier is right with probability 0.8 + 0.08c."""
    n = POPULATION_SIZE
    c = rng.uniform(size=n)
    cheap = rng.uniform(size=n) < 0.8 + 0.08 * c
    premium = rng.uniform(size=n) < 0.87
    return population("weak confidence", c[:, None], np.column_stack([cheap, premium]),
                      (0.1, 1.0), max_drop)  # fmt: skip


def fractional(rng: np.random.Generator, max_drop: float) -> Population:
    """Graded labels in [0, 1]: premium's score ~ Beta(8, 2); the cheap tier's is premium's minus
    0.3(1 − c)² plus noise N(0, 0.15), clipped."""
    n = POPULATION_SIZE
    c = rng.uniform(size=n)
    premium = rng.beta(8, 2, size=n)
    cheap = np.clip(premium - 0.3 * (1 - c) ** 2 + rng.normal(0, 0.15, size=n), 0.0, 1.0)
    return population("fractional labels", c[:, None], np.column_stack([cheap, premium]),
                      (0.1, 1.0), max_drop)  # fmt: skip


def _tiers(rng: np.random.Generator, accuracy: list[Callable[[np.ndarray], np.ndarray]]):
    """Labels for len(accuracy) cheaper tiers plus a premium tier right 90% of the time: 70% of
    requests share one difficulty (nested answers), 30% are independent across tiers."""
    n = POPULATION_SIZE
    conf = rng.uniform(size=(n, len(accuracy)))
    shared = rng.uniform(size=n)
    mixed = rng.uniform(size=n) < 0.3
    labels = []
    for j, rate in enumerate([*accuracy, lambda _: np.full(n, 0.9)]):
        u = np.where(mixed, rng.uniform(size=n), shared)
        labels.append(u < rate(conf[:, j] if j < conf.shape[1] else conf[:, 0]))
    return conf, np.column_stack(labels)


def three_tiers(rng: np.random.Generator, max_drop: float) -> Population:
    """Three tiers: small right with probability 0.55 + 0.4c, medium 0.7 + 0.25c, premium 0.9."""
    conf, label = _tiers(rng, [lambda c: 0.55 + 0.4 * c, lambda c: 0.7 + 0.25 * c])
    return population("3 tiers", conf, label, (0.05, 0.25, 1.0), max_drop)


def four_tiers(rng: np.random.Generator, max_drop: float) -> Population:
    """Four tiers: 0.5 + 0.45c, 0.6 + 0.35c, 0.7 + 0.25c, premium 0.9."""
    conf, label = _tiers(
        rng, [lambda c: 0.5 + 0.45 * c, lambda c: 0.6 + 0.35 * c, lambda c: 0.7 + 0.25 * c]
    )
    return population("4 tiers", conf, label, (0.03, 0.1, 0.3, 1.0), max_drop)


def stratified(rng: np.random.Generator, max_drop: float) -> Population:
    """The rescue population labelled by a stratified sample: half the labels uniform, half
    targeted at confidence < 0.5 (weighted; certification keeps the uniform stratum only)."""
    base = rescue(rng, max_drop)
    targeted = base.outcomes.confidence[:, 0] < 0.5
    return dataclasses.replace(base, name="stratified labels (rescue)", targeted=targeted)


POPULATIONS: dict[str, Callable[[np.random.Generator, float], Population]] = {
    "rescue": rescue,
    "nested": nested,
    "edge": edge,
    "weak": weak,
    "fractional": fractional,
    "3-tier": three_tiers,
    "4-tier": four_tiers,
    "stratified": stratified,
}


# --- draws -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Draw:
    """One draw certified by one test."""

    violated: bool
    savings: float


def draw_sample(pop: Population, n: int, rng: np.random.Generator) -> Outcomes:
    """n labeled requests drawn i.i.d. (with replacement); a stratified population draws half of
    them uniformly and half from its targeted rows, and certification keeps the uniform half."""
    if pop.targeted is None:
        return take_rows(pop.outcomes, rng.integers(0, pop.outcomes.n, size=n))
    uniform = rng.integers(0, pop.outcomes.n, size=n // 2)
    targeted = rng.choice(np.flatnonzero(pop.targeted), size=n - n // 2, replace=True)
    sample = take_rows(pop.outcomes, np.r_[uniform, targeted])
    strata = np.array(["uniform"] * uniform.size + ["low-confidence"] * targeted.size)
    return uniform_only(sample, strata)


def certify_draw(pop: Population, sample: Outcomes, budget: Budget) -> Draw:
    """Certify one draw: was any certified policy's true drop above ε, and what the pick saves."""
    certificates = certify_families(sample, pop.families, budget, bounds=False)
    position = {id(f): i for i, f in enumerate(pop.families)}
    violated, cheapest = False, pop.premium_cost
    for cert in certificates:
        for option in cert.options:
            drop, cost = pop.truth[(position[id(cert.family)], tuple(option))]
            violated |= drop > budget.max_regret + _SLACK
            cheapest = min(cheapest, cost)
    return Draw(violated, 1.0 - cheapest / pop.premium_cost)


@dataclass(frozen=True)
class Row:
    """One (population, n, test) cell of the table."""

    population: str
    n: int
    test: str
    draws: int
    violation_rate: float
    savings_share: float
    achievable_savings: float


def simulate(
    pop: Population, n: int, draws: int, max_drop: float, delta: float, seed: int
) -> list[Row]:
    """Both tests on the same `draws` samples of n labels."""
    rng = np.random.default_rng(seed)
    results: dict[Test, list[Draw]] = {t: [] for t in TESTS}
    for _ in range(draws):
        sample = draw_sample(pop, n, rng)
        for test in TESTS:
            results[test].append(certify_draw(pop, sample, Budget(max_drop, delta, test)))
    rows = []
    for test, found in results.items():
        share = (
            float(np.mean([d.savings for d in found])) / pop.achievable_savings
            if pop.achievable_savings > 0
            else 1.0
        )
        rows.append(
            Row(
                pop.name,
                n,
                test,
                draws,
                float(np.mean([d.violated for d in found])),
                share,
                pop.achievable_savings,
            )
        )
    return rows


def table(rows: list[Row], delta: float) -> str:
    """The Markdown table: per population and n, both tests side by side."""
    lines = [
        "| population | labels | draws | achievable savings | violations regret | violations drop "
        "| savings kept regret | savings kept drop |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cells: dict[tuple[str, int], dict[str, Row]] = {}
    for r in rows:
        cells.setdefault((r.population, r.n), {})[r.test] = r
    for (name, n), by_test in cells.items():
        old, new = by_test["regret"], by_test["drop"]
        lines.append(
            f"| {name} | {n:,} | {old.draws:,} | {old.achievable_savings:.1%} "
            f"| {old.violation_rate:.3f} | {new.violation_rate:.3f} "
            f"| {old.savings_share:.1%} | {new.savings_share:.1%} |"
        )
    return "\n".join(lines)

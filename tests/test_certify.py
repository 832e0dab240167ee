"""Certified selection: statistical validity on a population with known risk, and the edge paths."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from calibrate.config.tiers import load_tiers
from calibrate.errors import DataError
from calibrate.ingest import stage as ingest
from calibrate.policies.assignment import assign, regret
from calibrate.policies.families import Family, threshold_grid
from calibrate.records.outcomes import Outcomes
from calibrate.records.policy import Policy
from calibrate.stats.reliability import tier_calibrations
from calibrate.store import Store
from calibrate.sweep.certify import Budget, certify_family, clopper_pearson_upper, labels_to_certify
from calibrate.sweep.selection import Objective
from calibrate.sweep.stage import run_sweep

pytestmark = pytest.mark.e2e  # certification on many simulated populations: not in `make test-fast`

EPS, DELTA, DRAWS, N_LABELED = 0.02, 0.10, 300, 1000


def true_regret(tau: float) -> float:
    """Population regret of keeping c ≥ τ on the cheap tier: the cheap answer is wrong with
    probability 0.6(1−c)², the premium rescues 70% of those, c ~ U(0, 1) (methods.md §1.7):
    ∫_τ^1 0.42(1−c)² dc = 0.14(1−τ)³."""
    return 0.0 if math.isinf(tau) else 0.14 * (1.0 - max(tau, 0.0)) ** 3


def draw(rng: np.random.Generator, n: int) -> Outcomes:
    """n labeled requests from the population, two tiers (cheap, premium)."""
    c = rng.uniform(size=n)
    cheap_ok = rng.uniform(size=n) >= 0.6 * (1 - c) ** 2
    premium_ok = cheap_ok | (rng.uniform(size=n) < 0.7)
    return outcomes_from(c, cheap_ok, premium_ok)


def outcomes_from(c: np.ndarray, cheap_ok: np.ndarray, premium_ok: np.ndarray) -> Outcomes:
    n = c.size
    text = np.array(["x"] * n, dtype=object)
    return Outcomes(
        tiers=("cheap", "premium"),
        request_ids=np.array([f"r{i}" for i in range(n)], dtype=object),
        timestamp_s=np.zeros(n),
        region=text,
        app=text,
        intent=text,
        input_tokens=np.full(n, 100),
        confidence=np.column_stack([c, np.ones(n)]),
        cost_usd=np.column_stack([np.full(n, 1e-4), np.full(n, 1e-3)]),
        latency_ms=np.column_stack([np.full(n, 100.0), np.full(n, 500.0)]),
        label=np.column_stack([cheap_ok, premium_ok]).astype(np.float64),
        incomplete=0,
    )


def certified_tau(o: Outcomes) -> float:
    grid = threshold_grid(o.confidence[:, 0], 200)
    cert = certify_family(o, Family("cascade", (0, 1), (grid,)), Budget(EPS, DELTA))
    if not cert.options:
        return math.inf
    a = cert.options[-1][0]
    return math.inf if a == grid.size else float(grid[a])


def naive_tau(o: Outcomes) -> float:
    """Lowest grid threshold whose *measured* regret rate is within ε (no guarantee)."""
    grid = threshold_grid(o.confidence[:, 0], 200)
    c = o.confidence[:, 0]
    regret = (o.label[:, 0] < 0.5) & (o.label[:, 1] >= 0.5)
    ok = [t for t in grid if (regret & (c >= t)).mean() <= EPS]
    return float(min(ok)) if ok else math.inf


def test_certified_threshold_violates_the_limit_at_most_delta_of_the_time() -> None:
    rng = np.random.default_rng(20261127)
    certified = naive = 0
    for _ in range(DRAWS):
        o = draw(rng, N_LABELED)
        certified += true_regret(certified_tau(o)) > EPS
        naive += true_regret(naive_tau(o)) > EPS
    slack = 3 * math.sqrt(DELTA * (1 - DELTA) / DRAWS)
    assert certified / DRAWS <= DELTA + slack, certified
    # the naive empirical choice breaks the limit far more often (about half the draws)
    assert naive / DRAWS >= 0.3, naive
    assert naive > 3 * certified


def test_certification_is_not_vacuous() -> None:
    """With 1,000 labels it certifies a threshold below 'escalate everything' in most draws,
    close to the oracle τ* = 1 − (ε / 0.14)^(1/3) ≈ 0.477."""
    rng = np.random.default_rng(7)
    taus = [certified_tau(draw(rng, N_LABELED)) for _ in range(50)]
    finite = [t for t in taus if math.isfinite(t)]
    assert len(finite) >= 45
    assert 0.477 < float(np.median(finite)) < 0.75


def test_too_few_labels_certify_nothing() -> None:
    o = draw(np.random.default_rng(1), 40)  # (1−ε)^40 = 0.45 > δ: not even escalate-all passes
    grid = threshold_grid(o.confidence[:, 0], 200)
    assert certify_family(o, Family("cascade", (0, 1), (grid,)), Budget(EPS, DELTA)).options == ()


def test_labels_to_certify_matches_the_zero_event_rule() -> None:
    # zero regret events: n ≥ ln(1/δ)/ε → 149 for ε = 0.02, δ = 0.05 (methods.md §1.4)
    assert labels_to_certify(0.0, Budget(0.02, 0.05)) == 149
    assert labels_to_certify(0.03, Budget(0.02, 0.05)) is None
    assert clopper_pearson_upper(0, 149, 0.05) <= 0.02 < clopper_pearson_upper(0, 148, 0.05)


def sweep_outcomes(tmp_path: Path, o: Outcomes, objective: Objective, **options):
    """Write `o` as canonical JSONL, ingest it into a DuckDB file and run the sweep (`options`:
    run_sweep's keyword options)."""
    import json

    lines = []
    for i in range(o.n):
        attempts = [
            {
                "tier": tier,
                "model": f"m-{tier}",
                "source": "shadow",
                "confidence": None if math.isnan(o.confidence[i, j]) else float(o.confidence[i, j]),
                "cost_usd": float(o.cost_usd[i, j]),
                "latency_ms": float(o.latency_ms[i, j]),
                "status": "ok",
                "output": "a",
            }
            for j, tier in enumerate(o.tiers)
        ]
        labels = {
            tier: float(o.label[i, j])
            for j, tier in enumerate(o.tiers)
            if not math.isnan(o.label[i, j])
        }
        row = {
            "request_id": f"r-{i:05d}",
            "timestamp": f"2026-10-{1 + i % 28:02d}T12:00:00Z",
            "messages": [{"role": "user", "content": f"q{i}"}],
            "attempts": attempts,
            "metadata": {"intent": "x"},
        }
        if labels:
            row["labels"] = labels
        lines.append(json.dumps(row))
    logs = tmp_path / "logs.jsonl"
    logs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tiers = tmp_path / "tiers.yaml"
    tiers.write_text(
        "tiers:\n" + "".join(f"  - {{name: {t}, model: m-{t}}}\n" for t in o.tiers),
        encoding="utf-8",
    )
    with Store.open(tmp_path / "s.duckdb") as store:
        ingest.ingest(store, [logs], strict=True, clock=lambda: datetime(2026, 11, 1, tzinfo=UTC))
        return run_sweep(store, load_tiers(tiers), objective, **options)


def test_no_certifiable_policy_falls_back_to_premium_and_says_how_many_labels(
    tmp_path: Path,
) -> None:
    o = draw(np.random.default_rng(3), 150)  # δ/3 per family needs ≥ 203 labels even with no regret
    result = sweep_outcomes(tmp_path, o, Objective(max_quality_drop=0.02, confidence_level=0.95))
    rec, evidence = result.decision.recommendation, result.report.evidence
    assert rec.fallback and not rec.certified and rec.row.policy == Policy.always("premium")
    assert "no policy cheaper than always-premium could be certified" in rec.reason
    assert evidence.alternative is not None
    assert evidence.alternative.row.policy != Policy.always("premium")
    needed = evidence.labels_needed
    assert needed is not None
    assert needed.policy != Policy.always("premium") and 0 < needed.more_labels < 100_000


def test_inverted_confidence_is_flagged_and_never_certifies_keeping_bad_answers(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(5)
    c = rng.uniform(size=1500)
    cheap_ok = rng.uniform(size=c.size) >= 0.6 * c**2  # higher confidence, *worse* answers
    premium_ok = cheap_ok | (rng.uniform(size=c.size) < 0.7)
    o = outcomes_from(c, cheap_ok, premium_ok)
    result = sweep_outcomes(tmp_path, o, Objective(max_quality_drop=0.02))
    assert any("inverted" in w for w in result.report.warnings)
    cheap = next(cal for cal in result.report.calibration if cal.tier == "cheap")
    assert cheap.auroc is not None and cheap.auroc < 0.5
    policy = result.decision.recommendation.row.policy
    regret = (~cheap_ok & premium_ok).mean()
    if policy.strategy == "cascade":
        (tau,) = policy.thresholds
        assert (~cheap_ok & premium_ok & (c >= tau)).mean() <= 0.02 < regret


def test_a_tier_without_labels_is_named_in_the_error(tmp_path: Path) -> None:
    o = draw(np.random.default_rng(9), 300)
    label = o.label.copy()
    label[:, 0] = np.nan
    unlabeled = Outcomes(**{**o.__dict__, "label": label})
    with pytest.raises(DataError) as exc:
        sweep_outcomes(tmp_path, unlabeled, Objective())
    assert "cheap" in exc.value.message and "no labels" in exc.value.message
    cal = tier_calibrations(unlabeled)
    assert cal[0].auroc is None and cal[0].labeled == 0


def test_per_segment_certification_escalates_a_hard_segment_more() -> None:
    """A segment where the cheap tier fails often is invisible in the marginal regret; certifying
    within each segment forces a more conservative threshold."""
    rng = np.random.default_rng(11)
    n = 4000
    hard = np.arange(n) < n // 4
    c = rng.uniform(size=n)
    p_wrong = np.where(hard, 0.9 * (1 - c) ** 0.5, 0.3 * (1 - c) ** 3)
    cheap_ok = rng.uniform(size=n) >= p_wrong
    premium_ok = cheap_ok | (rng.uniform(size=n) < 0.8)
    o = outcomes_from(c, cheap_ok, premium_ok)
    family = Family("cascade", (0, 1), (threshold_grid(c, 200),))
    budget = Budget(0.03, 0.05)
    marginal = certify_family(o, family, budget).options[-1][0]
    segments = np.where(hard, "hard", "easy").astype(object)
    per_segment = certify_family(o, family, budget, segments).options[-1][0]
    assert per_segment > marginal
    tau = family.grids[0][per_segment] if per_segment < family.grids[0].size else math.inf
    kept_hard = hard & (c >= tau)
    assert (kept_hard & ~cheap_ok & premium_ok).sum() / hard.sum() <= 0.03


def draw_three_tiers(rng: np.random.Generator, n: int) -> Outcomes:
    """Small and medium are wrong with probability 0.6(1−c)² and 0.4(1−c)², large is right 92%."""
    c1, c2 = rng.uniform(size=n), rng.uniform(size=n)
    ok = np.column_stack(
        [
            rng.uniform(size=n) >= 0.6 * (1 - c1) ** 2,
            rng.uniform(size=n) >= 0.4 * (1 - c2) ** 2,
            rng.uniform(size=n) < 0.92,
        ]
    )
    two = outcomes_from(c1, ok[:, 0], ok[:, 2])
    return Outcomes(
        **{
            **two.__dict__,
            "tiers": ("small", "medium", "large"),
            "confidence": np.column_stack([c1, c2, np.ones(n)]),
            "cost_usd": np.tile([1e-4, 3e-4, 1e-3], (n, 1)),
            "latency_ms": np.tile([100.0, 200.0, 500.0], (n, 1)),
            "label": ok.astype(np.float64),
        }
    )


def test_tier_by_tier_certification_holds_for_three_tiers() -> None:
    """ε and δ split over the two stages; the true total regret of the chosen pair of thresholds,
    measured on a 200,000-request population, exceeds ε in at most δ of 150 draws."""
    rng = np.random.default_rng(2026)
    population = draw_three_tiers(rng, 200_000)
    eps, delta, draws = 0.03, 0.10, 150
    violations = certified = 0
    for _ in range(draws):
        sample = draw_three_tiers(rng, 2000)
        grids = tuple(threshold_grid(sample.confidence[:, j], 30) for j in (0, 1))
        family = Family("cascade", (0, 1, 2), grids)
        cert = certify_family(sample, family, Budget(eps, delta))
        if not cert.options:
            continue
        certified += 1
        served = assign(population, family, cert.options[-1]).served_tier
        violations += regret(population, served).mean() > eps
    assert certified >= draws * 0.9
    assert violations / draws <= delta + 3 * math.sqrt(delta * (1 - delta) / draws)

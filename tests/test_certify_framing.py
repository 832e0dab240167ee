"""The report's honest framing of what was certified (issue 17 §3): the top lines when the certified
pick leaves most of the savings on the table or does not pay back its labels, the labels hint,
the definitions, one escalation band for every strategy, and thresholds to 4 significant digits in
the reports with full precision in routing.yaml."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from test_certify import draw, outcomes_from, sweep_outcomes

from calibrate.config.routing import dump_routing
from calibrate.policies.families import DEFAULT_GRID, Family, threshold_grid
from calibrate.policies.frontier import frontier_rows
from calibrate.records.policy import FrontierRow, Policy, PolicyMetrics
from calibrate.report.sweep_report import build_routing, frontier_csv, render_markdown, sections
from calibrate.sweep.certify import Budget, certify_family
from calibrate.sweep.diagnostics import warnings_for
from calibrate.sweep.selection import Objective
from calibrate.sweep.stage import Overheads, SweepResult

pytestmark = pytest.mark.e2e  # whole sweeps: not in `make test-fast`

ROOT = Path(__file__).resolve().parent.parent
EPS = 0.02
HINT = re.compile(
    r"About ([\d,]+) more uniformly sampled labels would likely certify `([^`]+)` "
    r"\(saving ([\d.]+)%\)\."
)


def rescue(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Premium right 85% of the time whatever the cheap tier does; the cheap tier right with
    probability 0.62 + 0.36c (many rescue events: regret ≫ drop)."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(size=n)
    return c, rng.uniform(size=n) < 0.62 + 0.36 * c, rng.uniform(size=n) < 0.85


def true_drop(tau: float) -> float:
    """The rescue population's drop when the cheap tier keeps c ≥ τ: ∫_τ^1 (0.23 − 0.36c) dc."""
    t = min(max(tau, 0.0), 1.0)
    return 0.23 * (1 - t) - 0.18 * (1 - t * t)


def first_lines(result: SweepResult) -> list[str]:
    """report.md's paragraphs before the first section heading (after the title)."""
    text = render_markdown(sections(result))
    head = text.split("\n## ")[0]
    return [p for p in head.split("\n\n")[1:] if p.strip()]


def by_display_id(result: SweepResult, name: str) -> FrontierRow:
    (row,) = [r for r in frontier_rows(result.report.frontier) if r.policy.display_id == name]
    return row


def test_a_certified_pick_saving_less_than_half_says_so_first_with_the_labels_it_needs(
    tmp_path: Path,
) -> None:
    """600 labels on a rescue population: the drop test certifies a conservative threshold saving
    far less than the best measured policy. The line after the headline says so and names a
    certifiable cascade (not the premium baseline, not a router), cheaper than the pick, with a
    positive label count; the named policy's true drop is within ε, and fresh draws of that many
    labels certify it in most draws."""
    c, cheap_ok, premium_ok = rescue(3, 600)
    result = sweep_outcomes(tmp_path, outcomes_from(c, cheap_ok, premium_ok), Objective(EPS))
    rec, ev = result.decision.recommendation.row, result.report.evidence
    assert result.decision.recommendation.certified and ev.alternative is not None
    assert rec.metrics.savings_vs_premium < ev.alternative.row.metrics.savings_vs_premium / 2
    line = first_lines(result)[2]  # after the decision and the headline
    assert line.startswith("**The certified pick saves") and "less than half" in line
    match = HINT.search(line)
    assert match, line
    more, named = int(match[1].replace(",", "")), by_display_id(result, match[2])
    assert more > 0 and named.policy.strategy == "cascade" and named.policy.tiers[-1] == "premium"
    assert not named.certified
    assert named.metrics.savings_vs_premium > rec.metrics.savings_vs_premium
    assert float(match[3]) == round(named.metrics.savings_vs_premium * 100, 1)
    (tau,) = named.policy.thresholds
    assert true_drop(tau) <= EPS
    # "would likely certify": certify fresh draws of the labels in hand plus the hint's count
    grid = threshold_grid(c, DEFAULT_GRID[2])
    index = int(np.searchsorted(grid, tau))
    assert grid[index] == tau
    share = Budget(EPS, 0.05 / ev.certifiable_families, "drop")
    passed = 0
    for seed in range(5):
        fresh = outcomes_from(*rescue(100 + seed, 600 + more))
        cert = certify_family(fresh, Family("cascade", (0, 1), (grid,)), share)
        passed += bool(cert.options) and cert.options[-1][0] <= index
    assert passed >= 3, passed


@pytest.mark.parametrize("test", ["drop", "regret"])
def test_a_fallback_names_a_certifiable_policy_and_a_positive_label_count(
    tmp_path: Path, test: str
) -> None:
    """Too few labels for anything cheaper than premium: the hint never names the premium
    baseline (which needs no certificate) or a learned router (which cannot have one), and never
    asks for 0 more labels."""
    result = sweep_outcomes(
        tmp_path, draw(np.random.default_rng(3), 150), Objective(EPS, certify_on=test)
    )
    rec, ev = result.decision.recommendation, result.report.evidence
    assert rec.fallback and rec.row.policy == Policy.always("premium")
    assert ev.labels_needed is not None and ev.labels_needed.more_labels > 0
    note = next(p for p in first_lines(result) if p.startswith("**Nothing cheaper"))
    match = HINT.search(note)
    assert match, note
    named = by_display_id(result, match[2])
    assert named.policy.strategy not in ("always", "router", "consensus")
    assert named.policy.tiers[-1] == "premium" and int(match[1].replace(",", "")) > 0


def test_a_pick_that_does_not_pay_back_its_labels_says_so_at_the_top(tmp_path: Path) -> None:
    """1,000 labels at $1 cost $1,000 a month; at 10,000 requests a month the pick saves a few
    dollars, so the second line says so; at 10⁹ requests a month it pays back and nothing is
    said; by default the volume is the logs' own rate."""
    o = outcomes_from(*rescue(4, 1000))
    runs = {}
    for name, volume in (("low", 10_000.0), ("high", 1e9), ("logs", None)):
        (tmp_path / name).mkdir()
        runs[name] = sweep_outcomes(
            tmp_path / name, o, Objective(EPS), overheads=Overheads(1.0, 0.0, volume)
        )
    low = runs["low"]
    assert low.decision.recommendation.certified and not low.decision.recommendation.fallback
    assert low.report.economics.pays_back is False
    payback = next(p for p in first_lines(low) if "calibration costs" in p)
    assert first_lines(low).index(payback) == 2  # right after the decision and the headline
    assert "At 10,000 requests per month (--requests-per-month)" in payback
    assert "less than the $1,000.00 a month its calibration costs" in payback
    be = low.report.economics.break_even_requests_per_month
    assert be is not None and f"pays back above {be:,.0f} requests per month" in payback
    assert runs["high"].report.economics.pays_back is True
    assert not any("calibration costs" in p for p in first_lines(runs["high"]))
    logs = runs["logs"].report.economics
    assert logs.requests_per_month == pytest.approx(1000 * 30 / 27)  # 27 days of timestamps
    assert any("these logs' rate" in p for p in first_lines(runs["logs"]))


def test_the_report_defines_regret_and_quality_drop(tmp_path: Path) -> None:
    result = sweep_outcomes(tmp_path, draw(np.random.default_rng(2), 400), Objective(EPS))
    text = render_markdown(sections(result))
    detail = text.split("## How sure is this: the statistical detail\n", 1)[1].split("\n## ")[0]
    bullets = [line[2:] for line in detail.splitlines() if line.startswith("- ")]
    (drop,) = [b for b in bullets if b.startswith("Quality drop:")]
    (regret,) = [b for b in bullets if b.startswith("Regret event:")]
    assert "always-premium's mean label minus the policy's mean label" in drop
    assert drop.count(". ") == 0 and regret.count(". ") == 0  # one sentence each
    assert "unacceptably" in regret and "acceptable" in regret
    assert "Terms:" not in text  # defined once, in the detail's list of terms


def metrics(escalation_rate: float) -> PolicyMetrics:
    return PolicyMetrics(0.9, 0.01, escalation_rate, 1.0, 0.2, 100.0, 200.0)


@pytest.mark.parametrize(
    "policy",
    [
        Policy("length", ("small", "large"), cutoff_tokens=120),
        Policy("cascade", ("small", "large"), (0.5,)),
        Policy("router", ("small", "large"), (0.7,)),
        Policy("rules", ("small", "large"), cutoff_tokens=80),
    ],
)
def test_the_escalation_warning_applies_to_every_strategy(policy: Policy) -> None:
    """An input-length rule sending 88% to premium gets the warning a cascade gets."""
    notes = warnings_for(FrontierRow(policy, 100, 50, metrics(0.88)), {}, 0, 0)
    assert any("88.0% of requests" in n and "10%–40%" in n for n in notes), notes
    assert not warnings_for(FrontierRow(policy, 100, 50, metrics(0.25)), {}, 0, 0)
    always = FrontierRow(Policy.always("large"), 100, 50, metrics(0.0))
    assert not warnings_for(always, {}, 0, 0)


def test_the_healthy_escalation_band_is_one_band_stated_once_with_its_source(
    tmp_path: Path,
) -> None:
    result = sweep_outcomes(tmp_path, draw(np.random.default_rng(2), 400), Objective(EPS))
    report = render_markdown(sections(result))
    bands = set(re.findall(r"\d+%–\d+%", report))
    assert bands <= {"10%–40%"}, bands
    assert report.count("rule of thumb") == 1
    for doc in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        text = doc.read_text(encoding="utf-8")
        assert not re.search(r"15\s*(%|–|-)\s*25\s*%", text), doc


def test_thresholds_print_with_four_significant_digits_and_deploy_in_full(
    tmp_path: Path,
) -> None:
    """Raw log-prob confidences with few distinct values: the grid keeps them whole, the reports
    print `@-15.46`, routing.yaml and frontier.csv keep `-15.4573…`, and `--policy` accepts the
    printed id."""
    rng = np.random.default_rng(6)
    levels = np.array([-25.91734, -21.3382, -18.60291, -15.457321, -12.90417, -9.61853, -4.237719])
    n = 2000
    c = rng.choice(levels, size=n)
    rank = np.searchsorted(levels, c) / (levels.size - 1)
    cheap_ok = rng.uniform(size=n) < 0.5 + 0.49 * rank
    premium_ok = cheap_ok | (rng.uniform(size=n) < 0.8)
    result = sweep_outcomes(tmp_path, outcomes_from(c, cheap_ok, premium_ok), Objective(0.05))
    policy = result.decision.recommendation.row.policy
    assert policy.strategy == "cascade"
    (tau,) = policy.thresholds
    assert tau in levels and len(repr(tau)) > 6
    shown = policy.display_id
    assert shown == f"cascade:cheap>premium@{float(f'{tau:.4g}')!r}" and shown != policy.id
    report = render_markdown(sections(result))
    assert f"`{shown}`" in report and f"confidence < {float(f'{tau:.4g}')!r}" in report
    for level in levels:
        assert repr(float(level)) not in report, level
    routing = yaml.safe_load(dump_routing(build_routing(result.decision)))
    assert routing["tiers"][0]["escalate_below"] == tau
    assert f"{policy.id}," in frontier_csv(result.report.frontier)
    (tmp_path / "chosen").mkdir()
    chosen = sweep_outcomes(
        tmp_path / "chosen",
        outcomes_from(c, cheap_ok, premium_ok),
        Objective(0.05, chosen_policy=shown),
    )
    assert chosen.decision.recommendation.row.policy == policy


def test_an_uncertified_pick_says_it_has_no_guarantee_and_carries_its_risk(
    tmp_path: Path,
) -> None:
    """--no-certify: the headline puts the risk next to the measured drop, the note says there
    is no guarantee, and routing.yaml records the risk."""
    c, cheap_ok, premium_ok = rescue(5, 800)
    result = sweep_outcomes(
        tmp_path, outcomes_from(c, cheap_ok, premium_ok), Objective(EPS, certify=False)
    )
    ev = result.report.evidence
    assert ev.exceed_risk is not None and 0 <= ev.exceed_risk <= 1
    _, headline, *_ = first_lines(result)
    assert "not certified: no guarantee; risk that it exceeds the limit: up to" in headline
    assert "An uncertified pick has no guarantee" in render_markdown(sections(result))
    block = yaml.safe_load(dump_routing(build_routing(result.decision)))["certification"]
    assert block["test"] == "drop" and "stages" not in block
    assert math.isclose(block["exceed_risk"], ev.exceed_risk, rel_tol=1e-3)
    frontier = result.report.frontier.filter(pl.col("recommended"))
    assert frontier.height == 1 and not frontier["certified"][0]

"""`calibrate diff`: golden Markdown and JSON for committed pairs, and the materiality rules."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.config.routing import RoutedTier, RoutingConfig, Rule, load_routing
from calibrate.diff.compare import ConfigDiff, Materiality, compare
from calibrate.report.diff_report import reasons, render_json, render_markdown

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(
    "tests/data/diff"
)  # relative, so the paths printed in the goldens do not depend on the machine
SAMPLE = ROOT / "tests" / "data" / "routing_cascade.yaml"  # a medium > large cascade
CASES = {  # case → is the change material?
    "threshold_moved": True,
    "cascade_to_rules": True,
    "older_file": True,
    "small_drift": False,
    "identical": False,
}
runner = CliRunner()


def run_diff(case: str, *options: str):
    return runner.invoke(
        app,
        ["diff", str(DATA / case / "old.yaml"), str(DATA / case / "new.yaml"), *options],
        catch_exceptions=False,
    )


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("case", CASES)
def test_markdown_matches_golden(case: str, golden) -> None:
    result = run_diff(case)
    assert result.exit_code == 0, result.output
    golden(f"diff/{case}.md", result.stdout)


@pytest.mark.parametrize("case", CASES)
def test_json_matches_golden(case: str, golden) -> None:
    result = run_diff(case, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["material"] is CASES[case]
    assert bool(data["reasons"]) is CASES[case]
    assert "NaN" not in result.stdout
    golden(f"diff/{case}.json", result.stdout)


def diff_of(case: str, materiality: Materiality | None = None) -> ConfigDiff:
    old, new = (load_routing(ROOT / DATA / case / f"{side}.yaml") for side in ("old", "new"))
    return compare(old, new, materiality or Materiality())


def test_moved_threshold_says_what_it_means() -> None:
    diff = diff_of("threshold_moved")
    (medium,) = diff.thresholds
    assert (medium.old, medium.new, medium.change, medium.status) == (
        0.8168,
        0.7642,
        -0.0526,
        "moved",
    )
    assert (medium.old_p_correct, medium.new_p_correct) == (0.9167, 0.8934)
    assert medium.material
    cost = next(m for m in diff.metrics if m.name == "cost_per_1k_requests_usd")
    assert cost.relative_change == pytest.approx(0.903512 / 1.077428 - 1, abs=1e-6)
    assert cost.material
    quality = next(m for m in diff.metrics if m.name == "quality")
    assert quality.change == -0.0038 and not quality.material
    text = render_markdown(diff)
    assert "0.8168 → 0.7642" in text
    assert "lower: fewer requests escalate from medium" in text
    assert "0.9167 → 0.8934" in text
    assert "42.2% → 28.7% (-13.5 pp)" in text


def test_strategy_change_to_rules_is_material_with_clear_wording() -> None:
    diff = diff_of("cascade_to_rules")
    found = reasons(diff)
    assert found[:3] == [
        "strategy changed: cascade → rules",
        "no longer certified (selection certified → empirical)",
        "the quality-drop interval now reaches 0.0261, above the limit 0.02 "
        "(it was 0.0181, within 0.02)",
    ]
    (small,) = diff.thresholds
    assert small.status == "only old"
    assert small.note == "the new config uses the rules strategy, which has no thresholds"
    assert [(r.tier, r.status, r.new_max_input_tokens) for r in diff.rules] == [
        ("small", "only new", 412),
        ("large", "only new", None),
    ]


def test_older_file_without_intervals_or_p_correct() -> None:
    diff = diff_of("older_file")
    assert [(t.name, t.status) for t in diff.tiers] == [
        ("small", "unchanged"),
        ("medium", "added"),
        ("large", "model changed"),
    ]
    assert diff.quality_limit.old_breached is None
    assert not diff.quality_limit.newly_breached  # the new interval is within the limit
    small, medium = diff.thresholds
    assert small.old_p_correct is None and small.new_p_correct == 0.8655
    assert (small.old_escalates_to, small.new_escalates_to) == ("large", "medium")
    assert medium.note == "medium is not a tier of the old config"
    text = render_markdown(diff)
    assert "not recorded → 0.8655" in text
    assert "no interval in the file" in text


def test_identical_files_have_no_material_change() -> None:
    diff = diff_of("identical")
    assert not diff.material and reasons(diff) == []
    assert all(t.status == "unchanged" for t in diff.tiers + diff.thresholds)  # type: ignore[operator]
    assert all(m.change == 0 for m in diff.metrics)
    assert "## Routing config: no material change" in render_markdown(diff)


def test_tighter_bounds_make_a_small_drift_material() -> None:
    assert not diff_of("small_drift").material
    tight = diff_of("small_drift", Materiality(min_threshold_change=0.001))
    assert tight.material
    assert reasons(tight) == [
        "medium: escalate_below 0.8168 → 0.8201 (+0.0033), "
        "P(correct) at the threshold 0.9167 → 0.9183"
    ]


# --- the rules one by one, on edited copies of the sample routing.yaml ------------------------


@pytest.fixture(scope="module")
def base() -> RoutingConfig:
    return load_routing(SAMPLE)


def with_threshold(config: RoutingConfig, tau: float) -> RoutingConfig:
    first, last = config.tiers
    return config.model_copy(
        update={"tiers": (first.model_copy(update={"escalate_below": tau}), last)}
    )


def with_expected(config: RoutingConfig, **values: float) -> RoutingConfig:
    return config.model_copy(update={"expected": {**config.expected, **values}})


def test_bounds_are_inclusive(base: RoutingConfig) -> None:
    old = with_threshold(base, 0.81)
    assert 0.82 - 0.81 < 0.01  # in floats, so this checks the tolerance too
    assert compare(old, with_threshold(base, 0.82), Materiality()).material
    assert not compare(old, with_threshold(base, 0.8199), Materiality()).material
    cost = base.expected["cost_per_1k_requests_usd"]
    assert compare(
        base, with_expected(base, cost_per_1k_requests_usd=cost * 1.05), Materiality()
    ).material
    assert not compare(
        base, with_expected(base, cost_per_1k_requests_usd=cost * 1.049), Materiality()
    ).material


def test_a_cost_rising_from_zero_is_material(base: RoutingConfig) -> None:
    free = with_expected(base, cost_per_1k_requests_usd=0.0)
    diff = compare(free, base, Materiality())
    cost = next(m for m in diff.metrics if m.name == "cost_per_1k_requests_usd")
    assert cost.relative_change is None and cost.material


def test_savings_alone_are_never_material(base: RoutingConfig) -> None:
    diff = compare(base, with_expected(base, savings_vs_premium=0.9), Materiality())
    assert not diff.material


def test_missing_and_nan_metrics_are_reported_not_compared(base: RoutingConfig) -> None:
    old = with_expected(base, latency_p95_ms=math.nan)
    new = with_expected(base, latency_p95_ms=math.nan, tokens_per_request=812.0)
    diff = compare(old, new, Materiality())
    by_name = {m.name: m for m in diff.metrics}
    assert by_name["latency_p95_ms"].status == "not measured"
    assert by_name["tokens_per_request"].status == "only new"
    assert not diff.material
    assert "NaN" not in render_json(diff)
    json.loads(render_json(diff))


def test_fallback_to_single_tier_explains_the_missing_threshold(base: RoutingConfig) -> None:
    fallback = base.model_copy(
        update={"strategy": "single", "tiers": (RoutedTier(name="large", model="gpt-4.1"),)}
    )
    diff = compare(base, fallback, Materiality())
    assert "strategy changed: cascade → single" in reasons(diff)
    assert "tier medium removed (was model gpt-4.1-mini)" in reasons(diff)
    (medium,) = diff.thresholds
    assert medium.note == "medium is not a tier of the new config"


def test_reordered_tiers_are_material(base: RoutingConfig) -> None:
    swapped = base.model_copy(update={"tiers": tuple(reversed(base.tiers))})
    diff = compare(base, swapped, Materiality())
    assert {t.status for t in diff.tiers} == {"moved"}
    assert diff.material


def test_objective_change_is_material(base: RoutingConfig) -> None:
    looser = base.model_copy(
        update={"objective": base.objective.model_copy(update={"max_quality_drop": 0.03})}
    )
    diff = compare(base, looser, Materiality())
    assert diff.material
    assert reasons(diff) == [
        "objective changed: quality drop ≤ 0.02 at confidence 0.95 → "
        "quality drop ≤ 0.03 at confidence 0.95"
    ]


def test_becoming_certified_is_not_material_but_losing_it_is(base: RoutingConfig) -> None:
    uncertified = base.model_copy(update={"certified": False, "selection": "empirical"})
    assert not compare(uncertified, base, Materiality()).material
    assert compare(base, uncertified, Materiality()).material


def test_an_interval_already_above_the_limit_is_not_a_new_breach(base: RoutingConfig) -> None:
    above = base.model_copy(
        update={"intervals": {**base.intervals, "quality_drop": (0.001, 0.025)}}
    )
    assert compare(base, above, Materiality()).quality_limit.newly_breached
    assert not compare(above, above, Materiality()).quality_limit.newly_breached


def rules_config(base: RoutingConfig, rules: tuple[Rule, ...]) -> RoutingConfig:
    return base.model_copy(
        update={
            "strategy": "rules",
            "tiers": tuple(t.model_copy(update={"escalate_below": None}) for t in base.tiers),
            "rules": rules,
        }
    )


def test_rule_cutoff_moves_against_the_relative_bound(base: RoutingConfig) -> None:
    def rules(cutoff: int, default: str = "large") -> RoutingConfig:
        return rules_config(
            base, (Rule(tier="medium", max_input_tokens=cutoff), Rule(tier=default))
        )

    far = compare(rules(400), rules(300), Materiality())
    assert [(r.tier, r.status, r.relative_change, r.material) for r in far.rules] == [
        ("medium", "moved", -0.25, True),
        ("large", "unchanged", None, False),
    ]
    assert reasons(far) == ["rule for medium: input_tokens ≤ 400 → input_tokens ≤ 300 (-25.0%)"]
    assert not compare(rules(400), rules(380), Materiality()).material
    assert "| medium | input_tokens ≤ 400 | input_tokens ≤ 380 | -5.0% | no (< 10%) |" in (
        render_markdown(compare(rules(400), rules(380), Materiality()))
    )


def test_swapping_which_rule_is_the_default_is_material(base: RoutingConfig) -> None:
    old = rules_config(base, (Rule(tier="medium", max_input_tokens=400), Rule(tier="large")))
    new = rules_config(base, (Rule(tier="large", max_input_tokens=50), Rule(tier="medium")))
    diff = compare(old, new, Materiality())
    assert [(r.tier, r.status, r.material) for r in diff.rules] == [
        ("large", "changed", True),
        ("medium", "changed", True),
    ]
    assert reasons(diff) == [
        "rule for large: everything else → input_tokens ≤ 50",
        "rule for medium: input_tokens ≤ 400 → everything else",
    ]


def test_output_is_deterministic(base: RoutingConfig) -> None:
    first = compare(base, with_threshold(base, 0.7), Materiality())
    second = compare(base, with_threshold(base, 0.7), Materiality())
    assert render_markdown(first) == render_markdown(second)
    assert render_json(first) == render_json(second)


def test_material_exactly_when_there_are_reasons(base: RoutingConfig) -> None:
    variants = [
        base,
        with_threshold(base, 0.7),
        with_expected(base, savings_vs_premium=0.9),
        base.model_copy(update={"premium_tier": "medium"}),
        base.model_copy(update={"certified": False}),
        base.model_copy(update={"intervals": {}}),
        base.model_copy(update={"tiers": tuple(reversed(base.tiers))}),
        rules_config(base, (Rule(tier="medium", max_input_tokens=400), Rule(tier="large"))),
    ]
    for old in variants:
        for new in variants:
            diff = compare(old, new, Materiality())
            assert diff.material == bool(reasons(diff)), (old, new)


def test_keyword_rule_changes_are_material_and_named(base: RoutingConfig) -> None:
    """First match wins: adding, removing, retargeting or reordering a keyword rule changes who
    is served by which tier, so each is material whatever the metrics say."""
    old = base.model_copy(
        update={
            "strategy": "rules",
            "tiers": tuple(t.model_copy(update={"escalate_below": None}) for t in base.tiers),
            "rules": (
                Rule(pattern="clause", tier="large"),
                Rule(pattern="refund", tier="medium"),
                Rule(pattern="invoice", tier="large"),
                Rule(tier="medium", max_input_tokens=100),
                Rule(tier="large"),
            ),
        }
    )
    assert not compare(old, old, Materiality()).material
    new = old.model_copy(
        update={
            "rules": (
                Rule(pattern="refund", tier="large"),  # retargeted
                Rule(pattern="invoice", tier="large"),
                Rule(pattern="clause", tier="large"),  # reordered: now after invoice
                Rule(pattern="order", tier="medium"),  # added
                Rule(tier="medium", max_input_tokens=100),
                Rule(tier="large"),
            )
        }
    )
    diff = compare(old, new, Materiality())
    status = {k.pattern: k.status for k in diff.keyword_rules}
    assert status == {
        "refund": "retargeted",
        "invoice": "reordered",
        "clause": "reordered",
        "order": "only new",
    }
    assert diff.material and [r.status for r in diff.rules] == ["unchanged", "unchanged"]
    assert "keyword rule `refund` now routes to large (was medium)" in reasons(diff)
    assert "keyword rule added: `order` → medium (rule 4)" in reasons(diff)
    assert "keyword rule `clause` moved from rule 1 to rule 3 (first match wins)" in reasons(diff)
    dropped = old.model_copy(update={"rules": old.rules[1:]})
    assert reasons(compare(old, dropped, Materiality())) == [
        "keyword rule removed: `clause` → large (was rule 1)"
    ]

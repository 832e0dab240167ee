"""routing.yaml: deterministic text, validated load, and the rules a config must follow."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from calibrate.config.routing import (
    ObjectiveSpec,
    Rule,
    dump_routing,
    load_routing,
    policy_of,
    routing_from,
)
from calibrate.errors import ConfigError
from calibrate.records.outcomes import DataWindow
from calibrate.records.policy import METRICS, FrontierRow, Policy, PolicyMetrics

GOLDEN_ROUTING = Path(__file__).parent / "golden" / "sample" / "routing.yaml"
CASCADE = Path(__file__).parent / "data" / "routing_cascade.yaml"  # medium > large


def test_dump_of_a_loaded_file_is_identical(tmp_path: Path) -> None:
    text = GOLDEN_ROUTING.read_text(encoding="utf-8")
    config = load_routing(GOLDEN_ROUTING)
    assert dump_routing(config) == text


def test_unknown_key_is_rejected_with_its_path(tmp_path: Path) -> None:
    text = re.sub(
        r"^(certified: .*)$", r"\1\nfoo: 1", GOLDEN_ROUTING.read_text(encoding="utf-8"), flags=re.M
    )
    path = tmp_path / "routing.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_routing(path)
    assert f"{path}: foo: unknown key" in exc.value.message


def test_a_cascade_needs_a_threshold_on_every_tier_but_the_last(tmp_path: Path) -> None:
    text = CASCADE.read_text(encoding="utf-8")
    broken = re.sub(r"(name: medium, model: [^,}]+), escalate_below: [0-9.]+", r"\1", text)
    assert broken != text
    path = tmp_path / "routing.yaml"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_routing(path)
    assert "escalate_below on every tier but the last" in exc.value.message


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text("version: 1\nstrategy: [cascade\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_routing(path)
    assert "line" in exc.value.message and str(path) in exc.value.message


def _router_text() -> str:
    text = CASCADE.read_text(encoding="utf-8")
    text = text.replace("strategy: cascade", "strategy: router")
    text = re.sub(r"(name: medium, model: [^,}]+), escalate_below: [0-9.]+[^}]*", r"\1", text)
    return re.sub(
        r"^(premium_tier: .*)$",
        r"classifier: {file: router.json, min_score: 0.5, cost_per_1k_requests_usd: 0.01}\n\1",
        text,
        flags=re.M,
    )


def test_a_router_config_round_trips_and_needs_its_classifier(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(_router_text(), encoding="utf-8")
    config = load_routing(path)
    assert config.classifier is not None and config.classifier.min_score == 0.5
    assert dump_routing(config) == _router_text()
    path.write_text(re.sub(r"^classifier: .*\n", "", _router_text(), flags=re.M), encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_routing(path)
    assert "a router names 2 tiers and a classifier" in exc.value.message


def test_objective_options_are_written_and_read_back(tmp_path: Path) -> None:
    text = GOLDEN_ROUTING.read_text(encoding="utf-8")
    extended = text.replace(
        "objective: {max_quality_drop: 0.02, confidence_level: 0.95}",
        "objective: {max_quality_drop: 0.02, confidence_level: 0.95, per_segment: intent, "
        "escalation_band: [0.15, 0.25], max_cost_per_1k_usd: 1.2}",
    )
    assert extended != text
    path = tmp_path / "routing.yaml"
    path.write_text(extended, encoding="utf-8")
    config = load_routing(path)
    assert config.objective.escalation_band == (0.15, 0.25)
    assert config.objective.per_segment == "intent"
    assert dump_routing(config) == extended


def test_a_changed_objective_option_is_a_material_diff(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from calibrate.cli.app import app

    text = GOLDEN_ROUTING.read_text(encoding="utf-8")
    new = tmp_path / "new.yaml"
    new.write_text(
        text.replace("confidence_level: 0.95}", "confidence_level: 0.95, per_segment: intent}"),
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["diff", str(GOLDEN_ROUTING), str(new), "--check"])
    assert result.exit_code == 3, result.output
    assert "per_segment intent" in result.stdout


TIERS = {"small": "m-s", "medium": "m-m", "large": "m-l"}
KEYWORDS = (Rule(name="legal", pattern="(?i)clause", tier="medium"),)


@pytest.mark.parametrize(
    ("policy", "strategy"),
    [
        (Policy.always("medium"), "single"),
        (Policy("cascade", ("small", "large"), (0.62,)), "cascade"),
        (Policy("cascade", ("small", "medium", "large"), (0.62, 0.8)), "cascade"),
        (Policy("cascade", ("small", "medium", "large"), (math.inf, 0.8)), "cascade"),
        (Policy("hybrid", ("small", "large"), (0.7,)), "hybrid"),
        (Policy("length", ("small", "large"), cutoff_tokens=156), "rules"),
        (Policy("rules", ("small", "large"), cutoff_tokens=156), "rules"),
        (Policy("rules", ("small", "large")), "rules"),
        (Policy("router", ("small", "large"), (0.9531,)), "router"),
        (Policy("consensus", ("small", "medium", "large")), "consensus"),
    ],
    ids=lambda v: v.id if isinstance(v, Policy) else v,
)
def test_a_policy_round_trips_through_routing_yaml(
    tmp_path: Path, policy: Policy, strategy: str
) -> None:
    """routing.yaml is written from a policy value and read back into the same value (keyword
    rules stay the file's; a hybrid's rule-only tier is listed but not walked)."""
    metrics = PolicyMetrics(0.9, 0.01, 0.2, 1.0, 0.3, 500.0, 900.0)
    config = routing_from(
        FrontierRow(policy, 100, 10, metrics),
        TIERS,
        "large",
        ObjectiveSpec(max_quality_drop=0.02, confidence_level=0.95),
        "empirical",
        False,
        DataWindow(100, 10, 0, None, None, "x"),
        keyword_rules=KEYWORDS,
    )
    path = tmp_path / "routing.yaml"
    path.write_text(dump_routing(config), encoding="utf-8")
    loaded = load_routing(path)
    assert loaded.strategy == strategy
    assert policy_of(loaded) == policy
    assert loaded.expected == {m: getattr(metrics, m) for m in METRICS}


# --- a hand-written routing.yaml: only strategy and tiers ----------------------------------------

MINIMAL = {
    "always:medium": "strategy: single\ntiers:\n  - {name: medium, model: m-m}\n",
    "cascade:small>large@0.62": (
        "strategy: cascade\ntiers:\n  - {name: small, model: m-s, escalate_below: 0.62}\n"
        "  - {name: large, model: m-l}\n"
    ),
    "cascade:small>medium>large@0.62,0.8": (
        "strategy: cascade\ntiers:\n  - {name: small, model: m-s, escalate_below: 0.62}\n"
        "  - {name: medium, model: m-m, escalate_below: 0.8}\n  - {name: large, model: m-l}\n"
    ),
    "length:small>large@<=156": (
        "strategy: rules\ntiers:\n  - {name: small, model: m-s}\n  - {name: large, model: m-l}\n"
        "rules:\n  - {tier: small, max_input_tokens: 156}\n  - {tier: large}\n"
    ),
    "rules:small>large@none": (
        "strategy: rules\ntiers:\n  - {name: small, model: m-s}\n  - {name: large, model: m-l}\n"
        "rules:\n  - {pattern: order status, tier: small}\n  - {tier: large}\n"
    ),
    "hybrid:small>large@0.7": (
        "strategy: hybrid\ntiers:\n  - {name: small, model: m-s, escalate_below: 0.7}\n"
        "  - {name: large, model: m-l}\nrules:\n  - {pattern: clause, tier: large}\n"
    ),
    "router:small>large@0.5": (
        "strategy: router\ntiers:\n  - {name: small, model: m-s}\n  - {name: large, model: m-l}\n"
        "classifier: {file: router.json, min_score: 0.5}\n"
    ),
    "consensus:small+medium+large": (
        "strategy: consensus\ntiers:\n  - {name: small, model: m-s}\n"
        "  - {name: medium, model: m-m}\n  - {name: large, model: m-l}\n"
    ),
}


@pytest.mark.parametrize("policy", list(MINIMAL))
def test_every_strategy_loads_from_strategy_and_tiers_alone(tmp_path: Path, policy: str) -> None:
    """The bookkeeping a sweep records is optional; the premium tier is the last tier; writing
    the loaded file back adds only that premium tier and `certified: false`."""
    path = tmp_path / "routing.yaml"
    path.write_text(MINIMAL[policy], encoding="utf-8")
    config = load_routing(path)
    assert policy_of(config).id == policy
    assert config.premium_tier == config.tiers[-1].name
    assert (config.objective, config.selection, config.calibrated_on) == (None, None, None)
    assert (config.expected, config.intervals, config.certified) == ({}, {}, False)
    assert config.generated_by is None
    path.write_text(dump_routing(config), encoding="utf-8")
    assert load_routing(path) == config


def test_a_hand_written_file_keeps_its_premium_tier(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(MINIMAL["always:medium"] + "premium_tier: large\n", encoding="utf-8")
    assert load_routing(path).premium_tier == "large"


def test_diff_of_a_hand_written_file_says_what_it_lacks(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from calibrate.cli.app import app

    path = tmp_path / "current.yaml"
    path.write_text(MINIMAL["cascade:small>large@0.62"], encoding="utf-8")
    result = CliRunner().invoke(app, ["diff", str(path), str(GOLDEN_ROUTING)])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(
        f"Error: {path} has no objective, selection, calibrated_on: a hand-written routing.yaml"
    )
    assert f"Hint: Measure it with `calibrate evaluate {path} LOGS`" in result.stderr


def test_a_sweep_records_the_program_and_version_that_wrote_the_file(tmp_path: Path) -> None:
    import calibrate
    from calibrate.config.routing import GENERATED_BY

    metrics = PolicyMetrics(0.9, 0.01, 0.2, 1.0, 0.3, 500.0, 900.0)
    config = routing_from(
        FrontierRow(Policy("cascade", ("small", "large"), (0.62,)), 100, 10, metrics),
        TIERS,
        "large",
        ObjectiveSpec(max_quality_drop=0.02, confidence_level=0.95),
        "certified",
        True,
        DataWindow(100, 10, 0, None, None, "x"),
        confidence={"small": ("logprob_mean", "probability")},
        generated_by=GENERATED_BY,
    )
    text = dump_routing(config)
    assert text.splitlines()[1] == f"generated_by: calibrate {calibrate.__version__}"
    assert "confidence: {method: logprob_mean, scale: probability}" in text
    path = tmp_path / "routing.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_routing(path).generated_by == GENERATED_BY

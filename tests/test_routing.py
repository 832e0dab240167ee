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

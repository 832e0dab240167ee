"""Keyword rules as policies: certification counts what the rules themselves get wrong, and
routing.yaml holds `rules` and `hybrid` configs (validated at the file edge)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from outcomes_support import random_outcomes

from calibrate.config.routing import load_routing, policy_of, round_metric
from calibrate.errors import ConfigError
from calibrate.policies.families import Family, threshold_grid
from calibrate.records.labels import ACCEPTABLE
from calibrate.records.policy import Policy
from calibrate.sweep.certify import Budget, certify_family

pytestmark = pytest.mark.e2e  # whole sweeps with keyword rules: not in `make test-fast`

CASCADE = Path(__file__).parent / "data" / "routing_cascade.yaml"


def _two_tiers(seed: int):
    """2 tiers, every row labeled, the cheap tier's confidence higher when it is right."""
    rng = np.random.default_rng(seed)
    o = random_outcomes(seed, n=3000, k=2)
    label = rng.choice([0.0, 1.0], p=[0.2, 0.8], size=(o.n, 2))
    label[:, 1] = 1.0
    right = label[:, 0] >= ACCEPTABLE
    conf = np.where(right, rng.uniform(0.3, 1, o.n), rng.uniform(0, 0.7, o.n))
    o = dataclasses.replace(o, label=label, confidence=np.c_[conf, np.full(o.n, np.nan)])
    grid = threshold_grid(conf, 20)
    return o, grid


def test_a_rule_sending_hard_requests_to_the_cheap_tier_cannot_be_certified() -> None:
    """The cascade alone is certifiable; keyword rules that keep 5% of requests on the cheap tier
    where it is wrong add 5% regret under every option, above ε = 2%."""
    o, grid = _two_tiers(1)
    budget = Budget(0.02, 0.05)
    cascade = certify_family(o, Family("cascade", (0, 1), (grid,)), budget)
    assert cascade.options
    wrong = np.flatnonzero(o.label[:, 0] < ACCEPTABLE)[: int(0.05 * o.n)]
    forced = np.full(o.n, -1)
    forced[wrong] = 0
    hybrid = certify_family(o, Family("hybrid", (0, 1), (grid,), forced=forced), budget)
    assert hybrid.options == ()
    few = forced.copy()
    few[wrong[30:]] = -1  # 1% of requests: certifiable, with those 30 counted at every option
    hybrid = certify_family(o, Family("hybrid", (0, 1), (grid,), forced=few), budget)
    assert hybrid.options and set(hybrid.options) < set(cascade.options)
    assert hybrid.stages[0].regret_count >= 30


def test_rules_sending_requests_to_premium_only_widen_the_certified_set() -> None:
    """Ruled requests on the premium tier have no regret and leave the cascade fewer to keep."""
    o, grid = _two_tiers(2)
    budget = Budget(0.02, 0.05)
    cascade = certify_family(o, Family("cascade", (0, 1), (grid,)), budget)
    forced = np.where(np.random.default_rng(3).uniform(size=o.n) < 0.3, 1, -1)
    hybrid = certify_family(o, Family("hybrid", (0, 1), (grid,), forced=forced), budget)
    assert set(cascade.options) <= set(hybrid.options)
    assert len(hybrid.options) > len(cascade.options)


HYBRID = """version: 1
strategy: hybrid
tiers:
  - {name: small, model: m-s, escalate_below: 0.7}
  - {name: medium, model: m-m}
  - {name: large, model: m-l}
rules:
  - {name: legal, pattern: '(?i)\\bclause\\b', tier: medium}
premium_tier: large
objective: {max_quality_drop: 0.02, confidence_level: 0.95}
certified: true
selection: certified
expected: {quality: 0.9}
calibrated_on:
  requests: 10
  labeled: 5
  window: {start: null, end: null}
  logs_sha256: x
"""


def test_a_hybrid_config_loads_and_its_cascade_skips_the_rule_only_tier(tmp_path: Path) -> None:
    from calibrate.sweep.evaluate import family_for

    path = tmp_path / "routing.yaml"
    path.write_text(HYBRID, encoding="utf-8")
    config = load_routing(path)
    forced = np.array([-1, 1, -1])
    policy = policy_of(config)
    assert policy == Policy("hybrid", ("small", "large"), (0.7,))  # medium: rules only
    family = family_for(policy, ("small", "medium", "large"), forced)
    assert (family.kind, family.path) == ("hybrid", (0, 2))
    assert family.forced is forced


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("strategy: hybrid", "strategy: cascade"), "escalate_below on every tier but the last"),
        (("tier: medium}", "tier: tiny}"), "every rule must name a tier listed in `tiers`"),
        (("'(?i)\\bclause\\b'", "'(?i)[clause'"), "pattern is not a regular expression"),
        (
            ("tier: medium}", "tier: medium}\n  - {tier: large}"),
            "a hybrid has keyword rules (pattern) only",
        ),
        (
            (
                "pattern: '(?i)\\bclause\\b', tier: medium}",
                "pattern: x, tier: medium, max_input_tokens: 5}",
            ),
            "a pattern or max_input_tokens, not both",
        ),
        (("strategy: hybrid", "strategy: rules"), "rules end with at most one input-length rule"),
    ],
)
def test_bad_keyword_configs_name_the_problem(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    text = HYBRID.replace(*edit)
    assert text != HYBRID
    path = tmp_path / "routing.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_routing(path)
    assert message in err.value.message and str(path) in err.value.message


def test_keyword_rules_come_before_the_length_and_default_rules(tmp_path: Path) -> None:
    text = CASCADE.read_text(encoding="utf-8").replace("strategy: cascade", "strategy: rules")
    text = text.replace(", escalate_below: 0.8168, p_correct: 0.92", "")
    ordered = text.replace(
        "premium_tier:",
        "rules:\n  - {pattern: refund, tier: large}\n  - {tier: medium, max_input_tokens: 90}\n"
        "  - {tier: large}\npremium_tier:",
    )
    assert ordered != text
    (tmp_path / "ok.yaml").write_text(ordered, encoding="utf-8")
    assert [r.pattern for r in load_routing(tmp_path / "ok.yaml").rules] == ["refund", None, None]
    swapped = ordered.replace(
        "  - {pattern: refund, tier: large}\n  - {tier: medium, max_input_tokens: 90}\n",
        "  - {tier: medium, max_input_tokens: 90}\n  - {pattern: refund, tier: large}\n",
    )
    (tmp_path / "bad.yaml").write_text(swapped, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_routing(tmp_path / "bad.yaml")
    assert "keyword rules (pattern) come before the other rules" in err.value.message


def test_a_chosen_policy_is_written_and_evaluate_reproduces_it(
    sample_logs: Path, tmp_path: Path
) -> None:
    """`sweep --policy ID` writes that frontier row's routing.yaml (a 3-tier hybrid here, its
    keyword rules included); `evaluate` on the same logs gives its expected metrics exactly."""
    import json

    from typer.testing import CliRunner

    from calibrate.cli.app import app

    runner = CliRunner()
    policy = "hybrid:small>medium>large@0.5632,0.411"
    tiers = ["--tiers", str(sample_logs / "tiers.yaml")]
    args = ["sweep", str(sample_logs), *tiers, "--out", str(tmp_path), "--no-router"]
    args += ["--rules", str(sample_logs / "rules.yaml"), "--policy", policy]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    config = load_routing(tmp_path / "routing.yaml")
    assert (config.strategy, config.selection) == ("hybrid", "chosen")
    assert [t.name for t in config.tiers if t.escalate_below is not None] == ["small", "medium"]
    assert len(config.rules) == 6 and all(r.pattern for r in config.rules)
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "**Chosen with --policy: the keyword rules first, then a cascade" in report
    args = ["evaluate", str(tmp_path / "routing.yaml"), str(sample_logs), *tiers, "--json"]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["policy"] == policy
    assert {m: round_metric(m, got[m]) for m in config.expected} == dict(config.expected)

    args = ["sweep", str(sample_logs), *tiers, "--out", str(tmp_path / "x"), "--no-router"]
    result = runner.invoke(app, [*args, "--policy", "cascade:nope"])
    assert result.exit_code == 1 and "--policy cascade:nope: no such policy" in result.output

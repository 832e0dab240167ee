"""Keyword rules (rules.yaml): validation at the file edge and what each rule catches."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.config.tiers import load_tiers, price_table
from calibrate.errors import ConfigError
from calibrate.ingest.stage import ingest
from calibrate.policies.keyword_rules import RuleHits, first_match, load_rules, rule_hits
from calibrate.store import Store

pytestmark = pytest.mark.e2e  # whole sweeps with keyword rules: not in `make test-fast`

TIERS = ("small", "medium", "large")
RULES = """rules:
  - {pattern: "(?i)\\\\binvoice\\\\b", tier: large, name: invoices}
  - {pattern: "(?i)refund", tier: medium}
  - {pattern: "(?i)order", tier: small}
"""


def test_hits_are_first_match_and_quality_is_per_tier(sample_logs: Path, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    rules = load_rules(path, TIERS)
    store = Store.open(":memory:")
    ingest(store, [sample_logs], strict=False, clock=lambda: datetime(2026, 11, 1, tzinfo=UTC))
    tiers = load_tiers(sample_logs / "tiers.yaml")
    outcomes = store.outcomes(tiers.names, price_table(tiers))
    texts = store.prompt_texts(outcomes.request_ids.tolist())
    hits = rule_hits(rules, first_match([r.pattern for r in rules.rules], texts), outcomes)
    invoice = np.array([re.search(r"(?i)\binvoice\b", t) is not None for t in texts])
    refund = ~invoice & np.array([re.search("(?i)refund", t) is not None for t in texts])
    assert [h.name for h in hits] == ["invoices", "rule 2", "rule 3"]
    assert hits[0].hits == int(invoice.sum()) > 0 and hits[1].hits == int(refund.sum()) > 0
    rows = refund & outcomes.labeled
    assert hits[1].labeled == int(rows.sum())
    assert dict(hits[1].quality_by_tier)["small"] == pytest.approx(outcomes.label[rows, 0].mean())


def test_a_rule_whose_hits_are_fine_on_the_cheapest_tier_is_marked() -> None:
    fine = RuleHits("x", "x", "large", 10, 10, (("small", 0.95), ("large", 0.96)))
    needed = RuleHits("y", "y", "large", 10, 10, (("small", 0.80), ("large", 0.96)))
    cheap = RuleHits("z", "z", "small", 10, 10, (("small", 0.95), ("large", 0.96)))
    assert fine.fine_on_cheapest and not needed.fine_on_cheapest and not cheap.fine_on_cheapest


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules:\n  - {pattern: a, tier: large, when: x}\n", "when"),
        ("rules:\n  - {pattern: a, tier: huge}\n", "unknown tier 'huge'"),
        ("rules:\n  - {pattern: '(', tier: large}\n", "not a regular expression"),
    ],
)
def test_bad_rules_files_are_user_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_rules(path, TIERS)
    assert message in str(err.value) + str(getattr(err.value, "message", ""))


def test_sweep_reports_the_rules(sample_logs: Path, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    args = ["sweep", str(sample_logs), "--tiers", str(sample_logs / "tiers.yaml")]
    args += ["--out", str(tmp_path / "out"), "--rules", str(tmp_path / "rules.yaml"), "--no-router"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "## Keyword rules" in report and "| invoices | `(?i)\\binvoice\\b` | large |" in report
    import json

    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert [r["name"] for r in summary["keyword_rules"]] == ["invoices", "rule 2", "rule 3"]
    assert summary["keyword_rules"][0]["quality_by_tier"]["large"] is not None

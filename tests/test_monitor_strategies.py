"""`monitor` follows configs that decide before any call: a hybrid's ruled requests are served by
their rule's tier (paying it alone), the rest walk the cascade, which skips rule-only tiers; a
learned router's requests go where its exported model sends them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.config.routing import load_routing
from calibrate.ingest.stage import ingest
from calibrate.monitor.routing import calibrations, route
from calibrate.policies.keyword_rules import forced_tiers
from calibrate.store import Store

pytestmark = pytest.mark.e2e  # monitors every strategy's sweep: not in `make test-fast`

runner = CliRunner()
RULES = """rules:
  - {pattern: "(?i)\\\\b(clause|contract)\\\\b", tier: large}
  - {pattern: "(?i)refund", tier: medium}
  - {pattern: "(?i)\\\\border\\\\b", tier: small}
"""
POLICY = "hybrid:small>large@0.7478"


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory: pytest.TempPathFactory, sample_logs: Path) -> tuple[Path, Path]:
    """The sample logs in a store file, and the sweep's routing.yaml for POLICY."""
    root = tmp_path_factory.mktemp("hybrid")
    (root / "rules.yaml").write_text(RULES, encoding="utf-8")
    db = root / "s.duckdb"
    with Store.open(db) as store:
        ingest(store, [sample_logs], strict=False, clock=lambda: datetime(2026, 11, 1, tzinfo=UTC))
    args = ["sweep", "--db", str(db), "--tiers", str(sample_logs / "tiers.yaml")]
    args += ["--out", str(root / "out"), "--no-router", "--rules", str(root / "rules.yaml")]
    result = runner.invoke(app, [*args, "--policy", POLICY], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return db, root / "out" / "routing.yaml"


def test_routing_a_hybrid_request_by_request_matches_the_sweep(hybrid) -> None:
    db, routing = hybrid
    config = load_routing(routing)
    assert [t.name for t in config.tiers] == ["small", "medium", "large"]  # medium: rules only
    with Store.open(db) as store:
        log = store.request_log([t.name for t in config.tiers])
        keywords = [(r.pattern, r.tier) for r in config.rules]
        forced = forced_tiers(keywords, store.prompt_texts(log.request_ids.tolist()), log.tiers)
    assert (forced == 1).any()
    routed = route(log, config, calibrations(log, np.ones(log.n, dtype=bool)), forced)
    assert (routed.stage[forced >= 0] == forced[forced >= 0]).all()
    assert not (routed.stage[forced < 0] == 1).any()  # the cascade never stops at medium
    assert round(float(routed.escalated.mean()), 4) == config.expected["escalation_rate"]
    ruled, escalated = forced >= 0, (forced < 0) & routed.escalated
    c = log.cost_usd  # NaN where the logged attempt failed: the monitor leaves those out
    assert np.array_equal(routed.cost_usd[ruled], c[ruled, forced[ruled]], equal_nan=True)
    assert np.array_equal(  # escalated past small straight to large: medium is not paid
        routed.cost_usd[escalated], c[escalated, 0] + c[escalated, 2], equal_nan=True
    )


def test_monitor_runs_on_a_hybrid_config(hybrid, tmp_path: Path) -> None:
    db, routing = hybrid
    args = ["monitor", "--db", str(db), "--baseline", str(routing), "--out", str(tmp_path)]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "monitor.md").read_text(encoding="utf-8")
    assert "3 keyword rules, then cascade small → large, escalate below 0.7478" in text


def test_monitor_follows_a_learned_router(hybrid, sample_logs: Path, tmp_path: Path) -> None:
    """The router's choice per request is recomputed from router.json (cross-fitted scores for
    the requests it was trained on), so on the calibration logs the escalation rate is the
    sweep's; the classifier's price is paid by every request."""
    from calibrate.monitor.stage import decided

    db, _ = hybrid
    out = tmp_path / "sweep"
    args = ["sweep", "--db", str(db), "--tiers", str(sample_logs / "tiers.yaml")]
    result = runner.invoke(app, [*args, "--out", str(out), "--classifier-cost-usd", "0.01"])
    assert result.exit_code == 0, result.output
    rows = [r for r in (out / "frontier.csv").read_text().splitlines() if r.startswith("router:")]
    policy = rows[len(rows) // 2].split(",")[0]
    args += ["--out", str(out), "--classifier-cost-usd", "0.01", "--policy", policy]
    assert runner.invoke(app, args).exit_code == 0
    config = load_routing(out / "routing.yaml")
    assert config.strategy == "router"
    with Store.open(db) as store:
        log = store.request_log([t.name for t in config.tiers])
        chosen = decided(store, config, log, out)
    routed = route(log, config, calibrations(log, np.ones(log.n, dtype=bool)), chosen)
    assert round(float(routed.escalated.mean()), 4) == config.expected["escalation_rate"]
    kept = routed.stage == 0
    assert np.allclose(routed.cost_usd[kept], log.cost_usd[kept, 0] + 1e-5, equal_nan=True)
    args = ["monitor", "--db", str(db), "--baseline", str(out / "routing.yaml")]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "m")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    tau = config.classifier.min_score
    text = (tmp_path / "m" / "monitor.md").read_text(encoding="utf-8")
    assert f"learned router: small when its score ≥ {tau:g}, else large" in text

"""What strategies cost beyond their calls: the router's hosting in break-even, and consensus
against the premium tier on the user's high-stakes intents."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.config.tiers import load_tiers, price_table
from calibrate.ingest.stage import ingest
from calibrate.policies.consensus import chosen_tier
from calibrate.policies.frontier import frontier_row, policy_columns
from calibrate.records.policy import Policy
from calibrate.store import Store
from calibrate.sweep.diagnostics import DAILY_VOLUMES, DAYS_PER_MONTH, economics

pytestmark = pytest.mark.e2e  # whole sweeps per strategy: not in `make test-fast`

runner = CliRunner()


PREMIUM = Policy.always("large")


def _frontier() -> pl.DataFrame:
    rows = [
        (PREMIUM, 2.0, 0.0),
        (Policy("cascade", ("small", "large"), (0.5,)), 1.0, 0.01),
        (Policy("router", ("small", "large"), (0.7,)), 0.8, 0.01),
    ]
    return pl.DataFrame(
        {
            **policy_columns([r[0] for r in rows]),
            "requests": [1000] * 3,
            "labeled": [100] * 3,
            "quality": [0.9] * 3,
            "quality_drop": [r[2] for r in rows],
            "escalation_rate": [0.2] * 3,
            "cost_per_1k_requests_usd": [r[1] for r in rows],
            "savings_vs_premium": [1 - r[1] / 2.0 for r in rows],
            "latency_p50_ms": [50.0] * 3,
            "latency_p95_ms": [100.0] * 3,
            "certified": [False] * 3,
        }
    )


def test_the_routers_hosting_enters_its_break_even_and_monthly_cost() -> None:
    frontier = _frontier()
    router = frontier_row(frontier.row(2, named=True))
    e = economics(frontier, router, PREMIUM, 100, 1.0, 50.0, 0.02, {"router": 300.0})
    assert e.fixed_monthly_usd == 100 * 1.0 + 50.0 + 300.0
    saving = (2.0 - 0.8) / 1000
    assert e.break_even_requests_per_month == pytest.approx(450.0 / saving)
    table = {policy.id: costs for policy, costs in e.monthly_cost_usd}
    volume = DAILY_VOLUMES[0]
    assert table[router.policy.id][0] == pytest.approx(0.8 / 1000 * volume * DAYS_PER_MONTH + 450)
    cascade = table["cascade:small>large@0.5"][0]
    assert cascade == pytest.approx(1.0 / 1000 * volume * DAYS_PER_MONTH + 150)  # no hosting

    cascade_row = frontier_row(frontier.row(1, named=True))
    e = economics(frontier, cascade_row, PREMIUM, 100, 1.0, 50.0, 0.02, {"router": 300.0})
    assert e.fixed_monthly_usd == 150.0  # the router's hosting is not the cascade's cost


@pytest.fixture(scope="module")
def high_stakes_report(tmp_path_factory: pytest.TempPathFactory, sample_logs: Path) -> str:
    out = tmp_path_factory.mktemp("stakes")
    args = ["sweep", str(sample_logs), "--tiers", str(sample_logs / "tiers.yaml")]
    args += ["--out", str(out), "--no-router", "--high-stakes", "incident_rca"]
    args += ["--high-stakes", "order_status"]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return (out / "report.md").read_text(encoding="utf-8")


def test_consensus_is_reported_per_high_stakes_intent(
    high_stakes_report: str, sample_logs: Path
) -> None:
    """The section's quality of premium and of the vote on one intent equal a direct count."""
    section = high_stakes_report.split("## Consensus on high-stakes intents", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows = [r.split(" | ") for r in section.splitlines() if r.startswith("| incident_rca")]
    by_policy = {r[1].strip("`"): r for r in rows}
    store = Store.open(":memory:")
    ingest(store, [sample_logs], strict=False, clock=lambda: datetime(2026, 11, 1, tzinfo=UTC))
    tiers = load_tiers(sample_logs / "tiers.yaml")
    o = store.outcomes(tiers.names, price_table(tiers))
    rows_of = np.flatnonzero((o.intent == "incident_rca") & o.labeled)
    chosen = chosen_tier(store.answer_codes(o.request_ids[rows_of].tolist(), o.tiers), (0, 1, 2))
    voted = o.label[rows_of, chosen].mean()
    premium = o.label[rows_of, 2].mean()
    assert by_policy["always:large"][4] == f"{premium:.4f}"
    assert by_policy["consensus:small+medium+large"][4] == f"{voted:.4f}"
    assert by_policy["consensus:small+medium+large"][5] == f"{voted - premium:+.4f}"
    assert "| all high-stakes | `always:large` |" in section


def test_an_unknown_high_stakes_intent_is_a_user_error(sample_logs: Path, tmp_path: Path) -> None:
    args = ["sweep", str(sample_logs), "--tiers", str(sample_logs / "tiers.yaml")]
    args += ["--out", str(tmp_path), "--no-router", "--high-stakes", "billing"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "unknown intent(s) billing" in result.output and "billing_dispute" in result.output

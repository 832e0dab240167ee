"""The sweep report's first screen and its consistency rules (issue 18 §1–§2): the decision rule,
production as logged, silent under-escalation at the top, "—" for baselines' certification, the
certified frontier, and one truth about a fallback in routing.yaml, summary.json and the report.

The demo's own first screen (the decision, p95 in the headline, contract_interpretation at the
top, the frontier section) is checked on the golden sweep in `test_sweep_outputs.py`."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from test_certify import outcomes_from

from calibrate.config.tiers import load_tiers
from calibrate.ingest import stage as ingest
from calibrate.policies.assignment import Assignment
from calibrate.records.outcomes import Outcomes
from calibrate.records.policy import FrontierRow, Policy, PolicyMetrics
from calibrate.report.first_screen import silent_under_escalation, warnings
from calibrate.report.strategies import certified_cell
from calibrate.report.sweep_report import render_markdown, sections, write_outputs
from calibrate.store import Store
from calibrate.sweep.check import BIASED_WARNING
from calibrate.sweep.failure_modes import SegmentRow
from calibrate.sweep.selection import Objective, Recommendation, mark_certified_pareto
from calibrate.sweep.stage import SweepResult, run_sweep
from calibrate.sweep.verdict import Production, decide, production_as_logged

CLOCK = datetime(2026, 11, 1, tzinfo=UTC)


# --- the decision rule --------------------------------------------------------------------------


def metrics(cost: float, quality: float, savings: float = 0.3) -> PolicyMetrics:
    return PolicyMetrics(quality, 0.95 - quality, 0.3, cost, savings, 900.0, 4000.0)


def rec(
    policy: Policy | None = None,
    *,
    method: str = "certified",
    certified: bool = True,
    fallback: bool = False,
    cost: float = 1.0,
    quality: float = 0.94,
    savings: float = 0.3,
) -> Recommendation:
    row = FrontierRow(
        policy or Policy("cascade", ("small", "large"), (0.8,)),
        1000,
        200,
        metrics(cost, quality, savings),
        certified=certified,
    )
    return Recommendation(row, method, certified, "why", fallback)  # type: ignore[arg-type]


def production(cost: float, quality: float, rec_cost: float, rec_quality: float, served=None):
    return Production(
        requests=1000,
        labeled=200,
        metrics=metrics(cost, quality),
        served_share=served or (("small", 0.8), ("large", 0.2)),
        recommended_cost_per_1k_usd=rec_cost,
        recommended_quality=rec_quality,
    )


PREMIUM = Policy.always("large")
CASES = {
    "certified and cheaper: deploy": (rec(), None, False, "deploy", "is certified"),
    "biased: do not deploy": (rec(), None, True, "do not deploy", "biased"),
    "production cheaper and as good: keep": (
        rec(),
        production(0.8, 0.95, 1.0, 0.94),
        False,
        "keep the current config",
        "would not improve on it",
    ),
    "production cheaper but worse: deploy, saying what it costs": (
        rec(),
        production(0.5, 0.90, 1.0, 0.94),
        False,
        "deploy",
        "more per 1k requests than production as logged, whose measured quality drop +0.0500 is "
        "above the limit",
    ),
    "fallback, production already premium: keep": (
        rec(PREMIUM, certified=False, fallback=True, savings=0.0),
        production(1.6, 0.95, 1.6, 0.95, (("large", 1.0),)),
        False,
        "keep the current config",
        "already serves every request from large",
    ),
    "fallback, production unknown: do not deploy": (
        rec(PREMIUM, certified=False, fallback=True, savings=0.0),
        None,
        False,
        "do not deploy",
        "fell back to always-large",
    ),
    "fallback cheaper than production at its quality: deploy": (
        rec(PREMIUM, certified=False, fallback=True, savings=0.0),
        production(1.9, 0.95, 1.6, 0.95),
        False,
        "deploy",
        "costs $0.3000 less per 1k requests than production as logged",
    ),
    "budget, nothing certified: do not deploy": (
        rec(method="budget", certified=False, fallback=True),
        None,
        False,
        "do not deploy",
        "under the budget",
    ),
    "saves nothing: do not deploy": (
        rec(savings=-0.1),
        None,
        False,
        "do not deploy",
        "saves nothing",
    ),
    "uncertified --policy above the limit: do not deploy": (
        rec(method="chosen", certified=False, quality=0.90),
        None,
        False,
        "do not deploy",
        "above the limit 0.02",
    ),
    "--no-certify within the limit: deploy, flagged": (
        rec(method="empirical", certified=False),
        None,
        False,
        "deploy",
        "it is not certified (--no-certify)",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_the_decision_rule(case: str) -> None:
    recommendation, prod, biased, action, words = CASES[case]
    objective = Objective(max_quality_drop=0.02, max_cost_per_1k_usd=2.0)
    verdict = decide(
        recommendation, objective, "large", 0.02, biased=biased, production=prod, labels=150
    )
    assert verdict.action == action, verdict
    assert words in verdict.why, verdict.why


# --- production as logged -----------------------------------------------------------------------


def outcomes(n: int) -> Outcomes:
    rng = np.random.default_rng(4)
    text = np.array(["x"] * n, dtype=object)
    return Outcomes(
        tiers=("small", "medium", "large"),
        request_ids=np.array([f"r{i:03d}" for i in range(n)], dtype=object),
        timestamp_s=np.zeros(n),
        region=text,
        app=text,
        intent=text,
        input_tokens=np.full(n, 100),
        confidence=rng.uniform(size=(n, 3)),
        cost_usd=np.tile([1e-4, 3e-4, 2e-3], (n, 1)),
        latency_ms=rng.uniform(100, 3000, size=(n, 3)).round(),
        label=np.where(rng.uniform(size=(n, 3)) < [0.7, 0.8, 0.9], 1.0, 0.0),
        incomplete=0,
    )


def test_production_is_measured_like_a_policy_on_the_requests_it_served() -> None:
    o = outcomes(200)
    called = np.zeros((200, 3), dtype=bool)
    called[:, 0] = True
    called[150:, 2] = True  # the last quarter escalated small → large
    served = np.where(np.arange(200) < 150, 0, 2)
    premium = np.full(200, 2)  # the recommendation compared with: always large
    chosen = Assignment(
        (2,),
        np.zeros(200),
        premium,
        premium < 0,
        o.cost_usd[:, 2],
        o.latency_ms[:, 2],
        o.label[:, 2],
    )
    found = production_as_logged(o, called, served, chosen)
    assert found is not None
    m = found.metrics
    label = np.where(served == 0, o.label[:, 0], o.label[:, 2])
    latency = np.sort(o.latency_ms[:, 0] + called[:, 2] * o.latency_ms[:, 2])
    assert m.quality == pytest.approx(label.mean())
    assert m.quality_drop == pytest.approx(o.label[:, 2].mean() - label.mean())
    assert m.cost_per_1k_requests_usd == pytest.approx((1e-4 + 0.25 * 2e-3) * 1000)
    assert m.savings_vs_premium == pytest.approx(1 - (1e-4 + 0.25 * 2e-3) / 2e-3)
    assert (m.escalation_rate, m.latency_p95_ms) == (0.25, latency[189])  # nearest rank 190
    assert found.served_share == (("small", 0.75), ("large", 0.25))
    assert found.recommended_cost_per_1k_usd == pytest.approx(2.0)
    # production unknown on more than a tenth of the requests: not compared
    served[:25] = -1
    assert production_as_logged(o, called, served, chosen) is None


def _line(rid: str, attempts: list[dict], labels: dict | None = None, **extra) -> str:
    row = {"request_id": rid, "timestamp": "2026-10-01T09:30:00Z", "prompt": "q"}
    return json.dumps(
        {**row, "attempts": attempts, **({"labels": labels} if labels else {}), **extra}
    )


def _attempt(tier: str, source: str = "prod", status: str = "ok") -> dict:
    return {"tier": tier, "source": source, "status": status, "confidence": 0.5, "cost_usd": 0.001}


def test_the_store_reads_what_production_called_and_what_served(tmp_path: Path) -> None:
    lines = [
        _line("a", [_attempt("small"), _attempt("large", "shadow")]),  # kept on small
        _line("b", [_attempt("small"), _attempt("large")]),  # escalated
        _line("c", [_attempt("small"), _attempt("large", status="error"), _attempt("medium")]),
        _line("d", [_attempt("small", "shadow"), _attempt("large", "shadow")]),  # replay only
        _line("e", [_attempt("small"), _attempt("large")], served_tier="small"),  # logged
    ]
    logs = tmp_path / "logs.jsonl"
    logs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with Store.open(tmp_path / "s.duckdb") as store:
        ingest.ingest(store, [logs], strict=True, clock=lambda: CLOCK)
        ids = np.array(list("abcde"), dtype=object)
        called, served = store.production_paths(("small", "medium", "large"), ids)
        back_called, back_served = store.production_paths(("small", "medium", "large"), ids[::-1])
    assert (back_called == called[::-1]).all() and (back_served == served[::-1]).all()
    assert called.astype(int).tolist() == [
        [1, 0, 0],
        [1, 0, 1],
        [1, 1, 1],
        [0, 0, 0],
        [1, 0, 1],
    ]
    assert served.tolist() == [0, 2, 1, -1, 0]


# --- frontier flags and certification cells -----------------------------------------------------


def test_the_certified_frontier_is_the_pareto_set_of_certified_policies_only() -> None:
    frame = pl.DataFrame(
        {
            "policy": ["a", "b", "c", "d", "e"],
            "cost_per_1k_requests_usd": [0.5, 0.8, 1.0, 1.2, 1.5],
            "quality": [0.95, 0.90, 0.93, 0.92, 0.96],
            "pareto": [True, False, False, False, True],
            "certified": [False, True, True, True, True],
        }
    )
    flagged = mark_certified_pareto(frame)
    assert flagged["certified_pareto"].to_list() == [False, True, True, False, True]
    assert flagged.columns == [*frame.columns, "certified_pareto"]


def test_baselines_show_a_dash_for_certification() -> None:
    m = metrics(1.0, 0.9)
    row = FrontierRow(Policy.always("large"), 10, 5, m, certified=False)
    assert certified_cell(row) == "—"
    assert certified_cell(dataclasses.replace(row, policy=Policy.always("small"))) == "—"
    router = dataclasses.replace(row, policy=Policy("router", ("small", "large"), (0.5,)))
    assert certified_cell(router) == "n/a"
    cascade = dataclasses.replace(row, policy=Policy("cascade", ("small", "large"), (0.5,)))
    assert (certified_cell(cascade), certified_cell(dataclasses.replace(cascade, certified=True))) == ("no", "yes")  # fmt: skip


# --- a small real sweep, for what the report says ------------------------------------------------


def write_logs(path: Path, o: Outcomes, source: str) -> Path:
    """`o` as canonical JSONL, every tier's attempt from `source`, labels on every request."""
    lines = []
    for i in range(o.n):
        attempts = [
            {
                "tier": tier,
                "model": f"m-{tier}",
                "source": source,
                "confidence": float(o.confidence[i, j]),
                "cost_usd": float(o.cost_usd[i, j]),
                "latency_ms": float(o.latency_ms[i, j]),
                "output": "a",
            }
            for j, tier in enumerate(o.tiers)
        ]
        labels = {tier: float(o.label[i, j]) for j, tier in enumerate(o.tiers)}
        lines.append(_line(f"r-{i:05d}", attempts, labels, metadata={"intent": "x"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def two_tiers(n: int, seed: int) -> Outcomes:
    rng = np.random.default_rng(seed)
    c = rng.uniform(size=n)
    cheap_ok = rng.uniform(size=n) >= 0.6 * (1 - c) ** 2
    premium_ok = cheap_ok | (rng.uniform(size=n) < 0.7)
    return outcomes_from(c, cheap_ok, premium_ok)


def sweep(tmp_path: Path, o: Outcomes, source: str) -> SweepResult:
    logs = write_logs(tmp_path / "logs.jsonl", o, source)
    tiers = tmp_path / "tiers.yaml"
    tiers.write_text(
        "tiers:\n" + "".join(f"  - {{name: {t}, model: m-{t}}}\n" for t in o.tiers),
        encoding="utf-8",
    )
    with Store.open(tmp_path / "s.duckdb") as store:
        ingest.ingest(store, [logs], strict=True, clock=lambda: CLOCK)
        return run_sweep(store, load_tiers(tiers), Objective(0.02, 0.95))


@pytest.fixture(scope="module")
def certified(tmp_path_factory: pytest.TempPathFactory) -> SweepResult:
    """1,000 labeled replayed requests: a cascade is certified; production is unknown."""
    return sweep(tmp_path_factory.mktemp("certified"), two_tiers(1000, 5), "shadow")


@pytest.mark.e2e
def test_silent_under_escalation_that_found_none_says_so_in_one_line(
    certified: SweepResult,
) -> None:
    fm = dataclasses.replace(certified.report.failure_modes, segments=())
    result = dataclasses.replace(
        certified, report=dataclasses.replace(certified.report, failure_modes=fm)
    )
    title, blocks = silent_under_escalation(result)
    assert title == "Silent under-escalation"
    assert len(blocks) == 1 and blocks[0].startswith("None found")
    md = render_markdown(sections(result))
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Silent under-escalation"
    assert not any("Silent under-escalation" in w for w in warnings(result))


def _segment(column: str, value: str, gap: float) -> SegmentRow:
    return SegmentRow(column, value, 100, 0.3, None, 40, 0.6, 0.9, 30, 0.9 - gap, 0.9, ("r-1",))


@pytest.mark.e2e
def test_silent_under_escalation_lists_intents_first_high_stakes_first(
    certified: SweepResult,
) -> None:
    rows = (
        _segment("region", "eu", 0.30),
        _segment("intent", "refunds", 0.20),
        _segment("intent", "contracts", 0.06),
        _segment("intent", "greetings", 0.01),  # within 0.05: not silent under-escalation
    )
    fm = dataclasses.replace(certified.report.failure_modes, segments=rows)
    report = dataclasses.replace(
        certified.report,
        failure_modes=fm,
        high_stakes=("contracts",),
        warnings=(f"{BIASED_WARNING} (--allow-biased): x", "another warning"),
    )
    result = dataclasses.replace(certified, report=report)
    _, blocks = silent_under_escalation(result)
    table = next(b for b in blocks if not isinstance(b, str))
    assert [(r[0], r[1]) for r in table.rows] == [  # type: ignore[union-attr]
        ("intent=contracts", "yes"),
        ("intent=refunds", ""),
        ("region=eu", ""),
    ]
    found = warnings(result)
    assert found[0].startswith("**Silent under-escalation** in 3 segment(s): intent `contracts`")
    assert found[1:] == ("another warning",)  # the biased warning is the report's first line


@pytest.mark.e2e
def test_a_fallback_is_not_certified_in_routing_yaml_summary_or_report(tmp_path: Path) -> None:
    """Production-only logs (production called both tiers on every request) with 150 labels:
    nothing cheaper than premium can be certified. routing.yaml, summary.json and the report all
    say "not certified"; since production paid both tiers for premium's answer, always-premium
    saves money at no measured loss, and the decision says deploy."""
    result = sweep(tmp_path, two_tiers(150, 3), "prod")
    rec = result.decision.recommendation
    assert rec.fallback and rec.row.policy == Policy.always("premium")
    paths = write_outputs(result, tmp_path / "out")
    routing = yaml.safe_load(paths["routing.yaml"].read_text(encoding="utf-8"))
    assert (routing["certified"], routing["selection"]) == (False, "fallback")
    selection = json.loads(paths["summary.json"].read_text(encoding="utf-8"))["selection"]
    assert (selection["certified"], selection["fallback"]) == (False, True)
    report = paths["report.md"].read_text(encoding="utf-8")
    first_screen = report.split("\n## ")[0]
    assert "(certified)" not in first_screen and "not certified" in first_screen
    assert "| guaranteed quality drop | 0 (the reference) | none (not certified) |" in report
    assert "Nothing cheaper than always-premium could be certified" in report
    decision = report.split("\n\n")[1]
    assert decision.startswith("**Decision: deploy.** Nothing cheaper than always-premium"), (
        decision
    )
    assert "less per 1k requests than production as logged" in decision


def test_a_deploy_names_the_high_stakes_intents_the_pick_under_escalates() -> None:
    """The certificate averages over all traffic: a declared high-stakes intent kept on a tier
    that answers it clearly worse is named in the decision's sentence, after a **but**."""
    pick = rec()
    clean = decide(pick, Objective(0.02), "large", 0.02, biased=False, production=None, labels=500)
    flagged = decide(
        pick,
        Objective(0.02),
        "large",
        0.02,
        biased=False,
        production=None,
        labels=500,
        high_stakes_under=("contract_interpretation",),
    )
    assert clean.action == flagged.action == "deploy"
    assert "**but**" not in clean.why
    assert "**but** it keeps requests of the high-stakes intent(s) `contract_interpretation`" in (
        flagged.why
    )

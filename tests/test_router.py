"""The learned router: cross-fitted scores, plain-JSON export, leakage, and `evaluate` reproducing
each strategy's sweep metrics from a routing.yaml."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.config.routing import (
    ROUTER_FILE,
    ObjectiveSpec,
    Rule,
    dump_routing,
    round_metric,
    routing_from,
)
from calibrate.config.tiers import load_tiers, price_table
from calibrate.demo import samplegen
from calibrate.ingest.stage import ingest
from calibrate.policies.keyword_rules import load_rules
from calibrate.policies.router import fit_router
from calibrate.policies.router_files import load_router, rescore, router_json
from calibrate.records.labels import ACCEPTABLE
from calibrate.records.outcomes import DataWindow
from calibrate.records.policy import METRICS, FrontierRow, Policy, PolicyMetrics
from calibrate.store import Store

pytestmark = pytest.mark.e2e  # fits the learned router on whole sweeps: not in `make test-fast`

runner = CliRunner()


def _clock() -> float:
    return 0.0


def _now() -> datetime:
    return datetime(2026, 11, 1, tzinfo=UTC)


def load_sample(logs: Path):
    """The outcome table and prompt texts of a log directory (tiers from the bundled sample)."""
    store = Store.open(":memory:")
    ingest(store, [logs], strict=False, clock=_now)
    tiers = load_tiers(Path(__file__).resolve().parent.parent / "sample_logs" / "tiers.yaml")
    outcomes = store.outcomes(tiers.names, price_table(tiers))
    return store, outcomes, store.prompt_texts(outcomes.request_ids.tolist())


@pytest.fixture(scope="module")
def sample_fit(sample_logs: Path):
    _, outcomes, texts = load_sample(sample_logs)
    acceptable = outcomes.label[:, 0] >= ACCEPTABLE
    fit = fit_router(
        texts,
        outcomes.request_ids.tolist(),
        acceptable,
        outcomes.labeled,
        "small",
        seed=0,
        clock=_clock,
    )
    assert fit is not None
    return outcomes, texts, fit


def test_exported_json_rescores_exactly_what_the_sweep_used(sample_fit, tmp_path: Path) -> None:
    outcomes, texts, fit = sample_fit
    path = tmp_path / ROUTER_FILE
    path.write_text(router_json(fit), encoding="utf-8")
    assert json.loads(path.read_text())["version"] == 1  # plain JSON, never pickle
    model, cross_fitted = load_router(path)
    ids = outcomes.request_ids.tolist()
    assert np.array_equal(rescore(model, cross_fitted, ids, texts), fit.scores)
    unlabeled = np.flatnonzero(~outcomes.labeled)[:400]
    assert np.array_equal(model.score([texts[i] for i in unlabeled]), fit.scores[unlabeled])
    assert set(cross_fitted) == {ids[i] for i in np.flatnonzero(outcomes.labeled)}


def test_cross_fitted_quality_is_not_better_than_a_fresh_hold_out(
    sample_fit, tmp_path: Path
) -> None:
    """Leakage guard: the sweep's cross-fitted AUROC and quality at a fixed threshold do not beat
    the deployed model on fresh logs from the same generator (another seed), while in-sample
    scores, the leak this guards against, would beat them by far."""
    outcomes, texts, fit = sample_fit
    lab = outcomes.labeled
    y = outcomes.label[lab, 0] >= ACCEPTABLE
    cross_fitted_auc = roc_auc_score(y, fit.scores[lab])
    in_sample_auc = roc_auc_score(y, fit.model.score([texts[i] for i in np.flatnonzero(lab)]))

    samplegen.write_sample(tmp_path / "fresh", n_requests=8000, seed=samplegen.SAMPLE_SEED + 1)
    _, fresh, fresh_texts = load_sample(tmp_path / "fresh")
    fresh_lab = fresh.labeled
    fresh_scores = fit.model.score([fresh_texts[i] for i in np.flatnonzero(fresh_lab)])
    fresh_y = fresh.label[fresh_lab, 0] >= ACCEPTABLE
    hold_out_auc = roc_auc_score(fresh_y, fresh_scores)

    assert cross_fitted_auc <= hold_out_auc + 0.02, (cross_fitted_auc, hold_out_auc)
    assert in_sample_auc > hold_out_auc + 0.05, (in_sample_auc, hold_out_auc)
    tau = float(np.median(fit.scores))
    kept_q = np.where(fit.scores[lab] >= tau, outcomes.label[lab, 0], outcomes.label[lab, -1])
    fresh_q = np.where(fresh_scores >= tau, fresh.label[fresh_lab, 0], fresh.label[fresh_lab, -1])
    assert kept_q.mean() <= fresh_q.mean() + 0.02, (kept_q.mean(), fresh_q.mean())


@pytest.fixture(scope="module")
def sweep_out(tmp_path_factory: pytest.TempPathFactory, sample_logs: Path) -> Path:
    out = tmp_path_factory.mktemp("router_sweep")
    args = [
        "sweep",
        str(sample_logs),
        "--tiers",
        str(sample_logs / "tiers.yaml"),
        "--out",
        str(out),
    ]
    args += ["--rules", str(sample_logs / "rules.yaml"), "--classifier-cost-usd", "0.002"]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def _middle_row(out: Path, strategy: str) -> FrontierRow:
    """The middle frontier row of a strategy (`strategy@policy suffix`: the row with that id),
    read back from frontier.csv's text columns."""
    strategy, _, suffix = strategy.partition("@")
    with (out / "frontier.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["strategy"] == strategy]
    if suffix:
        rows = [r for r in rows if r["policy"].endswith("@" + suffix)]
    row = rows[len(rows) // 2]
    policy = Policy(
        row["strategy"],  # type: ignore[arg-type]
        tuple(row["tiers"].split("+" if strategy == "consensus" else ">")),
        tuple(float(t) for t in row["thresholds"].split(";")) if row["thresholds"] else (),
        int(row["cutoff_tokens"]) if row["cutoff_tokens"] else None,
    )
    assert policy.id == row["policy"]  # the id, tiers and thresholds texts agree
    metrics = PolicyMetrics(**{m: float(row[m]) for m in METRICS})
    return FrontierRow(policy, int(row["requests"]), int(row["labeled"]), metrics)


@pytest.mark.parametrize(
    "strategy",
    ["always", "cascade", "length", "router", "rules", "rules@none", "hybrid", "consensus"],
)
def test_evaluate_reproduces_each_strategys_sweep_metrics(
    sweep_out: Path, sample_logs: Path, tmp_path: Path, strategy: str
) -> None:
    row = _middle_row(sweep_out, strategy)
    rules = load_rules(sample_logs / "rules.yaml", ("small", "medium", "large")).rules
    config = routing_from(
        row,
        {"small": "m-s", "medium": "m-m", "large": "m-l"},
        "large",
        ObjectiveSpec(max_quality_drop=0.02, confidence_level=0.95),
        "empirical",
        False,
        DataWindow(10000, 1521, 0, None, None, "x"),
        classifier_cost_per_1k=0.002,
        keyword_rules=tuple(Rule(name=r.name, pattern=r.pattern, tier=r.tier) for r in rules),
    )
    if strategy in ("rules", "hybrid"):
        assert [r.pattern for r in config.rules[: len(rules)]] == [r.pattern for r in rules]
    (tmp_path / "routing.yaml").write_text(dump_routing(config), encoding="utf-8")
    shutil.copy(sweep_out / ROUTER_FILE, tmp_path / ROUTER_FILE)
    args = ["evaluate", str(tmp_path / "routing.yaml"), str(sample_logs)]
    result = runner.invoke(
        app, [*args, "--tiers", str(sample_logs / "tiers.yaml"), "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["policy"] == row.policy.id
    for metric, value in config.expected.items():  # --json has full precision
        assert round_metric(metric, got[metric]) == value, (metric, got[metric], value)


def test_report_compares_the_best_policy_of_each_strategy(sweep_out: Path) -> None:
    """One table, the same target: per strategy the cheapest policy whose measured drop is ≤ ε
    (and the cheapest certified one for rules and cascades), with the frontier's numbers."""
    text = (sweep_out / "report.md").read_text(encoding="utf-8")
    table = text.split("## Strategies side by side", 1)[1].split("\n## ", 1)[0]
    rows = [
        line.split(" | ") for line in table.splitlines() if line.startswith("| ") and "`" in line
    ]
    by_policy = {r[1].strip("`"): r for r in rows}
    strategies = [r[0].removeprefix("| ") for r in rows]
    assert {
        "single tier",
        "rules (input length)",
        "keyword rules + length",
        "learned router",
        "cascade",
        "keyword rules + cascade",
        "consensus",
    } <= set(strategies)
    with (sweep_out / "frontier.csv").open(encoding="utf-8") as f:
        frontier = list(csv.DictReader(f))
    for kind in ("length", "rules", "router", "cascade", "hybrid"):
        within = [r for r in frontier if r["strategy"] == kind and float(r["quality_drop"]) <= 0.02]
        best = min(within, key=lambda r: float(r["cost_per_1k_requests_usd"]))
        row = by_policy[best["policy"]]
        assert float(row[4]) == pytest.approx(float(best["quality_drop"]), abs=5e-5)
        assert row[6] == f"${float(best['cost_per_1k_requests_usd']):,.4f}"
    router = next(r for r in rows if r[0] == "| learned router")
    assert router[2] == "n/a"  # never certified

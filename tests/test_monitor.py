"""`calibrate monitor`: the sample logs' drift and outage with their dates, the false-alarm rate on
stationary traffic, the overconfident cheap tier as the dangerous direction, outputs and errors."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import monitor_synth as synth
import numpy as np
import pytest
from scipy.stats import binom
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.config.routing import load_routing
from calibrate.ingest import stage as ingest
from calibrate.monitor import stage as monitor
from calibrate.store import Store

runner = CliRunner()

SAMPLE_START = date(2026, 8, 1)
DAY_60 = SAMPLE_START + timedelta(days=60)  # the hard-intent share starts ramping up
# The config production ran on the sample logs (small → large below 0.62), calibrated on August.
SAMPLE_ROUTING = """version: 1
strategy: cascade
tiers:
  - {name: small, model: gpt-4o-mini, escalate_below: 0.62}
  - {name: large, model: gpt-4.1}
premium_tier: large
objective: {max_quality_drop: 0.02, confidence_level: 0.95}
certified: true
selection: certified
expected:
  escalation_rate: 0.205
calibrated_on:
  requests: 3228
  labeled: 525
  window: {start: '2026-08-01T00:02:25Z', end: '2026-08-31T23:58:12Z'}
  logs_sha256: sample
"""


def _clock() -> datetime:
    return datetime(2026, 11, 1, tzinfo=UTC)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory, sample_logs: Path) -> Path:
    """The bundled sample logs ingested once into a DuckDB file."""
    db = tmp_path_factory.mktemp("monitor") / "sample.duckdb"
    with Store.open(db) as store:
        ingest.ingest(store, [sample_logs], strict=False, clock=_clock)
    return db


@pytest.fixture(scope="module")
def sample_run(sample_db: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict, Path]:
    """`calibrate monitor --db sample.duckdb --baseline routing.yaml --check --json`."""
    tmp = tmp_path_factory.mktemp("sample_run")
    baseline = _write(tmp / "routing.yaml", SAMPLE_ROUTING)
    out = tmp / "out"
    args = ["monitor", "--db", str(sample_db), "--baseline", str(baseline), "--out", str(out)]
    result = runner.invoke(app, [*args, "--check", "--json"], catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout), out


@pytest.mark.e2e
def test_sample_logs_flag_the_rise_in_hard_queries_after_day_60(sample_run) -> None:
    exit_code, data, _ = sample_run
    assert data["reference"] == {
        "start": "2026-08-01",
        "end": "2026-08-31",
        "source": "calibrated_on",
        "note": "routing.yaml's calibrated_on.window",
    }
    rises = [a for a in data["alarms"] if a["kind"] == "escalation_up" and a["segment"] == "all"]
    assert len(rises) == 1
    rise = rises[0]
    first = date.fromisoformat(rise["first_day"])
    assert DAY_60 < first <= date(2026, 10, 29)  # fired in the last month, after the ramp began
    assert "since about 2026-09-30" in rise["summary"]  # the estimated onset is day 60 itself
    assert "per 1k requests" in rise["summary"]  # a rise reports its cost impact
    mix = next(e for e in rise["evidence"] if e.startswith("intents whose share moved most"))
    assert all(
        i in mix for i in ("billing_dispute", "regulatory_crossref", "contract_interpretation")
    )
    assert not [a for a in data["alarms"] if a["kind"] == "escalation_down"]
    assert exit_code == 3 and data["recalibration_due"]


@pytest.mark.e2e
def test_sample_logs_flag_the_eu_west_1_outage_with_its_dates(sample_run) -> None:
    _, data, _ = sample_run
    assert data["health"]["outages"] == [
        {
            "region": "eu-west-1",
            "start": "2026-10-08",
            "end": "2026-10-11",
            "requests": 90,
            "degraded": 19,
            "share": pytest.approx(19 / 90, abs=1e-6),
            "fallbacks": [{"intended": "large", "served": "medium", "requests": 19}],
        }
    ]
    outages = [a for a in data["alarms"] if a["kind"] == "outage"]
    assert [(a["segment"], a["first_day"], a["recalibrate"]) for a in outages] == [
        ("region=eu-west-1", "2026-10-08", False)
    ]
    flagged = {d["day"] for d in data["health"]["days"] if d["flagged"]}
    assert flagged <= {"2026-10-08", "2026-10-09", "2026-10-10", "2026-10-11"}


@pytest.mark.e2e
def test_sample_outputs_are_written_and_deterministic(
    sample_run, sample_db: Path, tmp_path: Path
) -> None:
    _, data, out = sample_run
    assert sorted(p.name for p in out.iterdir()) == ["monitor.html", "monitor.json", "monitor.md"]
    assert json.loads((out / "monitor.json").read_text(encoding="utf-8")) == data
    html = (out / "monitor.html").read_text(encoding="utf-8")
    assert html.count("<svg") >= 5 and "<polyline" in html
    md = (out / "monitor.md").read_text(encoding="utf-8")
    assert "**Recalibration is due**" in md and "eu-west-1" in md
    again = tmp_path / "again"
    baseline = _write(tmp_path / "routing.yaml", SAMPLE_ROUTING)
    args = ["monitor", "--db", str(sample_db), "--baseline", str(baseline), "--out", str(again)]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0  # no --check: 0 even though recalibration is due
    assert "Recalibration is due:" in result.stdout
    for name in ("monitor.json", "monitor.md", "monitor.html"):
        assert (again / name).read_bytes() == (out / name).read_bytes()


@pytest.mark.e2e
def test_sample_monitor_md_matches_its_golden_file(sample_run, golden) -> None:
    _, _, out = sample_run
    golden("monitor/sample_monitor.md", (out / "monitor.md").read_text(encoding="utf-8"))


@pytest.mark.e2e
def test_a_single_tier_config_has_no_escalation_detector(sample_db: Path, tmp_path: Path) -> None:
    text = SAMPLE_ROUTING.replace("strategy: cascade", "strategy: single").replace(
        "  - {name: small, model: gpt-4o-mini, escalate_below: 0.62}\n", ""
    )
    config = load_routing(_write(tmp_path / "routing.yaml", text))
    with Store.open(sample_db) as store:
        result = monitor.monitor(store, config, monitor.MonitorOptions())
    assert result.policy == "always large"
    assert result.detectors == ()
    assert {c.summary.escalated for c in result.chunks} == {0}
    assert [a.kind for a in result.alarms] == ["outage"]  # health does not depend on the config


def test_without_a_contained_window_the_reference_is_the_first_days(
    sample_db: Path, tmp_path: Path
) -> None:
    text = SAMPLE_ROUTING.replace("2026-08-31T23:58:12Z", "2026-10-29T23:28:28Z")
    config = load_routing(_write(tmp_path / "routing.yaml", text))
    with Store.open(sample_db) as store:
        result = monitor.monitor(store, config, monitor.MonitorOptions(reference_days=20))
    assert (result.reference.start, result.reference.end) == (SAMPLE_START, date(2026, 8, 20))
    assert result.reference.source == "first_days"
    assert "is not inside these logs" in result.reference.note
    assert result.monitored_start == date(2026, 8, 21)


# --- stationary traffic: the false-alarm rate -----------------------------------------------


@pytest.mark.e2e
def test_stationary_logs_alarm_no_more_often_than_the_stated_rate(tmp_path: Path) -> None:
    """120 seeded stationary runs: the share with a drift alarm stays within the stated 5% plus
    binomial slack (99.9% upper quantile). Measured over 400 runs while writing this: 4.75%."""
    config = load_routing(_write(tmp_path / "routing.yaml", synth.routing_yaml()))
    options = monitor.MonitorOptions()
    runs = 120
    alarmed = 0
    for seed in range(runs):
        log = synth.request_log(synth.draw(synth.STATIONARY, 5000 + seed))
        result = monitor.analyse(log, config, options, seed=seed)
        alarmed += result.recalibration_due
        assert not result.health.outages
    assert alarmed <= binom.ppf(0.999, runs, options.false_alarm_rate)


# --- the cheap tier turns overconfident: the dangerous direction ------------------------------


@pytest.mark.e2e
def test_overconfident_cheap_tier_is_flagged_as_the_dangerous_direction(tmp_path: Path) -> None:
    """End to end through JSONL and DuckDB: from day 40 small's accuracy falls 80% → 60% while
    its wrong answers become as confident as its right ones, so fewer requests escalate. The
    label-free estimate cannot see it (it holds up); the labels that keep arriving do."""
    draws = synth.draw(synth.OVERCONFIDENT, 7)
    logs = synth.write_jsonl(draws, tmp_path / "logs.jsonl")
    baseline = _write(tmp_path / "routing.yaml", synth.routing_yaml())
    db = tmp_path / "store.duckdb"
    args = ["monitor", str(logs), "--db", str(db), "--baseline", str(baseline)]
    result = runner.invoke(
        app, [*args, "--out", str(tmp_path / "out"), "--check", "--json"], catch_exceptions=False
    )
    assert result.exit_code == 3
    data = json.loads(result.stdout)
    change = synth.START + timedelta(days=40)
    falls = [a for a in data["alarms"] if a["kind"] == "escalation_down"]
    assert len(falls) == 1 and falls[0]["dangerous"] and falls[0]["segment"] == "all"
    assert change <= date.fromisoformat(falls[0]["first_day"]) <= change + timedelta(days=7)
    assert (
        "DANGEROUS: labels show the measured quality of kept requests fell" in falls[0]["summary"]
    )
    assert "the cheaper tier is overconfident" in falls[0]["summary"]
    quality = [a for a in data["alarms"] if a["kind"] == "quality_down"]
    assert quality and quality[0]["dangerous"]
    assert not [a for a in data["alarms"] if a["kind"] == "escalation_up"]
    assert "Recalibration due: The escalation rate fell" in result.stderr
    with Store.open(db) as store:  # the store read is what the fast tests build directly
        read = store.request_log(["small", "large"])
    built = synth.request_log(draws)
    for field in ("request_ids", "timestamp_s", "region", "served_tier", "answered"):
        assert np.array_equal(getattr(read, field), getattr(built, field)), field
    for field in ("confidence", "label", "cost_usd"):
        assert np.array_equal(getattr(read, field), getattr(built, field), equal_nan=True), field


def test_overconfidence_without_labels_is_still_dangerous(tmp_path: Path) -> None:
    """No labels after the change and an estimate that holds up: still the dangerous direction."""
    scenario = synth.Scenario(
        change_day=40, accuracy=(0.8, 0.6), wrong_logit=(-0.5, 2.0), labels_after_change=False
    )
    config = load_routing(_write(tmp_path / "routing.yaml", synth.routing_yaml()))
    result = monitor.analyse(
        synth.request_log(synth.draw(scenario, 7)), config, monitor.MonitorOptions()
    )
    falls = [a for a in result.alarms if a.kind == "escalation_down"]
    assert len(falls) == 1 and falls[0].dangerous
    assert falls[0].summary.count("DANGEROUS until labels say otherwise") == 1
    assert not [a for a in result.alarms if a.kind == "quality_down"]  # nothing to measure


@pytest.mark.parametrize("seed", range(5))
def test_only_the_overconfident_fall_is_dangerous(tmp_path: Path, seed: int) -> None:
    """The same fall in escalations for a good reason (small got more accurate, same confidences):
    the estimate holds up and the labels agree, so it is not dangerous; the overconfident one is."""
    config = load_routing(_write(tmp_path / "routing.yaml", synth.routing_yaml()))
    change = synth.START + timedelta(days=40)
    for scenario, dangerous in ((synth.EASIER, False), (synth.OVERCONFIDENT, True)):
        log = synth.request_log(synth.draw(scenario, seed))
        result = monitor.analyse(log, config, monitor.MonitorOptions(), seed=seed)
        falls = [a for a in result.alarms if a.kind == "escalation_down"]
        assert len(falls) == 1 and falls[0].dangerous is dangerous
        assert change <= falls[0].first_day <= change + timedelta(days=7)
        if not dangerous:
            assert "Consistent with easier traffic" in falls[0].summary
            assert not [a for a in result.alarms if a.dangerous]


# --- errors and the segment option ------------------------------------------------------------


def test_by_region_runs_one_detector_per_region(tmp_path: Path) -> None:
    config = load_routing(_write(tmp_path / "routing.yaml", synth.routing_yaml()))
    log = synth.request_log(synth.draw(synth.OVERCONFIDENT, 7))
    result = monitor.analyse(log, config, monitor.MonitorOptions(by="region"))
    assert [d.segment for d in result.detectors] == [
        "all",
        "region=eu-west-1",
        "region=us-east-1",
    ]
    assert sum(d.alpha for d in result.detectors) == pytest.approx(0.05 * monitor.CUSUM_SHARE)
    assert {a.segment for a in result.alarms if a.kind == "escalation_down"} >= {"all"}


def test_unknown_segment_is_a_usage_error(tmp_path: Path) -> None:
    logs = synth.write_jsonl(synth.draw(synth.Scenario(days=3, per_day=5), 1), tmp_path / "l.jsonl")
    baseline = _write(tmp_path / "routing.yaml", synth.routing_yaml())
    result = runner.invoke(
        app, ["monitor", str(logs), "--baseline", str(baseline), "--by", "intent"]
    )
    assert result.exit_code == 2
    assert "'intent' is not one of 'region', 'app'" in result.stderr


def test_logs_too_short_for_the_reference_window_is_a_user_error(tmp_path: Path) -> None:
    logs = synth.write_jsonl(
        synth.draw(synth.Scenario(days=10, per_day=5), 1), tmp_path / "l.jsonl"
    )
    baseline = _write(tmp_path / "routing.yaml", synth.routing_yaml())
    result = runner.invoke(app, ["monitor", str(logs), "--baseline", str(baseline)])
    assert result.exit_code == 1
    assert "too few for a 30-day reference window" in result.stderr
    assert "Hint: Pass a smaller --reference-days" in result.stderr

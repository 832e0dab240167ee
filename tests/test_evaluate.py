"""`calibrate evaluate`: the measured metrics next to routing.yaml's expected values and intervals,
flags and `--check`'s exit 3 when the logs moved (beyond the sampling error of both samples, not
on fresh halves of unchanged traffic), a hand-written routing.yaml, full precision."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.config.routing import load_routing, policy_of, round_metric
from calibrate.config.tiers import load_tiers, price_table
from calibrate.policies.assignment import take_rows
from calibrate.store import Store
from calibrate.sweep.evaluate import Evaluation, check_metric, family_for, measure

runner = CliRunner()
GOLDEN_ROUTING = Path(__file__).parent / "golden" / "sample" / "routing.yaml"
EASY_INTENTS = {"order_status", "store_hours", "password_reset", "eligibility_check"}
EASY_INTENTS |= {"email_template"}  # samplegen's difficulty-0 intents
RATES = ("escalation_rate", "cost_per_1k_requests_usd", "savings_vs_premium")
WITH_INTERVAL = ("quality", "quality_drop", *RATES)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, sample_logs: Path) -> dict[str, Path]:
    """Stores of the sample logs (what the golden routing.yaml was calibrated on), of a harder
    set (the easy intents dropped: the traffic moved) and of that set without labels."""
    tmp = tmp_path_factory.mktemp("evaluate")
    harder, unlabeled = [], []
    with gzip.open(sample_logs / "requests.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            request = json.loads(line)
            if request["metadata"]["intent"] in EASY_INTENTS:
                continue
            harder.append(line.rstrip("\n"))
            request.pop("labels", None)
            unlabeled.append(json.dumps(request))
    logs = {"sample": sample_logs / "requests.jsonl.gz"}
    for name, lines in (("harder", harder), ("unlabeled", unlabeled)):
        logs[name] = tmp / f"{name}.jsonl"
        logs[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    dbs = {}
    for name, path in logs.items():
        dbs[name] = tmp / f"{name}.duckdb"
        result = runner.invoke(app, ["ingest", str(path), "--db", str(dbs[name])])
        assert result.exit_code == 0, result.output
    return dbs


def evaluate(routing: Path, db: Path, sample_logs: Path, *extra: str):
    tiers = ["--tiers", str(sample_logs / "tiers.yaml")]
    args = ["evaluate", str(routing), "--db", str(db), *tiers, *extra]
    return runner.invoke(app, args, env={"COLUMNS": "80"})


def test_on_its_own_calibration_logs_nothing_is_flagged(stores, sample_logs: Path) -> None:
    result = evaluate(GOLDEN_ROUTING, stores["sample"], sample_logs, "--check")
    assert result.exit_code == 0, result.output
    assert "All 5 metrics with an interval are inside routing.yaml's intervals." in result.stderr
    assert "OUTSIDE" not in result.stdout and "Warning" not in result.stderr
    assert result.stdout.count("interval (95%)") == 2  # the logs' own and routing.yaml's
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    intervals = load_routing(GOLDEN_ROUTING).intervals
    low, high = intervals["escalation_rate"]
    assert result.stdout.count(f"{low:.2%}–{high:.2%}") == 2  # same data, same interval


def test_json_carries_full_precision(stores, sample_logs: Path) -> None:
    """No rounding in --json: quality is a count of acceptable answers over the labeled requests
    (1,521), which 4 decimals cannot express; at routing.yaml's precision it is `expected`."""
    result = evaluate(GOLDEN_ROUTING, stores["sample"], sample_logs, "--json", "--check")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    config = load_routing(GOLDEN_ROUTING)
    assert got["labeled"] == 1521
    acceptable = got["quality"] * got["labeled"]
    assert acceptable == pytest.approx(round(acceptable), abs=1e-9)
    assert got["quality"] != round(got["quality"], 4)
    assert got["cost_per_1k_requests_usd"] != round(got["cost_per_1k_requests_usd"], 6)
    assert {m: round_metric(m, got[m]) for m in config.expected} == dict(config.expected)
    assert got["intervals"] == {m: list(i) for m, i in config.intervals.items()}
    assert got["outside"] == [] and got["compared"] is True
    assert set(got["checks"].values()) == {"inside", "no interval"}
    # the logs' own intervals come from the sweep's code with its seed: on the calibration data
    # they are routing.yaml's; each half-width is on the side of the (zero) deviation
    assert {m: [round_metric(m, v) for v in i] for m, i in got["new_intervals"].items()} == (
        got["intervals"]
    )
    assert set(got["h_new"]) == set(got["h_cal"]) == set(WITH_INTERVAL)
    for m in WITH_INTERVAL:
        assert got["h_new"][m] == got[m] - got["new_intervals"][m][0]
        assert got["h_cal"][m] == got["intervals"][m][1] - got["expected"][m]


def test_a_harder_set_is_flagged_and_check_exits_3(stores, sample_logs: Path) -> None:
    """Calibrated on all the sample traffic, evaluated where the easy intents are gone: escalation
    rises, savings and quality fall beyond the sampling error of both samples, and each is
    named with the difference and the combined half-width it exceeds."""
    result = evaluate(GOLDEN_ROUTING, stores["harder"], sample_logs, "--check")
    assert result.exit_code == 3, result.output
    intervals = load_routing(GOLDEN_ROUTING).intervals
    for metric in (*RATES, "quality"):
        assert f"Warning: {metric} " in result.stderr
    assert "is outside routing.yaml's interval" in result.stderr
    assert "beyond sampling error (a difference of" in result.stderr
    assert "Re-run `calibrate sweep` on recent logs" in result.stderr
    assert result.stdout.count("OUTSIDE") >= len(RATES) + 1
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    got = json.loads(evaluate(GOLDEN_ROUTING, stores["harder"], sample_logs, "--json").stdout)
    assert {*RATES, "quality"} <= set(got["outside"])
    assert got["escalation_rate"] > intervals["escalation_rate"][1]
    assert got["savings_vs_premium"] < intervals["savings_vs_premium"][0]
    assert got["quality"] < intervals["quality"][0]
    for m in (*RATES, "quality"):
        up = got[m] > got["expected"][m]
        low, high = got["new_intervals"][m]
        assert got["h_new"][m] == (got[m] - low if up else high - got[m]) > 0
        h_cal = intervals[m][1] - got["expected"][m] if up else got["expected"][m] - intervals[m][0]
        assert got["h_cal"][m] == pytest.approx(h_cal)
        deviation = abs(round_metric(m, got[m]) - got["expected"][m])
        assert deviation > math.hypot(got["h_cal"][m], got["h_new"][m])
    without_check = evaluate(GOLDEN_ROUTING, stores["harder"], sample_logs)
    assert without_check.exit_code == 0, without_check.output


def test_without_labels_quality_is_not_measured_rather_than_flagged(
    stores, sample_logs: Path
) -> None:
    result = evaluate(GOLDEN_ROUTING, stores["unlabeled"], sample_logs, "--check")
    assert result.exit_code == 3, result.output  # the label-free metrics still moved
    assert (
        "Not measurable on these logs (no request in them is labeled), so not compared: "
        "quality, quality_drop." in result.stderr
    )
    assert "Warning: quality" not in result.stderr
    got = json.loads(evaluate(GOLDEN_ROUTING, stores["unlabeled"], sample_logs, "--json").stdout)
    assert got["checks"]["quality"] == got["checks"]["quality_drop"] == "not measured"
    assert "quality" not in got["outside"] and set(RATES) <= set(got["outside"])


def shifted_routing(tmp_path: Path, metric: str, by_half_widths: float) -> Path:
    """The golden routing.yaml with `metric`'s expected value and interval moved up by this many
    of its half-widths, as if calibrated on a sample that happened to land there."""
    data = yaml.safe_load(GOLDEN_ROUTING.read_text(encoding="utf-8"))
    low, high = data["intervals"][metric]
    shift = by_half_widths * (high - low) / 2
    data["expected"][metric] = round_metric(metric, data["expected"][metric] + shift)
    data["intervals"][metric] = [
        round_metric(metric, low + shift),
        round_metric(metric, high + shift),
    ]
    path = tmp_path / f"shifted_{by_half_widths}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_outside_the_interval_within_both_samples_error_is_noise(
    stores, sample_logs: Path, tmp_path: Path
) -> None:
    """Two estimates of one rate with equal half-widths h differ by more than h one time in six
    by chance; only beyond √2·h (the combined half-width) is the metric flagged. 1.2 h: outside
    routing.yaml's interval, shown as noise, `--check` passes; 1.6 h: flagged, exit 3."""
    noise = evaluate(
        shifted_routing(tmp_path, "escalation_rate", 1.2), stores["sample"], sample_logs
    )
    assert noise.exit_code == 0, noise.output
    lines = noise.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if line.lstrip().startswith("escalation_rate"))
    assert lines[row].rstrip().endswith("inside") and lines[row + 1].rstrip().endswith("(noise)")
    assert max(len(line) for line in lines) <= 80
    assert "escalation_rate 29.14% is outside routing.yaml's interval" in noise.stderr
    assert "but within sampling error (a difference of" in noise.stderr
    assert "No metric moved beyond sampling error: 4 of 5 inside" in noise.stderr
    checked = evaluate(
        shifted_routing(tmp_path, "escalation_rate", 1.2),
        stores["sample"],
        sample_logs,
        "--check",
        "--json",
    )
    assert checked.exit_code == 0, checked.output
    got = json.loads(checked.stdout)
    assert got["checks"]["escalation_rate"] == "within noise" and got["outside"] == []
    flagged = evaluate(
        shifted_routing(tmp_path, "escalation_rate", 1.6), stores["sample"], sample_logs, "--check"
    )
    assert flagged.exit_code == 3, flagged.output
    assert "Warning: escalation_rate 29.14% is outside" in flagged.stderr


def test_fresh_halves_of_unchanged_traffic_are_rarely_flagged(stores, sample_logs: Path) -> None:
    """Calibrate on a random half of the sample logs (metrics and intervals by the sweep's code,
    rounded as routing.yaml is), evaluate on the other half: the same traffic. The two-sample rule
    flags about 5% of the metrics at 95% intervals; the plain rule (outside routing.yaml's
    interval) flagged about three times as many."""
    config = load_routing(GOLDEN_ROUTING)
    prices = price_table(load_tiers(sample_logs / "tiers.yaml"))
    order = tuple(t.name for t in config.tiers)
    with Store.open(stores["sample"], read_only=True) as store:
        outcomes = store.outcomes(order, prices)
        window = store.data_window(outcomes)
    policy = policy_of(config)
    family = family_for(policy, order)
    rng = np.random.default_rng(0)
    flagged, plain, checks = 0, 0, 0
    for split in range(40):
        half = rng.permutation(outcomes.n) < outcomes.n // 2
        calibration, intervals = measure(take_rows(outcomes, half), family, policy.id, 0.95, split)
        fresh, new_intervals = measure(take_rows(outcomes, ~half), family, policy.id, 0.95, split)
        evaluation = Evaluation(
            policy=policy.id,
            metrics={m: float(v) for m, v in fresh.metrics.as_dict().items()},
            expected={m: round_metric(m, v) for m, v in calibration.metrics.as_dict().items()},
            intervals={
                m: (round_metric(m, i[0]), round_metric(m, i[1])) for m, i in intervals.items()
            },
            level=0.95,
            window=window,
            new_intervals=new_intervals,
        )
        for c in evaluation.checks:
            if c.interval is None:
                continue
            checks += 1
            flagged += c.status == "outside"
            plain += not c.interval[0] <= round_metric(c.name, c.measured) <= c.interval[1]
    assert checks == 40 * len(WITH_INTERVAL)
    assert flagged / checks <= 0.10
    assert plain / checks > 0.10 and plain > 2 * flagged


def test_without_an_interval_of_the_new_logs_the_plain_rule_applies() -> None:
    """A latency percentile has no interval method here: should routing.yaml give it an interval,
    outside it is outside (no half-widths); likewise a metric with no `expected`."""
    latency = check_metric("latency_p95_ms", 6000.0, 5775.0, (5600.0, 5950.0))
    assert (latency.status, latency.tolerance, latency.h_new) == ("outside", None, None)
    no_expected = check_metric("quality", 0.95, None, (0.953, 0.972), (0.94, 0.96))
    assert no_expected.status == "outside" and no_expected.tolerance is None
    inside = check_metric("quality", 0.955, 0.96, (0.953, 0.972), (0.94, 0.97))
    assert inside.status == "inside" and inside.h_cal == pytest.approx(0.007)
    assert inside.h_new == pytest.approx(0.015)  # below: the side facing `expected`


# --- a hand-written routing.yaml: strategy and tiers only ----------------------------------------

PRODUCTION = """strategy: cascade
tiers:
  - {name: small, model: gpt-4o-mini, escalate_below: 0.62}
  - {name: large, model: gpt-4.1}
"""
HAND_WRITTEN = {
    "cascade:small>large@0.62": PRODUCTION,
    "always:medium": "strategy: single\ntiers:\n  - {name: medium, model: gpt-4.1-mini}\n",
    "length:small>large@<=300": """strategy: rules
tiers:
  - {name: small, model: gpt-4o-mini}
  - {name: large, model: gpt-4.1}
rules:
  - {tier: small, max_input_tokens: 300}
  - {tier: large}
""",
    "hybrid:small>large@0.62": """strategy: hybrid
tiers:
  - {name: small, model: gpt-4o-mini, escalate_below: 0.62}
  - {name: large, model: gpt-4.1}
rules:
  - {pattern: "(?i)contract|clause", tier: large}
""",
    "consensus:small+medium+large": """strategy: consensus
tiers:
  - {name: small, model: gpt-4o-mini}
  - {name: medium, model: gpt-4.1-mini}
  - {name: large, model: gpt-4.1}
""",
}


@pytest.mark.parametrize("policy", list(HAND_WRITTEN))
def test_a_hand_written_config_is_measured_with_nothing_to_compare(
    stores, sample_logs: Path, tmp_path: Path, policy: str
) -> None:
    """What does our current config do? The production cascade of the sample logs (and the
    minimal form of every strategy routing.yaml names but the learned router, whose model file
    only a sweep writes) is evaluated; nothing is flagged and `--check` passes."""
    routing = tmp_path / "routing.yaml"
    routing.write_text(HAND_WRITTEN[policy], encoding="utf-8")
    result = evaluate(routing, stores["sample"], sample_logs, "--check")
    assert result.exit_code == 0, result.output
    assert f"evaluate: {policy}" in result.stdout
    assert "nothing to compare against" in result.stderr
    got = json.loads(evaluate(routing, stores["sample"], sample_logs, "--json").stdout)
    assert (got["policy"], got["compared"], got["outside"], got["expected"]) == (
        policy,
        False,
        [],
        {},
    )
    assert got["requests"] == 10_000 and got["cost_per_1k_requests_usd"] > 0


def test_the_production_cascade_is_measured_against_premium(
    stores, sample_logs: Path, tmp_path: Path
) -> None:
    """The premium tier defaults to the last tier: savings are against always-large, which a
    hand-written config with `premium_tier: large` gives too."""
    minimal, explicit = tmp_path / "minimal.yaml", tmp_path / "explicit.yaml"
    minimal.write_text(PRODUCTION, encoding="utf-8")
    explicit.write_text(PRODUCTION + "premium_tier: large\n", encoding="utf-8")
    got = [
        json.loads(evaluate(p, stores["sample"], sample_logs, "--json").stdout)
        for p in (minimal, explicit)
    ]
    assert got[0] == got[1]
    assert 0 < got[0]["savings_vs_premium"] < 1


def test_an_unknown_key_in_a_hand_written_config_is_named(stores, tmp_path: Path) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text(PRODUCTION + "premium: large\n", encoding="utf-8")
    result = runner.invoke(app, ["evaluate", str(routing), "--db", str(stores["sample"])])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: invalid routing file")
    assert f"{routing}: premium: unknown key" in result.stderr
    assert "Hint: Use a routing.yaml written by `calibrate sweep`, or write one with only" in (
        result.stderr
    )
    assert "premium_tier" in result.stderr.split("Hint:", 1)[1]
    assert "Traceback" not in result.output

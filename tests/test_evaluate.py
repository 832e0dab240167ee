"""`calibrate evaluate`: the measured metrics next to routing.yaml's expected values and intervals,
flags and `--check`'s exit 3 when the logs moved, a hand-written routing.yaml, full precision."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.config.routing import load_routing, round_metric

runner = CliRunner()
GOLDEN_ROUTING = Path(__file__).parent / "golden" / "sample" / "routing.yaml"
EASY_INTENTS = {"order_status", "store_hours", "password_reset", "eligibility_check"}
EASY_INTENTS |= {"email_template"}  # samplegen's difficulty-0 intents
RATES = ("escalation_rate", "cost_per_1k_requests_usd", "savings_vs_premium")


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
    return runner.invoke(app, ["evaluate", str(routing), "--db", str(db), *tiers, *extra])


def test_on_its_own_calibration_logs_nothing_is_flagged(stores, sample_logs: Path) -> None:
    result = evaluate(GOLDEN_ROUTING, stores["sample"], sample_logs, "--check")
    assert result.exit_code == 0, result.output
    assert "All 5 metrics with an interval are inside routing.yaml's intervals." in result.stderr
    assert "OUTSIDE" not in result.stdout and "Warning" not in result.stderr
    assert "interval (95%)" in result.stdout


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


def test_a_harder_set_is_flagged_and_check_exits_3(stores, sample_logs: Path) -> None:
    """Calibrated on all the sample traffic, evaluated where the easy intents are gone: escalation
    rises and savings fall far outside their intervals, and each is named."""
    result = evaluate(GOLDEN_ROUTING, stores["harder"], sample_logs, "--check")
    assert result.exit_code == 3, result.output
    intervals = load_routing(GOLDEN_ROUTING).intervals
    for metric in RATES:
        assert f"Warning: {metric} " in result.stderr
        assert "is outside routing.yaml's interval" in result.stderr
    assert "Re-run `calibrate sweep` on recent logs" in result.stderr
    assert result.stdout.count("OUTSIDE") >= len(RATES)
    got = json.loads(evaluate(GOLDEN_ROUTING, stores["harder"], sample_logs, "--json").stdout)
    assert set(RATES) <= set(got["outside"])
    assert got["escalation_rate"] > intervals["escalation_rate"][1]
    assert got["savings_vs_premium"] < intervals["savings_vs_premium"][0]
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

"""`calibrate sweep` on the bundled sample logs: the five outputs, pinned by golden files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from calibrate.cli import app

runner = CliRunner()


def sweep_sample(sample_logs: Path, out: Path, *extra: str) -> None:
    """Run `calibrate sweep` on the bundled sample logs into `out`; it must succeed."""
    args = [
        "sweep",
        str(sample_logs),
        "--tiers",
        str(sample_logs / "tiers.yaml"),
        "--out",
        str(out),
    ]
    result = runner.invoke(app, [*args, *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory, sample_logs: Path) -> Path:
    out = tmp_path_factory.mktemp("demo")
    sweep_sample(sample_logs, out)
    return out


def test_sweep_writes_all_five_outputs(demo_out: Path) -> None:
    names = {p.name for p in demo_out.iterdir()}
    assert names == {"routing.yaml", "frontier.csv", "summary.json", "report.md", "report.html"}


@pytest.mark.parametrize("name", ["routing.yaml", "frontier.csv", "report.md"])
def test_outputs_match_golden_files(demo_out: Path, golden, name: str) -> None:
    golden(f"sample/{name}", (demo_out / name).read_text(encoding="utf-8"))


def test_outputs_are_byte_identical_across_runs(
    demo_out: Path, sample_logs: Path, tmp_path: Path
) -> None:
    sweep_sample(sample_logs, tmp_path)
    for name in ("routing.yaml", "frontier.csv", "summary.json", "report.md", "report.html"):
        assert (tmp_path / name).read_bytes() == (demo_out / name).read_bytes(), name


def test_recommendation_respects_the_quality_limit(demo_out: Path) -> None:
    routing = yaml.safe_load((demo_out / "routing.yaml").read_text())
    summary = json.loads((demo_out / "summary.json").read_text())
    assert routing["expected"]["quality_drop"] <= 0.02
    assert summary["recommendation"]["quality_drop"] == routing["expected"]["quality_drop"]
    # cheapest feasible: no policy in the frontier is cheaper with a drop within the limit
    with (demo_out / "frontier.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    feasible = [r for r in rows if float(r["quality_drop"]) <= 0.02]
    cheapest = min(feasible, key=lambda r: float(r["cost_per_1k_requests_usd"]))
    assert cheapest["recommended"] == "true"
    assert [r["recommended"] for r in rows].count("true") == 1
    assert float(cheapest["cost_per_1k_requests_usd"]) == pytest.approx(
        routing["expected"]["cost_per_1k_requests_usd"], abs=1e-6
    )
    assert summary["requests"] == 10_000 and summary["rejected"] == 0
    assert set(summary) >= {"requests", "labeled", "rejected", "recommendation", "baselines"}


def test_a_stricter_limit_escalates_more(sample_logs: Path, tmp_path: Path, demo_out: Path) -> None:
    sweep_sample(sample_logs, tmp_path, "--max-quality-drop", "0.005", "--no-certify")
    strict = yaml.safe_load((tmp_path / "routing.yaml").read_text())["expected"]
    loose = yaml.safe_load((demo_out / "routing.yaml").read_text())["expected"]
    assert strict["quality_drop"] <= 0.005
    assert strict["cost_per_1k_requests_usd"] > loose["cost_per_1k_requests_usd"]


def test_evaluate_reproduces_the_expected_metrics(demo_out: Path, sample_logs: Path) -> None:
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(demo_out / "routing.yaml"),
            str(sample_logs),
            "--tiers",
            str(sample_logs / "tiers.yaml"),
            "--json",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for metric, value in data["expected"].items():
        assert data[metric] == value, metric
    assert data["requests"] == 10_000

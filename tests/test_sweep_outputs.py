"""`calibrate sweep` on the bundled sample logs: the five outputs, pinned by golden files."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml
from test_summary_schema import check_summary
from typer.testing import CliRunner

from calibrate.cli.app import app

pytestmark = (
    pytest.mark.e2e
)  # full sweeps of the sample logs (golden files): not in `make test-fast`

runner = CliRunner()
CHARTS = (
    "frontier.svg",
    "thresholds.svg",
    "escalation_by_region.svg",
    "reliability.svg",
    "segments.svg",
)


def demo_args(sample_logs: Path) -> list[str]:
    """The options `make demo` adds."""
    rules = ["--rules", str(sample_logs / "rules.yaml")]
    return [*rules, "--high-stakes", "contract_interpretation", "--high-stakes", "billing_dispute"]


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
    sweep_sample(sample_logs, out, *demo_args(sample_logs))
    return out


def test_sweep_writes_all_five_outputs(demo_out: Path) -> None:
    names = {p.name for p in demo_out.iterdir()}
    assert names == {
        "routing.yaml",
        "frontier.csv",
        "summary.json",
        "report.md",
        "report.html",
        "router.json",
        *CHARTS,
    }


@pytest.mark.parametrize("name", ["routing.yaml", "frontier.csv", "report.md"])
def test_outputs_match_golden_files(demo_out: Path, golden, name: str) -> None:
    golden(f"sample/{name}", (demo_out / name).read_text(encoding="utf-8"))


def test_outputs_are_byte_identical_across_runs(
    demo_out: Path, sample_logs: Path, tmp_path: Path
) -> None:
    sweep_sample(sample_logs, tmp_path, *demo_args(sample_logs))
    for name in (
        "routing.yaml",
        "frontier.csv",
        "summary.json",
        "report.md",
        "report.html",
        *CHARTS,
    ):
        assert (tmp_path / name).read_bytes() == (demo_out / name).read_bytes(), name


@pytest.fixture(scope="module")
def empirical_out(tmp_path_factory: pytest.TempPathFactory, sample_logs: Path) -> Path:
    out = tmp_path_factory.mktemp("empirical")
    sweep_sample(sample_logs, out, "--no-certify")
    return out


def frontier_rows(out: Path) -> list[dict]:
    with (out / "frontier.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_recommendation_is_the_cheapest_certified_policy(demo_out: Path) -> None:
    routing = yaml.safe_load((demo_out / "routing.yaml").read_text())
    summary = json.loads((demo_out / "summary.json").read_text())
    assert routing["certified"] is True and routing["selection"] == "certified"
    assert summary["recommendation"]["quality_drop"] == routing["expected"]["quality_drop"]
    rows = frontier_rows(demo_out)
    certified = [r for r in rows if r["certified"] == "true"]
    cheapest = min(certified, key=lambda r: float(r["cost_per_1k_requests_usd"]))
    assert cheapest["recommended"] == "true"
    assert [r["recommended"] for r in rows].count("true") == 1
    # the default test is the drop test: its bound is within ε where the regret's is not
    (stage,) = summary["selection"]["stages"]
    assert summary["selection"]["test"] == stage["test"] == "drop"
    assert stage["drop_ucb"] <= 0.02 < stage["regret_ucb"]
    assert stage["p_value"] <= stage["delta"]
    block = routing["certification"]
    assert block["test"] == "drop" and "Waudby-Smith & Ramdas" in block["method"]
    assert block["stages"][0]["upper_bound"] == stage["drop_ucb"]
    assert block["labels"] == 1521 and block["delta"] == 0.05
    assert summary["requests"] == 10_000 and summary["rejected"] == 0


def test_empirical_recommendation_respects_the_quality_limit(empirical_out: Path) -> None:
    routing = yaml.safe_load((empirical_out / "routing.yaml").read_text())
    assert routing["certified"] is False and routing["expected"]["quality_drop"] <= 0.02
    # the pick sits just under the limit: nothing bounds its risk of exceeding it below 1
    selection = json.loads((empirical_out / "summary.json").read_text())["selection"]
    assert selection["exceed_risk"] == routing["certification"]["exceed_risk"] == 1.0
    rows = frontier_rows(empirical_out)
    feasible = [r for r in rows if float(r["quality_drop"]) <= 0.02]
    cheapest = min(feasible, key=lambda r: float(r["cost_per_1k_requests_usd"]))
    assert cheapest["recommended"] == "true"
    assert float(cheapest["cost_per_1k_requests_usd"]) == pytest.approx(
        routing["expected"]["cost_per_1k_requests_usd"], abs=1e-6
    )


def test_certification_costs_more_than_the_empirical_choice(
    demo_out: Path, empirical_out: Path
) -> None:
    certified = yaml.safe_load((demo_out / "routing.yaml").read_text())["expected"]
    empirical = yaml.safe_load((empirical_out / "routing.yaml").read_text())["expected"]
    assert certified["cost_per_1k_requests_usd"] > empirical["cost_per_1k_requests_usd"]


def test_a_stricter_limit_escalates_more(
    sample_logs: Path, tmp_path: Path, empirical_out: Path
) -> None:
    sweep_sample(sample_logs, tmp_path, "--max-quality-drop", "0.005", "--no-certify")
    strict = yaml.safe_load((tmp_path / "routing.yaml").read_text())["expected"]
    loose = yaml.safe_load((empirical_out / "routing.yaml").read_text())["expected"]
    assert strict["quality_drop"] <= 0.005
    assert strict["cost_per_1k_requests_usd"] > loose["cost_per_1k_requests_usd"]


def test_report_names_the_hard_intents_and_the_certified_policy_escalates_them(
    demo_out: Path,
) -> None:
    summary = json.loads((demo_out / "summary.json").read_text())
    hard = {s["segment"]: s for s in summary["failure_modes"]["hard_segments"]}
    assert {"intent=contract_interpretation", "intent=regulatory_crossref"} <= set(hard)
    assert not any(s.startswith(("intent=order_status", "intent=store_hours")) for s in hard)
    report = (demo_out / "report.md").read_text()
    assert "`contract_interpretation`" in report.split("Hard intents")[1].splitlines()[0]
    overall = summary["recommendation"]["escalation_rate"]
    for name in ("intent=contract_interpretation", "intent=regulatory_crossref"):
        assert hard[name]["escalation_rate"] > overall + 0.2, name
    # small is overconfident on contracts: the empirical pick keeps more of them
    contracts = hard["intent=contract_interpretation"]
    assert contracts["escalation_rate"] > contracts["empirical_escalation_rate"]


def test_report_md_links_no_image_and_html_inlines_every_chart(demo_out: Path) -> None:
    """report.md goes into pull-request bodies and $GITHUB_STEP_SUMMARY, where a relative image
    breaks: it names each chart instead; report.html keeps them inline."""
    md = (demo_out / "report.md").read_text()
    page = (demo_out / "report.html").read_text()
    assert "![" not in md and not re.search(r"\]\([^)]*\.svg\)", md)
    assert md.count("_Chart in report.html: ") == len(CHARTS)
    for name in CHARTS:
        assert f'<figure class="chart" id="{name}"><svg' in page, name
    assert not re.search(r"""(src|href)=["']https?:""", page)  # self-contained: nothing fetched
    assert len(md.encode()) < 1024 * 1024


def first_screen(out: Path) -> tuple[list[str], str]:
    """report.md's paragraphs up to the second heading, and the whole text."""
    md = (out / "report.md").read_text(encoding="utf-8")
    return md.split("\n## ")[0].split("\n\n")[1:], md


def test_report_opens_with_the_decision_what_it_saves_and_costs_and_every_warning(
    demo_out: Path,
) -> None:
    blocks, md = first_screen(demo_out)
    routing = yaml.safe_load((demo_out / "routing.yaml").read_text())
    always = {r["policy"]: r for r in frontier_rows(demo_out)}["always:large"]
    assert blocks[0].startswith("**Decision: deploy.** `cascade:medium>large@0.7556` is certified")
    assert "more per 1k requests than production as logged" in blocks[0]
    assert (
        "**but** it keeps requests of the high-stakes intent(s) `contract_interpretation`"
        in (blocks[0])
    )
    assert blocks[1].startswith("**Recommended: a cascade medium → large")
    p95 = f"**p95 {float(always['latency_p95_ms']):,.0f} ms → {routing['expected']['latency_p95_ms']:,.0f} ms**"
    assert p95 == "**p95 4,576 ms → 5,437 ms**" and p95 in blocks[1]
    assert "less than the $1,521.00 a month its calibration costs" in blocks[2]  # payback
    table = blocks[3].splitlines()
    assert table[0] == "|  | always-large | production as logged | recommended | vs always-large |"
    assert "| p95 latency | 4,576 ms | 4,202 ms | 5,437 ms | +861 ms |" in table
    assert "| guaranteed quality drop | 0 (the reference) | none (not certified) | ≤ 0.02 at 95% confidence (certified) |  |" in table  # fmt: skip
    warnings = json.loads((demo_out / "summary.json").read_text())["warnings"]
    assert blocks[5] == "**Warnings**"
    listed = blocks[6].splitlines()
    assert listed[0].startswith("- **Silent under-escalation** in 2 segment(s): intent `contract")
    assert listed[1:] == [f"- {w}" for w in warnings]
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## Silent under-escalation", "## How sure is this: the statistical detail"]  # fmt: skip


def test_silent_under_escalation_is_at_the_top_with_the_high_stakes_intent(demo_out: Path) -> None:
    _, md = first_screen(demo_out)
    section = md.split("## Silent under-escalation\n", 1)[1].split("\n## ", 1)[0]
    assert "| intent=contract_interpretation | yes | 36 | 0.750 | 0.889 | +0.139 |" in section
    failure_modes = md.split("## Failure modes\n", 1)[1].split("\n## ", 1)[0]
    assert "| intent=contract_interpretation | yes |" not in failure_modes  # not repeated


def test_the_statistical_detail_defines_each_term_in_one_sentence(demo_out: Path) -> None:
    _, md = first_screen(demo_out)
    detail = md.split("## How sure is this: the statistical detail\n", 1)[1].split("\n## ")[0]
    assert "measured drop +0.0020 over 1,521 labeled requests" in detail and "δ split" in detail
    terms = [line[2:] for line in detail.splitlines() if line.startswith("- ")]
    names = [t.split(":")[0].split(" = ")[0] for t in terms]
    assert names == ["Quality", "Quality drop", "Regret event", "Certified", "δ", "Upper bound", "Interval", "Measured frontier"]  # fmt: skip
    assert all(t.count(". ") == 0 and t.endswith(".") for t in terms), terms  # one sentence each
    assert "How the decision is made:" in detail


def test_frontier_shows_certified_and_measured_frontiers_and_why_the_pick_is_off_one(
    demo_out: Path,
) -> None:
    rows = frontier_rows(demo_out)
    (rec,) = [r for r in rows if r["recommended"] == "true"]
    assert (rec["pareto"], rec["certified"], rec["certified_pareto"]) == ("false", "true", "true")
    cost, quality = float(rec["cost_per_1k_requests_usd"]), float(rec["quality"])
    better = [
        r
        for r in rows
        if float(r["cost_per_1k_requests_usd"]) < cost and float(r["quality"]) >= quality
    ]
    assert better and not any(r["certified"] == "true" for r in better)

    def key(i: int) -> tuple[float, float, int]:  # cheaper first, then better, then file order
        return (float(rows[i]["cost_per_1k_requests_usd"]), -float(rows[i]["quality"]), i)

    certified = [i for i, r in enumerate(rows) if r["certified"] == "true"]
    for i, r in enumerate(rows):  # certified_pareto: Pareto among the certified policies only
        beaten = any(
            key(j) < key(i) and float(rows[j]["quality"]) >= float(r["quality"]) for j in certified
        )
        assert (r["certified_pareto"] == "true") == (r["certified"] == "true" and not beaten), r
    md = (demo_out / "report.md").read_text()
    section = md.split("## Cost–quality frontier: certified and measured\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    assert f"{len(better)} policies are cheaper with equal or better measured quality" in section
    assert "none of them is certified" in section
    tables = [t for t in section.split("\n\n") if t.startswith("| policy | certified |")]
    assert len(tables) == 2  # the certified frontier, then the measured one
    for table in tables:
        assert "| `cascade:medium>large@0.7556` **(recommended)** | yes |" in table
    assert "| no |" in tables[1] and "| no |" not in tables[0]


def test_baselines_are_not_called_uncertified(demo_out: Path) -> None:
    md = (demo_out / "report.md").read_text()
    table = md.split("## Strategies side by side", 1)[1].split("\n## ", 1)[0]
    assert "| single tier | `always:large` | — |" in table
    assert "always-premium has drop 0 by definition" in table


def test_demo_charts_mark_the_target_the_chosen_threshold_and_the_outage(demo_out: Path) -> None:
    svg = {name: (demo_out / name).read_text() for name in CHARTS}
    assert 'id="frontier-target"' in svg["frontier.svg"]
    assert 'id="frontier-certified"' in svg["frontier.svg"]
    assert 'id="thresholds-chosen"' in svg["thresholds.svg"]
    # the sample logs' eu-west-1 outage (endpoint health), shaded on the timeline
    assert 'id="timeline-outage-eu-west-1-2026-10-08"' in svg["escalation_by_region.svg"]
    md = (demo_out / "report.md").read_text()
    caption = md.split("_Chart in report.html: Escalation rate per region, by week._")[1]
    caption = caption.split("\n\n")[1]
    assert "2026-07-27 (2 days of data)" in caption and "eu-west-1 from 2026-10-08" in caption


def test_the_router_is_skipped_with_a_warning_above_its_request_limit(
    sample_logs: Path, tmp_path: Path
) -> None:
    sweep_sample(sample_logs, tmp_path, "--router-max-requests", "5000")
    rows = frontier_rows(tmp_path)
    assert rows and not any(r["strategy"] == "router" for r in rows)
    warnings = json.loads((tmp_path / "summary.json").read_text())["warnings"]
    assert any("router was skipped: 10,000 requests" in w for w in warnings)


def test_summary_json_follows_its_schema(demo_out: Path, empirical_out: Path) -> None:
    for out in (demo_out, empirical_out):
        check_summary(out / "summary.json")


def test_routing_yaml_and_summary_json_record_the_version_and_confidence_methods(
    demo_out: Path, sample_logs: Path
) -> None:
    """Which calibrate wrote them, and on what each tier's confidence (hence each threshold) is
    measured: tiers.yaml's method and the scale in force."""
    import calibrate

    routing = yaml.safe_load((demo_out / "routing.yaml").read_text(encoding="utf-8"))
    summary = json.loads((demo_out / "summary.json").read_text(encoding="utf-8"))
    assert (
        routing["generated_by"] == summary["generated_by"] == f"calibrate {calibrate.__version__}"
    )
    tiers = yaml.safe_load((sample_logs / "tiers.yaml").read_text(encoding="utf-8"))["tiers"]
    recorded = {
        c["tier"]: {"method": c["method"], "scale": c["scale"]} for c in summary["confidence"]
    }
    assert recorded == {t["name"]: t["confidence"] for t in tiers}
    deciding = [t for t in routing["tiers"] if "escalate_below" in t]
    assert deciding and all(t["confidence"] == recorded[t["name"]] for t in deciding)

"""`calibrate diff --export-to TARGET`: both routing.yaml files exported to one gateway, the
exported file's unified diff and each threshold on the target's own scale in the report; a side the
target cannot express is explained, not an error; the exit code still follows routing.yaml only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from export_support import cascade2, cascade3, router, write_routing, write_tiers
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.diff.compare import Materiality
from calibrate.export.changes import ExportChange, ExportSide, compare_exports
from calibrate.export.common import Export
from calibrate.pipeline import diff_routing
from calibrate.report.diff_report import export_section


@pytest.fixture
def tiers(tmp_path: Path) -> Path:
    return write_tiers(tmp_path / "tiers.yaml")


def _pair(tmp_path: Path, old, new) -> tuple[Path, Path]:
    return write_routing(tmp_path / "old.yaml", old), write_routing(tmp_path / "new.yaml", new)


def _section(markdown: str, target: str) -> str:
    head = f"### Exported {target} config"
    assert markdown.count(head) == 1, markdown
    return markdown[markdown.index(head) :]


def test_vllm_sr_threshold_move_is_shown_on_the_routers_scale(tmp_path, tiers) -> None:
    old, new = _pair(tmp_path, cascade2(-0.6), cascade2(-0.45))
    diff, text = diff_routing(old, new, Materiality(), export_to="vllm-sr", tiers=tiers)
    _, plain = diff_routing(old, new, Materiality())
    assert text.startswith(plain)  # the routing.yaml report is unchanged; the section follows
    section = _section(text, "vllm-sr")
    # (τ + 3) / 3: -0.6 → 0.8, -0.45 → 0.85
    assert (
        "| small | -0.6000 → -0.4500 | 0.8000 → 0.8500 | +0.0500 | avg_logprob normalised: "
        "(τ + 3) / 3 | `decision calibrate-default: algorithm.confidence.threshold` |"
    ) in section
    assert f"```diff\n--- {old} → vllm-sr\n+++ {new} → vllm-sr\n" in section
    assert "\n-        threshold: 0.7999999999999999\n+        threshold: 0.85\n" in section
    assert section.endswith("```\n")
    assert diff.material  # the exit code follows routing.yaml (threshold moved by 0.15)


def test_the_section_is_deterministic(tmp_path, tiers) -> None:
    old, new = _pair(tmp_path, cascade3(-0.6, -0.9), cascade3(-0.5, -0.7))
    runs = {
        diff_routing(old, new, Materiality(), export_to="portkey", tiers=tiers)[1] for _ in "ab"
    }
    assert len(runs) == 1


def test_portkey_and_litellm_keep_routing_yamls_scale(tmp_path, tiers) -> None:
    old, new = _pair(tmp_path, cascade3(-0.6, -0.9), cascade3(-0.5, -0.9))
    sections = {}
    for target, scale in (
        ("portkey", "logprob_mean, raw_logprob scale (same)"),
        ("litellm", "logprob_mean, raw_logprob scale (same; data only, not enforced)"),
    ):
        text = diff_routing(old, new, Materiality(), export_to=target, tiers=tiers)[1]
        sections[target] = section = _section(text, target)
        assert f"| small | -0.6000 → -0.5000 | -0.6000 → -0.5000 | +0.1000 | {scale} |" in section
        assert (
            f"| medium | -0.9000 → -0.9000 | -0.9000 → -0.9000 | no change | {scale} |" in section
        )
    # LiteLLM carries the thresholds in model_info: its file changes
    assert (
        "-    calibrate_escalate_below: -0.6\n+    calibrate_escalate_below: -0.5\n"
        in (sections["litellm"])
    )
    # Portkey's config names the gate; the gate reads the threshold from routing.yaml
    assert "```" not in sections["portkey"]
    assert (
        "`calibrate serve-gate on routing.yaml (http://127.0.0.1:8788/confidence/small)`"
        in (sections["portkey"])
    )
    assert (
        "The exported file does not change: the thresholds that moved are held outside it"
        in (sections["portkey"])
    )


def test_an_unchanged_export_says_so_without_a_diff_block(tmp_path, tiers) -> None:
    old, new = _pair(tmp_path, cascade2(-0.6), cascade2(-0.6))
    diff, text = diff_routing(old, new, Materiality(), export_to="litellm", tiers=tiers)
    section = _section(text, "litellm")
    assert "The exported file does not change." in section
    assert "```" not in section
    assert not diff.material


def test_a_side_the_target_cannot_express_is_explained_not_an_error(tmp_path, tiers) -> None:
    # vllm-sr has one threshold per decision: a 3-tier cascade with different steps is refused
    old, new = _pair(tmp_path, cascade2(-0.6), cascade3(-0.6, -0.9))
    result = CliRunner().invoke(
        app,
        ["diff", str(old), str(new), "--export-to", "vllm-sr", "--tiers", str(tiers), "--check"],
    )
    assert result.exit_code == 3, result.output  # material: a tier was added
    section = _section(result.stdout, "vllm-sr")
    assert f"The new routing.yaml (`{new}`) cannot be exported to vllm-sr:" in section
    assert "one threshold for every step" in section
    assert "Hint: Pass --approximate" in section
    assert "The old routing.yaml" not in section
    assert "```diff" not in section


def test_both_sides_refused_names_each_reason(tmp_path) -> None:
    old, new = _pair(tmp_path, router(), cascade2(-0.6))  # no --tiers: the scale is unknown
    text = diff_routing(old, new, Materiality(), export_to="portkey")[1]
    section = _section(text, "portkey")
    assert "strategy `router` scores each prompt" in section
    assert "Hint: Pass --tiers tiers.yaml" in section


def test_json_carries_the_export(tmp_path, tiers) -> None:
    old, new = _pair(tmp_path, cascade2(-0.6), cascade2(-0.45))
    plain = json.loads(diff_routing(old, new, Materiality(), as_json=True)[1])
    data = json.loads(
        diff_routing(old, new, Materiality(), export_to="vllm-sr", tiers=tiers, as_json=True)[1]
    )
    export = data.pop("export")
    assert data == plain
    assert export["target"] == "vllm-sr" and export["changed"] is True
    assert export["old"]["exported"] and export["old"]["refused"] is None
    (shift,) = export["thresholds"]
    assert (shift["old_value"], shift["new_value"], shift["change"]) == (
        pytest.approx(0.8),
        0.85,
        0.05,
    )
    assert "+        threshold: 0.85\n" in export["unified_diff"]


def test_cli_options(tmp_path, tiers) -> None:
    old, new = _pair(tmp_path, cascade2(-0.6), cascade2(-0.6))
    runner = CliRunner()
    bad = runner.invoke(app, ["diff", str(old), str(new), "--export-to", "nginx"])
    assert bad.exit_code == 2 and "must be one of vllm-sr, portkey, litellm" in bad.output
    lonely = runner.invoke(app, ["diff", str(old), str(new), "--tiers", str(tiers)])
    assert lonely.exit_code == 2 and "only with --export-to" in lonely.output
    ok = runner.invoke(
        app,
        ["diff", str(old), str(new), "--export-to", "portkey", "--tiers", str(tiers), "--check"],
    )
    assert ok.exit_code == 0, ok.output
    assert "### Exported portkey config" in ok.stdout


def test_the_diff_fence_outlasts_backticks_in_the_exported_file() -> None:
    def side(text: str) -> ExportSide:
        return ExportSide("r.yaml", Export("portkey", text, ("x",)))

    change = ExportChange("portkey", side("a\n"), side("````b\n"), "-a\n+````b\n", ())
    section = export_section(change)
    assert "`````diff\n-a\n+````b\n`````" in section


def test_compare_exports_orders_thresholds_new_file_first(tmp_path, tiers) -> None:
    old, new = _pair(tmp_path, cascade2(-0.6), cascade3(-0.5, -0.8))
    change = compare_exports(old, new, "portkey", tiers)
    assert [(t.tier, t.status) for t in change.thresholds] == [
        ("small", "moved"),
        ("medium", "only new"),
    ]
    assert change.changed is True

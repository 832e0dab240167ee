"""One confidence scale per tier: tiers.yaml declares method and scale, replay stores the declared
scale, mixed scales stop `sweep` and `check`, routing.yaml records each threshold's method and
scale, and the old plain string form still loads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from llm_server import LLMServer
from replay_support import make_store, query, run_replay, tier, write_tiers
from typer.testing import CliRunner

from calibrate.cli.app import app
from calibrate.config.routing import load_routing
from calibrate.config.tiers import load_tiers
from calibrate.errors import ConfigError
from calibrate.export.common import check_threshold
from calibrate.formats.logprobs import confidence

runner = CliRunner()

TIERS = """tiers:
  - name: small
    model: m-small
    price: {{input_per_mtok: 0.15, output_per_mtok: 0.6}}
    confidence: {small}
  - {{name: large, model: m-large, price: {{input_per_mtok: 2.5, output_per_mtok: 10}}}}
"""
PROBABILITY = "{method: logprob_mean, scale: probability}"


def _row(i: int, source: str, conf: float, ok: bool) -> str:
    attempt = {"model": "m-small", "input_tokens": 10, "output_tokens": 5, "status": "ok"}
    return json.dumps(
        {
            "request_id": f"r-{i}",
            "timestamp": f"2026-10-01T09:{i % 60:02d}:00Z",
            "prompt": f"question {i}",
            "attempts": [
                {**attempt, "tier": "small", "source": source, "confidence": conf},
                {**attempt, "tier": "large", "model": "m-large", "source": "shadow"},
            ],
            "labels": {"small": int(ok), "large": 1},
        }
    )


def _logs(tmp_path: Path, shadow_conf: float | None) -> Path:
    """Even requests: small answered in production with a probability in (0, 1); odd ones: a
    shadow small attempt with `shadow_conf` added to -i/100 (None: also a probability). Small's
    answer is acceptable iff its probability is ≥ 0.5, so a cascade on small wins."""
    lines = []
    for i in range(60):
        p = 0.2 + (i % 7) / 10
        if i % 2 == 0:
            lines.append(_row(i, "prod", p, p >= 0.5))
        else:
            conf = p if shadow_conf is None else shadow_conf - i / 100
            lines.append(_row(i, "shadow", conf, p >= 0.5))
    path = tmp_path / "logs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _tiers(tmp_path: Path, small: str) -> Path:
    path = tmp_path / "tiers.yaml"
    path.write_text(TIERS.format(small=small), encoding="utf-8")
    return path


def _sweep(tmp_path: Path, logs: Path, tiers: Path):
    return runner.invoke(
        app,
        ["sweep", str(logs), "--tiers", str(tiers), "--out", str(tmp_path / "o"), "--no-certify"],
    )


def test_mixed_scales_in_a_tier_stop_the_sweep_naming_tier_ranges_and_fix(tmp_path: Path) -> None:
    logs = _logs(tmp_path, shadow_conf=-0.1)  # shadow: raw logprobs in [-0.69, -0.11]
    result = _sweep(tmp_path, logs, _tiers(tmp_path, PROBABILITY))
    assert result.exit_code == 1, result.output
    err = " ".join(result.stderr.split())
    assert "Error: tier 'small' mixes confidence scales" in err
    assert "prod confidences lie in [0.2, 0.8] (probability)" in err
    assert "shadow confidences lie in [-0.69, -0.11] (raw_logprob)" in err
    assert "Hint:" in err and "scale: probability}" in err and "fresh store" in err
    assert not (tmp_path / "o" / "routing.yaml").exists()


def test_check_reports_mixed_scales_and_exits_1(tmp_path: Path) -> None:
    logs = _logs(tmp_path, shadow_conf=-0.1)
    result = runner.invoke(app, ["check", str(logs), "--tiers", str(_tiers(tmp_path, PROBABILITY))])
    assert result.exit_code == 1, result.output
    assert "tier 'small' mixes confidence scales" in " ".join(result.output.split())


def test_an_explicit_scale_the_stored_confidences_are_not_on_is_an_error(tmp_path: Path) -> None:
    explicit_raw = "{method: logprob_mean, scale: raw_logprob}"
    result = _sweep(tmp_path, _logs(tmp_path, None), _tiers(tmp_path, explicit_raw))
    assert result.exit_code == 1, result.output
    err = " ".join(result.stderr.split())
    assert "not on the raw_logprob scale tiers.yaml declares (≤ 0)" in err


def test_routing_yaml_records_each_thresholds_method_and_scale(tmp_path: Path) -> None:
    result = _sweep(tmp_path, _logs(tmp_path, None), _tiers(tmp_path, PROBABILITY))
    assert result.exit_code == 0, result.output
    text = (tmp_path / "o" / "routing.yaml").read_text(encoding="utf-8")
    config = load_routing(tmp_path / "o" / "routing.yaml")
    assert config.strategy == "cascade", text
    for t in config.tiers:
        if t.escalate_below is None:
            assert t.confidence is None, text
        else:
            assert t.confidence is not None
            assert (t.confidence.method, t.confidence.scale) == ("logprob_mean", "probability")
    assert "escalate_below: 0.5" in text
    assert "confidence: {method: logprob_mean, scale: probability}}" in text


def test_the_plain_form_on_the_other_scale_is_recorded_on_the_stored_scale(tmp_path: Path) -> None:
    """`confidence: logprob_mean` (raw by default) with probabilities stored: the sweep runs, says
    so, and records any threshold on the probability scale the data is on."""
    result = _sweep(tmp_path, _logs(tmp_path, None), _tiers(tmp_path, "logprob_mean"))
    assert result.exit_code == 0, result.output
    report = (tmp_path / "o" / "report.md").read_text(encoding="utf-8")
    assert "`confidence: logprob_mean` means the raw_logprob scale" in " ".join(report.split())
    (small, _) = load_routing(tmp_path / "o" / "routing.yaml").tiers
    assert small.confidence is not None and small.escalate_below is not None
    assert (small.confidence.scale, 0 < small.escalate_below <= 1) == ("probability", True)


def test_replay_on_a_probability_tier_stores_exp_of_the_mean_logprob(tmp_path: Path) -> None:
    db = make_store(tmp_path / "s.duckdb", 8)
    with LLMServer() as srv:
        tiers = write_tiers(
            tmp_path / "tiers.yaml",
            srv.base_url,
            [
                tier("p", "m-p", confidence={"method": "logprob_mean", "scale": "probability"}),
                tier("r", "m-r", confidence="logprob_mean"),
            ],
        )
        run_replay(db, tiers, sample=8, seed=1)
    rows = query(
        db,
        "SELECT a.tier, a.confidence, c.logprob_stats, a.extra->>'confidence_scale' FROM attempts a"
        " JOIN replay_calls c ON c.cache_key = a.extra->>'cache_key' ORDER BY a.tier",
    )
    assert {r[0] for r in rows} == {"p", "r"} and len(rows) == 16
    for name, conf, stats, scale in rows:
        mean = json.loads(stats)["mean"]
        assert mean < 0
        if name == "p":
            assert (conf, scale) == (pytest.approx(math.exp(mean)), "probability")
            assert 0 < conf < 1
        else:
            assert (conf, scale) == (pytest.approx(mean), "raw_logprob")


def test_the_plain_string_form_still_loads_with_its_natural_scale(tmp_path: Path) -> None:
    natural = {
        "logprob_mean": "raw_logprob",
        "logprob_min": "raw_logprob",
        "first_token": "probability",
        "verbalized": "probability",
        "none": None,
    }
    path = tmp_path / "tiers.yaml"
    for method, scale in natural.items():
        path.write_text(
            yaml.safe_dump({"tiers": [{"name": "a", "model": "m", "confidence": method}]}),
            encoding="utf-8",
        )
        (t,) = load_tiers(path).tiers
        assert (t.confidence, t.confidence_scale, t.scale) == (method, None, scale)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"method": "verbalized", "scale": "raw_logprob"}, "cannot be on the raw_logprob scale"),
        ({"method": "logprob_mean", "scale": "percent"}, "confidence_scale"),
        ({"method": "logprob_mean", "units": "x"}, "unknown key units"),
    ],
)
def test_a_bad_confidence_mapping_names_the_file_and_the_problem(
    tmp_path: Path, spec: dict, message: str
) -> None:
    path = tmp_path / "tiers.yaml"
    path.write_text(yaml.safe_dump({"tiers": [{"name": "a", "model": "m", "confidence": spec}]}))
    with pytest.raises(ConfigError) as err:
        load_tiers(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_the_logprob_rule_puts_each_method_on_each_scale() -> None:
    values = (-0.1, -0.5, -0.3)
    assert confidence("logprob_mean", values)[0] == pytest.approx(-0.3)
    assert confidence("logprob_mean", values, "probability")[0] == pytest.approx(math.exp(-0.3))
    assert confidence("logprob_min", values, "probability")[0] == pytest.approx(math.exp(-0.5))
    assert confidence("first_token", values)[0] == pytest.approx(math.exp(-0.1))
    assert confidence("first_token", values, "raw_logprob")[0] == pytest.approx(-0.1)


def test_an_export_reads_a_threshold_on_its_recorded_scale() -> None:
    check_threshold("small", "logprob_mean", 0.8, "portkey", "probability")  # no refusal
    with pytest.raises(Exception, match="raw_logprob scale"):
        check_threshold("small", "logprob_mean", 0.8, "portkey", "raw_logprob")

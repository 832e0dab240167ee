"""The bundled sample logs: deterministic, valid canonical format, built to show what they show."""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from calibrate.config.tiers import load_tiers
from calibrate.demo import samplegen

pytestmark = pytest.mark.e2e  # generates the sample logs: not in `make test-fast`

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_logs"
TIERS = ("small", "medium", "large")
HARD = {i.name for i in samplegen.INTENTS if i.difficulty == 2}


def read_rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return read_rows(SAMPLE_DIR / "requests.jsonl.gz")


@pytest.fixture(scope="module")
def labeled(rows: list[dict]) -> list[dict]:
    return [r for r in rows if "labels" in r]


def ok_attempt(row: dict, tier: str) -> dict:
    [a] = [a for a in row["attempts"] if a["tier"] == tier and a["status"] == "ok"]
    return a


def test_same_seed_same_bytes_different_seed_different(tmp_path: Path) -> None:
    paths = [tmp_path / name for name in ("a.jsonl.gz", "b.jsonl.gz", "c.jsonl.gz")]
    for path, seed in zip(paths, (3, 3, 4), strict=True):
        assert samplegen.write_jsonl_gz(samplegen.generate_requests(400, seed), path) == 400
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b
    assert a != c


def test_committed_sample_is_a_fresh_generation(tmp_path: Path) -> None:
    samplegen.main(["--out", str(tmp_path)])  # the committed seed and size are the defaults
    for name in ("requests.jsonl.gz", "tiers.yaml"):
        assert (tmp_path / name).read_bytes() == (SAMPLE_DIR / name).read_bytes(), (
            f"sample_logs/{name} differs from `python -m calibrate.demo.samplegen --out sample_logs "
            f"--requests {samplegen.SAMPLE_REQUESTS} --seed {samplegen.SAMPLE_SEED}`"
        )
    generated = sorted(p.name for p in SAMPLE_DIR.iterdir() if p.name != "rules.yaml")
    assert generated == ["requests.jsonl.gz", "tiers.yaml"]  # rules.yaml is written by hand
    assert (SAMPLE_DIR / "requests.jsonl.gz").stat().st_size < 3_000_000


def test_tiers_yaml_loads_with_the_documented_prices() -> None:
    cfg = load_tiers(SAMPLE_DIR / "tiers.yaml")
    assert cfg.names == TIERS
    prices = {t.name: (t.model, t.price.input_per_mtok, t.price.output_per_mtok) for t in cfg.tiers}
    assert prices == {
        "small": ("gpt-4o-mini", 0.15, 0.60),
        "medium": ("gpt-4.1-mini", 0.40, 1.60),
        "large": ("gpt-4.1", 2.00, 8.00),
    }
    assert all(t.params == {"temperature": 0, "max_tokens": 512} for t in cfg.tiers)


def test_window_and_count_follow_the_arguments() -> None:
    got = list(samplegen.generate_requests(300, seed=1, start=date(2027, 1, 1), days=3))
    assert len(got) == 300
    assert {r["timestamp"][:10] for r in got} <= {"2027-01-01", "2027-01-02", "2027-01-03"}
    assert list(samplegen.generate_requests(0, seed=1)) == []


def test_every_row_is_valid_canonical_format(rows: list[dict]) -> None:
    cfg = load_tiers(SAMPLE_DIR / "tiers.yaml")
    price = {t.name: t.price for t in cfg.tiers}
    assert len(rows) == samplegen.SAMPLE_REQUESTS
    assert len({r["request_id"] for r in rows}) == len(rows)
    stamps = [r["timestamp"] for r in rows]
    assert stamps == sorted(stamps)
    assert stamps[0] >= "2026-08-01" and stamps[-1] < "2026-10-30"
    for r in rows:
        assert isinstance(r["request_id"], str)
        datetime.strptime(r["timestamp"], "%Y-%m-%dT%H:%M:%SZ")
        assert r["region"] in samplegen.REGIONS and r["app"] in samplegen.APPS
        [msg] = r["messages"]
        assert msg["role"] == "user" and isinstance(msg["content"], str) and msg["content"]
        overhead = r["input_tokens"] - math.ceil(len(msg["content"]) / 4)
        assert 50 <= overhead <= 250
        assert r["served_tier"] in TIERS
        assert isinstance(r["metadata"]["intent"], str) and isinstance(r["trace_id"], str)
        keys = [(a["tier"], a["source"]) for a in r["attempts"]]
        assert len(keys) == len(set(keys)), r["request_id"]
        assert {a["tier"] for a in r["attempts"]} == set(TIERS)
        for a in r["attempts"]:
            assert a["source"] in ("prod", "shadow") and a["status"] in ("ok", "error")
            assert a["input_tokens"] == r["input_tokens"]
            if a["status"] == "ok":
                assert 0 < a["confidence"] < 1 and a["output"]
                assert a["output_tokens"] > 0 and a["latency_ms"] > 0
                if "cost_usd" in a:
                    want = price[a["tier"]].cost_usd(a["input_tokens"], a["output_tokens"])
                    assert a["cost_usd"] == pytest.approx(want, rel=1e-5)
        served = [a for a in r["attempts"] if a["tier"] == r["served_tier"]]
        assert any(a["source"] == "prod" and a["status"] == "ok" for a in served)
        if "labels" in r:
            assert set(r["labels"]) == set(TIERS)
            assert all(v in (0, 1) for v in r["labels"].values())
        else:
            assert "reference" not in r


def test_production_ran_the_documented_cascade(rows: list[dict]) -> None:
    for r in rows:
        small = ok_attempt(r, "small")
        assert small["source"] == "prod"
        escalated = small["confidence"] < samplegen.PROD_THRESHOLD
        assert (r["served_tier"] != "small") == escalated
        assert (ok_attempt(r, "large")["source"] == "prod") == (r["served_tier"] == "large")
    served = Counter(r["served_tier"] for r in rows)
    assert 0.15 < (served["large"] + served["medium"]) / len(rows) < 0.35
    missing = [("cost_usd" not in a) for r in rows for a in r["attempts"]]
    assert 0.015 < np.mean(missing) < 0.045


def test_label_rate_and_tier_quality(rows: list[dict], labeled: list[dict]) -> None:
    assert 0.13 <= len(labeled) / len(rows) <= 0.17
    assert any("reference" in r for r in labeled)
    acc = {t: np.mean([r["labels"][t] for r in labeled]) for t in TIERS}
    assert acc["small"] < acc["medium"] < acc["large"]
    hard = [r for r in labeled if r["metadata"]["intent"] in HARD]
    assert np.mean([r["labels"]["small"] for r in hard]) < 0.55
    assert np.mean([r["labels"]["large"] for r in hard]) > 0.8


def test_small_confidence_is_informative_but_overconfident_on_a_hard_intent(
    labeled: list[dict],
) -> None:
    y = [r["labels"]["small"] for r in labeled]
    conf = [ok_attempt(r, "small")["confidence"] for r in labeled]
    assert 0.7 <= roc_auc_score(y, conf) <= 0.87
    overconfident = []
    for intent in sorted(HARD):
        sel = [r for r in labeled if r["metadata"]["intent"] == intent]
        mean_conf = np.mean([ok_attempt(r, "small")["confidence"] for r in sel])
        accuracy = np.mean([r["labels"]["small"] for r in sel])
        if mean_conf > 0.75 and accuracy < 0.55:
            overconfident.append(intent)
    assert overconfident
    large = [ok_attempt(r, "large")["confidence"] for r in labeled]
    assert np.median(large) > 0.9  # large has its own scale, clustered high


def test_hard_share_drifts_up_in_the_last_30_days(rows: list[dict]) -> None:
    cut = (date(2026, 8, 1) + timedelta(days=60)).isoformat()
    before = [r["metadata"]["intent"] in HARD for r in rows if r["timestamp"] < cut]
    after = [r["metadata"]["intent"] in HARD for r in rows if r["timestamp"] >= cut]
    assert np.mean(after) > np.mean(before) + 0.08


def test_outage_only_in_its_region_and_window_with_medium_serving(rows: list[dict]) -> None:
    failed = [r for r in rows if any(a["status"] != "ok" for a in r["attempts"])]
    assert len(failed) >= 10
    for r in failed:
        assert r["region"] == samplegen.OUTAGE_REGION
        assert "2026-10-08" <= r["timestamp"][:10] <= "2026-10-11"
        assert r["served_tier"] == "medium"
        by_key = {(a["tier"], a["source"]): a for a in r["attempts"]}
        assert by_key["large", "prod"]["status"] == "error"
        assert by_key["large", "prod"]["cost_usd"] == 0
        assert "confidence" not in by_key["large", "prod"]
        assert by_key["large", "shadow"]["status"] == "ok"
        assert by_key["medium", "prod"]["status"] == "ok"
    medium_served = [r for r in rows if r["served_tier"] == "medium"]
    assert medium_served == failed

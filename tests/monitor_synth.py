"""Synthetic two-tier production logs for the monitor tests (a helper module, not a test file).

Production runs the cascade small → large, escalating when small's confidence < THRESHOLD. Small's
answer is right with probability `accuracy`; its confidence logit is N(RIGHT_LOGIT, 1) when right
and N(wrong_logit, 1) when wrong. From `change_day` on, `accuracy` and `wrong_logit` take their
second values: an *overconfident* small tier gets less accurate while its wrong answers look
confident (escalations drop), *easier traffic* raises accuracy with the same conditional
confidences (escalations drop too, for a good reason). A share of requests is labeled; labeled
requests also carry a shadow large answer, as a labeling sample would.

The same draws become canonical JSONL rows (for the end-to-end tests through DuckDB) or, directly,
the `RequestLog` the store would return (for the many seeded runs of the false-alarm test).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from calibrate.records.outcomes import RequestLog

START = date(2026, 3, 2)
THRESHOLD = 0.7
RIGHT_LOGIT = 2.0
LARGE_ACCURACY = 0.95
COST_USD = (0.0001, 0.002)
REGIONS = ("eu-west-1", "us-east-1")


@dataclass(frozen=True)
class Scenario:
    days: int = 60
    per_day: int = 150
    label_rate: float = 0.25
    change_day: int | None = None
    accuracy: tuple[float, float] = (0.8, 0.8)
    wrong_logit: tuple[float, float] = (-0.5, -0.5)
    labels_after_change: bool = True


STATIONARY = Scenario()
OVERCONFIDENT = Scenario(change_day=40, accuracy=(0.8, 0.6), wrong_logit=(-0.5, 2.0))
EASIER = Scenario(change_day=40, accuracy=(0.8, 0.92))


@dataclass(frozen=True)
class Draws:
    day: np.ndarray
    second: np.ndarray
    region: np.ndarray
    small_ok: np.ndarray
    large_ok: np.ndarray
    small_conf: np.ndarray
    large_conf: np.ndarray
    labeled: np.ndarray

    @property
    def escalated(self) -> np.ndarray:
        return self.small_conf < THRESHOLD

    @property
    def large_answered(self) -> np.ndarray:
        return self.escalated | self.labeled


def draw(s: Scenario, seed: int) -> Draws:
    rng = np.random.default_rng(seed)
    n = s.days * s.per_day
    day = np.repeat(np.arange(s.days), s.per_day)
    after = day >= s.change_day if s.change_day is not None else np.zeros(n, dtype=bool)
    accuracy = np.where(after, s.accuracy[1], s.accuracy[0])
    wrong = np.where(after, s.wrong_logit[1], s.wrong_logit[0])
    small_ok = rng.uniform(size=n) < accuracy
    logit = np.where(small_ok, RIGHT_LOGIT, wrong) + rng.standard_normal(n)
    large_ok = rng.uniform(size=n) < LARGE_ACCURACY
    large_logit = np.where(large_ok, 2.5, 0.5) + 0.8 * rng.standard_normal(n)
    labeled = rng.uniform(size=n) < s.label_rate
    if not s.labels_after_change:
        labeled &= ~after
    return Draws(
        day=day,
        second=np.sort(rng.integers(0, 86400, size=(s.days, s.per_day)), axis=1).ravel(),
        region=rng.integers(0, len(REGIONS), size=n),
        small_ok=small_ok,
        large_ok=large_ok,
        small_conf=np.round(1 / (1 + np.exp(-logit)), 4),
        large_conf=np.round(1 / (1 + np.exp(-large_logit)), 4),
        labeled=labeled,
    )


def request_log(d: Draws) -> RequestLog:
    """What `Store.request_log(["small", "large"])` returns for these draws' JSONL rows."""
    n = d.day.size
    big = d.large_answered
    conf = np.column_stack([d.small_conf, np.where(big, d.large_conf, np.nan)])
    label = np.column_stack(
        [
            np.where(d.labeled, d.small_ok.astype(float), np.nan),
            np.where(d.labeled & big, d.large_ok.astype(float), np.nan),
        ]
    )
    cost = np.column_stack([np.full(n, COST_USD[0]), np.where(big, COST_USD[1], np.nan)])
    epoch = (START - date(1970, 1, 1)).days
    return RequestLog(
        tiers=("small", "large"),
        request_ids=np.array([f"r-{i:07d}" for i in range(n)], dtype=object),
        timestamp_s=((epoch + d.day) * 86400 + d.second).astype(np.float64),
        region=np.array([REGIONS[r] for r in d.region], dtype=object),
        app=np.full(n, "", dtype=object),
        intent=np.full(n, "", dtype=object),
        input_tokens=np.full(n, 20, dtype=np.int64),
        served_tier=np.where(d.escalated, "large", "small").astype(object),
        failed_tier=np.full(n, "", dtype=object),
        answered=np.column_stack([np.ones(n, dtype=bool), big]),
        confidence=conf,
        label=label,
        cost_usd=cost,
        tier_cost_usd={"large": COST_USD[1], "small": COST_USD[0]},
    )


def _attempt(tier: str, source: str, confidence: float, cost: float) -> dict:
    return {
        "tier": tier,
        "model": f"m-{tier}",
        "source": source,
        "confidence": confidence,
        "input_tokens": 20,
        "output_tokens": 5,
        "cost_usd": cost,
        "latency_ms": 100,
        "status": "ok",
    }


def write_jsonl(d: Draws, path: Path) -> Path:
    """The draws as canonical log rows (production attempts, shadow large on labeled requests)."""
    lines = []
    for i in range(d.day.size):
        day = START + timedelta(days=int(d.day[i]))
        h, rest = divmod(int(d.second[i]), 3600)
        escalated = bool(d.escalated[i])
        attempts = [_attempt("small", "prod", float(d.small_conf[i]), COST_USD[0])]
        if d.large_answered[i]:
            source = "prod" if escalated else "shadow"
            attempts.append(_attempt("large", source, float(d.large_conf[i]), COST_USD[1]))
        row = {
            "request_id": f"r-{i:07d}",
            "timestamp": f"{day}T{h:02d}:{rest // 60:02d}:{rest % 60:02d}Z",
            "region": REGIONS[int(d.region[i])],
            "prompt": f"question {i}",
            "input_tokens": 20,
            "served_tier": "large" if escalated else "small",
            "attempts": attempts,
        }
        if d.labeled[i]:
            row["labels"] = {"small": int(d.small_ok[i])}
            if d.large_answered[i]:
                row["labels"]["large"] = int(d.large_ok[i])
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def routing_yaml(reference_days: int = 30) -> str:
    """The deployed config: small → large below THRESHOLD, calibrated on the first days."""
    end = START + timedelta(days=reference_days - 1)
    return f"""version: 1
strategy: cascade
tiers:
  - {{name: small, model: m-small, escalate_below: {THRESHOLD}}}
  - {{name: large, model: m-large}}
premium_tier: large
objective: {{max_quality_drop: 0.02, confidence_level: 0.95}}
certified: true
selection: certified
expected:
  escalation_rate: 0.28
calibrated_on:
  requests: {reference_days * 150}
  labeled: {reference_days * 37}
  window: {{start: '{START}T00:00:00Z', end: '{end}T23:59:59Z'}}
  logs_sha256: synthetic
"""

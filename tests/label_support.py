"""Helpers for the label tests: a seeded two-tier log with known ground truth, and a store."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from calibrate.ingest import stage as ingest
from calibrate.store import Store

T0 = datetime(2026, 11, 1, tzinfo=UTC)
TIERS_YAML = """tiers:
  - {name: small, model: m-small, price: {input_per_mtok: 0.15, output_per_mtok: 0.6}}
  - {name: large, model: m-large, price: {input_per_mtok: 2.5, output_per_mtok: 10}}
"""
HARD_INTENT = "billing_dispute"


def clock() -> datetime:
    return T0


@dataclass(frozen=True)
class Workload:
    """The logs written, and the truth a perfect reviewer would give (request_id → tier → 0/1)."""

    logs: Path
    truth: dict[str, dict[str, int]]


def write_workload(path: Path, n: int = 400, seed: int = 7) -> Workload:
    """Two tiers; the small tier is usually right when confident, and usually wrong on the hard
    intent (a fifth of the traffic) whatever its confidence. Every third request has a reference."""
    rng = random.Random(seed)
    rows, truth = [], {}
    for i in range(n):
        rid = f"r-{i:04d}"
        hard = rng.random() < 0.2
        conf = rng.random()
        small_ok = rng.random() < (0.3 if hard else (0.95 if conf > 0.5 else 0.6))
        large_ok = rng.random() < 0.95
        truth[rid] = {"small": int(small_ok), "large": int(large_ok)}
        answer = f"answer {i}"
        rows.append(
            {
                "request_id": rid,
                "timestamp": f"2026-10-{1 + i % 28:02d}T09:00:00Z",
                "app": "billing" if i % 2 else "support",
                "region": ("eu-west-1", "us-east-1")[i % 3 == 0],
                "prompt": f"question {i}" + (" about a chargeback" if hard else ""),
                "input_tokens": 40 + (i * 37) % 300,
                "reference": answer if i % 3 == 0 else None,
                "metadata": {"intent": HARD_INTENT if hard else "order_status"},
                "attempts": [
                    {
                        "tier": "small",
                        "confidence": round(conf, 4),
                        "output": answer if small_ok else f"wrong {i}",
                        "input_tokens": 40,
                        "output_tokens": 10,
                        "latency_ms": 200,
                    },
                    {
                        "tier": "large",
                        "source": "shadow",
                        "confidence": 0.99,
                        "output": answer if large_ok else f"bad {i}",
                        "input_tokens": 40,
                        "output_tokens": 12,
                        "latency_ms": 900,
                    },
                ],
            }
        )
    text = "".join(json.dumps({k: v for k, v in r.items() if v is not None}) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    return Workload(path, truth)


def make_store(tmp_path: Path, n: int = 400, seed: int = 7) -> tuple[Path, Workload]:
    """A store file holding the workload, and the workload."""
    work = write_workload(tmp_path / "logs.jsonl", n, seed)
    db = tmp_path / "store.duckdb"
    with Store.open(db) as store:
        ingest.ingest(store, [work.logs], strict=False, clock=clock)
    return db, work


def query(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    with Store.open(db) as store:
        return store.con.execute(sql, params or []).fetchall()

"""Helpers for the replay tests: a store of plain requests, tiers.yaml for a server, a fake clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx

from calibrate.calls.context import RunContext
from calibrate.calls.limits import Clock, SystemClock
from calibrate.config.tiers import TiersConfig, load_tiers
from calibrate.ingest import stage as ingest
from calibrate.records.replay import ReplaySummary, Selection, Shard
from calibrate.replay import stage as replay
from calibrate.store import Store

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def wall() -> datetime:
    return T0


class FakeClock:
    """Monotonic time that moves only when someone sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


def prompt(i: int) -> str:
    return f"question {i}: where is my order #{i}?"


def make_store(path: Path, n: int, prompts: Callable[[int], str] = prompt, days: int = 1) -> Path:
    """A store holding n requests without attempts (request r-i asks prompts(i))."""
    logs = path.parent / f"{path.stem}-logs.jsonl"
    rows = [
        {
            "request_id": f"r-{i:04d}",
            "timestamp": f"2026-10-{1 + i % days:02d}T09:00:00Z",
            "prompt": prompts(i),
        }
        for i in range(n)
    ]
    logs.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with Store.open(path) as store:
        ingest.ingest(store, [logs], strict=False, clock=wall)
    return path


def write_tiers(path: Path, base_url: str, tiers: Sequence[Mapping[str, object]]) -> TiersConfig:
    """tiers.yaml with every tier on base_url (JSON is valid YAML)."""
    full = [{"base_url": base_url, **t} for t in tiers]
    path.write_text(json.dumps({"tiers": full}, indent=1), encoding="utf-8")
    return load_tiers(path)


def tier(name: str, model: str, **extra: object) -> dict[str, object]:
    """A tier priced at 1 / 2 USD per Mtok with the given extras (limits, confidence, ...)."""
    return {"name": name, "model": model, "price": {"input_per_mtok": 1, "output_per_mtok": 2}} | (
        extra
    )


def run_replay(
    db: Path,
    tiers: TiersConfig,
    *,
    sample: int = 1000,
    seed: int = 0,
    where: str | None = None,
    since: datetime | None = None,
    clock: Clock | None = None,
    environ: Mapping[str, str] | None = None,
    max_cost_usd: float | None = None,
    retry_failed: bool = False,
    interrupted: Callable[[], bool] = lambda: False,
    transport: httpx.AsyncBaseTransport | None = None,
    shard: Shard | None = None,
) -> ReplaySummary:
    with Store.open(db) as store:
        return replay.replay(
            store,
            tiers,
            Selection(sample, seed, where, since, shard),
            RunContext(environ or {}, wall, clock or SystemClock(), interrupted, transport),
            max_cost_usd=max_cost_usd,
            retry_failed=retry_failed,
        )


def query(db: Path, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    with Store.open(db) as store:
        return store.con.execute(sql, list(params)).fetchall()

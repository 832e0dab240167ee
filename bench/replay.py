"""`make bench`: replay throughput against the local test server with 100 ms injected latency, and
the sharded replay's merge checked against one unsharded run.

The bound is what perfect pacing could reach: total concurrency / latency requests per second. We
report achieved requests/s over that bound (target ≥ 0.8), median of several runs. The server runs
in its own process (tests/llm_server.py) so it does not share our interpreter. Never used by tests.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from calibrate.calls.context import RunContext
from calibrate.calls.limits import SystemClock
from calibrate.config.tiers import load_tiers
from calibrate.ingest import stage as ingest
from calibrate.records.replay import Selection, Shard
from calibrate.replay import stage as replay
from calibrate.replay.merge import merge_replays
from calibrate.store import Store

ROOT = Path(__file__).resolve().parent.parent
LATENCY_S = 0.100
TIERS = (("small", 16), ("large", 16))


def now() -> datetime:
    return datetime(2026, 11, 1, tzinfo=UTC)


def start_server() -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "llm_server.py"), "--latency-ms", "100"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    return server, server.stdout.readline().strip()


def make_store(db: Path, requests: int) -> None:
    logs = db.with_suffix(".jsonl")
    with logs.open("w", encoding="utf-8") as fh:
        for i in range(requests):
            row = {"request_id": f"r-{i}", "timestamp": "2026-10-01T00:00:00Z", "prompt": f"q {i}"}
            fh.write(json.dumps(row) + "\n")
    with Store.open(db) as store:
        ingest.ingest(store, [logs], strict=False, clock=now)


def write_tiers(tmp: Path, base_url: str) -> Path:
    tiers_path = tmp / "tiers.yaml"
    tiers = [
        {
            "name": name,
            "model": f"m-{name}",
            "base_url": base_url,
            "limits": {"concurrency": c},
            "price": {"input_per_mtok": 1, "output_per_mtok": 2},
        }  # fmt: skip
        for name, c in TIERS
    ]
    tiers_path.write_text(json.dumps({"tiers": tiers}), encoding="utf-8")
    return tiers_path


def replay_into(db: Path, tiers_path: Path, selection: Selection) -> float:
    """Seconds to replay `selection` × every tier into the store `db`."""
    with Store.open(db) as store:
        t0 = time.perf_counter()
        summary = replay.replay(
            store,
            load_tiers(tiers_path),
            selection,
            RunContext({}, now, SystemClock()),
            max_cost_usd=None,
            retry_failed=False,
        )
        elapsed = time.perf_counter() - t0
    assert not any(t.failed for t in summary.tiers), summary
    return elapsed


def one_run(tmp: Path, base_url: str, requests: int, run: int) -> float:
    """Seconds to replay `requests` × every tier into a fresh store."""
    db = tmp / f"run{run}.duckdb"
    make_store(db, requests)
    return replay_into(db, write_tiers(tmp, base_url), Selection(requests, run))


SHADOW = (
    "SELECT request_id, tier, output, confidence, cost_usd FROM attempts WHERE source = 'shadow'"
)


def shard_check(tmp: Path, base_url: str, requests: int) -> None:
    """Replay with --shard 0/2 and 1/2 into two copies of one store, merge them into a third
    copy, and compare its shadow attempts with one unsharded run's: the same rows, no duplicate."""
    tiers_path = write_tiers(tmp, base_url)
    base = tmp / "shard-base.duckdb"
    make_store(base, requests)
    copies = {name: tmp / f"shard-{name}.duckdb" for name in ("whole", "0", "1", "merged")}
    for path in copies.values():
        shutil.copyfile(base, path)
    replay_into(copies["whole"], tiers_path, Selection(requests, 7))
    for index in (0, 1):
        replay_into(copies[str(index)], tiers_path, Selection(requests, 7, shard=Shard(index, 2)))
    with Store.open(copies["merged"]) as store:
        merge_replays(store, [copies["0"], copies["1"]])
        merged = sorted(store.con.execute(SHADOW).fetchall())
        (duplicates,) = store.con.execute(
            "SELECT count(*) FROM (SELECT request_id, tier FROM attempts WHERE source = 'shadow'"
            " GROUP BY ALL HAVING count(*) > 1)"
        ).fetchall()[0]
    with Store.open(copies["whole"]) as store:
        whole = sorted(store.con.execute(SHADOW).fetchall())
    print(
        f"replay --shard 0/2 and 1/2, merged: {len(merged)} shadow attempts against "
        f"{len(whole)} from one unsharded run; identical: {merged == whole}; "
        f"duplicates: {duplicates}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=400, help="requests per run (× tiers)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    calls = args.requests * len(TIERS)
    bound = sum(c for _, c in TIERS) / LATENCY_S
    server, base_url = start_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            times = [one_run(Path(tmp), base_url, args.requests, run) for run in range(args.runs)]
            shard_check(Path(tmp), base_url, args.requests)
    finally:
        server.terminate()
        server.wait(10)
    rates = sorted(calls / t for t in times)
    median = statistics.median(rates)
    print(
        f"replay: {calls} calls, concurrency {sum(c for _, c in TIERS)}, latency 100 ms → "
        f"bound {bound:.0f} req/s; achieved median {median:.0f} req/s "
        f"(runs: {', '.join(f'{r:.0f}' for r in rates)}) = {median / bound:.2f} of the bound "
        f"(target ≥ 0.80)"
    )


if __name__ == "__main__":
    main()

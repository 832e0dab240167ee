"""`make bench`: replay throughput against the local test server with 100 ms injected latency.

The bound is what perfect pacing could reach: total concurrency / latency requests per second. We
report achieved requests/s over that bound (target ≥ 0.8), median of several runs. The server runs
in its own process (tests/llm_server.py) so it does not share our interpreter. Never used by tests.
"""

from __future__ import annotations

import argparse
import json
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
from calibrate.records.replay import Selection
from calibrate.replay import stage as replay
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


def one_run(tmp: Path, base_url: str, requests: int, run: int) -> float:
    """Seconds to replay `requests` × every tier into a fresh store."""
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
    db = tmp / f"run{run}.duckdb"
    make_store(db, requests)
    with Store.open(db) as store:
        t0 = time.perf_counter()
        summary = replay.replay(
            store,
            load_tiers(tiers_path),
            Selection(requests, run),
            RunContext({}, now, SystemClock()),
            max_cost_usd=None,
            retry_failed=False,
        )
        elapsed = time.perf_counter() - t0
    assert all(t.done == requests for t in summary.tiers), summary
    return elapsed


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

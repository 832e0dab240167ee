"""`--engine spark` at scale: build `outcome_rows` in Spark local mode over canonical Parquet and run
one aggregate on it, in fresh processes (a fresh JVM each), and check the view against DuckDB's.

    python bench/spark_rows.py PARQUET [--store STORE.duckdb] [--runs 3] [--master local[*]]

Per run: session start, build (the view, cached, and its counts), the aggregate, the labeled rows
pulled whole, the whole child; peak RSS of the Python driver and of the JVM (VmHWM, read before the
session stops); the bytes of the aggregate and of the labeled rows pulled to the driver. With --store (a store that ingested PARQUET): DuckDB's
`build_outcome_rows` and the same aggregate timed, and the two relations compared row for row in
Spark (DuckDB's written to Parquet, `EXCEPT ALL` both ways). Never used by tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIERS = ["small", "medium", "large"]
PRICES = {"small": (0.15, 0.60), "medium": (0.40, 1.60), "large": (2.00, 8.00)}

# count and exact cost per tier (nano-USD) per segment
AGGREGATE = (
    "SELECT region, app, COUNT(*) AS requests, "
    + ", ".join(
        f"CAST(SUM(CAST(FLOOR(cost_usd_{k} * 1e9 + 0.5) AS BIGINT)) AS BIGINT) AS cost_nano_usd_{k}"
        for k in range(len(TIERS))
    )
    + ", CAST(SUM(CASE WHEN labeled THEN 1 ELSE 0 END) AS BIGINT) AS labeled"
    " FROM outcome_rows GROUP BY region, app ORDER BY region, app"
)


def _jvm_peak_mb() -> float:
    """The largest VmHWM among this process's children (the JVM py4j started)."""
    peak = 0.0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":", 1) for line in status.read_text().splitlines() if ":" in line
            )
        except OSError:
            continue
        if int(fields.get("PPid", "0").strip()) == os.getpid() and "VmHWM" in fields:
            peak = max(peak, int(fields["VmHWM"].split()[0]) / 1024)
    return peak


def spark_child(parquet: str, master: str) -> dict:
    import resource

    started = time.perf_counter()
    from calibrate.store import spark_engine

    spark = spark_engine.open_session(master)
    session_s = time.perf_counter() - started
    t = time.perf_counter()
    built = spark_engine.build_outcome_rows(spark, parquet, TIERS, PRICES)
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    table = spark_engine.run(spark, AGGREGATE)
    aggregate_s = time.perf_counter() - t
    t = time.perf_counter()
    labeled = spark_engine.run(spark, "SELECT * FROM outcome_rows WHERE labeled")
    labeled_s = time.perf_counter() - t
    out = {
        "session_s": session_s,
        "build_s": build_s,
        "aggregate_s": aggregate_s,
        "requests": built.requests,
        "incomplete": built.incomplete,
        "pulled_bytes": table.nbytes,
        "pulled_rows": table.num_rows,
        "labeled_s": labeled_s,
        "labeled_rows": labeled.num_rows,
        "labeled_bytes": labeled.nbytes,
        "jvm_peak_mb": _jvm_peak_mb(),
        "python_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "result": table.to_pylist(),
    }
    spark.stop()
    return out


def duckdb_side(store: Path, parquet_out: Path) -> dict:
    from calibrate.store import Store
    from calibrate.store.outcome_rows_sql import build_outcome_rows

    with Store.open(store, read_only=True) as opened:
        t = time.perf_counter()
        built = build_outcome_rows(opened.con, TIERS, PRICES)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        result = opened.con.sql(AGGREGATE).to_arrow_table().to_pylist()
        aggregate_s = time.perf_counter() - t
        opened.con.execute(f"COPY outcome_rows TO '{parquet_out}' (FORMAT parquet)")
    return {"build_s": build_s, "aggregate_s": aggregate_s, "requests": built.requests,
            "result": result}  # fmt: skip


def same_rows(parquet: str, duck_rows: Path, master: str) -> tuple[int, int]:
    """Rows of Spark's view missing from DuckDB's, and the reverse."""
    from calibrate.store import spark_engine

    spark = spark_engine.open_session(master)
    spark_engine.build_outcome_rows(spark, parquet, TIERS, PRICES)
    spark.read.parquet(str(duck_rows)).createOrReplaceTempView("duck_rows")
    one = "SELECT COUNT(*) FROM (SELECT * FROM {} EXCEPT ALL SELECT * FROM {})"
    a = spark.sql(one.format("outcome_rows", "duck_rows")).collect()[0][0]
    b = spark.sql(one.format("duck_rows", "outcome_rows")).collect()[0][0]
    spark.stop()
    return int(a), int(b)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("parquet")
    parser.add_argument("--store", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(spark_child(args.parquet, args.master)))
        return
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    runs = []
    for _ in range(args.runs):
        t = time.perf_counter()
        done = subprocess.run(
            [sys.executable, __file__, args.parquet, "--master", args.master, "--child"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        run = json.loads(done.stdout.strip().splitlines()[-1])
        run["child_s"] = time.perf_counter() - t
        runs.append(run)
    keys = (
        "child_s", "session_s", "build_s", "aggregate_s", "labeled_s", "jvm_peak_mb",
        "python_peak_mb",
    )  # fmt: skip
    summary = {k: round(statistics.median(r[k] for r in runs), 2) for k in keys}
    summary |= {k: runs[0][k] for k in ("requests", "incomplete", "pulled_bytes", "pulled_rows",
                                         "labeled_rows", "labeled_bytes")}  # fmt: skip
    summary["runs"] = [{k: round(r[k], 2) for k in keys} for r in runs]
    if args.store is not None:
        with tempfile.TemporaryDirectory() as tmp:
            duck_rows = Path(tmp) / "duck_rows.parquet"
            duck = duckdb_side(args.store, duck_rows)
            summary["duckdb"] = {k: round(duck[k], 2) for k in ("build_s", "aggregate_s")}
            summary["same_aggregate"] = duck["result"] == runs[0]["result"]
            summary["rows_only_in_spark_only_in_duckdb"] = same_rows(
                args.parquet, duck_rows, args.master
            )
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

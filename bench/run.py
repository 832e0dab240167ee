"""`make bench`: our ingest and sweep on a generated 1,000,000-request log, as ratios against floors
measured in the same run (DuckDB's own read_json / read_parquet of the same data, in fresh
processes, with peak RSS: bench/ingest_scale.py; one numpy argsort of the confidence column;
loading the outcome table's 12 numeric columns from Parquet plus one argsort per tier, for the
whole `calibrate sweep --db`). Prints medians of several runs. Never used by tests."""

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

import ingest_scale
import numpy as np
from store_10m import store_10m

from calibrate.config.tiers import load_tiers
from calibrate.demo import samplegen
from calibrate.ingest import stage as ingest
from calibrate.policies.families import (
    default_families,
    evaluate_families,
    premium_family,
    sweep_columns,
)
from calibrate.policies.optimum import Target, measured_optima
from calibrate.records.outcomes import Outcomes
from calibrate.store import Store
from calibrate.store.migrations import MIGRATIONS
from calibrate.store.outcome_rows_sql import build_outcome_rows
from calibrate.sweep.stage import price_table

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent
TIERS = ROOT / "sample_logs" / "tiers.yaml"
LAUNCH = Path(__file__).parent / "launch.py"


def log_file(n: int, seed: int) -> Path:
    """The generated log, made once and kept in bench/data/ (git-ignored)."""
    path = DATA / f"requests-{n}-{seed}.jsonl"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for row in samplegen.generate_requests(n, seed):
                fh.write(json.dumps(row, separators=(",", ":")) + "\n")
        tmp.rename(path)
        print(f"generated {n:,} requests in {time.perf_counter() - t0:.1f} s → {path}")
    return path


def timed(fn, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def dirty_log_file(path: Path) -> Path:
    """The same log with 0.3% bad lines, made once: every 997th line cut in half (invalid JSON),
    every 1009th with a string confidence and an unknown attempt key, every 1013th with a null
    region and an unknown top-level key. Real logs have such lines; they must not be a cliff."""
    dirty = path.with_name(path.stem + "-dirty.jsonl")
    if not dirty.exists():
        tmp = dirty.with_suffix(".tmp")
        with path.open("rb") as src, tmp.open("wb") as out:
            for number, line in enumerate(src, 1):
                if number % 997 == 0:
                    line = line[: len(line) // 2] + b"\n"
                elif number % 1009 == 0:
                    line = line.replace(b'"confidence":', b'"confidence":"x","c2":', 1)
                elif number % 1013 == 0:
                    line = line.replace(b'"region":', b'"region":null,"r2":', 1)
                out.write(line)
        tmp.rename(dirty)
    return dirty


def bench_dirty(path: Path, runs: int, clean_s: float) -> None:
    """Our ingest of the log with 0.3% bad lines, against our ingest of the clean log (both in
    fresh processes)."""
    dirty = dirty_log_file(path)
    a = statistics.median(ingest_scale.ours([dirty]).wall_s for _ in range(runs))
    verdict = "meets" if a / clean_s <= 1.5 else "MISSES"
    print(
        f"ingest with 0.3% bad lines: median {a:.2f} s over {runs} runs; "
        f"{a / clean_s:.2f}x the clean ingest ({verdict} target ≤ 1.5x)"
    )


def sweep_store(path: Path) -> Path:
    """The store ingested from `path`, built once and kept in bench/data/ next to the log.

    Keyed by the log's name and the number of schema migrations, so a schema change rebuilds it.
    """
    db = DATA / f"sweep-{path.stem}-m{len(MIGRATIONS)}.duckdb"
    if not db.exists():
        t0 = time.perf_counter()
        tmp = db.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        with Store.open(tmp) as store:
            ingest.ingest(
                store, [path], strict=False, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC)
            )
        tmp.rename(db)
        print(f"built the sweep store in {time.perf_counter() - t0:.1f} s → {db}")
    return db


def bench_sweep(path: Path, runs: int) -> None:
    tiers = load_tiers(TIERS)
    with Store.open(sweep_store(path)) as store:

        def load() -> Outcomes:
            return store.outcomes(tiers.names, price_table(tiers))

        outcomes = load()  # warms DuckDB's buffer cache; the timed runs follow
        load_s = statistics.median(timed(load, runs))
    print(f"  (loading the outcome table from the store: median {load_s:.2f} s, n={outcomes.n:,})")
    conf = np.ascontiguousarray(outcomes.confidence[:, 0])
    ours, floor = [], []
    for _ in range(runs):  # interleaved, so that load from other processes hits both alike
        ours += timed(lambda: evaluate_families(outcomes, default_families(outcomes)), 1)
        floor += timed(lambda: np.argsort(conf), 1)
    report("sweep (3 tiers, all families)", ours, "numpy argsort of confidence", floor, target=5.0)
    bench_optima(outcomes, runs, statistics.median(floor))


def bench_optima(outcomes: Outcomes, runs: int, floor_s: float) -> None:
    """The sweep's next step: each cascade family's measured optimum (drop ≤ 0.02), after the
    engine (not in the ratio above)."""
    families = default_families(outcomes)
    columns = sweep_columns(outcomes, [*families, premium_family(outcomes)])
    frontier = evaluate_families(outcomes, families, columns=columns)

    def search() -> None:
        measured_optima(outcomes, families, frontier, columns, Target(0.02))

    a = statistics.median(timed(search, runs))
    print(
        f"  (measured optima of the {sum(f.kind == 'cascade' for f in families)} cascade "
        f"families, {int(outcomes.labeled.sum()):,} labels: median {a:.2f} s, "
        f"{a / floor_s:.1f}x the argsort)"
    )


def outcome_columns(db: Path) -> Path:
    """The outcome table's 12 numeric columns (confidence, cost, latency, label of each of the 3
    tiers) as Parquet, written once next to the store (from the store's outcome relation, in
    DuckDB): what the whole-sweep floor loads."""
    parquet = db.with_suffix(".outcomes.parquet")
    if not parquet.exists():
        tiers = load_tiers(TIERS)
        with Store.open(db) as store:
            build_outcome_rows(store.con, tiers.names, price_table(tiers))
            columns = ", ".join(
                f"{name}_{j} AS {tier}_{alias}"
                for j, tier in enumerate(tiers.names)
                for name, alias in (
                    ("conf", "confidence"),
                    ("cost_usd", "cost_usd"),
                    ("latency_ms", "latency_ms"),
                    ("label", "label"),
                )
            )
            tmp = parquet.with_suffix(".tmp")
            store.con.execute(
                f"COPY (SELECT {columns} FROM outcome_rows ORDER BY request_id) TO '{tmp}'"
                " (FORMAT parquet)"
            )
        tmp.rename(parquet)
    return parquet


# The floor of a whole sweep, in a fresh process like the sweep: the 12 numeric columns from
# Parquet through DuckDB into numpy, and one argsort per tier of its confidence.
FLOOR = """
import sys
import duckdb
import numpy as np
con = duckdb.connect()
columns = con.execute("SELECT * FROM read_parquet(?)", [sys.argv[1]]).fetchnumpy()
for tier in sys.argv[2:]:
    np.argsort(columns[tier + "_confidence"])
"""


def child(argv: list[str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (all its threads), peak RSS (MB) and the stderr of one fresh
    process running `argv` (it must succeed), measured by bench/launch.py (so that this large
    process's own peak does not count as the child's)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "usage.json"
        launched = [sys.executable, str(LAUNCH), str(result), *argv]
        proc = subprocess.run(launched, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            errors = proc.stderr.decode(errors="replace")[-2000:]
            raise RuntimeError(f"{argv[:4]} failed:\n{errors}")
        usage = json.loads(result.read_text())
    return usage["wall_s"], usage["cpu_s"], usage["peak_rss_mb"], proc.stderr.decode()


def bench_whole_sweep(path: Path, runs: int, db: Path | None = None, target: float = 5.0) -> None:
    """`calibrate sweep --db STORE --no-router` (every report section) in a fresh process,
    against the floor in a fresh process; runs interleaved; peak RSS of each sweep."""
    db = db or sweep_store(path)
    parquet = outcome_columns(db)
    tiers = load_tiers(TIERS)
    ours, floor = [], []
    with tempfile.TemporaryDirectory() as out:
        sweep = [sys.executable, "-m", "calibrate", "sweep", "--db", str(db), "--tiers"]
        sweep += [str(TIERS), "--out", out, "--no-router"]
        for _ in range(runs):
            floor.append(child([sys.executable, "-c", FLOOR, str(parquet), *tiers.names]))
            ours.append(child(sweep))
    name = f"whole sweep --db --no-router on {db.name} (fresh process)"
    walls = [[run[0] for run in runs_] for runs_ in (ours, floor)]
    report(name, walls[0], "12 columns from Parquet + argsort per tier", walls[1], target=target)
    a, b = (statistics.median(run[1] for run in runs_) for runs_ in (ours, floor))
    rss = statistics.median(run[2] for run in ours)
    print(f"  (CPU seconds: sweep median {a:.1f}, floor median {b:.2f}; ratio {a / b:.1f}x)")
    floor_rss = statistics.median(run[2] for run in floor)
    print(f"  (peak RSS: sweep median {rss:,.0f} MB, floor median {floor_rss:,.0f} MB)")


# The learned router's fit in a fresh process: the store's first N requests (the default
# --router-max-requests), their prompts read, then fit_router (cross-fitted TF-IDF + logistic
# regression, scoring every request). Prints the two times.
ROUTER = """
import sys, time
from pathlib import Path
from calibrate.config.tiers import load_tiers, price_table
from calibrate.store import Store
db, tiers_file, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
tiers = load_tiers(tiers_file)
with Store.open(db) as store:
    o = store.outcomes(tiers.names, price_table(tiers))
    t0 = time.perf_counter()
    texts = store.prompt_texts(o.request_ids[:n].tolist())
    read_s = time.perf_counter() - t0
t0 = time.perf_counter()
fit_router(texts, o.request_ids[:n].tolist(), o.label[:n, 0] >= ACCEPTABLE, o.labeled[:n],
           o.tiers[0], seed=0, clock=time.perf_counter)
print(read_s, time.perf_counter() - t0, int(o.labeled[:n].sum()), file=sys.stderr)
"""


def bench_router(path: Path) -> None:
    """The learned router's fit (what `--router` adds to a sweep), once, in a fresh process, on
    as many requests as the sweep fits it on by default (`--router-max-requests`)."""
    from calibrate.sweep.candidates import RouterOptions

    n = RouterOptions().max_requests
    wall, _, rss, errors = child(
        [sys.executable, "-c", ROUTER, str(sweep_store(path)), str(TIERS), str(n)]
    )
    read_s, fit_s, labeled = errors.split()[-3:]
    print(
        f"router (TF-IDF on the first {n:,} requests' prompts, {int(labeled):,} labeled), once: "
        f"reading the prompts {float(read_s):.1f} s, fit and scoring {float(fit_s):.1f} s, "
        f"peak RSS {rss:,.0f} MB (not in the whole-sweep time, which runs --no-router)"
    )


# The whole sweep with --engine spark in a fresh process, counting what Spark's queries bring to
# the driver (rows and Arrow bytes of every result), printed on stderr at the end.
SPARK_SWEEP = """
import sys
from calibrate.store import spark_engine
pulled = [0, 0]
original = spark_engine.run
def counting(spark, sql):
    table = original(spark, sql)
    pulled[0] += table.num_rows
    pulled[1] += table.nbytes
    return table
spark_engine.run = counting
from calibrate.cli.app import main
sys.argv = ["calibrate", *sys.argv[1:]]
try:
    main()
except SystemExit as done:
    if done.code:
        raise
print("PULLED", pulled[0], pulled[1], file=sys.stderr)
"""


def bench_spark(path: Path, runs: int) -> None:
    """`calibrate sweep PARQUET --engine spark` (local[*]) against `calibrate sweep --db STORE`
    on the same 1M requests (the bench log as canonical Parquet, and the store ingested from the
    log): wall time, peak RSS of the Python driver, what Spark pulled to the driver, and whether
    the two frontier.csv are identical."""
    parquet = ingest_scale.parquet_file(path)
    db = sweep_store(path)
    common = ["--tiers", str(TIERS), "--no-router"]
    with tempfile.TemporaryDirectory() as out:
        duck = [child([sys.executable, "-m", "calibrate", "sweep", "--db", str(db), *common,
                       "--out", f"{out}/duckdb"]) for _ in range(runs)]  # fmt: skip
        argv = [sys.executable, "-c", SPARK_SWEEP, "sweep", str(parquet), "--engine", "spark"]
        spark = [child([*argv, *common, "--out", f"{out}/spark"]) for _ in range(runs)]
        same = (
            Path(f"{out}/duckdb/frontier.csv").read_bytes()
            == Path(f"{out}/spark/frontier.csv").read_bytes()
        )
    rows, size = spark[-1][3].split("PULLED")[-1].split()[:2]
    a, b = (statistics.median(run[0] for run in runs_) for runs_ in (spark, duck))
    print(
        f"sweep --engine spark (local[*]) on {parquet.name}: median {a:.1f} s over {runs} runs, "
        f"peak RSS of the driver process {statistics.median(r[2] for r in spark):,.0f} MB; "
        f"pulled to the driver: {int(rows):,} rows, {int(size) / 1e6:.1f} MB; "
        f"the DuckDB sweep --db: median {b:.1f} s; frontier.csv identical: {same}"
    )


def report(
    name: str, ours: list[float], floor_name: str, floor: list[float], target: float
) -> None:
    a, b = statistics.median(ours), statistics.median(floor)
    verdict = "meets" if a / b <= target else "MISSES"
    print(
        f"{name}: median {a:.2f} s over {len(ours)} runs; {floor_name}: median {b:.3f} s; "
        f"ratio {a / b:.1f}x ({verdict} target ≤ {target:g}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--only", choices=("ingest", "sweep", "whole-sweep"), help="run one of the benches"
    )
    parser.add_argument(
        "--router", action="store_true", help="also time the learned router's fit (minutes)"
    )
    parser.add_argument(
        "--data", type=Path, default=DATA, help="where generated logs are kept (made once)"
    )
    parser.add_argument(
        "--requests-10m", action="store_true", help="also the peak RSS of a 10M-request ingest"
    )
    parser.add_argument(
        "--spark",
        action="store_true",
        help="also the whole sweep with --engine spark (local mode) against DuckDB's",
    )
    parser.add_argument(
        "--sweep-10m",
        action="store_true",
        help="also the whole sweep on 10M requests (a store made once from the 1M one)",
    )
    args = parser.parse_args()
    globals()["DATA"] = args.data
    path = log_file(args.requests, args.seed)
    print(f"log: {path.stat().st_size / 1e6:.0f} MB, {args.requests:,} requests")
    if args.only in (None, "ingest"):
        clean_s = ingest_scale.bench_ingest_scale(path, args.runs, args.requests_10m)
        bench_dirty(path, args.runs, clean_s)
    if args.only in (None, "sweep"):
        bench_sweep(path, args.runs)
    if args.only in (None, "whole-sweep"):
        bench_whole_sweep(path, args.runs)
    if args.spark:
        bench_spark(path, args.runs)
    if args.sweep_10m:
        bench_whole_sweep(path, args.runs, store_10m(sweep_store(path)), target=3.0)
    if args.router:
        bench_router(path)


if __name__ == "__main__":
    main()

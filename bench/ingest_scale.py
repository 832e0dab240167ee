"""Ingest at scale, for `make bench` (bench/run.py calls `bench_ingest_scale`): `calibrate ingest` in
fresh processes against floors measured in the same run, medians of several runs, peak RSS of
each child process (`os.wait4`).

- JSONL: the bench log, and a log of valid variants (nulls, absent fields, fractional labels,
  `prompt`, unknown attempt keys, JSON inside outputs, offsets, pretty JSON, integers as floats,
  failed attempts), each against DuckDB's `CREATE TABLE … AS SELECT * FROM read_json(…)`.
- Canonical Parquet (the bench log written by DuckDB: nested lists of structs, TIMESTAMPTZ)
  against `CREATE TABLE … AS SELECT * FROM read_parquet(…)`.
- 1,000 files of 1,000 requests against the same requests in one file (our own time: the ratio
  is the per-file overhead).
- With --requests-10m: the peak RSS of one ingest of a 10M-request log (10 copies of the bench
  log with distinct request ids), target ≤ 2 GB.

Generated files live in the data folder (git-ignored, made once). Never used by tests.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = Path(__file__).parent / "launch.py"

FLOOR = """
import sys, duckdb
kind, path, db = sys.argv[1:]
con = duckdb.connect(db)
con.execute("SET enable_progress_bar = false")
reader = "read_json(?, format='newline_delimited')" if kind == "json" else "read_parquet(?)"
con.execute(f"CREATE TABLE t AS SELECT * FROM {reader}", [path])
con.close()
"""


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float


def child(args: list[str]) -> Run:
    """Run a fresh process to its end: wall and CPU seconds, peak resident memory, measured by
    bench/launch.py (a parent's own peak would otherwise count as the child's)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "usage.json"
        launched = [sys.executable, str(LAUNCH), str(result), *args]
        proc = subprocess.run(
            launched, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        if proc.returncode != 0:
            stderr = proc.stderr.decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(args)} failed: {stderr}")
        usage = json.loads(result.read_text())
    return Run(usage["wall_s"], usage["cpu_s"], usage["peak_rss_mb"])


def ours(paths: list[Path]) -> Run:
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "s.duckdb")
        return child([sys.executable, "-m", "calibrate", "ingest", *map(str, paths), "--db", db])


def floor(kind: str, path: Path) -> Run:
    with tempfile.TemporaryDirectory() as tmp:
        return child([sys.executable, "-c", FLOOR, kind, str(path), str(Path(tmp) / "f.duckdb")])


def alternate(a: Callable[[], Run], b: Callable[[], Run], runs: int) -> tuple[list[Run], list[Run]]:
    """a and b in turn, so both see the same background load on a shared machine."""
    first, second = [], []
    for _ in range(runs):
        first.append(b())
        second.append(a())
    return second, first


def median(runs: list[Run], field: str) -> float:
    return statistics.median(getattr(r, field) for r in runs)


def report(name: str, mine: list[Run], floor_name: str, base: list[Run], target: float) -> None:
    a, b = median(mine, "wall_s"), median(base, "wall_s")
    verdict = "meets" if a / b <= target else "MISSES"
    print(
        f"{name}: median {a:.2f} s over {len(mine)} runs; {floor_name}: median {b:.2f} s; "
        f"ratio {a / b:.2f}x ({verdict} target ≤ {target:g}x)"
    )
    cpu_a, cpu_b = median(mine, "cpu_s"), median(base, "cpu_s")
    print(
        f"  (CPU seconds: {cpu_a:.1f} vs {cpu_b:.1f}, ratio {cpu_a / cpu_b:.2f}x; peak RSS: "
        f"{median(mine, 'peak_rss_mb'):.0f} MB vs {median(base, 'peak_rss_mb'):.0f} MB)"
    )


# --- generated inputs ----------------------------------------------------------------------------


def _vary(number: int, row: dict) -> dict:
    """Line `number` of the bench log as one of the valid variants other generators write."""
    kind, attempts = number % 12, row.get("attempts") or []
    if kind == 0 and attempts:
        attempts[0].update(confidence=None, output=None)  # explicit nulls
    elif kind == 1 and attempts:
        attempts[-1].pop("confidence", None)  # an absent confidence
    elif kind == 2:
        row["labels"] = {a["tier"]: (0.25, 0.5, 0.75)[j % 3] for j, a in enumerate(attempts)}
    elif kind == 3:
        row["prompt"] = row.pop("messages")[0]["content"]
    elif kind == 4:
        row.update(served_tier=None, region=None, reference=None, metadata=None, labels=None)
        row["input_tokens"] = None
    elif kind == 5 and attempts:
        attempts[0]["output"] = '{"answer": "yes", "reason": "policy allows it"}'
    elif kind == 6 and attempts:
        attempts[0]["finish_reason"] = "stop"  # an unknown attempt key (kept in extra)
    elif kind == 7:
        row["timestamp"] = row["timestamp"].replace("Z", ".123456+02:00")
    elif kind == 8:
        row["messages"][0]["content"] += " — merci, ça marche? 🙂"
    elif kind == 9 and attempts:
        row["input_tokens"] = float(row["input_tokens"])
        attempts[0]["cost_usd"] = 1.5e-05
    elif kind == 10 and attempts:
        attempts[-1].update(status="error", output=None, confidence=None, cost_usd=None)
        attempts[-1]["output_tokens"] = None
    return row


def variants_file(log: Path) -> Path:
    """The bench log with 11 of every 12 lines rewritten as a valid variant (line 8 of 12 also
    written with Python's default `, ` and `: ` separators), made once."""
    out = log.with_name(log.stem + "-variants.jsonl")
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        with log.open(encoding="utf-8") as src, tmp.open("w", encoding="utf-8") as dst:
            for number, line in enumerate(src, 1):
                row = _vary(number, json.loads(line))
                separators = None if number % 12 == 8 else (",", ":")
                dst.write(json.dumps(row, ensure_ascii=False, separators=separators) + "\n")
        tmp.rename(out)
    return out


def parquet_file(log: Path) -> Path:
    """The bench log as canonical Parquet, as DuckDB writes it from the JSON (made once)."""
    out = log.with_suffix(".parquet")
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        con = duckdb.connect()
        con.execute(
            f"COPY (SELECT * FROM read_json('{log}', format='newline_delimited'))"
            f" TO '{tmp}' (FORMAT parquet)"
        )
        con.close()
        tmp.rename(out)
    return out


def split_files(log: Path, files: int) -> Path:
    """The bench log cut into `files` files of equal line counts, in a folder (made once)."""
    folder = log.with_name(f"{log.stem}-in-{files}")
    if not folder.exists():
        tmp = folder.with_name(folder.name + ".tmp")
        tmp.mkdir(exist_ok=True)
        with log.open("rb") as src:
            per = -(-sum(1 for _ in src) // files)
        with log.open("rb") as src:
            for k in range(files):
                with (tmp / f"part-{k:05d}.jsonl").open("wb") as dst:
                    dst.writelines(islice(src, per))
        tmp.rename(folder)
    return folder


def ten_times(log: Path) -> Path:
    """10 copies of the bench log, each with its own request ids (r0-…, r1-…), made once."""
    out = log.with_name(log.stem + "-x10.jsonl")
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        with tmp.open("wb") as dst:
            for k in range(10):
                with log.open("rb") as src:
                    for line in src:
                        dst.write(line.replace(b'"request_id":"r-', b'"request_id":"r%d-' % k, 1))
        tmp.rename(out)
    return out


# --- the benches ---------------------------------------------------------------------------------


def bench_ingest_scale(log: Path, runs: int, rss_10m: bool) -> float:
    """Every ingest bench above; returns our median wall time on the bench log."""
    mine, base = alternate(lambda: ours([log]), lambda: floor("json", log), runs)
    report("ingest (JSONL)", mine, "duckdb read_json", base, target=3.0)
    one_file = median(mine, "wall_s")

    variants = variants_file(log)
    mine, base = alternate(lambda: ours([variants]), lambda: floor("json", variants), runs)
    report("ingest (JSONL, valid variants)", mine, "duckdb read_json", base, target=3.0)

    parquet = parquet_file(log)
    mine, base = alternate(lambda: ours([parquet]), lambda: floor("parquet", parquet), runs)
    report("ingest (canonical Parquet)", mine, "duckdb read_parquet", base, target=1.5)

    folder = split_files(log, 1000)
    many, one = alternate(lambda: ours([folder]), lambda: ours([log]), runs)
    report("ingest (1,000 files)", many, "the same requests in one file", one, target=1.2)
    print(f"  (one file this time: {median(one, 'wall_s'):.2f} s; earlier: {one_file:.2f} s)")

    if rss_10m:
        big = ten_times(log)
        run = ours([big])
        verdict = "meets" if run.peak_rss_mb <= 2048 else "MISSES"
        print(
            f"ingest of 10M requests ({big.stat().st_size / 1e9:.1f} GB): {run.wall_s:.0f} s, "
            f"{run.cpu_s:.0f} CPU s, peak RSS {run.peak_rss_mb:.0f} MB ({verdict} target ≤ 2 GB)"
        )
    return one_file

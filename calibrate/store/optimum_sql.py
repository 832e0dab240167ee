"""SQL aggregates over `outcome_rows` for the measured optimum (`policies.optimum`).

The optimum's candidate thresholds are class thresholds delimited by the labeled confidences
(`marks`) of each deciding tier, so an unlabeled request matters only through `g_j`, how many of
tier j's marks lie strictly below its confidence (-1: no signal, marks + 1: +inf), and, with an
escalation band, whether its confidence reaches the band's floor threshold `f_j`. `cells_sql`
groups the relation by those keys: per cell the requests, the exact nano-USD cost of each tier and
the lowest confidence of each deciding tier (a class threshold is a group's lowest). The result
has at most min(requests, Π(2·marks_j + 4)) rows; the optimum pulls it when it is small enough.

Ranks among many marks are computed without a range join (which Spark runs as a nested loop):
the marks, a registered table `optimum_marks_j(mark DOUBLE)`, are bucketed by the same
arithmetic as the confidences, a window numbers them within their bucket, and a registered table
of bucket ids `optimum_buckets(bucket BIGINT)` carries each bucket's count of marks below it. On
Spark the tables arrive as `spark.createDataFrame(...).createOrReplaceTempView(name)`, and the
window is partitioned by bucket, so no step gathers every row on one executor.

Everything here is the common subset of DuckDB and Spark SQL: `CASE`, `FLOOR`, `CAST(… AS
BIGINT)`, `SUM`/`COUNT`/`MIN` with `GROUP BY`, windows with `ROWS BETWEEN UNBOUNDED PRECEDING AND
CURRENT ROW`, literal numbers written by Python in scientific notation (DOUBLE in both).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from calibrate.store.exact_sql import latency_us, nano_usd
from calibrate.store.sql_engine import SqlEngine

BUCKETS = 4096  # buckets of the marks' range: a window partition each
INF = "CAST('Infinity' AS DOUBLE)"
_RUNNING = "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"


def literal(x: float) -> str:
    """A DOUBLE literal in both engines (scientific notation, exact round trip)."""
    if np.isinf(x):
        return INF if x > 0 else f"-{INF}"
    return f"{float(x):.17e}"


def nano_usd_sql(k: int) -> str:
    """Tier k's cost as the engine quantizes it: rint(cost_usd · 1e9)."""
    return nano_usd(f"cost_usd_{k}")


def latency_us_sql(k: int) -> str:
    """Tier k's latency as the engine quantizes it: rint(latency_ms · 1000)."""
    return latency_us(f"latency_ms_{k}")


def marks_table(j: int) -> str:
    return f"optimum_marks_{j}"


BUCKET_TABLE = "optimum_buckets"


def _bucket(v: str, lo: float, hi: float) -> str:
    """A monotone bucket of `v` in [0, BUCKETS-1] (the same expression for rows and marks)."""
    scale = BUCKETS / (hi - lo) if hi > lo else 0.0
    raw = f"FLOOR(({v} - {literal(lo)}) * {literal(scale)})"
    return f"CAST(CASE WHEN {raw} < 0 THEN 0 WHEN {raw} > {BUCKETS - 1} THEN {BUCKETS - 1} ELSE {raw} END AS BIGINT)"


def _ranked(prev: str, j: int, marks: np.ndarray, payload: list[str], name: str) -> tuple[str, str]:
    """CTEs adding `g_{j}` (marks of tier j strictly below conf_j; -1 NULL, marks + 1 for +inf)
    to the rows of `prev`, whose columns are `payload`; returns (CTE text, last CTE name)."""
    m = int(marks.size)
    special = f"CASE WHEN conf_{j} IS NULL THEN -1 WHEN conf_{j} = {INF} THEN {m + 1}"
    if m == 0:
        return (
            f"{name} AS (SELECT {', '.join(payload)}, {special} ELSE 0 END AS g_{j} FROM {prev})",
            name,
        )
    lo, hi = float(marks[0]), float(marks[-1])
    cols = ", ".join(payload)
    nulls = ", ".join(f"{_null(c)} AS {c}" for c in payload)
    finite = f"conf_{j} IS NOT NULL AND conf_{j} <> {INF}"
    text = f"""{name}_m AS (SELECT mark, {_bucket("mark", lo, hi)} AS bucket FROM {marks_table(j)}),
{name}_b AS (
  SELECT b.bucket, SUM(COALESCE(c.marks, 0)) OVER (ORDER BY b.bucket {_RUNNING})
         - COALESCE(c.marks, 0) AS base
  FROM {BUCKET_TABLE} b LEFT JOIN (SELECT bucket, COUNT(*) AS marks FROM {name}_m GROUP BY bucket) c
    ON b.bucket = c.bucket),
{name}_u AS (
  SELECT {cols}, conf_{j} AS v, {_bucket(f"conf_{j}", lo, hi)} AS bucket, 0 AS is_mark
  FROM {prev} WHERE {finite}
  UNION ALL
  SELECT {nulls}, mark AS v, bucket, 1 AS is_mark FROM {name}_m),
{name}_w AS (
  SELECT {cols}, bucket, is_mark,
         SUM(is_mark) OVER (PARTITION BY bucket ORDER BY v, is_mark {_RUNNING}) AS run
  FROM {name}_u),
{name} AS (
  SELECT {", ".join(f"w.{c} AS {c}" for c in payload)}, b.base + w.run AS g_{j}
  FROM {name}_w w JOIN {name}_b b ON w.bucket = b.bucket WHERE w.is_mark = 0
  UNION ALL
  SELECT {cols}, {special} END AS g_{j} FROM {prev} WHERE NOT ({finite}))"""
    return text, name


def _null(column: str) -> str:
    kind = "DOUBLE" if column.startswith("conf_") else "BIGINT"
    return f"CAST(NULL AS {kind})"


def register_marks(engine: SqlEngine, marks: dict[int, np.ndarray]) -> None:
    """Register each deciding tier's marks (ascending distinct finite) and the bucket ids."""
    for j, m in marks.items():
        engine.register(marks_table(j), {"mark": np.asarray(m, dtype=np.float64)})
    engine.register(BUCKET_TABLE, {"bucket": np.arange(BUCKETS, dtype=np.int64)})


def cells_sql(
    relation: str, tiers: int, marks: dict[int, np.ndarray], floors: dict[int, float]
) -> str:
    """Requests per cell (g_j of every deciding tier in `marks`, f_j of every tier in `floors`):
    count `requests`, per tier k `cost_k` (Σ nano-USD, exact), per deciding tier `low_j` (the
    lowest confidence)."""
    deciding = sorted(marks)
    flags = [
        f"CASE WHEN conf_{j} >= {literal(t)} THEN 1 ELSE 0 END AS f_{j}"
        for j, t in sorted(floors.items())
    ]
    base = [f"conf_{j}" for j in deciding] + [f"{nano_usd_sql(k)} AS cq_{k}" for k in range(tiers)]
    payload = [f"conf_{j}" for j in deciding] + [f"cq_{k}" for k in range(tiers)]
    payload += [f"f_{j}" for j in sorted(floors)]
    ctes = [f"r AS (SELECT {', '.join(base + flags)} FROM {relation})"]
    prev = "r"
    for j in deciding:
        text, prev = _ranked(prev, j, marks[j], payload, f"r{j}")
        ctes.append(text)
        payload = payload + [f"g_{j}"]
    keys = [f"g_{j}" for j in deciding] + [f"f_{j}" for j in sorted(floors)]
    sums = ["COUNT(*) AS requests"]
    sums += [f"CAST(SUM(cq_{k}) AS BIGINT) AS cost_{k}" for k in range(tiers)]
    sums += [f"COALESCE(MIN(conf_{j}), CAST('NaN' AS DOUBLE)) AS low_{j}" for j in deciding]
    return (
        "WITH " + ",\n".join(ctes) + f"\nSELECT {', '.join(keys + sums)} FROM {prev} "
        f"GROUP BY {', '.join(keys)}"
    )


def confidence_count_sql(relation: str, j: int) -> str:
    """How many requests have a confidence (finite or +inf) for tier j, and how many rows."""
    return f"SELECT COUNT(conf_{j}) AS signals, COUNT(*) AS requests FROM {relation}"


def band_floor_sql(relation: str, j: int, position: int) -> str:
    """The smallest finite confidence of tier j strictly above its `position`-th smallest
    (1-based, among finite and +inf confidences; position 0: the smallest finite one)."""
    above = f"conf_{j} IS NOT NULL AND conf_{j} <> {INF}"
    if position <= 0:
        return f"SELECT MIN(conf_{j}) AS floor FROM {relation} WHERE {above}"
    return f"""WITH h AS (SELECT conf_{j} AS v, COUNT(*) AS c FROM {relation}
                   WHERE conf_{j} IS NOT NULL GROUP BY conf_{j}),
o AS (SELECT MIN(v) AS x FROM (SELECT v, SUM(c) OVER (ORDER BY v {_RUNNING}) AS cum FROM h) w
      WHERE cum >= {int(position)})
SELECT MIN(conf_{j}) AS floor FROM {relation}, o WHERE {above} AND conf_{j} > o.x"""


def policy_sql(
    relation: str, path: Sequence[int], thresholds: Sequence[float], percentile_ranks: Sequence[int]
) -> str:
    """One cascade policy over every request: requests kept by its first stage (`kept`), total
    cost (`cost`, Σ nano-USD) and the nearest-rank latency order statistics (µs) at each rank of
    `percentile_ranks` (`p0`, `p1`, …)."""
    whens = [
        f"WHEN conf_{j} >= {literal(t)} THEN {s}"
        for s, (j, t) in enumerate(zip(path[:-1], thresholds, strict=True))
        if np.isfinite(t)
    ]
    stop = f"CASE {' '.join(whens)} ELSE {len(path) - 1} END" if whens else str(len(path) - 1)
    cost_of = [" + ".join(f"cq_{k}" for k in path[: s + 1]) for s in range(len(path))]
    lat_of = [" + ".join(f"lu_{k}" for k in path[: s + 1]) for s in range(len(path))]
    pick_cost = (
        "CASE " + " ".join(f"WHEN stop = {s} THEN {c}" for s, c in enumerate(cost_of)) + " END"
    )
    pick_lat = (
        "CASE " + " ".join(f"WHEN stop = {s} THEN {c}" for s, c in enumerate(lat_of)) + " END"
    )
    quantized = [f"{nano_usd_sql(k)} AS cq_{k}, {latency_us_sql(k)} AS lu_{k}" for k in path]
    picks = ", ".join(
        f"MIN(CASE WHEN cum >= {int(r)} THEN lat END) AS p{i}"
        for i, r in enumerate(percentile_ranks)
    )
    return f"""WITH s AS (SELECT {stop} AS stop, {", ".join(quantized)} FROM {relation}),
p AS (SELECT stop, {pick_cost} AS cost, {pick_lat} AS lat FROM s),
t AS (SELECT SUM(CASE WHEN stop = 0 THEN 1 ELSE 0 END) AS kept, CAST(SUM(cost) AS BIGINT) AS cost,
             COUNT(*) AS requests FROM p),
h AS (SELECT lat, COUNT(*) AS c FROM p GROUP BY lat),
q AS (SELECT {picks} FROM (SELECT lat, SUM(c) OVER (ORDER BY lat {_RUNNING}) AS cum FROM h) w)
SELECT t.kept, t.cost, t.requests, q.* FROM t, q"""

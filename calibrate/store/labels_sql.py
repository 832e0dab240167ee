"""All SQL of the label stages: check and store labels, weights, sample populations, coverage.

Storing labels (import, reference scorers, judge) goes through one path: `stage` the rows into a
temp table, `check` them against the store (unknown request id or tier, answer text that matches
no stored answer, duplicates inside the batch), then `upsert` the good ones with the conflict rule:
per request × tier × source the newest label wins (by `labeled_at`, else the time it was stored;
a tie goes to the incoming label) and the loser is kept in `label_history`. Which source the sweep
uses per request × tier (human, log, reference, judge) is `label_records.SOURCE_PRIORITY`, the
same order as store/outcomes_sql.py. Only the store imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa

from calibrate.records.labels import (
    ACCEPTABLE,
    SOURCE_PRIORITY,
    LabelRow,
    LabelWeights,
    ReferenceItem,
    RejectedRow,
    ResolveCounts,
)
from calibrate.store.one_row import one_row

PRIORITY = (
    "CASE source "
    + " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(SOURCE_PRIORITY))
    + f" ELSE {len(SOURCE_PRIORITY)} END"
)

PICKED_ATTEMPTS = """
    SELECT request_id, tier, output, status,
           CASE WHEN status = 'ok' AND isfinite(confidence) THEN confidence END AS confidence
    FROM (SELECT *, row_number() OVER (
              PARTITION BY request_id, tier
              ORDER BY (status = 'ok') DESC, (source = 'prod') DESC, source) AS rn
          FROM attempts)
    WHERE rn = 1"""
"""One attempt per request × tier, by the outcome table's rule: ok first, then prod before shadow."""

_NORM = "regexp_replace(trim({}), '\\s+', ' ', 'g')"

_ROW_SCHEMA = pa.schema(
    [
        ("line", pa.int64()),
        ("field", pa.string()),
        ("request_id", pa.string()),
        ("tier", pa.string()),
        ("answer", pa.string()),
        ("score", pa.float64()),
        ("source", pa.string()),
        ("labeler", pa.string()),
        ("labeled_at", pa.timestamp("us", tz="UTC")),
        ("weight", pa.float64()),
        ("inclusion_prob", pa.float64()),
        ("stratum", pa.string()),
        ("detail", pa.string()),
        ("call_key", pa.string()),
        ("raw", pa.string()),
    ]
)


def stage(con: duckdb.DuckDBPyConnection, rows: Sequence[LabelRow]) -> None:
    """lab_in: the incoming labels, one row each."""
    columns = {name: [getattr(r, name) for r in rows] for name in _ROW_SCHEMA.names}
    table = pa.Table.from_pydict(columns, schema=_ROW_SCHEMA)
    con.register("lab_rows", table)
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE lab_in AS SELECT * FROM lab_rows")
    finally:
        con.unregister("lab_rows")


def check(con: duckdb.DuckDBPyConnection, known_tiers: Sequence[str]) -> list[RejectedRow]:
    """Resolve answer texts to tiers, find bad rows; lab_good holds the rest. Returns the bad."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE lab_x AS
        WITH picked AS ({PICKED_ATTEMPTS}),
        matched AS (
            SELECT i.*, coalesce(i.tier, p.tier) AS t
            FROM lab_in i LEFT JOIN picked p
              ON i.tier IS NULL AND p.request_id = i.request_id AND p.output IS NOT NULL
             AND {_NORM.format("p.output")} = {_NORM.format("i.answer")}
        )
        SELECT m.*, CASE
            WHEN NOT EXISTS (SELECT 1 FROM requests r WHERE r.request_id = m.request_id)
                THEN {{'field': 'request_id', 'reason': 'unknown request_id: ' || m.request_id}}
            WHEN m.tier IS NOT NULL AND NOT list_contains($tiers::VARCHAR[], m.tier)
                THEN {{'field': CASE WHEN m.field = 'score' THEN 'tier' ELSE m.field END,
                       'reason': 'unknown tier: ' || m.tier || ' (known: '
                                 || array_to_string($tiers::VARCHAR[], ', ') || ')'}}
            WHEN m.t IS NULL
                THEN {{'field': 'answer', 'reason': 'answer not found: the text matches no stored '
                       || 'answer of request ' || m.request_id}}
            END AS bad
        FROM matched m""",
        {"tiers": list(known_tiers)},
    )
    con.execute("""
        CREATE OR REPLACE TEMP TABLE lab_dup AS
        SELECT line, field, request_id, t, source, raw,
               first_value(line) OVER w AS first_line, row_number() OVER w AS k
        FROM lab_x WHERE bad IS NULL
        WINDOW w AS (PARTITION BY request_id, t, source ORDER BY line, field)""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE lab_good AS
        WITH picked AS ({PICKED_ATTEMPTS})
        SELECT x.line, x.request_id, x.t AS tier, x.score, x.source, x.labeler, x.labeled_at,
               x.weight, x.inclusion_prob, x.stratum, x.detail, x.call_key,
               sha256(coalesce(x.answer, p.output)) AS answer_sha256
        FROM lab_x x
        JOIN lab_dup d ON d.line = x.line AND d.field = x.field AND d.t = x.t AND d.k = 1
        LEFT JOIN picked p ON p.request_id = x.request_id AND p.tier = x.t
        WHERE x.bad IS NULL""")
    rows = con.execute("""
        SELECT DISTINCT line, bad.field, bad.reason, raw FROM lab_x WHERE bad IS NOT NULL
        UNION ALL
        SELECT line, field, 'duplicate label: request_id ' || request_id || ' tier ' || t
               || ' source ' || source || ' is already given on line ' || first_line, raw
        FROM lab_dup WHERE k > 1
        ORDER BY 1, 2""").fetchall()
    return [RejectedRow(int(line), field, reason, raw or "") for line, field, reason, raw in rows]


def upsert(con: duckdb.DuckDBPyConnection, run_id: int, now: datetime) -> ResolveCounts:
    """Store lab_good by the conflict rule; the caller holds the transaction."""
    params = {"now": now, "run": run_id}
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE lab_cmp AS
        SELECT g.*, s.score AS old_score, s.request_id IS NOT NULL AS existed,
               coalesce(g.labeled_at, $now::TIMESTAMPTZ)
                   >= coalesce(s.labeled_at, s.imported_at, '-infinity'::TIMESTAMPTZ) AS newer
        FROM lab_good g LEFT JOIN labels s
          ON s.request_id = g.request_id AND s.tier = g.tier AND s.source = g.source""",
        {"now": now},
    )
    counts = one_row(
        con,
        """
        SELECT count(*) FILTER (WHERE NOT existed),
               count(*) FILTER (WHERE existed AND newer AND score <> old_score),
               count(*) FILTER (WHERE existed AND newer AND score = old_score),
               count(*) FILTER (WHERE existed AND NOT newer),
               count(*) FILTER (WHERE (NOT existed OR newer) AND weight IS NOT NULL)
        FROM lab_cmp""",
    )
    con.execute(
        """
        INSERT INTO label_history BY NAME
        SELECT s.*, $run AS superseded_by FROM labels s
        SEMI JOIN (SELECT * FROM lab_cmp WHERE existed AND newer) c
          ON c.request_id = s.request_id AND c.tier = s.tier AND c.source = s.source""",
        {"run": run_id},
    )
    con.execute("""
        DELETE FROM labels s WHERE EXISTS (
            SELECT 1 FROM lab_cmp c WHERE c.existed AND c.newer AND c.request_id = s.request_id
              AND c.tier = s.tier AND c.source = s.source)""")
    for table, where, extra in (
        ("labels", "NOT existed OR newer", ""),
        ("label_history", "existed AND NOT newer", ", NULL AS superseded_by"),
    ):
        con.execute(
            f"""
            INSERT INTO {table} BY NAME
            SELECT request_id, tier, score, source, $run AS run_id, labeler, labeled_at,
                   $now::TIMESTAMPTZ AS imported_at, weight, inclusion_prob, stratum,
                   answer_sha256, call_key, detail{extra}
            FROM lab_cmp WHERE {where}""",
            params,
        )
    overrides, overridden = _cross_source(con)
    new, replaced, unchanged, older, weighted = (int(v) for v in counts)
    return ResolveCounts(
        stored=new + replaced + unchanged,
        new=new,
        replaced=replaced,
        unchanged=unchanged,
        older_than_stored=older,
        overrides=overrides,
        overridden=overridden,
        weighted=weighted,
    )


def _cross_source(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(stored labels that now outrank a disagreeing lower-priority label, stored labels hidden
    behind a disagreeing higher-priority one)."""
    ok = f">= {ACCEPTABLE}"
    row = one_row(
        con,
        f"""
        WITH mine AS (SELECT request_id, tier, source, score FROM lab_cmp
                      WHERE NOT existed OR (newer AND score <> old_score)),
        pairs AS (
            SELECT m.request_id, m.tier, m.score AS my_score,
                   {PRIORITY.replace("source", "m.source")} AS my_prio,
                   {PRIORITY.replace("source", "l.source")} AS prio, l.score
            FROM mine m JOIN labels l ON l.request_id = m.request_id AND l.tier = m.tier),
        per AS (
            SELECT request_id, tier, any_value(my_score) AS my_score,
                   any_value(my_prio) AS my_prio, min(prio) AS best,
                   arg_min(score, prio) AS best_score,
                   bool_or(prio > my_prio AND (score {ok}) <> (my_score {ok})) AS beats
            FROM pairs GROUP BY request_id, tier)
        SELECT count(*) FILTER (WHERE best = my_prio AND beats),
               count(*) FILTER (WHERE best < my_prio AND (best_score {ok}) <> (my_score {ok}))
        FROM per""",
    )
    return int(row[0]), int(row[1])


PICKED_LABELS = f"""
    SELECT * EXCLUDE (rn) FROM (
        SELECT *, row_number() OVER (PARTITION BY request_id, tier ORDER BY {PRIORITY}) AS rn
        FROM labels WHERE list_contains($tiers::VARCHAR[], tier))
    WHERE rn = 1"""
"""The label the sweep uses per request × tier (by SOURCE_PRIORITY), for the tiers in $tiers."""


def label_weights(con: duckdb.DuckDBPyConnection, tiers: Sequence[str]) -> LabelWeights:
    """Per request with a weighted label among those the sweep uses for `tiers`: its weight."""
    rows = con.execute(
        f"""
        SELECT request_id, max(weight) AS weight, arg_max(inclusion_prob, weight) AS pi,
               arg_max(stratum, weight) AS stratum,
               count(DISTINCT coalesce(weight, 1.0)) > 1 AS mixed
        FROM ({PICKED_LABELS})
        GROUP BY request_id HAVING max(weight) IS NOT NULL
        ORDER BY request_id""",
        {"tiers": list(tiers)},
    ).fetchnumpy()
    mixed = int(np.asarray(rows["mixed"], dtype=bool).sum()) if len(rows["request_id"]) else 0
    return LabelWeights(
        request_ids=np.asarray(rows["request_id"], dtype=object),
        weight=np.asarray(rows["weight"], dtype=np.float64),
        inclusion_prob=floats(rows["pi"]),
        stratum=np.asarray([s or "" for s in rows["stratum"]], dtype=object),
        mixed=mixed,
    )


def floats(column: np.ndarray) -> np.ndarray:
    """A nullable numeric column as float64 with NaN for NULL."""
    if np.ma.isMaskedArray(column):
        return np.ma.filled(column.astype(np.float64), np.nan)
    return np.asarray(column, dtype=np.float64)


def begin_run(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    started_at: datetime,
    file: str | None = None,
    file_sha256: str | None = None,
    replay_run: int | None = None,
) -> int:
    """Insert a label_runs row (kind: import, score or judge) and return its run_id."""
    run_id = int(one_row(con, "SELECT coalesce(max(run_id), 0) + 1 FROM label_runs")[0])
    con.execute(
        "INSERT INTO label_runs (run_id, kind, started_at, file, file_sha256, replay_run)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [run_id, kind, started_at, file, file_sha256, replay_run],
    )
    return run_id


def finish_run(
    con: duckdb.DuckDBPyConnection,
    run_id: int,
    finished_at: datetime,
    rows_read: int,
    stored: int,
    rejected: int,
) -> None:
    con.execute(
        "UPDATE label_runs SET finished_at = ?, rows_read = ?, labels_stored = ?,"
        " rows_rejected = ? WHERE run_id = ?",
        [finished_at, rows_read, stored, rejected, run_id],
    )


def record_rejects(
    con: duckdb.DuckDBPyConnection, run_id: int, file: str, rejects: Sequence[RejectedRow]
) -> None:
    if not rejects:
        return
    con.executemany(
        "INSERT INTO label_rejects VALUES (?, ?, ?, ?, ?, ?)",
        [(run_id, file, r.line, r.field, r.reason, r.raw) for r in rejects],
    )


def known_tiers(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Tiers that answered at least one stored request."""
    return [r[0] for r in con.execute("SELECT DISTINCT tier FROM attempts ORDER BY 1").fetchall()]


def reference_items(con: duckdb.DuckDBPyConnection, tiers: Sequence[str]) -> list[ReferenceItem]:
    """Every stored answer of `tiers` to a request with a reference (None output: not ok)."""
    rows = con.execute(
        f"""
        WITH picked AS ({PICKED_ATTEMPTS})
        SELECT r.request_id, coalesce(r.app, ''), p.tier,
               CASE WHEN p.status = 'ok' THEN p.output END, r.reference
        FROM requests r JOIN picked p USING (request_id)
        WHERE r.reference IS NOT NULL AND list_contains($tiers::VARCHAR[], p.tier)
        ORDER BY r.request_id, list_position($tiers::VARCHAR[], p.tier)""",
        {"tiers": list(tiers)},
    ).fetchall()
    return [ReferenceItem(*row) for row in rows]

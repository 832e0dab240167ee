"""All SQL of `calibrate labels status`: per request whether it is complete, labelled for every
tier and weighted; totals per tier, app and region; what no estimate can use. Only the store
imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from calibrate.records.labels import Coverage, SegmentCoverage
from calibrate.store.labels_sql import PICKED_LABELS
from calibrate.store.one_row import one_row

EXAMPLES = 5


def _coverage_per_request(con: duckdb.DuckDBPyConnection, tiers: Sequence[str]) -> None:
    """cov_per: per request whether it is complete (an attempt from every tier), how many tiers
    are labelled, whether it is weighted and whether its tiers mix weights."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE cov_per AS
        WITH att AS (SELECT request_id, count(DISTINCT tier) AS n FROM attempts
                     WHERE list_contains($tiers::VARCHAR[], tier) GROUP BY request_id),
        lab AS (SELECT request_id, count(DISTINCT tier) AS n, max(weight) AS w,
                       count(DISTINCT coalesce(weight, 1.0)) AS kinds
                FROM ({PICKED_LABELS}) GROUP BY request_id)
        SELECT r.request_id, coalesce(r.app, '') AS app, coalesce(r.region, '') AS region,
               coalesce(att.n, 0) = len($tiers::VARCHAR[]) AS complete,
               coalesce(lab.n, 0) AS labeled_tiers, lab.w IS NOT NULL AS weighted,
               coalesce(lab.kinds, 0) > 1 AS mixed
        FROM requests r LEFT JOIN att USING (request_id) LEFT JOIN lab USING (request_id)""",
        {"tiers": list(tiers)},
    )


def _examples(con: duckdb.DuckDBPyConnection, where: str) -> tuple[str, ...]:
    rows = con.execute(
        f"SELECT request_id FROM cov_per WHERE {where} ORDER BY 1 LIMIT {EXAMPLES}"
    ).fetchall()
    return tuple(r[0] for r in rows)


def _by_tier(
    con: duckdb.DuckDBPyConnection, tiers: Sequence[str], usable: str
) -> tuple[tuple[str, tuple[tuple[str, int], ...], int], ...]:
    """(tier, labels per source, labels the sweep uses) for each tier."""
    params = {"tiers": list(tiers)}
    by_source = con.execute(
        "SELECT tier, source, count(*) FROM labels WHERE list_contains($tiers::VARCHAR[], tier)"
        " GROUP BY tier, source ORDER BY tier, source",
        params,
    ).fetchall()
    used = dict(
        con.execute(
            f"SELECT tier, count(*) FROM ({PICKED_LABELS}) p"
            f" SEMI JOIN cov_per c ON c.request_id = p.request_id AND {usable} GROUP BY tier",
            params,
        ).fetchall()
    )
    return tuple(
        (t, tuple((src, int(n)) for tt, src, n in by_source if tt == t), int(used.get(t, 0)))
        for t in tiers
    )


def coverage(
    con: duckdb.DuckDBPyConnection, tiers: Sequence[str], judge: tuple[int, int, float]
) -> Coverage:
    """What is labelled for `tiers`, per tier, app and region, and what no estimate can use;
    `judge` is (calls, unusable calls, cost). The agreement is left to the caller."""
    _coverage_per_request(con, tiers)
    k = len(tiers)
    usable = f"c.complete AND c.labeled_tiers = {k}"
    partial, incomplete = (
        f"labeled_tiers BETWEEN 1 AND {k - 1}",
        "labeled_tiers > 0 AND NOT complete",
    )
    totals = one_row(
        con,
        f"""
        SELECT count(*), count(*) FILTER (WHERE c.complete), count(*) FILTER (WHERE {usable}),
               count(*) FILTER (WHERE {usable} AND c.weighted),
               count(*) FILTER (WHERE {usable} AND c.mixed),
               count(*) FILTER (WHERE {partial}), count(*) FILTER (WHERE {incomplete})
        FROM cov_per c""",
    )
    segments = con.execute(f"""
        SELECT col, value, count(*) FILTER (WHERE c.complete), count(*) FILTER (WHERE {usable}),
               count(*) FILTER (WHERE {usable} AND c.weighted)
        FROM (SELECT 'app' AS col, app AS value, * FROM cov_per
              UNION ALL SELECT 'region', region, * FROM cov_per) c
        GROUP BY col, value ORDER BY col, value""").fetchall()
    other, queued, queued_labeled, rejected = one_row(
        con,
        f"""
        SELECT (SELECT count(*) FROM labels WHERE NOT list_contains($tiers::VARCHAR[], tier)),
               (SELECT count(DISTINCT request_id) FROM label_sample_items),
               (SELECT count(DISTINCT request_id) FROM label_sample_items i SEMI JOIN cov_per c
                  ON c.request_id = i.request_id AND {usable}),
               (SELECT count(*) FROM label_rejects)""",
        {"tiers": list(tiers)},
    )
    requests, complete, n_usable, weighted, mixed, n_partial, n_incomplete = map(int, totals)
    return Coverage(
        tiers=tuple(tiers),
        requests=requests,
        complete=complete,
        usable=n_usable,
        weighted=weighted,
        mixed_weights=mixed,
        by_tier=_by_tier(con, tiers, usable),
        segments=tuple(SegmentCoverage(c, v, int(n), int(u), int(w)) for c, v, n, u, w in segments),
        partial=n_partial,
        partial_examples=_examples(con, partial),
        incomplete_labeled=n_incomplete,
        incomplete_examples=_examples(con, incomplete),
        other_tier_labels=int(other),
        queued=int(queued),
        queued_labeled=int(queued_labeled),
        judge_calls=judge[0],
        judge_unparsable=judge[1],
        judge_cost_usd=judge[2],
        agreement=None,
        rejected_rows=int(rejected),
    )

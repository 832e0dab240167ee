"""All SQL of `calibrate check` (and the sweep's bias preflight): per tier and source what the
attempts carry, labels per source, and per production path × app × region how many requests have
every tier's answer and labels. Only the store imports this module.

A request's production path is the tiers (of the given list, in its order) that have a `prod`
attempt on it, joined by `>`: `small` = production kept it on small, `small>large` = production
escalated it to large; `` = production called none of the tiers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from calibrate.records.labels import ACCEPTABLE
from calibrate.store.labels_sql import PICKED_LABELS


@dataclass(frozen=True)
class TierUse:
    """What one tier's attempts of one source carry."""

    tier: str
    source: str
    requests: int
    confidence_present: int
    confidence_min: float | None
    confidence_max: float | None
    cost_present: int
    latency_present: int


@dataclass(frozen=True)
class CoverageCell:
    """Requests of one production path, app and region: how many have every tier's answer and
    labels for every tier (with the labels' 1/π weights), and how often the cheapest tier's answer
    was worse than the premium one's (labelled) or differed from it as text (label-free)."""

    path: str
    app: str
    region: str
    requests: int
    complete: int
    labeled: int
    weight_sum: float
    weight_sq_sum: float
    regret_weight: float
    compared: int
    differ: int


@dataclass(frozen=True)
class CheckData:
    """Everything `check` reads from the store for a list of tiers."""

    tiers: tuple[str, ...]
    uses: tuple[TierUse, ...]
    labels: tuple[tuple[str, str, int], ...]
    found_tiers: tuple[tuple[str, int], ...]
    cells: tuple[CoverageCell, ...]


_USES = """
SELECT tier, source, count(DISTINCT request_id), count(confidence) FILTER (WHERE isfinite(confidence)),
       min(confidence) FILTER (WHERE isfinite(confidence)),
       max(confidence) FILTER (WHERE isfinite(confidence)), count(cost_usd), count(latency_ms)
FROM attempts WHERE list_contains($tiers::VARCHAR[], tier)
GROUP BY tier, source ORDER BY tier, source"""

# The coverage cells from `per` (one row per request), both from the attempts and from the base.
_CELLS_TAIL = """cells AS (
    SELECT prod_mask, app, region, count(*) AS n, count(*) FILTER (WHERE complete) AS complete,
           count(*) FILTER (WHERE labeled) AS labeled,
           coalesce(sum(w) FILTER (WHERE labeled), 0) AS w,
           coalesce(sum(w * w) FILTER (WHERE labeled), 0) AS w2,
           coalesce(sum(w) FILTER (WHERE labeled AND regret), 0) AS regret_w,
           count(*) FILTER (WHERE complete AND cheap_out IS NOT NULL AND premium_out IS NOT NULL)
             AS compared,
           count(*) FILTER (WHERE complete AND cheap_out <> premium_out) AS differ
    FROM per GROUP BY prod_mask, app, region)
SELECT array_to_string(list_filter($tiers::VARCHAR[], lambda t, i: (prod_mask >> (i - 1)) & 1 = 1),
                       '>') AS path,
       app, region, n, complete, labeled, w, w2, regret_w, compared, differ
FROM cells ORDER BY path, app, region"""

# Per request, the tiers with an attempt and those with a `prod` attempt as bit masks (bit k-1:
# tier k): grouping by a number is much cheaper than a distinct count and an ordered string_agg per
# request; the path's text is made once per group.
_CELLS = f"""
WITH tl AS (SELECT unnest($tiers::VARCHAR[]) AS tier, generate_subscripts($tiers::VARCHAR[], 1) AS k),
att AS (
    SELECT a.request_id, bit_count(bit_or(1 << (tl.k - 1))) AS n_tiers,
           coalesce(bit_or(1 << (tl.k - 1)) FILTER (WHERE a.source = 'prod'), 0) AS prod_mask,
           lower(trim(max({{output}}) FILTER (WHERE tl.k = 1 AND a.status = 'ok'))) AS cheap_out,
           lower(trim(max({{output}}) FILTER (WHERE tl.k = len($tiers::VARCHAR[])
                                              AND a.status = 'ok'))) AS premium_out
    FROM attempts a JOIN tl USING (tier) GROUP BY a.request_id),
lab AS (
    SELECT request_id, count(DISTINCT tier) AS n_tiers, coalesce(max(weight), 1.0) AS w,
           max(score) FILTER (WHERE tier = $tiers[1]) AS cheap,
           max(score) FILTER (WHERE tier = $tiers[len($tiers::VARCHAR[])]) AS premium
    FROM ({PICKED_LABELS}) GROUP BY request_id),
per AS (
    SELECT coalesce(att.prod_mask, 0) AS prod_mask, coalesce(r.app, '') AS app,
           coalesce(r.region, '') AS region,
           coalesce(att.n_tiers, 0) = len($tiers::VARCHAR[]) AS complete,
           coalesce(att.n_tiers, 0) = len($tiers::VARCHAR[])
             AND coalesce(lab.n_tiers, 0) = len($tiers::VARCHAR[]) AS labeled,
           lab.w, lab.cheap < {ACCEPTABLE} AND lab.premium >= {ACCEPTABLE} AS regret,
           att.cheap_out, att.premium_out
    FROM requests r LEFT JOIN att USING (request_id) LEFT JOIN lab USING (request_id)),
{_CELLS_TAIL}"""

# The same cells from the sweep's outcome base (`outcome_rows_sql.BASE`: one row per request with
# its tiers' picks and labels, built by the one aggregation of the attempts the sweep needs anyway),
# without the answers' text.
_BASE_CELLS = f"""
WITH per AS (
    SELECT prod_called AS prod_mask, app, region, complete, complete AND labeled AS labeled,
           COALESCE(label_weight, 1.0) AS w,
           {{cheap}} < {ACCEPTABLE} AND {{premium}} >= {ACCEPTABLE} AS regret,
           CAST(NULL AS VARCHAR) AS cheap_out, CAST(NULL AS VARCHAR) AS premium_out
    FROM {{base}}),
{_CELLS_TAIL}"""


def check_data(
    con: duckdb.DuckDBPyConnection, tiers: Sequence[str], texts: bool = True
) -> CheckData:
    """Read what `check` needs for `tiers` (cheapest first); `texts=False` reads only what the
    sweep's preflight needs: the cells without comparing the answers' text, and the labels per
    source (`uses` and `found_tiers` are left empty: `found_tiers` reads them)."""
    params = {"tiers": list(tiers)}
    uses = con.execute(_USES, params).fetchall() if texts else []
    labels = con.execute(
        "SELECT tier, source, count(*) FROM labels WHERE list_contains($tiers::VARCHAR[], tier)"
        " GROUP BY tier, source ORDER BY tier, source",
        params,
    ).fetchall()
    found = found_tiers(con) if texts else ()
    cells = (
        con.execute(
            _CELLS.format(output="a.output" if texts else "NULL::VARCHAR"), params
        ).fetchall()
        if tiers
        else []
    )
    return CheckData(
        tiers=tuple(tiers),
        uses=tuple(
            TierUse(t, s, int(n), int(c), _float(lo), _float(hi), int(cost), int(lat))
            for t, s, n, c, lo, hi, cost, lat in uses
        ),
        labels=tuple((t, s, int(n)) for t, s, n in labels),
        found_tiers=found,
        cells=_cells(cells),
    )


def preflight_cells(
    con: duckdb.DuckDBPyConnection, base: str, tiers: Sequence[str]
) -> tuple[CoverageCell, ...]:
    """`check_data(con, tiers, texts=False).cells` from the outcome base `base` (built for the
    same tiers): what the sweep's bias preflight reads."""
    if not tiers:
        return ()
    sql = _BASE_CELLS.format(base=base, cheap="label_0", premium=f"label_{len(tiers) - 1}")
    return _cells(con.execute(sql, {"tiers": list(tiers)}).fetchall())


def _cells(rows: list[tuple]) -> tuple[CoverageCell, ...]:
    return tuple(
        CoverageCell(
            p, a, r, int(n), int(c), int(lab), float(w), float(w2), float(rw), int(cm), int(d)
        )
        for p, a, r, n, c, lab, w, w2, rw, cm, d in rows
    )


def found_tiers(con: duckdb.DuckDBPyConnection) -> tuple[tuple[str, int], ...]:
    """Every tier the attempts name, with its number of requests."""
    found = con.execute(
        "SELECT tier, count(DISTINCT request_id) FROM attempts GROUP BY tier ORDER BY tier"
    ).fetchall()
    return tuple((t, int(n)) for t, n in found)


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ConfidenceRange:
    """The finite confidences of one tier's attempts of one source: how many, lowest, highest."""

    tier: str
    source: str
    count: int
    low: float
    high: float


def confidence_ranges(
    con: duckdb.DuckDBPyConnection, tiers: Sequence[str]
) -> tuple[ConfidenceRange, ...]:
    """Per tier and source (prod, shadow) the range of the stored finite confidences (a tier and
    source with none is left out)."""
    rows = con.execute(
        "SELECT tier, source, count(*), min(confidence), max(confidence) FROM attempts "
        "WHERE list_contains($tiers::VARCHAR[], tier) AND isfinite(confidence) "
        "GROUP BY tier, source ORDER BY tier, source",
        {"tiers": list(tiers)},
    ).fetchall()
    return tuple(ConfidenceRange(t, s, int(n), float(lo), float(hi)) for t, s, n, lo, hi in rows)

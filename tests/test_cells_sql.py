"""The sweep on SQL aggregates (`aggregates_sql` + `family_cells`) gives `evaluate_families`' frame
bit for bit: the same grids (exact order statistics from SQL histograms), the same metrics from
per-stop (cell, latency) aggregates and the labeled requests alone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from outcomes_support import random_outcomes

from calibrate.config.tiers import load_tiers, price_table
from calibrate.ingest.stage import ingest
from calibrate.policies.assignment import take_rows
from calibrate.policies.consensus import consensus_frame, consensus_frame_from_cells
from calibrate.policies.families import (
    Family,
    cutoff_grid,
    cutoff_grid_of_counts,
    default_families,
    evaluate_families,
    keyword_families,
    threshold_grid,
)
from calibrate.policies.family_cells import (
    SqlStopRows,
    check_latencies,
    evaluate_families_from_cells,
    sql_families,
    sql_keyword_families,
    sql_stop_rows,
)
from calibrate.records.outcomes import Outcomes
from calibrate.store import Store
from calibrate.store.aggregates_sql import duckdb_query
from calibrate.store.exact_sql import double, rint
from calibrate.store.outcome_rows_sql import build_outcome_rows, register_outcome_rows

SIZES = {2: 9, 3: 5, 4: 3}


def with_columns(o: Outcomes, **changes: np.ndarray) -> Outcomes:
    fields = {name: getattr(o, name) for name in o.__dataclass_fields__}
    return Outcomes(**{**fields, **changes})


def sql_frame(
    con: duckdb.DuckDBPyConnection, o: Outcomes, sizes: dict[int, int] | None, extra=()
) -> tuple[list[Family], pl.DataFrame]:
    """The SQL path: grids and stop aggregates from `outcome_rows`, scores from the labeled rows
    only (every request in memory only for the per-request families `extra`)."""
    query = duckdb_query(con)
    check_latencies(query, "outcome_rows", len(o.tiers))
    families = [*sql_families(query, "outcome_rows", len(o.tiers), sizes), *extra]
    labeled = take_rows(o, o.labeled)
    per_request = o if extra else None
    frame = evaluate_families_from_cells(
        labeled, families, sql_stop_rows(query, "outcome_rows"), per_request
    )
    return families, frame


def assert_same(o: Outcomes, sizes: dict[int, int] | None = SIZES, extra=()) -> pl.DataFrame:
    con = duckdb.connect()
    register_outcome_rows(con, o)
    families, frame = sql_frame(con, o, sizes, extra)
    reference = default_families(o, sizes)
    assert len(families) == len(reference) + len(extra)
    for got, want in zip(families, reference, strict=False):
        assert (got.kind, got.path) == (want.kind, want.path)
        for g, w in zip(got.grids, want.grids, strict=True):
            assert g.dtype == w.dtype and np.array_equal(g, w)
    expected = evaluate_families(o, [*reference, *extra])
    assert frame.equals(expected)
    return frame


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("seed", range(4))
def test_random_outcomes(k: int, seed: int) -> None:
    assert_same(random_outcomes(seed, 300, k))


@pytest.mark.parametrize("k", [2, 3])
def test_default_grid_sizes_with_many_distinct_confidences(k: int) -> None:
    """More distinct values than the grid, several per histogram bucket: order statistics are
    read from pulled bucket values; thresholds rounded to 4 digits sit on data values."""
    rng = np.random.default_rng(k)
    o = random_outcomes(30 + k, 3000, k)
    conf = rng.normal(0.7, 0.1, size=(o.n, k))
    conf[rng.uniform(size=conf.shape) < 0.1] = np.nan
    conf[:50] = np.round(conf[:50], 3)
    conf[50:60] = 0.7  # a heavy tie
    conf[60, 0], conf[61, 0] = 1e6, -1e6  # far outliers: most values share a bucket
    o = with_columns(o, confidence=conf)
    assert_same(o, None)


def test_infinite_confidences_and_an_all_nan_tier() -> None:
    o = random_outcomes(5, 400, 3)
    conf = o.confidence.copy()
    conf[:7, 0] = np.inf
    conf[7:9, 0] = -np.inf
    conf[:, 1] = np.nan
    assert_same(with_columns(o, confidence=conf))


def test_ties_on_grid_points_negative_and_fine_latencies() -> None:
    rng = np.random.default_rng(7)
    o = random_outcomes(7, 500, 3)
    conf = np.round(rng.uniform(0, 1, size=(o.n, 3)), 3)
    conf[rng.uniform(size=conf.shape) < 0.05] = np.nan
    latency = np.round(rng.gamma(2.0, 300.0, size=(o.n, 3)), 3)
    latency[0, 2], latency[1, 0] = -30.0, 0.0005  # below zero; a half µs (rounds to even)
    latency[2:40] = 250.0
    tokens = rng.integers(1, 5_000_000, size=o.n)  # beyond the lookup table of lengths
    o = with_columns(o, confidence=conf, latency_ms=latency, input_tokens=tokens)
    assert_same(o, {2: 12, 3: 6})


@pytest.mark.parametrize("n", [1, 2, 5])
def test_tiny_inputs(n: int) -> None:
    o = random_outcomes(11 + n, n, 3)
    o = with_columns(o, label=np.ones((n, 3)))
    assert_same(o)


def test_per_request_families_share_the_engine() -> None:
    """Routers and keyword rules stay per request (their inputs come from Python), next to the
    SQL families, in one frame equal to the reference."""
    rng = np.random.default_rng(3)
    o = random_outcomes(3, 300, 3)
    scores = rng.choice(np.round(rng.uniform(0, 1, 25), 3), size=o.n)
    forced = np.where(rng.uniform(size=o.n) < 0.3, rng.integers(0, 3, o.n), -1)
    extra = [
        Family("router", (0, 2), (threshold_grid(scores, 9),), scores=scores, overhead_usd=2.5e-6),
        *keyword_families(o, forced, SIZES),
    ]
    frame = assert_same(o, extra=extra)
    assert {"router", "rules", "hybrid", "cascade"} <= set(frame["strategy"])


def test_a_missing_or_infinite_latency_is_refused() -> None:
    from calibrate.errors import DataError

    o = random_outcomes(2, 50, 2)
    latency = o.latency_ms.copy()
    latency[3, 1] = np.inf
    con = duckdb.connect()
    register_outcome_rows(con, with_columns(o, latency_ms=latency))
    with pytest.raises(DataError, match="latencies"):
        check_latencies(duckdb_query(con), "outcome_rows", 2)


@pytest.mark.parametrize("k", [3, 4])
def test_consensus_from_aggregates(k: int) -> None:
    rng = np.random.default_rng(k)
    o = random_outcomes(50 + k, 300, k)
    codes = rng.integers(-1, 3, size=(int(o.labeled.sum()), k))
    con = duckdb.connect()
    register_outcome_rows(con, o)
    got = consensus_frame_from_cells(
        take_rows(o, o.labeled), codes, duckdb_query(con), "outcome_rows"
    )
    expected = consensus_frame(o, codes)
    assert got is not None and expected is not None
    assert got.equals(expected)


def test_rint_is_numpys() -> None:
    values = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999999, 1e15 + 0.5, 3.0, -7.25, 0.1])
    con = duckdb.connect()
    sql = " UNION ALL ".join(
        f"SELECT {i} AS i, {rint(double(v))} AS r" for i, v in enumerate(values)
    )
    got = dict(con.execute(sql).fetchall())
    assert [got[i] for i in range(values.size)] == np.rint(values).astype(np.int64).tolist()


@pytest.mark.parametrize("seed", range(20))
def test_cutoffs_from_the_length_histogram(seed: int) -> None:
    rng = np.random.default_rng(seed)
    high = [50, 3000, 1 << 22][seed % 3]
    tokens = rng.integers(0, high, int(rng.integers(1, 900)))
    values, counts = np.unique(tokens, return_counts=True)
    for size in (1, 2, 7, 50):
        assert np.array_equal(
            cutoff_grid_of_counts(values, counts, size), cutoff_grid(tokens, size)
        )


@pytest.mark.e2e
def test_the_demo_store(sample_logs: Path, tmp_path: Path) -> None:
    """The sample logs ingested: `outcome_rows` built by the store gives the same frame."""
    tiers = load_tiers(sample_logs / "tiers.yaml")
    with Store.open(tmp_path / "demo.duckdb") as store:
        ingest(
            store,
            [sample_logs / "requests.jsonl.gz"],
            strict=False,
            clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        )
        o = store.outcomes(tiers.names, price_table(tiers))
        build_outcome_rows(store.con, tiers.names, price_table(tiers))
        _, frame = sql_frame(store.con, o, None)
        assert frame.equals(evaluate_families(o, default_families(o)))
        assert frame.height > 300


def test_each_distinct_stop_is_queried_once_and_dropped_after_its_last_family() -> None:
    o = random_outcomes(4, 300, 3)
    con = duckdb.connect()
    register_outcome_rows(con, o)
    run = duckdb_query(con)
    sent: list[str] = []

    def query(sql: str):
        sent.append(sql)
        return run(sql)

    families = sql_families(run, "outcome_rows", 3, SIZES)
    rows = SqlStopRows(query, "outcome_rows")
    frame = evaluate_families_from_cells(take_rows(o, o.labeled), families, rows)
    assert frame.equals(evaluate_families(o, default_families(o, SIZES)))
    # length (0,1) (0,2); cascades (0,1) (0,2) (1,2) (0,1,2): the always families are summed
    # from the length rules' stops, the cascades from one tier share their first stop
    assert len(sent) == 6
    stops = sum(sql.count("GROUP BY") for sql in sent)
    assert stops == 3 + 5 + 3
    assert rows.rows == {}


def test_keyword_families_with_grids_from_sql() -> None:
    rng = np.random.default_rng(8)
    o = random_outcomes(8, 300, 3)
    forced = np.where(rng.uniform(size=o.n) < 0.3, rng.integers(0, 3, o.n), -1)
    con = duckdb.connect()
    register_outcome_rows(con, o)
    got = sql_keyword_families(duckdb_query(con), "outcome_rows", 3, forced, o.request_ids, SIZES)
    want = keyword_families(o, forced, SIZES)
    assert [(f.kind, f.path) for f in got] == [(f.kind, f.path) for f in want]
    for g, w in zip(got, want, strict=True):
        assert all(
            np.array_equal(a, b) and a.dtype == b.dtype
            for a, b in zip(g.grids, w.grids, strict=True)
        )
    assert evaluate_families(o, got).equals(evaluate_families(o, want))

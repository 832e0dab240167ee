"""The measured optimum from SQL aggregates (`policies.optimum_cells`) equals the per-request one
(`optimum.measured_optima`) exactly: random outcomes over 2–4 tiers with ties, missing and
infinite confidences, every kind of target, the windowed search forced by a small CELL_LIMIT,
and the demo store."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import duckdb
import numpy as np
import pytest
from outcomes_support import random_outcomes

from calibrate.config.tiers import load_tiers, price_table
from calibrate.ingest.stage import ingest
from calibrate.policies import optimum
from calibrate.policies.assignment import take_rows
from calibrate.policies.families import (
    default_families,
    evaluate_families,
    premium_family,
    sweep_columns,
)
from calibrate.policies.optimum_cells import measured_optima_from
from calibrate.records.outcomes import Outcomes
from calibrate.store import Store
from calibrate.store.exact_sql import rint
from calibrate.store.outcome_rows_sql import build_outcome_rows, register_outcome_rows
from calibrate.store.sql_engine import DuckDbEngine

TARGETS = (
    optimum.Target(0.02),
    optimum.Target(0.1, escalation_band=(0.3, 0.9)),
    optimum.Target(1.0, max_cost_per_1k_usd=1.0),
)


def assert_same_optima(o: Outcomes, target: optimum.Target, grid=None) -> int:
    families = default_families(o, grid)
    columns = sweep_columns(o, [*families, premium_family(o)])
    frontier = evaluate_families(o, families, columns=columns)
    want = optimum.measured_optima(o, families, frontier, columns, target)
    con = duckdb.connect()
    register_outcome_rows(con, o)
    got = measured_optima_from(
        take_rows(o, o.labeled), families, frontier, target, DuckDbEngine(con)
    )
    assert (want.rows is None) == (got.rows is None)
    if want.rows is not None:
        assert got.rows is not None and want.rows.equals(got.rows)
    assert want.index.keys() == got.index.keys()
    return 0 if want.rows is None else want.rows.height


def continuous(o: Outcomes, seed: int) -> Outcomes:
    """Distinct confidences, some missing, some +inf."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0, 1, size=o.confidence.shape)
    conf[rng.uniform(size=conf.shape) < 0.1] = np.nan
    conf[rng.uniform(size=conf.shape) < 0.02] = np.inf
    return replace(o, confidence=conf)


@pytest.mark.e2e
@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("windowed", [False, True])
def test_same_optima_on_random_outcomes(k, seed, windowed, monkeypatch):
    if windowed:
        monkeypatch.setattr(optimum, "CELL_LIMIT", 64)  # strided starts and windows
    o = random_outcomes(seed, 400, k)
    found = 0
    for data in (o, continuous(o, seed)):
        for target in TARGETS:
            found += assert_same_optima(data, target, {2: 20, 3: 6, 4: 4})
    assert found > 0  # some optimum beat its grid: the rows were compared


@pytest.mark.e2e
def test_same_optima_on_the_demo_store(tmp_path, sample_logs):
    """sample_logs ingested; `outcome_rows` built from the store, as the sweep will."""
    tiers = load_tiers(sample_logs / "tiers.yaml")
    with Store.open(tmp_path / "demo.duckdb") as store:
        ingest(store, [sample_logs / "requests.jsonl.gz"], strict=False, clock=datetime.now)
        o = store.outcomes(tiers.names, price_table(tiers))
        build_outcome_rows(store.con, tiers.names, price_table(tiers))
        families = default_families(o)
        columns = sweep_columns(o, [*families, premium_family(o)])
        frontier = evaluate_families(o, families, columns=columns)
        for target in TARGETS:
            want = optimum.measured_optima(o, families, frontier, columns, target)
            got = measured_optima_from(
                take_rows(o, o.labeled), families, frontier, target, DuckDbEngine(store.con)
            )
            assert (want.rows is None) == (got.rows is None)
            assert want.rows is None or (got.rows is not None and want.rows.equals(got.rows))
            assert want.index.keys() == got.index.keys()


def test_rint_sql_rounds_half_to_even():
    values = np.array([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.4999, 2.5001, 1e12 + 0.5, -7.0])
    con = duckdb.connect()
    con.execute("CREATE TABLE x AS SELECT unnest(?) AS v", [values.tolist()])
    got = con.execute(f"SELECT {rint('v')} FROM x").fetchall()
    assert [r[0] for r in got] == np.rint(values).astype(np.int64).tolist()

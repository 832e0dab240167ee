"""The outcome relation in SQL (`store/outcome_rows_sql.py`): the same rows, picks and values as
`Store.outcomes()`, built from a real store, and its labeled rows as a small `Outcomes`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_outcomes import PRICES, store  # noqa: F401  (the fixture: picks, fallbacks, incomplete)

from calibrate.errors import DataError
from calibrate.records.outcomes import Outcomes
from calibrate.store import Store
from calibrate.store.outcome_rows_sql import (
    build_outcome_rows,
    labeled_outcomes,
    register_outcome_rows,
)

FIELDS = ("request_ids", "timestamp_s", "region", "app", "intent", "input_tokens")
PER_TIER = ("confidence", "cost_usd", "latency_ms", "label")


def relation_as_outcomes(store: Store, tiers: list[str]) -> Outcomes:  # noqa: F811
    """Every row of the built relation, read back as an `Outcomes` (labeled or not)."""
    rows = build_outcome_rows(store.con, tiers, PRICES)
    store.con.execute("UPDATE outcome_base SET labeled = TRUE")  # read back every row
    return labeled_outcomes(store.con, rows)


def assert_same(a: Outcomes, b: Outcomes) -> None:
    assert a.tiers == b.tiers and a.n == b.n and a.incomplete == b.incomplete
    for name in FIELDS:
        assert list(getattr(a, name)) == list(getattr(b, name)), name
    for name in PER_TIER:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("tiers", [["small", "large"], ["large", "small"]])
def test_the_relation_holds_the_outcome_table(store: Store, tiers: list[str]) -> None:  # noqa: F811
    assert_same(relation_as_outcomes(store, tiers), store.outcomes(tiers, PRICES))


def test_labeled_rows_are_the_labeled_outcomes(store: Store) -> None:  # noqa: F811
    whole = store.outcomes(["small", "large"], PRICES)
    rows = build_outcome_rows(store.con, ["small", "large"], PRICES)
    assert (rows.requests, rows.incomplete) == (3, 1)
    labeled = labeled_outcomes(store.con, rows)
    assert list(labeled.request_ids) == ["r-1"] == list(whole.request_ids[whole.labeled])
    np.testing.assert_array_equal(labeled.label, whole.label[whole.labeled])


def test_a_tier_without_cost_or_price_is_named(store: Store) -> None:  # noqa: F811
    with pytest.raises(DataError, match="tier 'small': 1 attempts have no cost_usd"):
        build_outcome_rows(store.con, ["small", "large"], {"large": PRICES["large"]})


def test_an_in_memory_table_registers_as_the_same_relation(store: Store, tmp_path: Path) -> None:  # noqa: F811
    whole = store.outcomes(["small", "large"], PRICES)
    with Store.open(tmp_path / "other.duckdb") as other:
        rows = register_outcome_rows(other.con, whole)
        other.con.execute("UPDATE outcome_rows SET labeled = TRUE")
        assert_same(labeled_outcomes(other.con, rows), whole)


def test_intents_with_quotes_select_their_requests(store: Store, tmp_path: Path) -> None:  # noqa: F811
    """A high-stakes intent is quoted into SQL: a quote in its name selects its own requests
    and nothing else (no injection)."""
    import dataclasses

    from calibrate.store.aggregates_sql import known_intents, with_intents
    from calibrate.store.sql_engine import DuckDbEngine

    whole = store.outcomes(["small", "large"], PRICES)
    hostile = np.array(["it's", "x') OR (1=1", None], dtype=object)
    with Store.open(tmp_path / "quotes.duckdb") as other:
        rows = register_outcome_rows(other.con, dataclasses.replace(whole, intent=hostile))
        query = DuckDbEngine(other.con).query
        assert known_intents(query, rows.relation) == ["it's", "x') OR (1=1"]
        for intent in ("it's", "x') OR (1=1"):
            got = query(f"SELECT request_id FROM {with_intents(rows.relation, [intent])}")
            assert list(got["request_id"]) == [whole.request_ids[list(hostile).index(intent)]]


def test_a_read_only_store_keeps_the_base_in_a_scratch_file_it_removes(
    store: Store,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a store file (read-only, as the sweep opens it) whose base would crowd the memory
    limit (here: as if a request took 1 GB), the outcome base lives in a scratch DuckDB file in
    the store's spill folder, attached writable; the store file is not written, and closing
    removes the scratch file and the folder. A small store keeps the base in memory."""
    import hashlib

    from calibrate.store import opening

    file = tmp_path / "s.duckdb"
    store.con.execute(f"ATTACH '{file}' AS copy")
    (name,) = store.con.execute("SELECT current_database()").fetchall()[0]
    store.con.execute(f"COPY FROM DATABASE {name} TO copy")
    store.con.execute("DETACH copy")
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    expected = relation_as_outcomes(store, ["small", "large"])
    with Store.open(file, read_only=True) as ro:
        ro.outcome_rows(["small", "large"], PRICES)
        assert not (tmp_path / "s.duckdb.tmp").exists()
    monkeypatch.setattr(opening, "SCRATCH_ROW_BYTES", 1 << 30)
    with Store.open(file, read_only=True) as ro:
        rows = ro.outcome_rows(["small", "large"], PRICES)
        scratch = list((tmp_path / "s.duckdb.tmp").glob("outcomes-*.duckdb"))
        assert len(scratch) == 1 and scratch[0].stat().st_size > 0
        (table,) = ro.con.execute(
            "SELECT database_name FROM duckdb_tables() WHERE table_name = 'outcome_base'"
        ).fetchall()[0]
        assert table == "outcome_scratch"
        assert rows.requests == expected.n
        ro.con.execute("UPDATE outcome_scratch.outcome_base SET labeled = TRUE")
        assert_same(labeled_outcomes(ro.con, rows), expected)
        ro.outcome_rows(["small", "large"], PRICES)  # a rebuild replaces the base
    assert not (tmp_path / "s.duckdb.tmp").exists()
    assert hashlib.sha256(file.read_bytes()).hexdigest() == digest

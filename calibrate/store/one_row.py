"""The single row of a query that always returns one (an aggregate without GROUP BY, or a SELECT
of expressions): DuckDB types `fetchone()` as optional, this says why it is not."""

from __future__ import annotations

from typing import Any

import duckdb


def one_row(con: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> tuple[Any, ...]:
    """The row `sql` returns; `sql` must be a query that returns exactly one row."""
    row = con.execute(sql, params).fetchone()
    assert row is not None, "an aggregate without GROUP BY returns one row"
    return row

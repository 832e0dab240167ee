"""The single row of a query that always returns one (an aggregate without GROUP BY, or a SELECT
of expressions). Read with fetchall: DuckDB 2 refuses other work on a connection while a result
is half read (fetchone leaves it so)."""

from __future__ import annotations

from typing import Any

import duckdb


def one_row(con: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> tuple[Any, ...]:
    """The row `sql` returns; `sql` must be a query that returns exactly one row."""
    rows = con.execute(sql, params).fetchall()
    assert len(rows) == 1, "an aggregate without GROUP BY returns one row"
    return rows[0]

"""What runs the sweep's aggregate SQL (`aggregates_sql`, `sections_sql`, `optimum_sql`) over
the outcome relation: `SqlEngine`, and its DuckDB implementation on the store's connection (the
Spark one is `spark_engine.SparkEngine`). Results are read whole: DuckDB 2 refuses other work on
a connection while a result is half read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import duckdb
import numpy as np
import pyarrow as pa


class SqlEngine(Protocol):
    """The SQL engine holding `outcome_rows`: run an aggregate query
    (columns as numpy arrays) and register a small table under a name (thresholds, bucket ids)."""

    def query(self, sql: str) -> dict[str, np.ndarray]: ...

    def register(self, name: str, columns: dict[str, np.ndarray]) -> None: ...


@dataclass(frozen=True)
class DuckDbEngine:
    """`SqlEngine` on a DuckDB connection (the store's)."""

    con: duckdb.DuckDBPyConnection

    def query(self, sql: str) -> dict[str, np.ndarray]:
        return {name: np.asarray(v) for name, v in self.con.execute(sql).fetchnumpy().items()}

    def register(self, name: str, columns: dict[str, np.ndarray]) -> None:
        self.con.register(name, pa.table({k: pa.array(v) for k, v in columns.items()}))

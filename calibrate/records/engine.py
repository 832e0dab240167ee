"""Where the sweep computes its outcome relation and aggregates: the store's DuckDB, or Spark over
canonical Parquet (`--engine spark`, `--spark-master`). Imports nothing from calibrate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LOCAL_MASTER = "local[*]"


@dataclass(frozen=True, slots=True)
class Engine:
    """`kind`: duckdb (the default: the store) or spark; `master`: the Spark master URL
    (`local[*]`: this machine, every core; `spark://host:7077`, `yarn`, `k8s://…`: a cluster);
    `parquet`: what Spark reads, canonical Parquet as paths, globs or object-storage URLs, exactly
    as given (empty for duckdb)."""

    kind: Literal["duckdb", "spark"] = "duckdb"
    master: str = LOCAL_MASTER
    parquet: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "spark" and not self.parquet:
            raise ValueError("the spark engine needs the Parquet it reads")
        if self.kind == "duckdb" and (self.parquet or self.master != LOCAL_MASTER):
            raise ValueError("the duckdb engine reads the store: no Parquet, no Spark master")

    @property
    def spark(self) -> bool:
        return self.kind == "spark"

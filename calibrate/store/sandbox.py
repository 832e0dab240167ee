"""Confining a store connection before SQL a user wrote runs on it (`replay --where`).

Trust model: `--where` is a filter over the stored requests, not a shell. Once sealed, the
connection reads and writes only the store it opened: no other file or directory (`read_csv`,
`glob`, `COPY`, `ATTACH`), no URL, no extension installed or loaded, no stored secret, and no
setting can be changed back (DuckDB `enable_external_access=false`, then
`lock_configuration=true`). What the condition can still do is what the store holds — read any
of its tables — and spend CPU and memory: whoever may pass `--where` may read the whole store.
Sealing is one-way for the life of the connection; the command goes on reading and writing the
store itself (a run row, calls, attempts). Only the store imports this module.
"""

from __future__ import annotations

import duckdb

SEAL = (
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET enable_external_access = false",
    "SET lock_configuration = true",
)


def seal(con: duckdb.DuckDBPyConnection) -> None:
    """Apply SEAL (idempotent: a sealed connection is left as it is)."""
    locked = con.execute("SELECT current_setting('lock_configuration')").fetchall()[0][0]
    if locked:
        return
    for statement in SEAL:
        con.execute(statement)

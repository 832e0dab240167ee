"""Runs that never finished, and their spend: ingest and replay runs whose `finished_at` is NULL.

Only one process can have a store open for writing, so when a run begins, every other run without
an end is dead (killed, or its machine lost). `close_killed_replay_runs` marks such replay runs
`stopped = 'killed'` with `cost_usd` = what their stored calls cost (`finished_at` stays NULL:
when they died is unknown); `unfinished_runs` lists every run without an end. Only the store
imports this module.
"""

from __future__ import annotations

import duckdb

from calibrate.records.runs import UnfinishedRun

_REPLAY_SPEND = """
    SELECT r.run_id, r.started_at, count(c.cache_key) AS calls, coalesce(sum(c.cost_usd), 0) AS cost
    FROM replay_runs r LEFT JOIN replay_calls c ON c.run_id = r.run_id
    WHERE r.finished_at IS NULL {extra}
    GROUP BY r.run_id, r.started_at
    ORDER BY r.run_id"""


def close_killed_replay_runs(con: duckdb.DuckDBPyConnection) -> list[UnfinishedRun]:
    """Mark replay runs that died without an end as killed, with their spend; returns them.
    The caller holds the transaction and no run of its own is open yet."""
    rows = con.execute(_REPLAY_SPEND.format(extra="AND r.stopped IS NULL")).fetchall()
    for run_id, _, _, cost in rows:
        con.execute(
            "UPDATE replay_runs SET stopped = 'killed', cost_usd = ? WHERE run_id = ?",
            [float(cost), run_id],
        )
    return [UnfinishedRun("replay", int(r[0]), r[1], int(r[2]), float(r[3])) for r in rows]


def unfinished_runs(con: duckdb.DuckDBPyConnection) -> list[UnfinishedRun]:
    """Every ingest and replay run without an end, oldest first within each kind."""
    ingests = con.execute(
        "SELECT run_id, started_at FROM ingest_runs WHERE finished_at IS NULL ORDER BY run_id"
    ).fetchall()
    replays = con.execute(_REPLAY_SPEND.format(extra="")).fetchall()
    return [UnfinishedRun("ingest", int(r[0]), r[1], 0, 0.0) for r in ingests] + [
        UnfinishedRun("replay", int(r[0]), r[1], int(r[2]), float(r[3])) for r in replays
    ]

"""All SQL of `replay-merge`: another store's replay results copied into this one.

The other store (a shard replayed on another machine, say) is ATTACHed read-only as `merge_source`
and three tables are copied, in one transaction:

- `attempts` with source='shadow', skipping a (request_id, tier, source) this store already holds;
- `replay_calls`, skipping a cache_key already held, except that a call this store holds as failed
  is replaced by the other store's successful one (no result is lost to an earlier failure);
- `replay_runs` that brought at least one of those rows, renumbered after this store's last run
  (in the other store's order); the copied rows and `attempts.extra.replay_run` follow.

Requests are never copied: each shadow attempt's request must already be stored here with the same
messages (both stores ingested the same logs), else nothing is copied and the first such request
is named. Merging the same store again copies nothing. Only the store imports this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from calibrate.errors import CalibrateError, DataError
from calibrate.records.replay import MergeCounts
from calibrate.store.one_row import one_row

SOURCE = "merge_source"

_NEW_ATTEMPTS = f"""
    CREATE TEMP TABLE merge_attempts AS
    SELECT s.* FROM {SOURCE}.attempts s
    WHERE s.source = 'shadow'
      AND NOT EXISTS (SELECT 1 FROM main.attempts a WHERE a.request_id = s.request_id
                      AND a.tier = s.tier AND a.source = s.source)"""

_NEW_CALLS = f"""
    CREATE TEMP TABLE merge_calls AS
    SELECT s.*, c.cache_key IS NOT NULL AS replaces
    FROM {SOURCE}.replay_calls s LEFT JOIN main.replay_calls c USING (cache_key)
    WHERE c.cache_key IS NULL OR (c.status <> 'ok' AND s.status = 'ok')"""

_RUN_MAP = """
    CREATE TEMP TABLE merge_runs AS
    SELECT run_id AS old_id,
           (SELECT coalesce(max(run_id), 0) FROM main.replay_runs)
             + row_number() OVER (ORDER BY run_id) AS new_id
    FROM (SELECT run_id FROM merge_attempts UNION SELECT run_id FROM merge_calls)"""

_TEMP_TABLES = ("merge_attempts", "merge_calls", "merge_runs")


@contextmanager
def attached(con: duckdb.DuckDBPyConnection, other: Path) -> Iterator[None]:
    """The other store ATTACHed read-only as `merge_source` for the duration."""
    literal = "'" + str(other).replace("'", "''") + "'"
    try:
        con.execute(f"ATTACH {literal} AS {SOURCE} (READ_ONLY)")
    except duckdb.Error as exc:
        raise CalibrateError(
            f"cannot read store {other}: {str(exc).splitlines()[0]}",
            hint="Pass calibrate stores (DuckDB files) that no other process is writing to.",
        ) from None
    try:
        yield
    finally:
        con.execute(f"DETACH {SOURCE}")


def merge(con: duckdb.DuckDBPyConnection, source: str) -> MergeCounts:
    """Copy the attached store's replay results into this one; the caller holds the transaction."""
    _check_requests(con, source)
    con.execute(_NEW_ATTEMPTS)
    con.execute(_NEW_CALLS)
    con.execute(_RUN_MAP)
    counts = _counts(con, source)
    con.execute(
        f"""INSERT INTO main.replay_runs BY NAME
        SELECT r.* REPLACE (m.new_id AS run_id)
        FROM {SOURCE}.replay_runs r JOIN merge_runs m ON m.old_id = r.run_id
        ORDER BY m.new_id"""
    )
    con.execute(
        "DELETE FROM main.replay_calls WHERE cache_key IN"
        " (SELECT cache_key FROM merge_calls WHERE replaces)"
    )
    con.execute(
        """INSERT INTO main.replay_calls BY NAME
        SELECT c.* EXCLUDE (replaces) REPLACE (m.new_id AS run_id)
        FROM merge_calls c JOIN merge_runs m ON m.old_id = c.run_id
        ORDER BY c.cache_key"""
    )
    con.execute(
        """INSERT INTO main.attempts BY NAME
        SELECT a.* REPLACE (m.new_id AS run_id,
               json_merge_patch(a.extra, json_object('replay_run', m.new_id)) AS extra)
        FROM merge_attempts a JOIN merge_runs m ON m.old_id = a.run_id
        ORDER BY a.request_id, a.tier"""
    )
    for table in _TEMP_TABLES:
        con.execute(f"DROP TABLE {table}")
    return counts


def _check_requests(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """Every shadow attempt's request is stored here, with the same messages."""
    missing, differing, first = one_row(
        con,
        f"""SELECT count(*) FILTER (WHERE r.request_id IS NULL),
                   count(*) FILTER (WHERE r.messages::VARCHAR <> s.messages::VARCHAR),
                   min(a.request_id) FILTER (WHERE r.request_id IS NULL
                                             OR r.messages::VARCHAR <> s.messages::VARCHAR)
            FROM (SELECT DISTINCT request_id FROM {SOURCE}.attempts WHERE source = 'shadow') a
            JOIN {SOURCE}.requests s USING (request_id)
            LEFT JOIN main.requests r USING (request_id)""",
    )
    if not missing and not differing:
        return
    what = (
        f"{missing} replayed requests of {source} are not in this store"
        if missing
        else f"{differing} replayed requests of {source} have other messages in this store"
    )
    raise DataError(
        f"{what} (first: request_id {first!r}); nothing was merged",
        hint="Merge stores that ingested the same logs: run `calibrate ingest LOGS --db FILE` "
        "with the logs the other store ingested, then merge again.",
    )


def _counts(con: duckdb.DuckDBPyConnection, source: str) -> MergeCounts:
    attempts, attempts_all, calls, replaced, calls_all, runs = one_row(
        con,
        f"""SELECT (SELECT count(*) FROM merge_attempts),
                   (SELECT count(*) FROM {SOURCE}.attempts WHERE source = 'shadow'),
                   (SELECT count(*) FROM merge_calls),
                   (SELECT count(*) FROM merge_calls WHERE replaces),
                   (SELECT count(*) FROM {SOURCE}.replay_calls),
                   (SELECT count(*) FROM merge_runs)""",
    )
    return MergeCounts(
        source=source,
        attempts=int(attempts),
        attempts_present=int(attempts_all - attempts),
        calls=int(calls),
        calls_present=int(calls_all - calls),
        failed_calls_replaced=int(replaced),
        runs=int(runs),
    )

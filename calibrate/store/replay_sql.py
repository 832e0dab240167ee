"""All SQL of the replay stage: select requests, look up stored calls, record results and runs.

The sample is a seeded uniform sample of the matching requests, drawn by ordering on
md5(seed:request_id): the same seed gives the same sample on every run, so a resumed run sees the
same requests. `--shard I/N` keeps the part of that sample whose shard number (SHARD_NUMBER) is I:
the sample is drawn over the whole selection first, so the N shards together are exactly it.
Only the store imports this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, fields
from datetime import datetime

import duckdb

from calibrate.errors import CalibrateError
from calibrate.records.replay import CallRecord, Candidate, JobResult, Selection
from calibrate.store import sandbox
from calibrate.store.one_row import one_row

_CALL_COLUMNS = tuple(f.name for f in fields(CallRecord))

SHARD_NUMBER = "('0x' || left(sha256(request_id), 16))::UBIGINT % $shards::UBIGINT"
"""A request's shard (`Shard`'s rule): the first 8 bytes of sha256(request_id) as a big-endian
unsigned integer, modulo the number of shards. Plain SHA-256, not DuckDB's `hash()`, whose values
may change between DuckDB versions: shards replayed by different versions must still be disjoint."""


_WHERE_HINT = (
    "Pass one SQL condition over the requests table, e.g. "
    "--where \"app = 'support-bot' AND region LIKE 'eu-%'\" (columns: request_id, ts, region, "
    "app, messages, input_tokens, served_tier, reference, metadata). It runs inside the store "
    "only: no files, directories, URLs or extensions."
)


def _where_clause(con: duckdb.DuckDBPyConnection, where: str | None) -> str:
    """The user's --where condition, checked to be one expression over `requests`, on a sealed
    connection (binding the condition already opens the files it names)."""
    if where is None:
        return "true"
    sandbox.seal(con)
    probe = f"SELECT count(*) FROM requests WHERE ({where})"
    try:
        statements = con.extract_statements(probe)
        if len(statements) != 1:
            raise duckdb.ParserException("more than one statement")
        con.execute(f"EXPLAIN {probe}")
    except duckdb.PermissionException as exc:
        raise CalibrateError(
            f"--where may only read the store: {_first_line(exc)}", hint=_WHERE_HINT
        ) from None
    except duckdb.Error as exc:
        raise CalibrateError(
            f"--where is not a valid condition: {_first_line(exc)}", hint=_WHERE_HINT
        ) from None
    return f"({where})"


def _first_line(exc: duckdb.Error) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@contextmanager
def _running_where(where: str | None) -> Iterator[None]:
    """A DuckDB error while a --where condition runs (a failing cast, say) is the condition's:
    a user error with its first line, never a traceback."""
    if where is None:
        yield
        return
    try:
        yield
    except duckdb.Error as exc:
        raise CalibrateError(
            f"--where failed while running: {_first_line(exc)}", hint=_WHERE_HINT
        ) from None


def candidates(
    con: duckdb.DuckDBPyConnection, selection: Selection, tiers: Sequence[str]
) -> tuple[int, list[Candidate]]:
    """(number of sampled requests, sampled request × tier pairs that have no attempt yet)."""
    where = _where_clause(con, selection.where)
    params = {
        "seed": str(selection.seed),
        "n": selection.sample,
        "since": selection.since,
        "tiers": list(tiers),
    }
    sample = f"""
        SELECT request_id, messages, input_tokens, md5($seed || ':' || request_id) AS draw
        FROM requests
        WHERE {where} AND ($since::TIMESTAMPTZ IS NULL OR ts >= $since::TIMESTAMPTZ)
        ORDER BY draw LIMIT $n"""
    if selection.shard is not None:
        sample = f"SELECT * FROM ({sample}) WHERE {SHARD_NUMBER} = $shard::UBIGINT"
        params |= {"shard": selection.shard.index, "shards": selection.shard.count}
    sample_params = {k: v for k, v in params.items() if k != "tiers"}
    with _running_where(selection.where):
        selected, rows = _sample(con, sample, params, sample_params)
    return int(selected), [Candidate(r[0], r[1], r[2], int(r[3])) for r in rows]


def _sample(
    con: duckdb.DuckDBPyConnection, sample: str, params: dict, sample_params: dict
) -> tuple[int, list[tuple]]:
    selected = one_row(con, f"SELECT count(*) FROM ({sample})", sample_params)[0]
    rows = con.execute(
        f"""
        WITH sample AS ({sample}),
        tier_list AS (SELECT unnest($tiers::VARCHAR[]) AS tier,
                             generate_subscripts($tiers::VARCHAR[], 1) AS k)
        SELECT s.request_id, t.tier, s.messages::VARCHAR,
               coalesce(s.input_tokens, a.max_in,
                        CAST(length(s.messages::VARCHAR) / 4 AS BIGINT)) AS input_tokens
        FROM sample s CROSS JOIN tier_list t
        LEFT JOIN (SELECT request_id, max(input_tokens) AS max_in FROM attempts
                   GROUP BY request_id) a USING (request_id)
        WHERE NOT EXISTS (SELECT 1 FROM attempts x
                          WHERE x.request_id = s.request_id AND x.tier = t.tier)
        ORDER BY s.draw, t.k""",
        params,
    ).fetchall()
    return int(selected), rows


def stored_calls(con: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> dict[str, CallRecord]:
    """Stored calls by cache key (ok and failed)."""
    if not keys:
        return {}
    rows = con.execute(
        f"SELECT {', '.join(_CALL_COLUMNS)} FROM replay_calls"
        " WHERE cache_key IN (SELECT unnest(?::VARCHAR[]))",
        [list(keys)],
    ).fetchall()
    records = [CallRecord(*row) for row in rows]
    return {r.cache_key: r for r in records}


def mean_output_tokens(con: duckdb.DuckDBPyConnection, tier: str) -> tuple[float | None, int]:
    """Mean output tokens of the tier's stored ok attempts, and how many there are."""
    mean, n = one_row(
        con,
        "SELECT avg(output_tokens), count(output_tokens) FROM attempts"
        " WHERE tier = ? AND status = 'ok' AND output_tokens IS NOT NULL",
        [tier],
    )
    return (float(mean) if mean is not None else None), int(n)


def record_results(
    con: duckdb.DuckDBPyConnection, results: Sequence[JobResult], run_id: int, *, fast: bool
) -> None:
    """Insert the calls and the attempts; the caller wraps this in one transaction.

    fast: a plain INSERT of the calls, which fails on a key already stored (two tiers sharing one
    call); the store then repeats the batch with fast=False, which replaces calls. Attempts
    already stored are skipped either way."""
    replaced = [k for r in results for k in r.replaces]
    if replaced:
        con.execute(
            "DELETE FROM replay_calls WHERE cache_key IN (SELECT unnest(?::VARCHAR[]))", [replaced]
        )
    by_key = {c.cache_key: c for r in results for c in r.calls}
    calls = [(*astuple(c), run_id) for c in by_key.values()]
    if calls:
        row = _placeholders(len(_CALL_COLUMNS) + 1)
        con.execute(
            f"INSERT {'' if fast else 'OR REPLACE '}INTO replay_calls"
            f" ({', '.join(_CALL_COLUMNS)}, run_id) VALUES {', '.join([row] * len(calls))}",
            [v for values in calls for v in values],
        )
    attempts = [(*astuple(a), run_id) for r in results for a in r.attempts]
    if attempts:
        _insert_attempts(con, attempts)


def _insert_attempts(con: duckdb.DuckDBPyConnection, attempts: Sequence[tuple]) -> None:
    """Insert shadow attempts (request_id, tier, position, ..., run_id); one already stored, or
    repeated earlier in `attempts`, is skipped (the table has no key constraint: migration m004).

    The stored keys are looked up first: an INSERT ... WHERE NOT EXISTS scans the whole table."""
    stored = con.execute(
        "SELECT request_id, tier FROM attempts WHERE source = 'shadow'"
        " AND request_id IN (SELECT unnest(?::VARCHAR[]))",
        [sorted({a[0] for a in attempts})],
    )
    seen, new = set(stored.fetchall()), []
    for attempt in attempts:
        if attempt[:2] not in seen:
            seen.add(attempt[:2])
            new.append(attempt)
    if new:
        row = f"({', '.join('?' * 12)}, 'shadow', 'ok')"
        con.execute(
            "INSERT INTO attempts (request_id, tier, position, model, confidence, output,"
            " input_tokens, output_tokens, cost_usd, latency_ms, extra, run_id, source, status)"
            f" VALUES {', '.join([row] * len(new))}",
            [v for values in new for v in values],
        )


def _placeholders(width: int) -> str:
    """One row of a multi-row VALUES (one statement is much faster in DuckDB than executemany)."""
    return "(" + ", ".join("?" * width) + ")"


def begin_run(
    con: duckdb.DuckDBPyConnection,
    started_at: datetime,
    selection: Selection,
    max_cost_usd: float | None,
    retry_failed: bool,
) -> int:
    """Insert a replay_runs row and return its run_id."""
    run_id = int(one_row(con, "SELECT coalesce(max(run_id), 0) + 1 FROM replay_runs")[0])
    con.execute(
        "INSERT INTO replay_runs (run_id, started_at, sample, seed, where_sql, since, max_cost_usd,"
        " retry_failed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run_id,
            started_at,
            selection.sample,
            selection.seed,
            selection.where,
            selection.since,
            max_cost_usd,
            retry_failed,
        ],
    )
    return run_id


def finish_run(
    con: duckdb.DuckDBPyConnection,
    run_id: int,
    finished_at: datetime,
    selected: int,
    cost_usd: float,
    stopped: str | None,
) -> None:
    con.execute(
        "UPDATE replay_runs SET finished_at = ?, selected = ?, cost_usd = ?, stopped = ?"
        " WHERE run_id = ?",
        [finished_at, selected, cost_usd, stopped, run_id],
    )

"""Ordered, append-only schema migrations for the DuckDB store.

Each migration is a function registered in order with `@migration`; applied names are recorded in
`_calibrate_migrations`, so opening an existing store applies only what it has not seen. Never edit a
migration that has shipped: add a new one.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

Migration = Callable[[duckdb.DuckDBPyConnection], None]
MIGRATIONS: list[Migration] = []
migration = MIGRATIONS.append


@migration
def m001_core_tables(con: duckdb.DuckDBPyConnection) -> None:
    """requests, attempts, labels, ingest runs and quarantined rows."""
    con.execute("""
        CREATE TABLE ingest_runs (
            run_id        BIGINT PRIMARY KEY,
            started_at    TIMESTAMPTZ NOT NULL,
            finished_at   TIMESTAMPTZ,
            strict        BOOLEAN NOT NULL,
            files         BIGINT NOT NULL DEFAULT 0,
            rows_read     BIGINT NOT NULL DEFAULT 0,
            rows_kept     BIGINT NOT NULL DEFAULT 0,
            rows_rejected BIGINT NOT NULL DEFAULT 0
        )""")
    con.execute("""
        CREATE TABLE ingested_files (
            file_sha256   VARCHAR PRIMARY KEY,
            path          VARCHAR NOT NULL,
            run_id        BIGINT NOT NULL,
            rows_read     BIGINT NOT NULL,
            rows_kept     BIGINT NOT NULL,
            rows_rejected BIGINT NOT NULL
        )""")
    con.execute("""
        CREATE TABLE requests (
            request_id     VARCHAR PRIMARY KEY,
            ts             TIMESTAMPTZ NOT NULL,
            region         VARCHAR,
            app            VARCHAR,
            messages       JSON NOT NULL,
            input_tokens   BIGINT,
            served_tier    VARCHAR,
            reference      VARCHAR,
            metadata       JSON,
            content_sha256 VARCHAR NOT NULL,
            source_file    VARCHAR NOT NULL,
            source_line    BIGINT NOT NULL,
            run_id         BIGINT NOT NULL
        )""")
    con.execute("""
        CREATE TABLE attempts (
            request_id    VARCHAR NOT NULL,
            tier          VARCHAR NOT NULL,
            source        VARCHAR NOT NULL,
            position      INTEGER NOT NULL,
            model         VARCHAR,
            confidence    DOUBLE,
            output        VARCHAR,
            input_tokens  BIGINT,
            output_tokens BIGINT,
            cost_usd      DOUBLE,
            latency_ms    DOUBLE,
            status        VARCHAR NOT NULL,
            extra         JSON,
            run_id        BIGINT NOT NULL,
            PRIMARY KEY (request_id, tier, source)
        )""")
    con.execute("""
        CREATE TABLE labels (
            request_id VARCHAR NOT NULL,
            tier       VARCHAR NOT NULL,
            score      DOUBLE NOT NULL,
            source     VARCHAR NOT NULL,
            run_id     BIGINT NOT NULL,
            PRIMARY KEY (request_id, tier, source)
        )""")
    con.execute("""
        CREATE TABLE rejects (
            file        VARCHAR NOT NULL,
            file_sha256 VARCHAR NOT NULL,
            line        BIGINT NOT NULL,
            field       VARCHAR,
            reason      VARCHAR NOT NULL,
            raw         VARCHAR,
            run_id      BIGINT NOT NULL,
            PRIMARY KEY (file_sha256, line)
        )""")


@migration
def m002_replay(con: duckdb.DuckDBPyConnection) -> None:
    """Shadow replay: one row per replay run, and one row per distinct chat call (the cache).

    A call is keyed by the sha256 of its endpoint and body (model, parameters, messages); a
    successful call also gives each of its requests an `attempts` row with source='shadow'.
    """
    con.execute("""
        CREATE TABLE replay_runs (
            run_id       BIGINT PRIMARY KEY,
            started_at   TIMESTAMPTZ NOT NULL,
            finished_at  TIMESTAMPTZ,
            sample       BIGINT NOT NULL,
            seed         BIGINT NOT NULL,
            where_sql    VARCHAR,
            since        TIMESTAMPTZ,
            max_cost_usd DOUBLE,
            retry_failed BOOLEAN NOT NULL,
            selected     BIGINT,
            cost_usd     DOUBLE,
            stopped      VARCHAR
        )""")
    con.execute("""
        CREATE TABLE replay_calls (
            cache_key          VARCHAR PRIMARY KEY,
            tier               VARCHAR NOT NULL,
            model              VARCHAR NOT NULL,
            purpose            VARCHAR NOT NULL,
            status             VARCHAR NOT NULL,
            error              VARCHAR,
            http_status        INTEGER,
            tries              INTEGER NOT NULL,
            output             VARCHAR,
            input_tokens       BIGINT,
            output_tokens      BIGINT,
            cost_usd           DOUBLE NOT NULL,
            latency_ms         DOUBLE NOT NULL,
            confidence         DOUBLE,
            confidence_missing VARCHAR,
            logprob_stats      JSON,
            started_at         TIMESTAMPTZ NOT NULL,
            finished_at        TIMESTAMPTZ NOT NULL,
            run_id             BIGINT NOT NULL
        )""")


def apply_migrations(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction; return their names."""
    con.execute("CREATE TABLE IF NOT EXISTS _calibrate_migrations (name VARCHAR PRIMARY KEY)")
    done = {row[0] for row in con.execute("SELECT name FROM _calibrate_migrations").fetchall()}
    applied = []
    for step in MIGRATIONS:
        if step.__name__ in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            step(con)
            con.execute("INSERT INTO _calibrate_migrations VALUES (?)", [step.__name__])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        applied.append(step.__name__)
    return applied

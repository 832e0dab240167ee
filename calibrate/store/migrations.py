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


@migration
def m003_label_metadata(con: duckdb.DuckDBPyConnection) -> None:
    """Labels: who gave them and when, their sampling weight, and what they judged.

    New columns on `labels` (NULL for labels that predate them, or come from the logs):
    `labeler`, `labeled_at` (as given by the label file), `imported_at` (when calibrate stored it),
    `weight` (1/π when the label came from a sample with inclusion probability π; NULL = 1),
    `inclusion_prob`, `stratum`, `answer_sha256` (sha256 of the answer text judged),
    `call_key` (a judge label's `replay_calls.cache_key`) and `detail` (scorer or judge notes).
    `label_runs` records each import, scoring or judge run; `label_rejects` keeps every bad label
    row with its line, field, reason and raw text; `label_history` keeps every label superseded
    by a newer one of the same source. `label_samples` / `label_sample_items` record the labelling
    queues `calibrate sample` wrote (stratum and inclusion probability of every row).
    """
    for column, kind in (
        ("labeler", "VARCHAR"),
        ("labeled_at", "TIMESTAMPTZ"),
        ("imported_at", "TIMESTAMPTZ"),
        ("weight", "DOUBLE"),
        ("inclusion_prob", "DOUBLE"),
        ("stratum", "VARCHAR"),
        ("answer_sha256", "VARCHAR"),
        ("call_key", "VARCHAR"),
        ("detail", "VARCHAR"),
    ):
        con.execute(f"ALTER TABLE labels ADD COLUMN {column} {kind}")
    con.execute("""
        CREATE TABLE label_runs (
            run_id        BIGINT PRIMARY KEY,
            kind          VARCHAR NOT NULL,
            started_at    TIMESTAMPTZ NOT NULL,
            finished_at   TIMESTAMPTZ,
            file          VARCHAR,
            file_sha256   VARCHAR,
            replay_run    BIGINT,
            rows_read     BIGINT NOT NULL DEFAULT 0,
            labels_stored BIGINT NOT NULL DEFAULT 0,
            rows_rejected BIGINT NOT NULL DEFAULT 0
        )""")
    con.execute("""
        CREATE TABLE label_rejects (
            run_id BIGINT NOT NULL,
            file   VARCHAR NOT NULL,
            line   BIGINT NOT NULL,
            field  VARCHAR,
            reason VARCHAR NOT NULL,
            raw    VARCHAR
        )""")
    con.execute("""
        CREATE TABLE label_history AS
        SELECT *, CAST(NULL AS BIGINT) AS superseded_by FROM labels WITH NO DATA""")
    con.execute("""
        CREATE TABLE label_samples (
            sample_id   BIGINT PRIMARY KEY,
            created_at  TIMESTAMPTZ NOT NULL,
            seed        BIGINT NOT NULL,
            requested   BIGINT NOT NULL,
            population  BIGINT NOT NULL,
            design      JSON NOT NULL,
            file        VARCHAR NOT NULL
        )""")
    con.execute("""
        CREATE TABLE label_sample_items (
            sample_id      BIGINT NOT NULL,
            request_id     VARCHAR NOT NULL,
            stratum        VARCHAR NOT NULL,
            inclusion_prob DOUBLE NOT NULL,
            PRIMARY KEY (sample_id, request_id)
        )""")


@migration
def m004_checked_keys(con: duckdb.DuckDBPyConnection) -> None:
    """requests, attempts and labels without PRIMARY KEY constraints; their writers check the keys.

    A primary key makes DuckDB update an index on every insert and write it out at every
    checkpoint: most of the time a bulk ingest spends inserting and committing. Every writer
    already checks its keys before it inserts (the ingest merge rule in store/ingest/merge.py, the
    skip of known attempts in store/replay_sql.py, the labels conflict rule in
    store/labels_sql.py), so the keys stay unique: request_id; (request_id, tier, source).
    The tables are rebuilt with the same columns, in the same order, and the same rows.
    """
    tables = {
        "requests": """
            request_id     VARCHAR NOT NULL,
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
            run_id         BIGINT NOT NULL""",
        "attempts": """
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
            run_id        BIGINT NOT NULL""",
        "labels": """
            request_id     VARCHAR NOT NULL,
            tier           VARCHAR NOT NULL,
            score          DOUBLE NOT NULL,
            source         VARCHAR NOT NULL,
            run_id         BIGINT NOT NULL,
            labeler        VARCHAR,
            labeled_at     TIMESTAMPTZ,
            imported_at    TIMESTAMPTZ,
            weight         DOUBLE,
            inclusion_prob DOUBLE,
            stratum        VARCHAR,
            answer_sha256  VARCHAR,
            call_key       VARCHAR,
            detail         VARCHAR""",
    }
    for table, columns in tables.items():
        con.execute(f"CREATE TABLE {table}_m004 ({columns})")
        con.execute(f"INSERT INTO {table}_m004 BY NAME SELECT * FROM {table}")
        con.execute(f"DROP TABLE {table}")
        con.execute(f"ALTER TABLE {table}_m004 RENAME TO {table}")


@migration
def m005_ingested_file_size(con: duckdb.DuckDBPyConnection) -> None:
    """ingested_files.bytes: the size of each ingested file (NULL for files ingested before).

    A file whose size no ingested file has cannot have been ingested, so ingest can hash it
    while DuckDB reads it instead of before."""
    con.execute("ALTER TABLE ingested_files ADD COLUMN bytes BIGINT")


@migration
def m006_drop_content_hash(con: duckdb.DuckDBPyConnection) -> None:
    """requests without content_sha256: the merge rule compares the stored content columns.

    Only a repeated request_id needs the comparison, so hashing every request on ingest (and
    storing 64 hex characters per request) bought nothing the columns do not already hold."""
    con.execute("ALTER TABLE requests DROP COLUMN content_sha256")


def pending_migrations(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Names of the migrations this store has not seen (reads only: fine on a read-only store)."""
    try:
        rows = con.execute("SELECT name FROM _calibrate_migrations").fetchall()
    except duckdb.CatalogException:
        rows = []
    done = {row[0] for row in rows}
    return [step.__name__ for step in MIGRATIONS if step.__name__ not in done]


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

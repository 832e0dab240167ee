"""`--engine spark`: the outcome relation as a Spark view over canonical Parquet, and a query runner.

A team whose logs sit in a lake (canonical Parquet: a path, a glob or an object-storage URL such as
`s3a://bucket/logs/*.parquet`, passed to Spark as given) builds `outcome_rows` where the files are,
with the semantics of `outcome_rows_sql.build_outcome_rows` on a store that ingested the same files
(tests/test_spark_engine.py compares the two row for row):

- per (request, tier) the attempt used is the `ok` one first, then `prod` before `shadow`, then by
  source name; its confidence is NULL when it is not `ok` or not finite; its cost is `cost_usd`, else
  its tokens × the tier's price / 1e6; its latency 0 when missing;
- per (request, tier) the label used is the log's (`labels`, source `log`) or, when a labels
  Parquet is given (request_id, tier, score, source), the best by source: human, log, reference,
  judge, then by name;
- input_tokens: the request's, else the most any attempt reported, else len(messages JSON) / 4
  (rounded half to even, as DuckDB casts);
- only requests with an attempt from every tier are rows.

Each request is one Parquet row holding its attempts and labels, so the view is a map over the rows
(no shuffle) unless a labels Parquet is joined. Spark reads the files as they are: it does not apply
ingest's row checks (a row ingest would reject, or a request_id written twice, is used as written);
`calibrate ingest` of a sample is the way to check a lake's files. Only the store imports pyspark,
and only when a function here runs.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from calibrate.errors import ConfigError, DataError
from calibrate.records.engine import LOCAL_MASTER
from calibrate.records.labels import SOURCE_PRIORITY
from calibrate.store.outcome_rows_sql import RELATION, OutcomeRows, tier_columns
from calibrate.store.outcomes_sql import _as_numpy, _check_costs

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import DataType, StructType

CANONICAL_VIEW = "canonical_requests"
LABELS_VIEW = "canonical_labels"

# A laptop-sized local session: the driver is the only JVM, no UI, loopback only, UTC, few shuffle
# partitions (AQE coalesces them further), Arrow for every collection.
_COMMON_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.adaptive.enabled": "true",
}
_LOCAL_CONF = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.shuffle.partitions": "16",
}


def open_session(
    master: str = LOCAL_MASTER,
    *,
    driver_memory: str = "1g",
    conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """A SparkSession on `master` (`local[*]`: this machine, every core); `conf` adds or overrides
    Spark settings (e.g. `spark.hadoop.fs.s3a.*` for object storage)."""
    if shutil.which("java") is None and not _java_home():
        raise ConfigError(
            "--engine spark needs Java 17 or later, and no `java` is on the PATH",
            hint="Install a JRE (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set "
            "JAVA_HOME.",
        )
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError(
            "--engine spark needs PySpark, which is not installed",
            hint="pip install 'calibrate[spark]'",
        ) from None
    builder = SparkSession.builder.master(master).appName("calibrate")
    settings = {**_COMMON_CONF, "spark.driver.memory": driver_memory}
    if master.startswith("local"):
        settings.update(_LOCAL_CONF)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # the JVM binds loopback only
    for key, value in {**settings, **(conf or {})}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _java_home() -> bool:
    home = os.environ.get("JAVA_HOME")
    return home is not None and shutil.which("java", path=os.path.join(home, "bin")) is not None


def run(spark: SparkSession, sql: str) -> pa.Table:
    """Run one query and collect its result to the driver as Arrow."""
    return spark.sql(sql).toArrow()


def query(spark: SparkSession, sql: str) -> dict[str, np.ndarray]:
    """`run` as numpy columns (NULL numbers become NaN, NULL strings None), as the store's reads
    give them."""
    table = run(spark, sql)
    return {name: _as_numpy(table.column(name)) for name in table.column_names}


def build_outcome_rows(
    spark: SparkSession,
    requests: str | Sequence[str],
    tiers: Sequence[str],
    price_per_mtok: Mapping[str, tuple[float, float]],
    *,
    labels: str | Sequence[str] | None = None,
    cache: bool = True,
) -> OutcomeRows:
    """(Re)create the temp view `outcome_rows` from canonical Parquet (`requests`: paths, globs or
    URLs) and, optionally, a labels Parquet (request_id, tier, score, source); `cache` keeps the
    view in Spark's memory (spilling to disk) for the queries that follow, else each query reads
    the Parquet again. Raises DataError, as `build_outcome_rows`
    does, when a tier's attempts have no cost and the tier no price."""
    names = list(tiers)
    paths = _paths(requests)
    spark.sql(f"UNCACHE TABLE IF EXISTS {RELATION}")
    schema = _schema(spark, paths)
    spark.read.schema(_pruned(schema, names, messages=False)).parquet(
        *paths
    ).createOrReplaceTempView(CANONICAL_VIEW)
    slots, messages = _shape(spark, schema)
    if messages:  # some request has no input_tokens anywhere: its messages' length stands in
        spark.read.schema(_pruned(schema, names, messages=True)).parquet(
            *paths
        ).createOrReplaceTempView(CANONICAL_VIEW)
    if labels is not None:
        spark.read.parquet(*_paths(labels)).createOrReplaceTempView(LABELS_VIEW)
    sql = outcome_rows_sql(
        schema,
        names,
        price_per_mtok,
        with_labels=labels is not None,
        messages=messages,
        slots=slots,
    )
    spark.sql(f"CREATE OR REPLACE TEMP VIEW {RELATION} AS {sql}")
    if cache:
        spark.sql(f"CACHE LAZY TABLE {RELATION}")  # filled by the count below
    return _counted(spark, names, set(price_per_mtok))


def _schema(spark: SparkSession, paths: list[str]) -> StructType:
    """The files' schema; a path Spark cannot read is the user's to fix."""
    from pyspark.errors import AnalysisException

    try:
        return spark.read.parquet(*paths).schema
    except AnalysisException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"--engine spark cannot read {', '.join(paths)}: {first}",
            hint="Pass canonical Parquet as LOGS: an existing path, a glob that matches files, or "
            "an object-storage URL the Spark configuration can reach (`calibrate schema`).",
        ) from None


def _paths(where: str | Sequence[str]) -> list[str]:
    paths = [where] if isinstance(where, str) else [str(p) for p in where]
    if not paths:
        raise DataError("--engine spark: no Parquet to read", hint="Pass a path, a glob or a URL.")
    return paths


_MAX_SLOTS = 8
"""Up to this many attempts per request, attempts are read by position (`get(attempts, i)`: compiled
code); a file with longer lists uses Spark's lambda functions (interpreted, slower)."""


def _shape(spark: SparkSession, schema: StructType) -> tuple[int | None, bool]:
    """(the most attempts a request has, when at most _MAX_SLOTS; whether some request has no
    input_tokens, neither its own nor any attempt's), in one scan."""
    tokens = _token_parts(_fields(schema), _attempt_fields(schema), None)
    missing = f"COALESCE({', '.join(tokens)}) IS NULL" if tokens else "true"
    longest = "MAX(size(r.attempts))" if _attempt_fields(schema) else "0"
    most, without = spark.sql(
        f"SELECT {longest}, COUNT_IF({missing}) FROM {CANONICAL_VIEW} r"
    ).collect()[0]
    most = max(int(most or 0), 0)
    return (most if most <= _MAX_SLOTS else None), bool(without)


def _counted(spark: SparkSession, names: list[str], priced: set[str]) -> OutcomeRows:
    """The view's row count, the requests left out, and the check that every cost is known."""
    k = len(names)
    missing = ", ".join(
        f"CAST(SUM(CASE WHEN cost_usd_{j} IS NULL THEN 1 ELSE 0 END) AS BIGINT)" for j in range(k)
    )
    counts = spark.sql(f"SELECT COUNT(*), {missing} FROM {RELATION}").collect()[0]
    (total,) = spark.sql(f"SELECT COUNT(*) FROM {CANONICAL_VIEW}").collect()[0]
    cost = np.zeros((1, k))
    cost[0, [j for j in range(k) if counts[j + 1]]] = np.nan
    _check_costs(names, cost, np.ones((1, k), dtype=bool), priced)
    return OutcomeRows(RELATION, tuple(names), int(counts[0]), int(total - counts[0]))


# --- what to read: only the columns (and nested fields) the view uses ---------------------------

_ATTEMPT_USED = (
    "tier", "source", "status", "confidence", "cost_usd", "latency_ms", "input_tokens",
    "output_tokens",
)  # fmt: skip


def _pruned(schema: StructType, tiers: list[str], *, messages: bool) -> StructType:
    """The files' schema cut to what the view reads: Parquet then decodes no answer text, and no
    prompt unless `messages`."""
    from pyspark.sql.types import ArrayType, MapType, StructField, StructType

    def only(t: DataType, keep: Sequence[str]) -> DataType:
        if not isinstance(t, StructType):
            return t
        kept = [f for f in t.fields if f.name in keep]
        return StructType(kept) if kept else t

    out = []
    for field in schema.fields:
        t = field.dataType
        if field.name == "attempts" and isinstance(t, ArrayType):
            t = ArrayType(only(t.elementType, _ATTEMPT_USED), t.containsNull)
        elif field.name == "metadata" and isinstance(t, StructType | MapType):
            t = only(t, ("intent",))
        elif field.name == "labels":
            t = only(t, tiers)
        elif field.name in ("messages", "prompt"):
            if not messages:
                continue
        elif field.name not in (
            "request_id",
            "timestamp",
            "region",
            "app",
            "input_tokens",
            "intent",
            "served_tier",
        ):
            continue
        out.append(StructField(field.name, t, field.nullable))
    return StructType(out)


# --- the SQL of the view, from the files' schema -----------------------------------------------


def _q(name: str) -> str:
    """A Spark SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def _s(text: str) -> str:
    """A Spark SQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _double(value: float | None) -> str:
    """An exact DOUBLE literal (a bare `0.15` is a DECIMAL in Spark SQL)."""
    return "CAST(NULL AS DOUBLE)" if value is None else f"CAST('{float(value)!r}' AS DOUBLE)"


def _finite(expr: str) -> str:
    return f"(NOT isnan({expr}) AND abs({expr}) < CAST('Infinity' AS DOUBLE))"


def _fields(t: DataType | None) -> dict[str, DataType]:
    from pyspark.sql.types import StructType

    return {f.name: f.dataType for f in t.fields} if isinstance(t, StructType) else {}


def _attempt_fields(schema: StructType) -> dict[str, DataType]:
    from pyspark.sql.types import ArrayType

    attempts = _fields(schema).get("attempts")
    return _fields(attempts.elementType) if isinstance(attempts, ArrayType) else {}


def _text(expr: str, t: DataType) -> str:
    """A value as the text DuckDB's `->>` gives for it: strings as they are, nested values as
    JSON."""
    from pyspark.sql.types import ArrayType, MapType, StructType

    if isinstance(t, StructType | ArrayType | MapType):
        return f"to_json({expr})"
    return f"CAST({expr} AS STRING)"


def outcome_rows_sql(
    schema: StructType,
    tiers: Sequence[str],
    price_per_mtok: Mapping[str, tuple[float, float]],
    *,
    with_labels: bool = False,
    messages: bool = True,
    slots: int | None = None,
) -> str:
    """The view's SELECT over `canonical_requests` (joined to `canonical_labels` when
    `with_labels`); `messages`: whether the input_tokens fallback reads the messages; `slots`:
    the most attempts a request has (None: unknown, or too many to read by position)."""
    columns = _fields(schema)
    element = _attempt_fields(schema)
    k = len(tiers)
    log_labels = [_log_label(columns.get("labels"), tier) for tier in tiers]
    label = log_labels
    if with_labels:
        label = [
            f"array_min(array(x.ext_{j}, {_label_struct(SOURCE_PRIORITY.index('log'), v)})).score"
            for j, v in enumerate(log_labels)
        ]
    tokens = _token_parts(columns, element, slots)
    if messages:
        tokens.append(f"CAST(bround(length({_messages_json(columns)}) / 4, 0) AS BIGINT)")
    inner = [
        "r.request_id AS request_id",
        f"CAST(unix_micros({_timestamp(columns)}) AS DOUBLE) / 1e6 AS ts_s",
        *(
            f"COALESCE(CAST(r.{c} AS STRING), '') AS {c}" if c in columns else f"'' AS {c}"
            for c in ("region", "app")
        ),
        f"{_intent(columns)} AS intent",
        f"CAST(COALESCE({', '.join(tokens) or 'NULL'}) AS BIGINT) AS input_tokens",
        *(
            f"{_picked_attempt(element, t, price_per_mtok.get(t), slots)} AS best_{j}"
            for j, t in enumerate(tiers)
        ),
        *(f"CAST({v} AS DOUBLE) AS label_{j}" for j, v in enumerate(label)),
        *_production(columns, element, tiers),
    ]
    source = f"{CANONICAL_VIEW} r"
    if with_labels:
        source += f"\n      LEFT JOIN ({_external_labels(tiers)}) x ON x.request_id = r.request_id"
    outer = [
        f"best_{j}.{field} AS {column}"
        for j in range(k)
        for field, column in zip(
            ("confidence", "cost_usd", "latency_ms"), tier_columns(j)[:3], strict=True
        )
    ]
    outer = [c for j in range(k) for c in (*outer[3 * j : 3 * j + 3], f"label_{j}")]
    labeled = " AND ".join(f"label_{j} IS NOT NULL" for j in range(k))
    complete = " AND ".join(f"best_{j} IS NOT NULL" for j in range(k))
    sep = ",\n       "
    return (
        f"SELECT request_id, ts_s, region, app, intent, input_tokens,\n       {sep.join(outer)},"
        f"\n       ({labeled}) AS labeled, prod_called, prod_served\n"
        f"FROM (SELECT {sep.join(inner)}\n      FROM {source})\nWHERE {complete}"
    )


def _production(
    columns: dict[str, DataType], element: dict[str, DataType], tiers: Sequence[str]
) -> list[str]:
    """`prod_called` (bit k: a `prod` attempt called tier position k) and `prod_served` (the
    logged served_tier's position, else the last `ok` prod attempt's, -1 when unknown or when no
    prod attempt called these tiers), as `outcome_rows_sql` builds them."""
    if not element or "tier" not in element:
        return ["0 AS prod_called", "-1 AS prod_served"]

    def field(name: str, default: str) -> str:
        return f"COALESCE(CAST(a.{_q(name)} AS STRING), {default})" if name in element else default

    position = (
        "CASE CAST(a.tier AS STRING) "
        + " ".join(f"WHEN {_s(t)} THEN {k}" for k, t in enumerate(tiers))
        + " END"
    )
    prod = f"{field('source', _s('prod'))} = 'prod'"
    ok = f"{field('status', _s('ok'))} = 'ok'"
    called = (
        f"aggregate(r.attempts, 0, (acc, a) -> acc | CASE WHEN {prod} AND ({position}) IS NOT NULL"
        f" THEN shiftleft(1, {position}) ELSE 0 END)"
    )
    last_ok = (
        f"element_at(filter(transform(r.attempts, a -> CASE WHEN {prod} AND {ok}"
        f" THEN {position} END), x -> x IS NOT NULL), -1)"
    )
    served = "CAST(NULL AS INT)"
    if "served_tier" in columns:
        served = (
            "CASE CAST(r.served_tier AS STRING) "
            + " ".join(f"WHEN {_s(t)} THEN {k}" for k, t in enumerate(tiers))
            + " END"
        )
    return [
        f"CAST(COALESCE({called}, 0) AS INT) AS prod_called",
        f"CAST(CASE WHEN COALESCE({called}, 0) = 0 THEN -1"
        f" ELSE COALESCE({served}, {last_ok}, -1) END AS INT) AS prod_served",
    ]


def _timestamp(columns: dict[str, DataType]) -> str:
    """The request's time as a TIMESTAMP: a naive timestamp or RFC 3339 text is read in UTC (the
    session's time zone)."""
    from pyspark.sql.types import TimestampType

    if "timestamp" not in columns:
        raise DataError(
            "--engine spark: the Parquet has no `timestamp` column",
            hint="The files must be canonical Parquet (`calibrate schema`).",
        )
    if isinstance(columns["timestamp"], TimestampType):
        return "r.`timestamp`"
    return "CAST(r.`timestamp` AS TIMESTAMP)"


def _intent(columns: dict[str, DataType]) -> str:
    """`metadata.intent`, else a top-level `intent` column (ingest moves it into metadata)."""
    from pyspark.sql.types import MapType, StringType, StructType

    found = []
    meta = columns.get("metadata")
    if isinstance(meta, StructType) and "intent" in meta.fieldNames():
        found.append(_text("r.metadata.intent", meta["intent"].dataType))
    elif isinstance(meta, MapType):
        found.append(_text("try_element_at(r.metadata, 'intent')", meta.valueType))
    elif isinstance(meta, StringType):  # JSON text
        found.append("get_json_object(r.metadata, '$.intent')")
    if "intent" in columns:
        found.append(_text("r.intent", columns["intent"]))
    return f"COALESCE({', '.join(found)})" if found else "CAST(NULL AS STRING)"


def _token_parts(
    columns: dict[str, DataType], element: dict[str, DataType], slots: int | None
) -> list[str]:
    """The request's input_tokens, then the most any attempt reported."""
    parts = []
    if "input_tokens" in columns:
        parts.append("CAST(r.input_tokens AS BIGINT)")
    if "input_tokens" in element:
        if slots is None:
            parts.append("array_max(transform(r.attempts, a -> CAST(a.input_tokens AS BIGINT)))")
        elif slots:
            each = (f"CAST(get(r.attempts, {i}).input_tokens AS BIGINT)" for i in range(slots))
            parts.append(f"greatest({', '.join(each)})" if slots > 1 else next(each))
    return parts


def _messages_json(columns: dict[str, DataType]) -> str:
    """The messages as the store keeps them (JSON text), or the prompt as one user message."""
    from pyspark.sql.types import StringType

    found = []
    messages = columns.get("messages")
    if isinstance(messages, StringType):  # already JSON text
        found.append("r.messages")
    elif messages is not None:
        found.append("to_json(r.messages, map('ignoreNullFields', 'false'))")
    if "prompt" in columns:
        found.append("to_json(array(named_struct('role', 'user', 'content', r.prompt)))")
    return f"COALESCE({', '.join(found)})" if found else "CAST(NULL AS STRING)"


def _picked_attempt(
    element: dict[str, DataType], tier: str, price: tuple[float, float] | None, slots: int | None
) -> str:
    """The attempt of `tier` used: the least of the tier's attempts by (not ok, not prod, source),
    over the attempts by position (`slots` of them) or with lambda functions."""
    if not element or slots == 0:
        return "CAST(NULL AS STRUCT<confidence: DOUBLE, cost_usd: DOUBLE, latency_ms: DOUBLE>)"
    if slots is None:
        struct = _attempt_struct(element, "a", price)
        return (
            f"array_min(transform(filter(r.attempts, a -> CAST(a.tier AS STRING) = {_s(tier)}),"
            f" a -> {struct}))"
        )
    each = [
        f"CASE WHEN CAST(get(r.attempts, {i}).tier AS STRING) = {_s(tier)}"
        f" THEN {_attempt_struct(element, f'get(r.attempts, {i})', price)} END"
        for i in range(slots)
    ]
    return f"least({', '.join(each)})" if slots > 1 else each[0]


def _attempt_struct(element: dict[str, DataType], a: str, price: tuple[float, float] | None) -> str:
    """One attempt `a` as a struct ordered as attempts are picked, with the values used."""

    def field(name: str, cast: str) -> str:
        return f"CAST({a}.{_q(name)} AS {cast})" if name in element else f"CAST(NULL AS {cast})"

    status = f"COALESCE({field('status', 'STRING')}, 'ok')"
    source = f"COALESCE({field('source', 'STRING')}, 'prod')"
    conf = field("confidence", "DOUBLE")
    price_in, price_out = price if price is not None else (None, None)
    tokens = (
        f"(COALESCE({field('input_tokens', 'BIGINT')}, 0) * {_double(price_in)}"
        f" + COALESCE({field('output_tokens', 'BIGINT')}, 0) * {_double(price_out)}) / 1e6"
    )
    struct = ", ".join(
        [
            f"'not_ok', CASE WHEN {status} = 'ok' THEN 0 ELSE 1 END",
            f"'not_prod', CASE WHEN {source} = 'prod' THEN 0 ELSE 1 END",
            f"'source', {source}",
            f"'confidence', CASE WHEN {status} = 'ok' AND {_finite(conf)} THEN {conf} END",
            f"'cost_usd', COALESCE({field('cost_usd', 'DOUBLE')}, {tokens})",
            f"'latency_ms', COALESCE({field('latency_ms', 'DOUBLE')}, CAST(0 AS DOUBLE))",
        ]
    )
    return f"named_struct({struct})"


def _log_label(labels: DataType | None, tier: str) -> str:
    """The log's label of `tier` (NULL when absent): `labels` is a struct, a map or JSON text."""
    from pyspark.sql.types import MapType, StringType, StructType

    if isinstance(labels, StructType):
        return f"r.labels.{_q(tier)}" if tier in labels.fieldNames() else "NULL"
    if isinstance(labels, MapType):
        return f"try_element_at(r.labels, {_s(tier)})"
    if isinstance(labels, StringType):
        return f"get_json_object(r.labels, {_s('$[' + repr(tier) + ']')})"
    return "NULL"


def _label_struct(priority: int | str, value: str, source: str = "'log'") -> str:
    """A label as an ordered struct: (source priority, source, score)."""
    return (
        f"CASE WHEN ({value}) IS NOT NULL THEN named_struct('priority', {priority},"
        f" 'source', {source}, 'score', CAST({value} AS DOUBLE)) END"
    )


def _external_labels(tiers: Sequence[str]) -> str:
    """Per request, the best label of each tier in `canonical_labels`, by source."""
    priority = (
        "CASE source "
        + " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(SOURCE_PRIORITY))
        + f" ELSE {len(SOURCE_PRIORITY)} END"
    )
    best = ", ".join(
        f"MIN(CASE WHEN tier = {_s(t)} THEN "
        f"{_label_struct(priority, 'score', 'CAST(source AS STRING)')} END) AS ext_{j}"
        for j, t in enumerate(tiers)
    )
    return f"SELECT request_id, {best} FROM {LABELS_VIEW} GROUP BY request_id"


class SparkEngine:
    """The aggregate runner on a SparkSession (`optimum_sql.SqlEngine`): queries over the views
    and small registered tables (the optimum's thresholds) as temp views."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def query(self, sql: str) -> dict[str, np.ndarray]:
        return query(self.spark, sql)

    def register(self, name: str, columns: dict[str, np.ndarray]) -> None:
        table = pa.table({k: pa.array(v) for k, v in columns.items()})
        self.spark.createDataFrame(table).createOrReplaceTempView(name)  # Arrow, no pandas


def export_labeled(spark: SparkSession, requests: str | Sequence[str], out_dir: str) -> list[str]:
    """Write the canonical records of the requests `outcome_rows` holds labeled (every tier) as
    Parquet files into `out_dir` (what the sweep ingests into a local store: their answers, label
    sources and weights); returns the files."""
    paths = _paths(requests)
    spark.sql(f"SELECT request_id FROM {RELATION} WHERE labeled").createOrReplaceTempView(
        "labeled_ids"
    )
    spark.read.parquet(*paths).createOrReplaceTempView("canonical_all")
    records = spark.sql(
        "SELECT * FROM canonical_all WHERE request_id IN (SELECT request_id FROM labeled_ids)"
    )
    records.coalesce(1).write.mode("overwrite").parquet(out_dir)
    return sorted(
        os.path.join(out_dir, name) for name in os.listdir(out_dir) if name.endswith(".parquet")
    )


def logs_digest(requests: str | Sequence[str]) -> str:
    """The digest the store gives the same files when it ingests them (sha256 over the sorted
    sha256 of each file's bytes): local paths and globs are hashed; an object-storage URL, which
    this machine does not read, stands for itself (its text is hashed)."""
    shas = []
    for where in _paths(requests):
        files = sorted(glob.glob(where)) if "://" not in where else []
        if not files:
            shas.append(hashlib.sha256(where.encode()).hexdigest())
        for name in files:
            digest = hashlib.sha256()
            with open(name, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            shas.append(digest.hexdigest())
    return hashlib.sha256("\n".join(sorted(shas)).encode()).hexdigest()

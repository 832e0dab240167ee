"""Reads for the sweep: the per-request × tier outcome table, the data window, and what
production did on each request (the tiers its `prod` attempts called, the tier that served).

One attempt per (request, tier) is used: an `ok` attempt before a failed one, then `prod` before
`shadow`. One label per (request, tier) is used, by source: human, log, reference, judge.
Cost is the attempt's `cost_usd`, or its tokens × the tier's price when the log has no cost.
Each request also carries its segments: region, app and intent (`metadata.intent`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from calibrate.errors import DataError
from calibrate.records.outcomes import DataWindow, Outcomes
from calibrate.store.one_row import one_row

LABEL_PRIORITY = "CASE source WHEN 'human' THEN 0 WHEN 'log' THEN 1 WHEN 'reference' THEN 2 WHEN 'judge' THEN 3 ELSE 4 END"

_TIERS = """tier_list AS (
    SELECT unnest($tiers::VARCHAR[]) AS tier, generate_subscripts($tiers::VARCHAR[], 1) AS k,
           unnest($price_in::DOUBLE[]) AS price_in, unnest($price_out::DOUBLE[]) AS price_out)"""

# Requests in storage order, and separately their rowids in request_id order: sorting only the
# key is cheaper than sorting the wide rows; numpy applies the order. The messages' length (the
# last fallback of input_tokens) is read only for the requests without input_tokens: reading the
# messages column of every request would pull every prompt into memory.
_REQUESTS = """
SELECT rowid AS rid, request_id, epoch(ts) AS ts_s, COALESCE(region, '') AS region,
       COALESCE(app, '') AS app, metadata->>'intent' AS intent, input_tokens
FROM requests
"""
_MESSAGE_TOKENS = """
SELECT rowid AS rid, CAST(length(CAST(messages AS VARCHAR)) / 4 AS BIGINT) AS message_tokens
FROM requests WHERE input_tokens IS NULL
"""
_REQUEST_ORDER = "SELECT rowid AS rid FROM requests ORDER BY request_id"
_BATCH_ROWS = 1 << 17  # attempts scattered at once (bounds the memory of the read)

# Every attempt with its request's rowid and its tier's position k (0: not a tier of the sweep, kept
# for the input-length fallback). pick_order ranks attempts of one (request, tier): `ok` first, then
# `prod`, then by source name, so the attempt used is deterministic.
_ATTEMPTS = f"""
WITH {_TIERS},
sources AS (SELECT source, row_number() OVER (ORDER BY source) AS rank FROM (SELECT DISTINCT source FROM attempts))
SELECT r.rowid AS rid, COALESCE(t.k, 0)::SMALLINT AS k,
       (((a.status <> 'ok')::INT * 2 + (a.source <> 'prod')::INT) * 65536 + s.rank)::INT AS pick_order,
       CASE WHEN a.status = 'ok' AND isfinite(a.confidence) THEN a.confidence END AS confidence,
       COALESCE(a.cost_usd, (COALESCE(a.input_tokens, 0) * t.price_in
                + COALESCE(a.output_tokens, 0) * t.price_out) / 1e6) AS cost_usd,
       COALESCE(a.latency_ms, 0) AS latency_ms, a.input_tokens
FROM attempts a
JOIN requests r USING (request_id)
JOIN sources s USING (source)
LEFT JOIN tier_list t USING (tier)
"""

_LABELS = f"""
WITH {_TIERS},
sources AS (SELECT source, row_number() OVER (ORDER BY source) AS rank FROM (SELECT DISTINCT source FROM labels))
SELECT r.rowid AS rid, t.k, {LABEL_PRIORITY} * 65536 + s.rank AS pick_order, l.score
FROM labels l
JOIN requests r USING (request_id)
JOIN sources s USING (source)
JOIN tier_list t USING (tier)
"""


def tier_params(
    names: list[str], price_per_mtok: Mapping[str, tuple[float, float]]
) -> dict[str, list]:
    """The tier list and each tier's price per million input and output tokens, as parameters
    of the queries that price attempts without a cost."""
    prices = [price_per_mtok.get(name, (None, None)) for name in names]
    return {
        "tiers": names,
        "price_in": [p[0] for p in prices],
        "price_out": [p[1] for p in prices],
    }


def load_outcomes(
    con: duckdb.DuckDBPyConnection,
    tiers: Sequence[str],
    price_per_mtok: Mapping[str, tuple[float, float]],
) -> Outcomes:
    """Assemble the (n_requests × n_tiers) arrays; requests missing a tier are counted, not used.

    Flat reads (requests, their order by id, attempts, labels) meet on the request's rowid; the
    pivot to one row per request and one column per tier is a numpy scatter, not a Python loop.
    Attempts are read and scattered batch by batch, so the read holds one batch, not every
    attempt, besides the (request × tier) arrays.
    """
    names = list(tiers)
    params = tier_params(names, price_per_mtok)
    req = _fetch(con, _REQUESTS, {})
    n = len(req["rid"])
    row_of = np.zeros(int(req["rid"].max()) + 1 if n else 0, dtype=np.int64)  # rowid → row
    row_of[req["rid"]] = np.arange(n)
    need_tokens = bool(np.isnan(req["input_tokens"].astype(np.float64)).any())
    cells = _Cells.empty(n, len(names), need_tokens)
    for batch in con.sql(_ATTEMPTS, params=params).to_arrow_reader(_BATCH_ROWS):
        cells.scatter({c: _as_numpy(batch.column(c)) for c in batch.schema.names}, row_of)
    lab = _fetch(con, _LABELS, params)
    in_id_order = _fetch(con, _REQUEST_ORDER, {})["rid"]
    return _assemble(con, names, req, row_of, in_id_order, cells, lab, set(price_per_mtok))


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> dict[str, np.ndarray]:
    """Columns as numpy arrays: NULL numbers become NaN, NULL strings None."""
    table = con.sql(sql, params=params or None).to_arrow_table()
    return {name: _as_numpy(table.column(name), name in _SEGMENTS) for name in table.column_names}


_SEGMENTS = {"region", "app", "intent"}  # few distinct values: converted once each


def _as_numpy(column: pa.ChunkedArray | pa.Array, few_values: bool = False) -> np.ndarray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if few_values:
        encoded = array.dictionary_encode()
        values = encoded.dictionary.to_numpy(zero_copy_only=False)
        values = np.append(np.asarray(values, dtype=object), [None])  # the last one stands for NULL
        return values[encoded.indices.fill_null(len(values) - 1).to_numpy()]
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return np.asarray(array.to_numpy(zero_copy_only=False), dtype=object)
    if array.null_count and pa.types.is_integer(array.type):
        array = array.cast(pa.float64())
    return array.to_numpy(zero_copy_only=False)


_NO_PICK = np.iinfo(np.int32).max


@dataclass
class _Cells:
    """The picked attempt of each (request, tier) cell, flat (row × k + tier), filled batch by
    batch: a cell keeps its lowest `pick_order` seen so far. `attempt_tokens`: per request the
    most input tokens any attempt reported (read only when some request lacks input_tokens)."""

    k: int
    pick: np.ndarray
    confidence: np.ndarray
    cost_usd: np.ndarray
    latency_ms: np.ndarray
    attempt_tokens: np.ndarray | None

    @classmethod
    def empty(cls, n: int, k: int, need_tokens: bool) -> _Cells:
        conf, cost, lat = (np.full(n * k, np.nan) for _ in range(3))
        tokens = np.full(n, np.nan) if need_tokens else None
        return cls(k, np.full(n * k, _NO_PICK, dtype=np.int32), conf, cost, lat, tokens)

    def scatter(self, att: dict[str, np.ndarray], row_of: np.ndarray) -> None:
        """One batch of attempts: each cell's picked attempt so far (pick orders are distinct
        within a cell, so exactly one attempt per cell equals the cell's new minimum)."""
        rows = row_of[att["rid"]]
        if self.attempt_tokens is not None:
            np.fmax.at(self.attempt_tokens, rows, att["input_tokens"].astype(np.float64))
        used = np.flatnonzero(att["k"] > 0)  # k = 0: not a tier of the sweep
        cell = rows[used] * self.k + att["k"][used] - 1
        order = att["pick_order"][used]
        np.minimum.at(self.pick, cell, order)
        won = order == self.pick[cell]
        cell, used = cell[won], used[won]
        self.confidence[cell] = att["confidence"][used]
        self.cost_usd[cell] = att["cost_usd"][used]
        self.latency_ms[cell] = att["latency_ms"][used]


def _assemble(
    con: duckdb.DuckDBPyConnection,
    names: list[str],
    req: dict,
    row_of: np.ndarray,
    in_id_order: np.ndarray,
    cells: _Cells,
    lab: dict,
    priced: set[str],
) -> Outcomes:
    """Scatter labels into the (request × tier) arrays in the order requests were read, then keep
    the complete requests in request_id order."""
    n, k = len(req["rid"]), len(names)
    present = cells.pick < _NO_PICK
    label = np.full(n * k, np.nan)
    lab_cell = row_of[lab["rid"]] * k + lab["k"] - 1
    best = _first_per_cell(lab_cell, lab["pick_order"], n * k)
    label[lab_cell[best]] = lab["score"][best]
    label[~present] = np.nan  # a label counts only with the attempt it grades
    conf, cost, lat = (
        a.reshape(n, k) for a in (cells.confidence, cells.cost_usd, cells.latency_ms)
    )
    _check_costs(names, cost, present.reshape(n, k), priced)
    rows = row_of[in_id_order]
    rows = rows[present.reshape(n, k).sum(axis=1)[rows] == k]  # complete requests only
    return Outcomes(
        tiers=tuple(names),
        request_ids=req["request_id"][rows],
        timestamp_s=req["ts_s"].astype(np.float64)[rows],
        region=req["region"][rows],
        app=req["app"][rows],
        intent=req["intent"][rows],
        input_tokens=_input_tokens(con, req, row_of, cells.attempt_tokens)[rows],
        confidence=conf[rows],
        cost_usd=cost[rows],
        latency_ms=lat[rows],
        label=label.reshape(n, k)[rows],
        incomplete=int(n - rows.size),
    )


def _first_per_cell(cell: np.ndarray, order: np.ndarray, n_cells: int) -> np.ndarray:
    """Index of the lowest-`order` entry of each cell; cells holding one entry need no sorting."""
    counts = np.bincount(cell, minlength=n_cells)
    shared = counts[cell] > 1
    single = np.flatnonzero(~shared)
    many = np.flatnonzero(shared)
    if many.size == 0:
        return single
    ranked = many[np.lexsort((order[many], cell[many]))]
    first = np.ones(ranked.size, dtype=bool)
    first[1:] = cell[ranked[1:]] != cell[ranked[:-1]]
    return np.concatenate([single, ranked[first]])


def _input_tokens(
    con: duckdb.DuckDBPyConnection,
    req: dict,
    row_of: np.ndarray,
    attempt_tokens: np.ndarray | None,
) -> np.ndarray:
    """The request's input_tokens, else the most any attempt reported, else len(messages) / 4."""
    tokens = req["input_tokens"].astype(np.float64)
    missing = np.isnan(tokens)
    if attempt_tokens is not None and missing.any():
        tokens = np.where(missing, attempt_tokens, tokens)
        message = _fetch(con, _MESSAGE_TOKENS, {})
        from_messages = np.full(tokens.size, np.nan)
        from_messages[row_of[message["rid"]]] = message["message_tokens"]
        tokens = np.where(np.isnan(tokens), from_messages, tokens)
    return tokens.astype(np.int64)


def _check_costs(names: list[str], cost: np.ndarray, present: np.ndarray, priced: set[str]) -> None:
    missing = present & np.isnan(cost)
    for j, name in enumerate(names):
        if missing[:, j].any() and name not in priced:
            raise DataError(
                f"tier {name!r}: {int(missing[:, j].sum())} attempts have no cost_usd and the tier has no price",
                hint=f"Add `price: {{input_per_mtok: ..., output_per_mtok: ...}}` to tier {name!r} in tiers.yaml.",
            )


def data_window(con: duckdb.DuckDBPyConnection, outcomes: Outcomes) -> DataWindow:
    """Time window of the used requests and a digest of every ingested file."""
    ts_range = None
    if outcomes.n:
        ts_range = (float(outcomes.timestamp_s.min()), float(outcomes.timestamp_s.max()))
    labeled = int(outcomes.labeled.sum())
    return window_of(con, outcomes.n, labeled, outcomes.incomplete, ts_range)


def window_of(
    con: duckdb.DuckDBPyConnection,
    requests: int,
    labeled: int,
    incomplete: int,
    ts_range: tuple[float, float] | None,
) -> DataWindow:
    """`data_window` from the counts and the (min, max) epoch seconds of the used requests."""
    start = end = None
    if ts_range is not None:
        start, end = one_row(
            con,
            "SELECT strftime(make_timestamp(CAST(? * 1e6 AS BIGINT)), '%Y-%m-%dT%H:%M:%SZ'),"
            " strftime(make_timestamp(CAST(? * 1e6 AS BIGINT)), '%Y-%m-%dT%H:%M:%SZ')",
            list(ts_range),
        )
    shas = [
        r[0] for r in con.execute("SELECT file_sha256 FROM ingested_files ORDER BY 1").fetchall()
    ]
    digest = hashlib.sha256("\n".join(shas).encode()).hexdigest()
    return DataWindow(
        requests=requests,
        labeled=labeled,
        incomplete=incomplete,
        start=start,
        end=end,
        logs_sha256=digest,
    )


# Per wanted request (`i`: its position): the tiers production called (bit k-1 of `called` for the
# tier at position k; NULL: no prod attempt on these tiers) and the tier that served it (the logged
# served_tier, else the tier of the last `ok` prod attempt; 0 when unknown).
_PRODUCTION = """
WITH tier_list AS (SELECT unnest($tiers::VARCHAR[]) AS tier,
                          generate_subscripts($tiers::VARCHAR[], 1) AS k),
prod AS (
    SELECT a.request_id, bit_or((1 << (t.k - 1))::INTEGER) AS called,
           arg_max(t.k, a.position) FILTER (WHERE a.status = 'ok') AS last_ok
    FROM attempts a JOIN tier_list t USING (tier)
    WHERE a.source = 'prod' GROUP BY a.request_id)
SELECT w.i, p.called, COALESCE(s.k, p.last_ok, 0) AS served
FROM wanted_production w JOIN prod p USING (request_id) JOIN requests r USING (request_id)
LEFT JOIN tier_list s ON s.tier = r.served_tier
"""


def production_paths(
    con: duckdb.DuckDBPyConnection, tiers: Sequence[str], request_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """What production did on each of `request_ids`: a (n × tiers) bool array of the tiers it
    called, and the index of the tier that served each request (-1: no prod attempt on these tiers,
    or none succeeded)."""
    n, k = len(request_ids), len(tiers)
    wanted = pa.table(
        {"i": pa.array(np.arange(n), pa.int64()), "request_id": pa.array(request_ids, pa.string())}
    )
    con.register("wanted_production", wanted)
    try:
        rows = _fetch(con, _PRODUCTION, {"tiers": list(tiers)})
    finally:
        con.unregister("wanted_production")
    called, served = np.zeros((n, k), dtype=bool), np.full(n, -1, dtype=np.int64)
    at, bits = rows["i"].astype(np.int64), rows["called"].astype(np.int64)
    called[at] = (bits[:, None] >> np.arange(k)[None, :]) & 1 == 1
    served[at] = rows["served"].astype(np.int64) - 1
    return called, served

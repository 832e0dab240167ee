"""Values passed between stages: frozen dataclasses, plain numpy arrays inside.

Nothing here does I/O. `RequestTable` is what every per-request × tier table holds: `Outcomes` is the
counterfactual table the sweep works on, `RequestLog` the one `monitor` watches (every request, with
what production did), each as the store assembled it from requests, attempts and labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IngestSummary:
    """What one `ingest` call did."""

    run_id: int
    files: int
    files_skipped: int
    rows_read: int
    rows_kept: int
    rows_rejected: int
    requests_total: int
    rejects_by_reason: tuple[tuple[str, int], ...]
    db_path: str
    formats: tuple[tuple[str, int], ...] = ()
    """Gateway export formats read, with their number of files (canonical files not counted)."""
    unmapped_models: tuple[tuple[str, int], ...] = ()
    """Models in gateway exports that no tier claims, with their number of calls (rejected)."""
    ignored_records: int = 0
    """Records of gateway exports that are not LLM calls (spans, events, embeddings...)."""
    files_rejected: tuple[str, ...] = ()
    """Files every row of which was rejected, as "path (N rows)"."""


@dataclass(frozen=True)
class RequestTable:
    """Per request (rows) × tier (columns in `tiers` order), as the sweep and the monitor read it.

    Per-request arrays are (n_requests,): `region` and `app` ('' when absent) and `intent` (from
    `metadata.intent`) are the segments, `input_tokens` the length, `timestamp_s` epoch seconds.
    Per-tier arrays are (n_requests, n_tiers): `confidence` is NaN when the tier gave no signal
    (missing, null, or its attempt was not `ok`), `cost_usd` is what the tier's attempt cost,
    `label` is NaN when unlabeled.
    """

    tiers: tuple[str, ...]
    request_ids: np.ndarray
    timestamp_s: np.ndarray
    region: np.ndarray
    app: np.ndarray
    intent: np.ndarray
    input_tokens: np.ndarray
    confidence: np.ndarray
    cost_usd: np.ndarray
    label: np.ndarray

    @property
    def n(self) -> int:
        return int(self.confidence.shape[0])


@dataclass(frozen=True)
class Outcomes(RequestTable):
    """What each tier answered, what it cost, how long it took, how good it was, on the requests
    with an attempt from every tier (`incomplete` counts the others, left out).

    A request whose confidence is NaN for a tier always escalates past that tier. `cost_usd` is the
    attempt's, or its tokens priced by tiers.yaml; `intent` is None when absent.
    """

    latency_ms: np.ndarray
    incomplete: int

    @property
    def labeled(self) -> np.ndarray:
        """Rows with a label for every tier: quality comparisons are paired on these."""
        labeled = ~np.isnan(self.label[:, 0])
        for j in range(1, self.label.shape[1]):  # column by column: `.any(axis=1)` is 5x slower
            labeled &= ~np.isnan(self.label[:, j])
        return labeled


@dataclass(frozen=True)
class DataWindow:
    """Provenance of the data a sweep used."""

    requests: int
    labeled: int
    incomplete: int
    start: str | None
    end: str | None
    logs_sha256: str


@dataclass(frozen=True)
class RequestLog(RequestTable):
    """Every stored request in timestamp order, kept even when a tier never answered it (for
    `monitor`: production logs hold only the tiers a request reached).

    `answered` (n_requests, n_tiers) says whether the tier has any attempt at all; `cost_usd` is
    NaN without an `ok` attempt with a cost. `intent` is '' when absent. `served_tier` is the logged one, or else the last `ok` prod attempt's tier ('' when
    unknown); `failed_tier` is the tier of the first failed `prod` attempt ('' if none).
    `tier_cost_usd` is each tier's median cost per `ok` attempt over the whole store (any tier),
    used to tell a cheaper fallback from a more expensive one.
    """

    served_tier: np.ndarray
    failed_tier: np.ndarray
    answered: np.ndarray
    tier_cost_usd: dict[str, float]


@dataclass(frozen=True)
class RegionDayTraffic:
    """Every stored request, counted by region × UTC day × what production did: `failed_tier`
    (the first failed `prod` attempt's, '' if none) and `served_tier` ('' when unknown), as
    `RequestLog` has them per request. `day` counts days since 1970-01-01; `requests` is each
    group's size; `tier_cost_usd` as in `RequestLog`."""

    region: np.ndarray
    day: np.ndarray
    failed_tier: np.ndarray
    served_tier: np.ndarray
    requests: np.ndarray
    tier_cost_usd: dict[str, float]

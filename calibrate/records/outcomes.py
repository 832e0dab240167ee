"""Values passed between stages: frozen dataclasses, plain numpy arrays inside.

Nothing here does I/O. `Outcomes` is the counterfactual table the sweep works on: one row per request,
one column per tier, as the store assembled it from attempts and labels.
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
    files_rejected: tuple[str, ...] = ()
    """Files every row of which was rejected, as "path (N rows)"."""


@dataclass(frozen=True)
class Outcomes:
    """Per request × tier: what each tier answered, what it cost, how long it took, how good it was.

    Arrays are (n_requests, n_tiers) in `tiers` order. `confidence` is NaN when the tier gave no
    signal (missing, null, or its attempt was not `ok`): such a request always escalates past that
    tier. `label` is NaN when unlabeled. Per-request arrays are (n_requests,): `region`, `app` and
    `intent` (from `metadata.intent`, None when absent) are the segments, `input_tokens` the length.
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
    latency_ms: np.ndarray
    label: np.ndarray
    incomplete: int

    @property
    def n(self) -> int:
        return int(self.confidence.shape[0])

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

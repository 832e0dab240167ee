"""Values passed between the label modules and the store: frozen dataclasses and the source rules.

A `LabelRow` is one label read from a file (or made by a scorer or the judge) before the store
checks it against the requests; a `RejectedRow` is a bad one with its line, field and reason.
The summaries are what `labels import|score|judge|status` and `sample` report. No I/O; imports
nothing from calibrate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

IMPORT_SOURCES = ("human", "reference", "judge")
"""Sources a label file may name (`log` is reserved for labels that came inside the logs)."""
SOURCE_PRIORITY = ("human", "log", "reference", "judge")
"""Which label of a request × tier the sweep uses, best first. Must match store/outcomes_sql.py."""
ACCEPTABLE = 0.5
"""A score ≥ 0.5 means the answer is acceptable: the one cut every stage uses."""


@dataclass(frozen=True, slots=True)
class LabelRow:
    """One label to store. `tier` is None when the row names the `answer` text it judged instead.

    `weight` is 1/π for a label drawn with inclusion probability π (None: unweighted)."""

    line: int
    field: str
    request_id: str
    tier: str | None
    answer: str | None
    score: float
    source: str
    labeler: str | None = None
    labeled_at: datetime | None = None
    weight: float | None = None
    inclusion_prob: float | None = None
    stratum: str | None = None
    detail: str | None = None
    call_key: str | None = None
    raw: str = ""


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A label row (or one score cell of a wide row) that was not stored, and why."""

    line: int
    field: str | None
    reason: str
    raw: str


@dataclass(frozen=True, slots=True)
class ResolveCounts:
    """How stored labels met incoming ones (same request × tier): the conflict rule at work."""

    stored: int = 0
    """Incoming labels now in `labels`."""
    new: int = 0
    replaced: int = 0
    """Stored label of the same source replaced by a newer one with a different score."""
    unchanged: int = 0
    """Stored label of the same source replaced by one with the same score."""
    older_than_stored: int = 0
    """Incoming label older than the stored one of the same source: kept in label_history only."""
    overrides: int = 0
    """Incoming label now outranks a disagreeing label of a lower-priority source."""
    overridden: int = 0
    """Incoming label hidden behind a disagreeing label of a higher-priority source."""
    weighted: int = 0
    """Stored incoming labels that carry a sampling weight."""


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What one `labels import` did."""

    run_id: int
    file: str
    rows_read: int
    rows_unlabeled: int
    """Rows with no score at all (a review sheet row nobody filled in): skipped, not rejected."""
    labels_read: int
    rejected: int
    rejects_by_reason: tuple[tuple[str, int], ...]
    first_rejects: tuple[RejectedRow, ...]
    resolved: ResolveCounts


@dataclass(frozen=True, slots=True)
class ScoreSummary:
    """What one `labels score` did: reference labels per scorer, and what could not be scored."""

    run_id: int
    scored: tuple[tuple[str, int], ...]
    """(scorer, labels) per scorer kind used."""
    acceptable: int
    skipped: tuple[tuple[str, int], ...]
    """(reason, request × tier count) of answers that got no label."""
    resolved: ResolveCounts


@dataclass(frozen=True, slots=True)
class Agreement:
    """Judge versus human on the request × tier pairs both labelled (verdicts cut at 0.5).

    `miss_rate` is P(judge says acceptable and the human says not) over the overlap: the η that
    methods.md §1.5 subtracts from ε; `missed_of_bad` is the same misses among the answers the
    human called unacceptable. Intervals are exact (Clopper–Pearson) at `level`."""

    overlap: int
    agree: int
    misses: int
    human_unacceptable: int
    agreement: float
    agreement_interval: tuple[float, float]
    miss_rate: float
    miss_rate_interval: tuple[float, float]
    missed_of_bad: float
    missed_of_bad_interval: tuple[float, float]
    level: float


@dataclass(frozen=True, slots=True)
class JudgePlan:
    """What a judge run would do: answers to judge, calls to make, cached, estimated cost."""

    judge: str
    model: str
    items: int
    calls: int
    cached: int
    failed_before: int
    no_yardstick: int
    """Answers skipped: no reference and no premium answer to compare with."""
    cost_usd: float
    price_source: str


@dataclass(frozen=True, slots=True)
class JudgeSummary:
    """What one `labels judge` run did, its cost, and the judge's agreement with humans."""

    run_id: int
    replay_run: int
    plan: JudgePlan
    labeled: int
    unparsable: int
    failed: int
    not_run: int
    http_calls: int
    cost_usd: float
    total_judge_cost_usd: float
    stopped: str | None
    resolved: ResolveCounts
    agreement: Agreement | None
    warnings: tuple[str, ...]
    paused: str | None = None
    """Why the judge's circuit breaker stopped calling it (bad key, URL, quota)."""


@dataclass(frozen=True, slots=True)
class SampleSummary:
    """What `calibrate sample` wrote: rows per stratum and the design behind them."""

    sample_id: int
    out: str
    population: int
    rows: int
    strata: tuple[tuple[str, int, int], ...]
    """(stratum, rows in the file, population size of the stratum)."""
    uniform_share: float
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LabelWeights:
    """Per request: the sampling weight (1/π) of its labels for a set of tiers.

    Only requests with a weighted label are listed; every other request has weight 1.0.
    `mixed` counts requests whose labels for those tiers carry different weights (some tiers
    from a sample, others not): the largest weight is used for them."""

    request_ids: np.ndarray
    weight: np.ndarray
    inclusion_prob: np.ndarray
    stratum: np.ndarray
    mixed: int = 0

    def for_requests(self, request_ids: np.ndarray) -> np.ndarray:
        """Weights aligned with `request_ids` (1.0 where a request has no weighted label)."""
        return _aligned(self.request_ids, self.weight, request_ids, 1.0).astype(np.float64)

    def strata_for(self, request_ids: np.ndarray) -> np.ndarray:
        """Stratum of each request's sampled labels ('' when unweighted): `uniform` rows are the
        uniform random sample that certification may treat as i.i.d."""
        return _aligned(self.request_ids, self.stratum, request_ids, "")


def _aligned(
    keys: np.ndarray, values: np.ndarray, wanted: np.ndarray, default: object
) -> np.ndarray:
    """values[keys == wanted[i]] for each i (default when absent); keys are unique."""
    out = np.full(len(wanted), default, dtype=object if isinstance(default, str) else np.float64)
    if len(keys) == 0 or len(wanted) == 0:
        return out
    order = np.argsort(keys.astype(str), kind="stable")
    sorted_keys = keys.astype(str)[order]
    targets = np.asarray(wanted).astype(str)
    pos = np.clip(np.searchsorted(sorted_keys, targets), 0, len(sorted_keys) - 1)
    hit = sorted_keys[pos] == targets
    out[hit] = values[order][pos[hit]]
    return out


@dataclass(frozen=True, slots=True)
class SegmentCoverage:
    """Labelled requests in one app or region."""

    column: str
    value: str
    requests: int
    usable: int
    weighted: int


@dataclass(frozen=True, slots=True)
class Coverage:
    """`calibrate labels status`: what is labelled, by whom, and what no estimate can use."""

    tiers: tuple[str, ...]
    requests: int
    complete: int
    """Requests with an answer from every tier (the sweep's population)."""
    usable: int
    """Complete requests labelled for every tier: what quality estimates use."""
    weighted: int
    mixed_weights: int
    by_tier: tuple[tuple[str, tuple[tuple[str, int], ...], int], ...]
    """(tier, ((source, labels), ...), labels the sweep uses)."""
    segments: tuple[SegmentCoverage, ...]
    partial: int
    """Requests labelled for some tiers but not all: no paired estimate can use them."""
    partial_examples: tuple[str, ...]
    incomplete_labeled: int
    """Labelled requests missing an answer of some tier: the sweep drops them."""
    incomplete_examples: tuple[str, ...]
    other_tier_labels: int
    """Labels for tiers that are not in the tier list."""
    queued: int
    queued_labeled: int
    judge_calls: int
    judge_unparsable: int
    judge_cost_usd: float
    agreement: Agreement | None
    rejected_rows: int = 0
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ReferenceItem:
    """One tier's answer to a request that has a reference (`output` None: no usable answer)."""

    request_id: str
    app: str
    tier: str
    output: str | None
    reference: str


@dataclass(frozen=True, slots=True)
class Population:
    """The requests a sample is drawn from, sorted by request id (as the sweep sees them)."""

    tiers: tuple[str, ...]
    request_ids: np.ndarray
    confidence: np.ndarray
    """(N, tiers) with NaN where a tier gave no usable confidence."""
    input_tokens: np.ndarray
    intent: np.ndarray
    keyword_hit: np.ndarray | None = None
    """Does the prompt match a `--keyword` pattern? None when the design has none."""
    ruled: np.ndarray | None = None
    """Index of the tier a keyword rule of the routing sends each request to (-1: none), before
    any confidence is read; None when the design has no keyword rules."""

    @property
    def size(self) -> int:
        return int(self.request_ids.size)

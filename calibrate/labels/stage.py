"""Stage: bring labels into the store — import a label file, or score answers against references.

`import_labels` reads a CSV / JSONL / Parquet label file (label_files.py), checks every row
against the store and stores the good ones in one transaction; bad rows are kept in
`label_rejects` with their line, field and reason (with `strict`, any bad row stores nothing).
`score_references` scores each tier's answer against the request's `reference` with the scorer
chosen per app (scorers.py) and stores the scores as labels with source=reference.
`label_status` says what is labelled per tier, app and region, and what no estimate can use.

The conflict rule, per request × tier: labels of one source replace each other newest first
(`labeled_at`, else the time they were stored); across sources the sweep uses human, then log,
then reference, then judge. Both are counted in the summaries. Never prints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from calibrate.errors import DataError, LabelFileError
from calibrate.formats import readers
from calibrate.labels.files import read_label_file
from calibrate.labels.scorers import ScorersConfig, score_answer
from calibrate.records.labels import (
    ACCEPTABLE,
    Coverage,
    ImportSummary,
    LabelRow,
    RejectedRow,
    ScoreSummary,
)
from calibrate.stats.estimators import agreement
from calibrate.store import Store

FIRST_REJECTS = 20
"""Rejected rows listed in a summary (all of them are in the `label_rejects` table)."""


def import_labels(
    store: Store,
    path: Path,
    *,
    tiers: Sequence[str] | None,
    source: str,
    strict: bool,
    clock: Callable[[], datetime],
) -> ImportSummary:
    """Import one label file; `tiers` are the tier names labels may use (default: every tier
    with a stored answer); `source` applies to rows without a `source` column."""
    file = read_label_file(path, source)
    known = _known_tiers(store, tiers)
    now = clock()
    with store.transaction():
        run_id = store.begin_label_run("import", now, str(path), readers.file_sha256(path))
        store_rejects, resolved = store.store_labels(file.labels, known, run_id, now)
        rejects = sorted(
            [*file.rejects, *store_rejects], key=lambda reject: (reject.line, reject.field or "")
        )
        if strict and rejects:
            raise _strict_error(path, rejects)
        store.record_label_rejects(run_id, str(path), rejects)
        store.finish_label_run(run_id, clock(), file.rows_read, resolved.stored, len(rejects))
    return ImportSummary(
        run_id=run_id,
        file=str(path),
        rows_read=file.rows_read,
        rows_unlabeled=file.rows_unlabeled,
        labels_read=len(file.labels),
        rejected=len(rejects),
        rejects_by_reason=reject_kinds(rejects),
        first_rejects=tuple(rejects[:FIRST_REJECTS]),
        resolved=resolved,
    )


def _known_tiers(store: Store, tiers: Sequence[str] | None) -> list[str]:
    known = list(tiers) if tiers else store.known_label_tiers()
    if not known:
        raise DataError(
            "the store has no answers yet, so no label can name a tier",
            hint="Run `calibrate ingest LOGS --db FILE` (and `calibrate replay`) first.",
        )
    return known


def reject_kinds(rejects: Sequence[RejectedRow]) -> tuple[tuple[str, int], ...]:
    """Rejects counted per reason kind (the text before the first colon), most frequent first."""
    counts = Counter(r.reason.split(":", 1)[0] for r in rejects)
    return tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _strict_error(path: Path, rejects: Sequence[RejectedRow]) -> LabelFileError:
    shown = [f"{path}:{r.line}: {r.field or '-'}: {r.reason}" for r in rejects[:3]]
    more = f" (and {len(rejects) - len(shown)} more)" if len(rejects) > len(shown) else ""
    return LabelFileError(
        "bad label rows with --strict, nothing was stored:\n  " + "\n  ".join(shown) + more,
        hint="Fix these rows, or run without --strict to store the good rows and keep the bad "
        "ones in the `label_rejects` table.",
    )


def score_references(
    store: Store,
    config: ScorersConfig,
    *,
    tiers: Sequence[str] | None,
    clock: Callable[[], datetime],
) -> ScoreSummary:
    """Score every tier's stored answer of every request that has a `reference`."""
    known = _known_tiers(store, tiers)
    now = clock()
    rows: list[LabelRow] = []
    skipped: Counter[str] = Counter()
    used: Counter[str] = Counter()
    for n, item in enumerate(store.reference_items(known), start=1):
        if item.output is None:
            skipped["no answer (the attempt failed or has no output)"] += 1
            continue
        spec = config.for_app(item.app)
        scored = score_answer(spec, item.output, item.reference)
        if scored.score is None:
            skipped[scored.detail] += 1
            continue
        used[spec.kind] += 1
        rows.append(
            LabelRow(
                line=n,
                field="score",
                request_id=item.request_id,
                tier=item.tier,
                answer=item.output,
                score=scored.score,
                source="reference",
                labeler=f"scorer:{spec.kind}",
                labeled_at=now,
                detail=scored.detail,
            )
        )
    with store.transaction():
        run_id = store.begin_label_run("score", now)
        rejects, resolved = store.store_labels(rows, known, run_id, now)
        if rejects:  # the rows come from the store itself; a reject here is a bug
            raise AssertionError(f"reference labels rejected: {rejects[:3]}")
        store.finish_label_run(run_id, clock(), len(rows), resolved.stored, 0)
    return ScoreSummary(
        run_id=run_id,
        scored=tuple(sorted(used.items())),
        acceptable=sum(1 for r in rows if r.score >= ACCEPTABLE),
        skipped=tuple(sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0]))),
        resolved=resolved,
    )


def label_status(store: Store, *, tiers: Sequence[str] | None) -> Coverage:
    """Coverage of the labels for `tiers` (default: every tier with a stored answer)."""
    known = _known_tiers(store, tiers)
    coverage = store.label_coverage(known)
    human, judged = store.judge_overlap(known)
    notes = []
    if coverage.partial:
        notes.append(
            f"{coverage.partial} requests are labelled for some tiers but not all: no paired "
            "quality estimate can use them until every tier is labelled"
        )
    if coverage.incomplete_labeled:
        notes.append(
            f"{coverage.incomplete_labeled} labelled requests lack an answer from some tier: "
            "`calibrate replay` fills it in"
        )
    if coverage.mixed_weights:
        notes.append(
            f"{coverage.mixed_weights} requests mix weighted (sampled) and unweighted labels "
            "across tiers: the largest weight is used"
        )
    if coverage.weighted and coverage.weighted < coverage.usable:
        notes.append(
            f"{coverage.usable - coverage.weighted} usable requests carry no sampling weight "
            f"next to {coverage.weighted} weighted ones: weighted estimates count each of them "
            "once (inclusion probability 1)"
        )
    notes += [run.describe() for run in store.unfinished_runs()]
    return replace(coverage, agreement=agreement(human, judged), notes=tuple(notes))

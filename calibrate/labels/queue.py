"""Stage: `calibrate sample` — choose which requests humans label next, and write the review sheet.

The population is every stored request with an answer from every tier (what the sweep uses).
The design, with exact inclusion probabilities π:
1. **uniform**: a simple random sample of n_u = ⌈share·n⌉ requests (share ≥ 2/3); π_u = n_u/N.
   It is the i.i.d. sample certification relies on.
2. **targeted** strata, disjoint, among requests a cheap tier keeps under the given thresholds
   (every request when no threshold is given); with a hybrid's keyword rules, a request a rule
   sends to a cheap tier is kept by it whatever its confidence, and one a rule sends to the
   premium tier is not kept:
   - `complex`: long inputs (≥ `long_input_tokens`), a `--keyword` pattern on the prompt (RE2,
     case-insensitive, the engine of every user pattern: config/patterns.py), or a named intent;
   - `near_threshold` (not complex): the `near_share` of each cheap tier's kept requests whose
     confidence is closest above its threshold (requests a keyword rule routes are never near a
     threshold: their confidence decides nothing).
   The other n − n_u labels are split evenly over the non-empty targeted strata (capped at their
   size); each stratum h draws a simple random sample of n_h among its requests the uniform draw
   did not take. For i in h, π_i = π_u + (1 − π_u)·E[min(1, n_h / M_h)], where M_h, the members of
   h left after the uniform draw, is N_h minus a hypergeometric count (computed exactly).
Every row carries its π; importing the filled-in sheet stores 1/π as the label's weight, so
Horvitz–Thompson / Hájek estimates (estimators.py) are unbiased for the whole population.
The sampling is pure (`draw`); `sample` reads the store and writes the CSV. Never prints.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
from scipy.stats import hypergeom

from calibrate.config.patterns import SYNTAX_HINT, PatternError, compile_pattern, first_matches
from calibrate.config.tiers import TiersConfig
from calibrate.errors import ConfigError, DataError
from calibrate.formats.canonical import messages_text
from calibrate.labels.files import sheet_cell
from calibrate.policies.keyword_rules import forced_tiers
from calibrate.records.labels import Population, SampleSummary
from calibrate.store import Store

MIN_UNIFORM_SHARE = 2 / 3
UNIFORM, COMPLEX, NEAR = "uniform", "complex", "near_threshold"
TARGETED = (COMPLEX, NEAR)


@dataclass(frozen=True, slots=True)
class Design:
    """How many labels, and which requests the targeted strata favour."""

    n: int
    uniform_share: float = 0.7
    thresholds: Mapping[str, float] = field(default_factory=dict)
    """escalate_below per cheap tier (a cascade over these tiers, then the premium tier)."""
    near_share: float = 0.1
    long_input_tokens: int | None = None
    keywords: tuple[str, ...] = ()
    intents: tuple[str, ...] = ()
    rules: tuple[tuple[str, str], ...] = ()
    """A hybrid's keyword rules (pattern, tier), matched in order before the cascade."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError("--n must be at least 1", hint="Ask for one label or more.")
        if not MIN_UNIFORM_SHARE - 1e-12 <= self.uniform_share <= 1:
            raise ConfigError(
                f"--uniform-share {self.uniform_share:g} is below 2/3",
                hint="Certification needs a uniform random sample of at least two thirds of the "
                "labels; use a share between 0.667 and 1.",
            )
        if not 0 < self.near_share <= 1:
            raise ConfigError("--near-share must be in (0, 1]", hint="e.g. 0.1")


@dataclass(frozen=True, slots=True)
class Draw:
    """One sample: population indices, their stratum and π, and π of every request."""

    rows: np.ndarray
    stratum: np.ndarray
    inclusion_prob: np.ndarray
    population_prob: np.ndarray
    strata_sizes: dict[str, int]
    allocation: dict[str, int]
    notes: tuple[str, ...]


def kept_tier(pop: Population, thresholds: Mapping[str, float]) -> np.ndarray:
    """Index of the cheap tier that keeps each request, −1 when it goes to the premium tier (or
    when no thresholds are given). A keyword rule's tier wins over the cascade; otherwise the
    cascade keeps a request at the first cheap tier whose confidence reaches its threshold. NaN
    confidence always escalates."""
    kept = np.full(pop.size, -1, dtype=np.int64)
    ruled = _ruled(pop)
    for j, name in enumerate(pop.tiers[:-1]):
        if name not in thresholds:
            continue
        with np.errstate(invalid="ignore"):
            keeps = (ruled < 0) & (kept < 0) & (pop.confidence[:, j] >= thresholds[name])
        kept[keeps] = j
    cheap = (ruled >= 0) & (ruled < len(pop.tiers) - 1)
    kept[cheap] = ruled[cheap]
    return kept


def _ruled(pop: Population) -> np.ndarray:
    return pop.ruled if pop.ruled is not None else np.full(pop.size, -1, dtype=np.int64)


def strata(pop: Population, design: Design) -> tuple[np.ndarray, tuple[str, ...]]:
    """Targeted stratum of each request ('' for none), and notes about the design."""
    notes: list[str] = []
    label = np.full(pop.size, "", dtype=object)
    kept = kept_tier(pop, design.thresholds)
    scope = kept >= 0 if design.thresholds else np.ones(pop.size, dtype=bool)
    if not design.thresholds:
        notes.append(
            "no thresholds given (--routing or --threshold): the near_threshold stratum is "
            "empty and complex requests are taken from all traffic"
        )
    complex_ = np.zeros(pop.size, dtype=bool) if pop.keyword_hit is None else pop.keyword_hit.copy()
    if design.long_input_tokens is not None:
        complex_ |= pop.input_tokens >= design.long_input_tokens
    if design.intents:
        complex_ |= np.isin(pop.intent, list(design.intents))
    label[complex_ & scope] = COMPLEX
    by_confidence = np.where(_ruled(pop) < 0, kept, -1)  # a ruled request is never near
    for j in np.unique(by_confidence[by_confidence >= 0]):
        members = np.flatnonzero(by_confidence == j)
        take = math.ceil(design.near_share * members.size)
        order = np.argsort(pop.confidence[members, j], kind="stable")
        near = members[order[:take]]
        label[near[label[near] == ""]] = NEAR
    return label, tuple(notes)


def allocate(n_targeted: int, sizes: Mapping[str, int]) -> dict[str, int]:
    """Split the targeted labels evenly over non-empty strata, capped at their size."""
    alloc = {h: 0 for h in sizes}
    left = n_targeted
    open_ = [h for h in TARGETED if sizes.get(h, 0) > 0]
    while left > 0 and open_:
        share, extra = divmod(left, len(open_))
        for i, h in enumerate(open_):
            alloc[h] += min(share + (1 if i < extra else 0), sizes[h] - alloc[h])
        left = n_targeted - sum(alloc.values())
        open_ = [h for h in open_ if alloc[h] < sizes[h]]
    return alloc


def second_phase_prob(population: int, n_uniform: int, size: int, allocated: int) -> float:
    """P(a member of a stratum of `size` is drawn in phase 2 | the uniform draw missed it)."""
    if allocated == 0 or size == 0:
        return 0.0
    dist = hypergeom(population - 1, size - 1, n_uniform)
    k = np.arange(max(0, n_uniform - (population - size)), min(size - 1, n_uniform) + 1)
    left = size - k
    return float((dist.pmf(k) * np.minimum(1.0, allocated / left)).sum())


def draw(pop: Population, design: Design, rng: np.random.Generator) -> Draw:
    """Draw one sample by the design (module docstring) with exact inclusion probabilities."""
    big_n = pop.size
    label, notes = strata(pop, design)
    sizes = {h: int((label == h).sum()) for h in TARGETED}
    n = min(design.n, big_n)
    alloc = allocate(n - min(math.ceil(design.uniform_share * n - 1e-9), n), sizes)
    n_uniform = n - sum(alloc.values())  # what the targeted strata cannot take stays uniform
    p_u = n_uniform / big_n
    pi = np.full(big_n, p_u)
    for h in TARGETED:
        p2 = second_phase_prob(big_n, n_uniform, sizes[h], alloc[h])
        pi[label == h] = p_u + (1 - p_u) * p2
    uniform = rng.choice(big_n, n_uniform, replace=False)
    taken = np.zeros(big_n, dtype=bool)
    taken[uniform] = True
    rows, stratum = [uniform], [np.full(uniform.size, UNIFORM, dtype=object)]
    for h in TARGETED:
        candidates = np.flatnonzero((label == h) & ~taken)
        chosen = rng.choice(candidates, min(alloc[h], candidates.size), replace=False)
        rows.append(chosen)
        stratum.append(np.full(chosen.size, h, dtype=object))
    order = np.concatenate(rows)
    return Draw(
        rows=order,
        stratum=np.concatenate(stratum),
        inclusion_prob=pi[order],
        population_prob=pi,
        strata_sizes={UNIFORM: big_n, **sizes},
        allocation={UNIFORM: n_uniform, **alloc},
        notes=notes,
    )


def sample(
    store: Store,
    tiers: TiersConfig,
    design: Design,
    out: Path,
    *,
    seed: int,
    clock: Callable[[], datetime],
) -> SampleSummary:
    """Draw a labelling queue and write the review sheet (CSV) to `out`."""
    names = tiers.names
    _check_tiers(design, names)
    _check_keywords(design.keywords)
    pop = store.sample_population(names)
    if pop.size == 0:
        raise DataError(
            "no stored request has an answer from every tier, so there is nothing to sample",
            hint="Run `calibrate ingest` and `calibrate replay` first.",
        )
    if design.rules or design.keywords:
        texts = store.prompt_texts([str(r) for r in pop.request_ids])
        pop = replace(
            pop,
            keyword_hit=_keyword_hits(design.keywords, texts) if design.keywords else None,
            ruled=forced_tiers(list(design.rules), texts, names) if design.rules else None,
        )
    result = draw(pop, design, np.random.default_rng(seed))
    shuffle = np.random.default_rng(seed + 1).permutation(result.rows.size)
    rows, stratum, pi = (
        result.rows[shuffle],
        result.stratum[shuffle],
        result.inclusion_prob[shuffle],
    )
    ids = [str(r) for r in pop.request_ids[rows]]
    created = clock()
    with store.transaction():
        sample_id = store.record_sample(
            created, seed, design.n, pop.size, _design_json(design), str(out), ids, stratum, pi
        )
        sheet = review_sheet(store.review_rows(ids, names), names, sample_id, stratum, pi)
        _write_atomic(out, sheet)
    counts = {h: int((stratum == h).sum()) for h in (UNIFORM, *TARGETED)}
    return SampleSummary(
        sample_id=sample_id,
        out=str(out),
        population=pop.size,
        rows=len(ids),
        strata=tuple((h, counts[h], result.strata_sizes[h]) for h in (UNIFORM, *TARGETED)),
        uniform_share=counts[UNIFORM] / max(len(ids), 1),
        notes=result.notes,
    )


def _check_tiers(design: Design, names: tuple[str, ...]) -> None:
    ruled = sorted({tier for _, tier in design.rules} - set(names))
    if ruled:
        raise ConfigError(
            f"keyword rule to {', '.join(ruled)}: not a tier of tiers.yaml "
            f"(tiers: {', '.join(names)})",
            hint="Use the tiers.yaml the routing.yaml was made with.",
        )
    unknown = sorted(set(design.thresholds) - set(names[:-1]))
    if unknown:
        raise ConfigError(
            f"threshold for {', '.join(unknown)}: not a cheap tier of tiers.yaml "
            f"(cheap tiers: {', '.join(names[:-1])})",
            hint="Thresholds apply to every tier but the last (the premium tier).",
        )


def _keyword_hits(keywords: tuple[str, ...], texts: list[str]) -> np.ndarray:
    """Does each prompt match a `--keyword` pattern (case-insensitive)?"""
    return np.asarray(first_matches(list(keywords), texts, ignore_case=True), dtype=np.int64) >= 0


def _check_keywords(keywords: tuple[str, ...]) -> None:
    """A `--keyword` RE2 cannot compile is a ConfigError naming it."""
    for keyword in keywords:
        try:
            compile_pattern(keyword, ignore_case=True)
        except PatternError as err:
            raise ConfigError(
                f"--keyword {keyword!r} is not a valid regular expression in RE2 syntax: {err}",
                hint=f"{SYNTAX_HINT} For example --keyword 'refund|chargeback'.",
            ) from None


def _design_json(design: Design) -> str:
    data = asdict(design)
    data["thresholds"] = dict(sorted(design.thresholds.items()))
    return json.dumps(data, sort_keys=True)


def review_sheet(
    rows: list[tuple],
    tiers: tuple[str, ...],
    sample_id: int,
    stratum: np.ndarray,
    pi: np.ndarray,
) -> str:
    """CSV text: context for the reviewer, then one empty score column per tier. Text from the
    logs goes through `sheet_cell`: a prompt like `=HYPERLINK(…)` is not a formula."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "request_id",
            "sample_id",
            "stratum",
            "inclusion_prob",
            "app",
            "region",
            "intent",
            "input_tokens",
            "prompt",
            "reference",
            *(f"answer_{t}" for t in tiers),
            *(f"score_{t}" for t in tiers),
            "labeler",
            "comment",
        ]
    )
    for (rid, app, region, intent, tokens, messages, reference, answers), h, p in zip(
        rows, stratum, pi, strict=True
    ):
        texts = [rid, app, region, intent, messages_text(messages), reference, *answers]
        rid, app, region, intent, prompt, reference, *answers = (
            sheet_cell(t) if isinstance(t, str) else t for t in texts
        )
        writer.writerow(
            [rid, sample_id, h, repr(float(p)), app, region, intent, tokens]
            + [prompt, reference or "", *(a or "" for a in answers)]
            + [""] * len(tiers)
            + ["", ""]
        )
    return buffer.getvalue()


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)

"""The learned router: a classifier on the prompt predicting "the cheaper tier's answer is
acceptable", decided before any model call (it pays one tier).

Features are TF-IDF word (1–2) and character (2–4, within word boundaries) n-grams, fitted with a
logistic regression (scikit-learn, fixed seed). The sweep evaluates it on honest scores only:
a labeled request is scored by the fold model that never saw it (cross-fitting, `FOLDS` folds); an
unlabeled one by the model fitted on every label. The deployable model is plain JSON (vocabulary,
idf, coefficients; never pickle), scored here by numpy: `RouterModel.score` is what `evaluate` runs
and what the sweep uses for unlabeled requests, so both agree exactly. The JSON also keeps the
cross-fitted score of each training request, so `evaluate` on the calibration logs reproduces the
sweep, and on fresh logs scores every request with the deployed model. The JSON files of both
router kinds are read and written by `router_files.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

FOLDS = 5
MAX_FEATURES = 5000  # per analyzer
MIN_DF = 2
PROBE = 500  # requests scored end to end to measure the inference time
ANALYZERS = {
    "word": {"analyzer": "word", "ngram_range": (1, 2)},
    "char": {"analyzer": "char_wb", "ngram_range": (3, 4)},
}


@dataclass(frozen=True)
class Vocabulary:
    """One TF-IDF block: term → column, and each column's idf."""

    analyzer: str
    terms: tuple[str, ...]
    idf: np.ndarray


@dataclass(frozen=True)
class RouterModel:
    """The deployable router: P(cheaper acceptable) = σ(x·coef + intercept), x = [word | char]."""

    cheap_tier: str
    blocks: tuple[Vocabulary, ...]
    coef: np.ndarray
    intercept: float

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """P(cheaper tier acceptable) per text, by numpy from the exported numbers alone."""
        terms = analyze(texts)
        counts = []
        for b in self.blocks:
            if not b.terms:  # sklearn refuses an empty vocabulary
                counts.append(sparse.csr_matrix((len(texts), 0), dtype=np.float64))
                continue
            counter = CountVectorizer(analyzer=_identity, vocabulary=list(b.terms))
            counts.append(_sorted(counter.transform(terms[b.analyzer])))
        return self._score_counts(counts)

    def _score_counts(self, counts: list[sparse.csr_matrix]) -> np.ndarray:
        x = sparse.hstack(
            [_weights(c, b.idf) for c, b in zip(counts, self.blocks, strict=True)], format="csr"
        )
        return _sigmoid(x @ self.coef + self.intercept)


class Scorer(Protocol):
    """A deployable router: P(cheaper tier acceptable) per request from its features (prompt
    texts for `RouterModel`, an embedding matrix for `embedding_router.EmbeddingRouter`)."""

    @property
    def cheap_tier(self) -> str: ...

    def score(self, features) -> np.ndarray: ...


@dataclass(frozen=True)
class RouterFit:
    """One fitted router: honest per-request scores for the sweep and the model to deploy."""

    model: Scorer
    scores: np.ndarray
    cross_fitted: dict[str, float]
    inference_ms_per_request: float


@dataclass(frozen=True)
class Corpus:
    """Every request's n-gram counts per analyzer over the whole corpus, built once per sweep."""

    counts: dict[str, sparse.csr_matrix]
    terms: dict[str, np.ndarray]


def corpus(texts: Sequence[str]) -> Corpus:
    """Cut every text into n-grams once (sklearn's analyzers) and count them."""
    counts, terms = {}, {}
    for name, documents in analyze(texts).items():
        counter = CountVectorizer(analyzer=_identity)
        try:
            counts[name] = _sorted(counter.fit_transform(documents))
            terms[name] = counter.get_feature_names_out()
        except ValueError:  # not one n-gram in any text
            counts[name] = sparse.csr_matrix((len(documents), 0), dtype=np.float64)
            terms[name] = np.array([], dtype=object)
    return Corpus(counts, terms)


def fit_router(
    texts: Sequence[str],
    request_ids: Sequence[str],
    acceptable: np.ndarray,
    labeled: np.ndarray,
    cheap_tier: str,
    *,
    seed: int,
    clock: Callable[[], float],
    words: Corpus | None = None,
) -> RouterFit | None:
    """Fit on the labeled requests; None when a class has fewer than FOLDS examples or the
    prompts have no n-gram in common."""
    rows = np.flatnonzero(labeled)
    y = acceptable[rows].astype(int)
    if min(int(y.sum()), int(y.size - y.sum())) < FOLDS:
        return None
    words = words if words is not None else corpus(texts)
    if (
        sum(
            np.diff(sparse.csc_matrix(c[rows]).indptr).max(initial=0) >= MIN_DF
            for c in words.counts.values()
        )
        == 0
    ):
        return None
    scores = np.empty(len(texts))
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    for fit_at, held_out in folds.split(np.zeros(y.size), y):
        fold_model, columns = _fit(words, rows[fit_at], y[fit_at], cheap_tier, seed)
        scores[rows[held_out]] = fold_model._score_counts(_select(words, rows[held_out], columns))
    model, columns = _fit(words, rows, y, cheap_tier, seed)
    unlabeled = np.flatnonzero(~labeled)
    scores[unlabeled] = model._score_counts(_select(words, unlabeled, columns))
    probe = [texts[i] for i in unlabeled[:PROBE]]  # inference as deployed: n-grams, TF-IDF, …
    return timed_fit(model, scores, [str(request_ids[int(i)]) for i in rows], rows, probe, clock)


def timed_fit(
    model: Scorer,
    scores: np.ndarray,
    trained_ids: list[str],
    rows: np.ndarray,
    probe,
    clock: Callable[[], float],
) -> RouterFit:
    """The fit, with the cross-fitted score of each training request (`trained_ids`, at `rows`)
    and the inference time per request measured by scoring `probe` as deployed."""
    started = clock()
    model.score(probe)
    elapsed_ms = (clock() - started) * 1000.0
    return RouterFit(
        model=model,
        scores=scores,
        cross_fitted={rid: float(scores[i]) for rid, i in zip(trained_ids, rows, strict=True)},
        inference_ms_per_request=elapsed_ms / max(len(probe), 1),
    )


def analyze(texts: Sequence[str]) -> dict[str, list[list[str]]]:
    """Each text's n-grams per analyzer (sklearn's own analyzers)."""
    return {
        name: list(map(TfidfVectorizer(**params, lowercase=True).build_analyzer(), texts))
        for name, params in ANALYZERS.items()
    }


def _identity(terms: list[str]) -> list[str]:
    return terms


def _sorted(x: sparse.spmatrix) -> sparse.csr_matrix:
    x = sparse.csr_matrix(x, dtype=np.float64)
    x.sort_indices()
    return x


def _fit(
    words: Corpus, rows: np.ndarray, y: np.ndarray, cheap_tier: str, seed: int
) -> tuple[RouterModel, dict[str, np.ndarray]]:
    """TF-IDF vocabulary (df ≥ MIN_DF, the MAX_FEATURES most frequent) and idf from `rows` only,
    then the logistic regression; returns the model and each block's corpus columns."""
    blocks, columns, matrices = [], {}, []
    for name in ANALYZERS:
        counts = words.counts[name][rows]
        df = np.diff(sparse.csc_matrix(counts).indptr)
        total = np.asarray(counts.sum(axis=0)).ravel()
        keep = np.flatnonzero(df >= MIN_DF)
        keep = np.sort(keep[np.argsort(-total[keep], kind="stable")[:MAX_FEATURES]])
        idf = np.log((1.0 + rows.size) / (1.0 + df[keep])) + 1.0
        blocks.append(Vocabulary(name, tuple(words.terms[name][keep].tolist()), idf))
        columns[name] = keep
        matrices.append(_weights(_sorted(counts[:, keep]), idf))
    classifier = LogisticRegression(C=4.0, max_iter=2000, random_state=seed)
    classifier.fit(sparse.hstack(matrices, format="csr"), y)
    model = RouterModel(
        cheap_tier,
        tuple(blocks),
        classifier.coef_[0].astype(np.float64),
        float(classifier.intercept_[0]),
    )
    return model, columns


def _select(
    words: Corpus, rows: np.ndarray, columns: dict[str, np.ndarray]
) -> list[sparse.csr_matrix]:
    return [_sorted(words.counts[name][rows][:, columns[name]]) for name in ANALYZERS]


def _weights(counts: sparse.csr_matrix, idf: np.ndarray) -> sparse.csr_matrix:
    """Sublinear tf × idf, each row scaled to unit l2 norm (sklearn's TfidfVectorizer defaults)."""
    x = counts.copy()
    x.data = (np.log(x.data) + 1.0) * idf[x.indices]
    norms = np.sqrt(
        np.bincount(np.repeat(np.arange(x.shape[0]), np.diff(x.indptr)), x.data**2, x.shape[0])
    )
    norms[norms == 0] = 1.0
    x.data /= np.repeat(norms, np.diff(x.indptr))
    return x


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))

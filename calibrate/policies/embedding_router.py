"""The learned router on a precomputed embedding: when every swept request carries a numeric
vector in `metadata.<key>` (default `embedding`), the router is a logistic regression on those
vectors (standardized with the training rows' mean and scale) instead of TF-IDF n-grams.

Same contract as `router.py` (and the same `RouterFit`): honest cross-fitted scores for the labeled requests (`FOLDS`
stratified folds, seeded), the full model's scores for the rest, plain-JSON export (mean, scale,
coefficients; never pickle) scored by numpy, and the cross-fitted score of each training request
kept in the file so `evaluate` reproduces the sweep.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from calibrate.errors import DataError
from calibrate.policies.router import RouterFit, timed_fit

FOLDS = 5
PROBE = 500


@dataclass(frozen=True)
class EmbeddingRouter:
    """P(cheaper acceptable) = σ(((x − mean) / scale)·coef + intercept)."""

    cheap_tier: str
    key: str
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def score(self, x: np.ndarray) -> np.ndarray:
        z = ((x - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


def embedding_matrix(vectors: Sequence[list[float] | None], key: str) -> np.ndarray | None:
    """The vectors as an (n × d) matrix; None when no request has one. Raises when only some
    requests have one or the lengths differ (a router on part of the traffic would be unfair)."""
    present = [v for v in vectors if v is not None]
    if not present:
        return None
    sizes = {len(v) for v in present}
    missing = len(vectors) - len(present)
    if missing or len(sizes) != 1:
        what = f"{missing} requests lack it" if missing else f"lengths {sorted(sizes)[:5]} differ"
        raise DataError(
            f"metadata.{key}: {what}, so the embedding router cannot score every request",
            hint=f"Give every request an embedding of the same length in metadata.{key}, or "
            "pass --embedding-key with a key no request has to use the TF-IDF router.",
        )
    x = np.asarray(present, dtype=np.float64)
    if not np.isfinite(x).all():
        raise DataError(f"metadata.{key}: some values are not finite numbers", hint="Fix them.")
    return x


def fit_embedding_router(
    x: np.ndarray,
    request_ids: Sequence[str],
    acceptable: np.ndarray,
    labeled: np.ndarray,
    cheap_tier: str,
    key: str,
    *,
    seed: int,
    clock: Callable[[], float],
) -> RouterFit | None:
    """Cross-fitted on the labeled requests; None when a class has fewer than FOLDS examples."""
    rows = np.flatnonzero(labeled)
    y = acceptable[rows].astype(int)
    if min(int(y.sum()), int(y.size - y.sum())) < FOLDS:
        return None
    scores = np.empty(x.shape[0])
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    for fit_at, held_out in folds.split(np.zeros(y.size), y):
        fold = _fit(x[rows[fit_at]], y[fit_at], cheap_tier, key, seed)
        scores[rows[held_out]] = fold.score(x[rows[held_out]])
    model = _fit(x[rows], y, cheap_tier, key, seed)
    unlabeled = np.flatnonzero(~labeled)
    scores[unlabeled] = model.score(x[unlabeled])
    probe = x[unlabeled[:PROBE]]
    return timed_fit(model, scores, [str(request_ids[int(i)]) for i in rows], rows, probe, clock)


def _fit(x: np.ndarray, y: np.ndarray, cheap_tier: str, key: str, seed: int) -> EmbeddingRouter:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    classifier = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
    classifier.fit((x - mean) / scale, y)
    return EmbeddingRouter(
        cheap_tier,
        key,
        mean,
        scale,
        classifier.coef_[0].astype(np.float64),
        float(classifier.intercept_[0]),
    )


class EmbeddingFile(BaseModel):
    """router.json for an embedding router (`kind: embedding`; unknown keys rejected)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    kind: Literal["embedding"]
    cheap_tier: str
    key: str
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    cross_fitted: dict[str, float]

    def model(self) -> EmbeddingRouter:
        return EmbeddingRouter(
            self.cheap_tier,
            self.key,
            np.asarray(self.mean),
            np.asarray(self.scale),
            np.asarray(self.coef),
            self.intercept,
        )


def embedding_json(m: EmbeddingRouter, cross_fitted: dict[str, float]) -> str:
    """The deployable model as deterministic JSON text (floats round-trip exactly)."""
    data = {
        "version": 1,
        "kind": "embedding",
        "cheap_tier": m.cheap_tier,
        "key": m.key,
        "mean": m.mean.tolist(),
        "scale": m.scale.tolist(),
        "coef": m.coef.tolist(),
        "intercept": m.intercept,
        "cross_fitted": dict(sorted(cross_fitted.items())),
    }
    return json.dumps(data, separators=(",", ":")) + "\n"

"""router.json: the learned router's deployable file, for both kinds (TF-IDF n-grams from
`router.py`, a precomputed embedding from `embedding_router.py`), written by the sweep and read by
`evaluate`; plain JSON (never pickle), floats round-tripping exactly, unknown keys rejected.

Besides the model, the file keeps the cross-fitted score of every training request, so that
`rescore` gives a training request the score the sweep used and any other request the model's;
`stored_scores` does so for requests in the store (`evaluate`, `monitor`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from calibrate.errors import ConfigError, DataError
from calibrate.policies.embedding_router import (
    EmbeddingFile,
    EmbeddingRouter,
    embedding_json,
    embedding_matrix,
)
from calibrate.policies.router import ANALYZERS, RouterFit, RouterModel, Vocabulary
from calibrate.store import Store


class _RouterFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    cheap_tier: str
    analyzers: dict[str, dict[str, list[str] | list[float]]]
    coef: list[float]
    intercept: float
    cross_fitted: dict[str, float]


def router_json(fit: RouterFit) -> str:
    """The deployable model as deterministic JSON text (floats round-trip exactly)."""
    if isinstance(fit.model, EmbeddingRouter):
        return embedding_json(fit.model, fit.cross_fitted)
    m = fit.model
    assert isinstance(m, RouterModel), "a fitted router is an n-gram or an embedding router"
    data = {
        "version": 1,
        "cheap_tier": m.cheap_tier,
        "analyzers": {
            b.analyzer: {"terms": list(b.terms), "idf": b.idf.tolist()} for b in m.blocks
        },
        "coef": m.coef.tolist(),
        "intercept": m.intercept,
        "cross_fitted": dict(sorted(fit.cross_fitted.items())),
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"


def load_router(path: Path) -> tuple[RouterModel | EmbeddingRouter, dict[str, float]]:
    """The model (n-gram or embedding) and the cross-fitted scores of its training requests from a
    router JSON file."""
    hint = "Use the classifier file `calibrate sweep` wrote next to routing.yaml."
    try:
        text = path.read_bytes()
        if b'"kind":"embedding"' in text:
            embedded = EmbeddingFile.model_validate_json(text)
            return embedded.model(), embedded.cross_fitted
        data = _RouterFile.model_validate_json(text)
    except OSError as err:
        raise ConfigError(f"cannot read classifier file {path}: {err.strerror}", hint=hint) from err
    except ValidationError as err:
        raise ConfigError(
            f"{path}: not a router model ({err.error_count()} errors)", hint=hint
        ) from err
    blocks = tuple(
        Vocabulary(name, tuple(map(str, d["terms"])), np.asarray(d["idf"], dtype=np.float64))
        for name, d in data.analyzers.items()
    )
    model = RouterModel(data.cheap_tier, blocks, np.asarray(data.coef), data.intercept)
    if any(b.analyzer not in ANALYZERS for b in blocks) or len(model.coef) != sum(
        len(b.terms) for b in blocks
    ):
        raise ConfigError(f"{path}: analyzers and coefficients do not match", hint=hint)
    return model, data.cross_fitted


def rescore(
    model: RouterModel | EmbeddingRouter,
    cross_fitted: dict[str, float],
    request_ids: Sequence[str],
    features: Sequence[str] | np.ndarray,
) -> np.ndarray:
    """Scores as the sweep had them: a training request keeps its cross-fitted score, any other
    request is scored by the deployed model (`features`: prompt texts, or the embedding matrix
    for an embedding router)."""
    if isinstance(model, EmbeddingRouter):
        assert isinstance(features, np.ndarray), "an embedding router scores an embedding matrix"
        scores = model.score(features)
    else:
        assert not isinstance(features, np.ndarray), "an n-gram router scores prompt texts"
        scores = model.score(features)
    for i, rid in enumerate(request_ids):
        held_out = cross_fitted.get(str(rid))
        if held_out is not None and not math.isnan(held_out):
            scores[i] = held_out
    return scores


def stored_scores(store: Store, path: Path, request_ids: Sequence[str]) -> np.ndarray:
    """The router in `path` applied to stored requests (their prompts, or their embeddings for an
    embedding router), training requests keeping their cross-fitted score."""
    model, cross_fitted = load_router(path)
    if isinstance(model, EmbeddingRouter):
        features: Sequence[str] | np.ndarray | None = embedding_matrix(
            store.embeddings(request_ids, model.key), model.key
        )
        if features is None:
            raise DataError(
                f"the router needs metadata.{model.key} and no request has it",
                hint="Use logs carrying the embedding the router was trained on.",
            )
    else:
        features = store.prompt_texts(request_ids)
    return rescore(model, cross_fitted, request_ids, features)

"""How well each tier's confidence predicts an acceptable answer, and its mapping to P(correct).

Per tier, on the requests labeled for that tier that carry a confidence: AUROC, ECE with equal-mass
bins, Brier score (both only when the confidences are probabilities in [0, 1]), a reliability curve,
and a monotone mapping from raw confidence to P(correct): isotonic regression with at least
`ISOTONIC_MIN_LABELS` labels, Platt scaling (logistic regression on the score) below that. The
mapping is for reading thresholds ("escalate below 0.734 ≈ P(correct) < 0.81"); certification never
uses it, since it only depends on the order of the confidences. When the labels come from a
stratified sample, each labeled request counts with its weight 1/π (AUROC, ECE, Brier, the curve
and the fitted mapping alike).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from calibrate.records.labels import ACCEPTABLE
from calibrate.records.outcomes import Outcomes

ISOTONIC_MIN_LABELS = 1000
RELIABILITY_BINS = 10


@dataclass(frozen=True)
class TierCalibration:
    """Diagnostics of one tier's confidence. `mapping_x`/`mapping_y` are the P(correct) curve
    (interpolated linearly); empty when it could not be fitted (fewer than two classes)."""

    tier: str
    labeled: int
    auroc: float | None
    ece: float | None
    brier: float | None
    method: str | None
    curve: tuple[tuple[float, float, int], ...]
    mapping_x: tuple[float, ...]
    mapping_y: tuple[float, ...]

    def p_correct(self, confidence: float) -> float | None:
        """Calibrated P(acceptable answer) at a raw confidence value."""
        if not self.mapping_x:
            return None
        return float(np.interp(confidence, self.mapping_x, self.mapping_y))


def tier_calibrations(
    outcomes: Outcomes, weights: np.ndarray | None = None
) -> tuple[TierCalibration, ...]:
    """Each tier's diagnostics (`weights`: per request, 1/inclusion probability of its labels)."""
    return tuple(_tier(outcomes, j, weights) for j in range(len(outcomes.tiers)))


def _tier(outcomes: Outcomes, j: int, weights: np.ndarray | None) -> TierCalibration:
    conf, label = outcomes.confidence[:, j], outcomes.label[:, j]
    usable = ~np.isnan(conf) & ~np.isnan(label)
    c, y = conf[usable], (label[usable] >= ACCEPTABLE).astype(np.float64)
    w = None if weights is None else weights[usable]
    tier = outcomes.tiers[j]
    if c.size < 2 or y.min() == y.max():
        return TierCalibration(tier, int(c.size), None, None, None, None, (), (), ())
    probability = bool(c.min() >= 0.0 and c.max() <= 1.0)
    method, xs, ys = _fit_mapping(c, y, w) if np.ptp(c) > 0 else (None, (), ())
    return TierCalibration(
        tier=tier,
        labeled=int(c.size),
        auroc=float(roc_auc_score(y, c, sample_weight=w)),
        ece=equal_mass_ece(c, y, weights=w) if probability else None,
        brier=_average((c - y) ** 2, w) if probability else None,
        method=method,
        curve=reliability_curve(c, y, weights=w),
        mapping_x=xs,
        mapping_y=ys,
    )


def _average(values: np.ndarray, weights: np.ndarray | None) -> float:
    return float(values.mean() if weights is None else np.average(values, weights=weights))


def _equal_mass_bins(c: np.ndarray, bins: int) -> list[np.ndarray]:
    order = np.argsort(c, kind="stable")
    return [part for part in np.array_split(order, min(bins, c.size)) if part.size]


def equal_mass_ece(
    c: np.ndarray, y: np.ndarray, bins: int = RELIABILITY_BINS, weights: np.ndarray | None = None
) -> float:
    """Σ_b (n_b / n)·|accuracy_b − mean confidence_b| over equal-count bins (with weights: each
    bin's share of the weight and its weighted means)."""
    total = c.size if weights is None else float(weights.sum())
    return float(
        sum(
            _mass(part, weights)
            / total
            * abs(_part_mean(y, part, weights) - _part_mean(c, part, weights))
            for part in _equal_mass_bins(c, bins)
        )
    )


def reliability_curve(
    c: np.ndarray, y: np.ndarray, bins: int = RELIABILITY_BINS, weights: np.ndarray | None = None
) -> tuple:
    """(mean confidence, share acceptable, count) per equal-count bin (weighted means)."""
    return tuple(
        (_part_mean(c, part, weights), _part_mean(y, part, weights), int(part.size))
        for part in _equal_mass_bins(c, bins)
    )


def _mass(part: np.ndarray, weights: np.ndarray | None) -> float:
    return part.size if weights is None else float(weights[part].sum())


def _part_mean(x: np.ndarray, part: np.ndarray, weights: np.ndarray | None) -> float:
    return _average(x[part], None if weights is None else weights[part])


def _fit_mapping(
    c: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None
) -> tuple[str, tuple, tuple]:
    grid = np.unique(np.quantile(c, np.linspace(0, 1, 101)))
    if c.size >= ISOTONIC_MIN_LABELS:
        isotonic = IsotonicRegression(out_of_bounds="clip", increasing="auto")
        model = isotonic.fit(c, y, sample_weight=weights)
        return "isotonic", tuple(grid.tolist()), tuple(model.predict(grid).tolist())
    model = LogisticRegression(C=1e6).fit(c.reshape(-1, 1), y, sample_weight=weights)
    return (
        "platt",
        tuple(grid.tolist()),
        tuple(model.predict_proba(grid.reshape(-1, 1))[:, 1].tolist()),
    )

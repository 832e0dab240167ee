"""How well each tier's confidence predicts an acceptable answer, and its mapping to P(correct).

Per tier, on the requests labeled for that tier that carry a confidence: AUROC, ECE with equal-mass
bins, Brier score (both only when the confidences are probabilities in [0, 1]), a reliability curve,
and a monotone mapping from raw confidence to P(correct): isotonic regression with at least
`ISOTONIC_MIN_LABELS` labels, Platt scaling (logistic regression on the score) below that. The
mapping is for reading thresholds ("escalate below 0.734 ≈ P(correct) < 0.81"); certification never
uses it, since it only depends on the order of the confidences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from calibrate.assignment import ACCEPTABLE
from calibrate.records import Outcomes

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


def tier_calibrations(outcomes: Outcomes) -> tuple[TierCalibration, ...]:
    return tuple(_tier(outcomes, j) for j in range(len(outcomes.tiers)))


def _tier(outcomes: Outcomes, j: int) -> TierCalibration:
    conf, label = outcomes.confidence[:, j], outcomes.label[:, j]
    usable = ~np.isnan(conf) & ~np.isnan(label)
    c, y = conf[usable], (label[usable] >= ACCEPTABLE).astype(np.float64)
    tier = outcomes.tiers[j]
    if c.size < 2 or y.min() == y.max():
        return TierCalibration(tier, int(c.size), None, None, None, None, (), (), ())
    probability = bool(c.min() >= 0.0 and c.max() <= 1.0)
    method, xs, ys = _fit_mapping(c, y) if np.ptp(c) > 0 else (None, (), ())
    return TierCalibration(
        tier=tier,
        labeled=int(c.size),
        auroc=float(roc_auc_score(y, c)),
        ece=equal_mass_ece(c, y) if probability else None,
        brier=float(np.mean((c - y) ** 2)) if probability else None,
        method=method,
        curve=reliability_curve(c, y),
        mapping_x=xs,
        mapping_y=ys,
    )


def _equal_mass_bins(c: np.ndarray, bins: int) -> list[np.ndarray]:
    order = np.argsort(c, kind="stable")
    return [part for part in np.array_split(order, min(bins, c.size)) if part.size]


def equal_mass_ece(c: np.ndarray, y: np.ndarray, bins: int = RELIABILITY_BINS) -> float:
    """Σ_b (n_b / n)·|accuracy_b − mean confidence_b| over equal-mass bins."""
    return float(
        sum(
            part.size / c.size * abs(y[part].mean() - c[part].mean())
            for part in _equal_mass_bins(c, bins)
        )
    )


def reliability_curve(c: np.ndarray, y: np.ndarray, bins: int = RELIABILITY_BINS) -> tuple:
    """(mean confidence, share acceptable, count) per equal-mass bin."""
    return tuple(
        (float(c[part].mean()), float(y[part].mean()), int(part.size))
        for part in _equal_mass_bins(c, bins)
    )


def _fit_mapping(c: np.ndarray, y: np.ndarray) -> tuple[str, tuple, tuple]:
    grid = np.unique(np.quantile(c, np.linspace(0, 1, 101)))
    if c.size >= ISOTONIC_MIN_LABELS:
        model = IsotonicRegression(out_of_bounds="clip", increasing="auto").fit(c, y)
        return "isotonic", tuple(grid.tolist()), tuple(model.predict(grid).tolist())
    model = LogisticRegression(C=1e6).fit(c.reshape(-1, 1), y)
    return (
        "platt",
        tuple(grid.tolist()),
        tuple(model.predict_proba(grid.reshape(-1, 1))[:, 1].tolist()),
    )

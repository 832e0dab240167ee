"""Label weights from a stratified labelling sample (`calibrate sample`) in the sweep.

Quality is a Hájek estimate Σ w·score / Σ w over the labeled requests. The exact engine divides a
sum of scores by the labeled count, so `hajek_scaled` hands it scores multiplied by w·n/Σw: the
same ratio, with no change to the engine (and bit-identical outcomes when every weight is 1).
Certification's binomial test needs an i.i.d. sample, so `uniform_only` keeps the labels of the
uniform stratum (and of requests labeled outside any sample) and drops the targeted strata.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from calibrate.records.outcomes import Outcomes

UNIFORM_STRATA = ("uniform", "")


def hajek_scaled(outcomes: Outcomes, weights: np.ndarray) -> Outcomes:
    """Outcomes whose labels, averaged plainly over the labeled rows, give the Hájek means."""
    labeled = outcomes.labeled
    total = float(weights[labeled].sum())
    if total <= 0:
        return outcomes
    factor = weights * (labeled.sum() / total)
    return dataclasses.replace(outcomes, label=outcomes.label * factor[:, None])


def uniform_only(outcomes: Outcomes, strata: np.ndarray) -> Outcomes:
    """Outcomes with the labels of targeted strata removed (NaN), for certification."""
    keep = np.isin(strata.astype(str), UNIFORM_STRATA)
    label = np.where(keep[:, None], outcomes.label, np.nan)
    return dataclasses.replace(outcomes, label=label)

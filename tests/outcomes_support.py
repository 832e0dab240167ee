"""Random outcome tables with ties, missing confidences and unlabeled rows, for exactness tests."""

from __future__ import annotations

import numpy as np

from calibrate.records.outcomes import Outcomes


def random_outcomes(seed: int, n: int, k: int) -> Outcomes:
    rng = np.random.default_rng(seed)
    conf = rng.choice(np.round(rng.uniform(0, 1, 12), 2), size=(n, k))  # heavy ties
    conf[rng.uniform(size=(n, k)) < 0.1] = np.nan  # missing confidences
    label = rng.choice([0.0, 0.5, 1.0], size=(n, k))
    label[rng.uniform(size=n) < 0.4] = np.nan  # unlabeled rows
    return Outcomes(
        tiers=tuple(f"t{j}" for j in range(k)),
        request_ids=np.array([f"r{i}" for i in range(n)], dtype=object),
        timestamp_s=np.zeros(n),
        region=np.array(["r"] * n, dtype=object),
        app=np.array(["a"] * n, dtype=object),
        intent=np.array([None] * n, dtype=object),
        input_tokens=rng.choice([10, 20, 40, 80, 500], size=n),
        confidence=conf,
        cost_usd=np.round(rng.uniform(1e-6, 1e-3, size=(n, k)) * (1 + np.arange(k)), 9),
        latency_ms=np.round(rng.gamma(2.0, 300.0, size=(n, k)), 1),
        label=label,
        incomplete=0,
    )

"""Certification on the quality drop: the betting p-value is valid, the drop test keeps the
guarantee on hard populations, and it certifies policies the regret test cannot.

The light tests run in the normal suite; `pytest -m slow` runs the full table of
`bench/certify_sim.py` (1,000 draws per population and label count) and checks every cell.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from test_certify import draw, outcomes_from, sweep_outcomes

from calibrate.demo.certify_sim import POPULATIONS, edge, rescue, simulate
from calibrate.policies.families import Family, threshold_grid
from calibrate.stats import bounded_mean
from calibrate.sweep.certify import Budget, certify_family, labels_to_certify_drop
from calibrate.sweep.selection import Objective

pytestmark = pytest.mark.e2e  # certification simulations: not in `make test-fast`

EPS, DELTA = 0.02, 0.10


def allowed(draws: int, delta: float = DELTA) -> float:
    return delta + 3 * math.sqrt(delta * (1 - delta) / draws)


def test_betting_p_values_are_valid_at_the_null_boundary() -> None:
    """4,000 samples of 200 values whose mean is exactly the null mean (mostly the midpoint, some
    at either end, as certification's x = (d + 1)/2 are): the test rejects at most α of them."""
    rng = np.random.default_rng(3)
    alpha, m = 0.05, 0.51
    u = rng.uniform(size=(4000, 200))
    x = np.where(u < 0.06, 1.0, np.where(u < 0.10, 0.0, 0.5))  # mean 0.5 + 0.02/2 = 0.51
    rate = bounded_mean.rejects(x, m, alpha).mean()
    assert rate <= allowed(4000, alpha), rate
    # and below the boundary it has power
    assert bounded_mean.rejects(np.where(u < 0.002, 1.0, 0.5), m, alpha).mean() > 0.5


def test_wealth_grows_with_the_null_mean_so_the_upper_bound_is_the_least_rejected_mean() -> None:
    rng = np.random.default_rng(4)
    x = np.clip(rng.normal(0.5, 0.1, size=500), 0, 1)
    means = np.linspace(0.3, 0.99, 70)
    wealth = bounded_mean.max_log_wealth(np.broadcast_to(x, (means.size, x.size)), means, 0.05)
    assert (np.diff(wealth) >= -1e-12).all()
    bound = bounded_mean.upper_bound(x, 0.05)
    assert x.mean() < bound < x.mean() + 0.05
    assert bounded_mean.rejects(x, bound, 0.05)[0]
    assert not bounded_mean.rejects(x, bound - 1e-4, 0.05)[0]
    assert bounded_mean.lower_bound(x, 0.05) < x.mean()


def cheapest_certified_tau(o, test: str) -> float:
    grid = threshold_grid(o.confidence[:, 0], 200)
    cert = certify_family(o, Family("cascade", (0, 1), (grid,)), Budget(EPS, DELTA, test))
    a = cert.options[-1][0] if cert.options else grid.size
    return math.inf if a == grid.size else float(grid[a])


def test_on_nested_answers_the_drop_test_is_close_to_the_exact_binomial() -> None:
    """When premium is right wherever the cheap tier is, regret = drop and the binomial test is
    exact; the betting test pays little for being general (median threshold within 0.1)."""
    rng = np.random.default_rng(7)
    regret, drop = [], []
    for _ in range(20):
        o = draw(rng, 1000)
        regret.append(cheapest_certified_tau(o, "regret"))
        drop.append(cheapest_certified_tau(o, "drop"))
    assert abs(np.median(drop) - np.median(regret)) < 0.1


def test_too_few_labels_certify_only_escalating_everything() -> None:
    """40 labels: the regret test certifies nothing; escalating everything adds exactly 0 to the
    drop, so the drop test certifies that option (always-premium) and nothing cheaper."""
    o = draw(np.random.default_rng(1), 40)
    grid = threshold_grid(o.confidence[:, 0], 200)
    family = Family("cascade", (0, 1), (grid,))
    assert certify_family(o, family, Budget(EPS, DELTA, "regret")).options == ()
    assert certify_family(o, family, Budget(EPS, DELTA, "drop")).options == ((grid.size,),)


def test_drop_test_keeps_the_guarantee_on_hard_populations() -> None:
    """drop ≈ ε (a plateau of policies just above ε) and many rescue events: over 150 draws of
    300 labels, some certified policy's true drop exceeds ε in at most δ (+ slack) of them."""
    for make, seed in ((edge, 11), (rescue, 12)):
        pop = make(np.random.default_rng(seed), EPS)
        rows = {r.test: r for r in simulate(pop, 300, 150, EPS, DELTA, seed)}
        assert rows["drop"].violation_rate <= allowed(150), (pop.name, rows["drop"])
        assert rows["regret"].violation_rate <= allowed(150), (pop.name, rows["regret"])


def test_drop_test_certifies_savings_the_regret_test_cannot() -> None:
    """Many rescue events (premium wrong where the cheap tier is right): with 1,000 labels the
    regret test keeps under a third of the achievable savings, the drop test most of them."""
    pop = rescue(np.random.default_rng(12), EPS)
    rows = {r.test: r for r in simulate(pop, 1000, 25, EPS, DELTA, 5)}
    assert rows["regret"].savings_share < 0.35, rows["regret"]
    assert rows["drop"].savings_share > 0.6, rows["drop"]
    assert rows["drop"].violation_rate <= allowed(25)


def test_the_sweep_certifies_on_the_drop_when_asked(tmp_path: Path) -> None:
    """Through ingest and the sweep: on a rescue population the drop test's certified pick saves
    far more than the regret test's, its certificate records the test, and its drop on 200,000
    held-out requests is within ε."""
    rng = np.random.default_rng(21)

    def population(n: int):
        c = rng.uniform(size=n)
        cheap_ok = rng.uniform(size=n) < 0.62 + 0.36 * c
        premium_ok = rng.uniform(size=n) < 0.85
        return c, cheap_ok, premium_ok

    o = outcomes_from(*population(1500))
    by_test = {}
    for test in ("regret", "drop"):
        (tmp_path / test).mkdir()
        objective = Objective(max_quality_drop=EPS, certify_on=test)
        by_test[test] = sweep_outcomes(tmp_path / test, o, objective)
    old, new = by_test["regret"].decision.recommendation, by_test["drop"].decision.recommendation
    assert new.certified and not new.fallback
    assert new.row.metrics.savings_vs_premium > old.row.metrics.savings_vs_premium + 0.2
    assert "betting test on the paired drop" in new.reason
    stage = by_test["drop"].report.evidence.stages[0]
    assert stage.test == "drop" and stage.drop_ucb is not None and stage.drop_ucb <= EPS
    assert stage.p_value is not None and stage.p_value <= stage.delta
    assert new.row.policy.strategy == "cascade"
    c, cheap_ok, premium_ok = population(200_000)
    (tau,) = new.row.policy.thresholds
    held_out_drop = (premium_ok.astype(float) - np.where(c >= tau, cheap_ok, premium_ok)).mean()
    assert held_out_drop <= EPS


def test_labels_to_certify_drop_is_none_at_the_limit_and_enough_below_it() -> None:
    rng = np.random.default_rng(8)
    d = rng.choice([-1.0, 0.0, 1.0], p=[0.05, 0.9, 0.05], size=2000)  # mean drop 0
    assert labels_to_certify_drop(np.full(100, EPS), Budget(EPS, DELTA, "drop")) is None
    n = labels_to_certify_drop(d, Budget(EPS, DELTA, "drop"))
    assert n is not None and 50 < n < 5000
    x = (1 + np.resize(d[np.random.default_rng(17).permutation(d.size)], n)) / 2
    assert bounded_mean.rejects(x, (1 + EPS) / 2, DELTA)[0]


def test_unknown_certification_test_is_a_config_error(tmp_path: Path) -> None:
    from calibrate.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        sweep_outcomes(tmp_path, draw(np.random.default_rng(2), 200), Objective(certify_on="x"))
    assert "--certify-on" in exc.value.message


@pytest.mark.slow
@pytest.mark.parametrize("name", list(POPULATIONS))
def test_full_simulation_validity(name: str) -> None:
    """bench/certify_sim.py's table: 1,000 draws at 300, 1,000 and 3,000 labels; the drop test's
    violation rate stays within δ + 3·√(δ(1−δ)/T) in every cell."""
    pop = POPULATIONS[name](np.random.default_rng(1000 + list(POPULATIONS).index(name)), EPS)
    for n in (300, 1000, 3000):
        rows = {r.test: r for r in simulate(pop, n, 1000, EPS, DELTA, seed=17 * n)}
        assert rows["drop"].violation_rate <= allowed(1000), (name, n, rows["drop"])

"""The sweep's preflight: what the stored logs can support, and whether the requests a sweep would
evaluate are a fair picture of the traffic (`calibrate check`, and the bias guard of `sweep`).

The bias rule. A request's *production path* is the tiers production called on it (`small`: kept
on small; `small>large`: escalated to large). A uniform sample of the traffic, whatever production
did, has the traffic's mix of production paths. The evaluable set (requests with every tier's
answer; for quality, those also labelled for every tier, weighted by their labels' 1/π) is
**selected by production routing** when its mix of production paths differs from the traffic's by
more than `MAX_MIX_DISTANCE` in total-variation distance *and* by more than sampling noise
(χ² goodness of fit on the Kish effective size, p < `BIAS_P_VALUE`). Production logs alone fail it:
the premium tier's answer exists only where production escalated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace

from scipy.stats import chi2

from calibrate.config.tiers import TiersConfig
from calibrate.errors import DataError
from calibrate.store import Store
from calibrate.store.check_sql import CheckData, CoverageCell, TierUse
from calibrate.sweep.certify import Budget, labels_to_certify
from calibrate.sweep.confidence_scale import FIX, judge_scales
from calibrate.sweep.selection import Objective

MAX_MIX_DISTANCE = 0.05
"""Largest total-variation distance between the evaluable set's mix of production paths and the
traffic's: any mean metric of a policy (cost, quality on a 0–1 scale) moves at most this much."""

BIAS_P_VALUE = 0.001
"""A mix difference counts only when a uniform sample would show it less often than this."""

DEFAULT_REPLAY_SAMPLE = 1000

BIASED_WARNING = "BIASED ESTIMATE"
"""How the warning of a sweep allowed on a biased set begins (the report puts it first)."""


@dataclass(frozen=True)
class PathCoverage:
    """One production path: its requests and the (weighted) count of them in the evaluable set."""

    path: str
    requests: int
    in_set: float


@dataclass(frozen=True)
class SetBias:
    """Whether one evaluable set is a fair sample of the traffic by production path."""

    name: str
    size: int
    traffic: int
    mix_distance: float
    p_value: float
    paths: tuple[PathCoverage, ...]

    @property
    def biased(self) -> bool:
        return self.mix_distance > MAX_MIX_DISTANCE and self.p_value < BIAS_P_VALUE

    def explain(self, cheapest: str) -> str:
        """How the set was selected: its size against the traffic, coverage per path."""
        share = self.size / self.traffic if self.traffic else 0.0
        covers = "; ".join(
            f"{_coverage(p.in_set, p.requests):.0%} of the {p.requests} requests "
            f"{describe_path(p.path, cheapest)}"
            for p in self.paths
        )
        return (
            f"the {self.size} requests with {self.name} ({share:.1%} of {self.traffic}) are "
            f"selected by production routing: they cover {covers} (mix distance "
            f"{self.mix_distance:.2f} > {MAX_MIX_DISTANCE})"
        )


@dataclass(frozen=True)
class Segment:
    """Coverage of one app or region value."""

    column: str
    value: str
    requests: int
    complete: int
    labeled: int


@dataclass(frozen=True)
class Step:
    """A command to run next, and why."""

    command: str
    why: str


@dataclass(frozen=True)
class CheckReport:
    """What the logs can support for a list of tiers, and what to run next."""

    tiers: tuple[str, ...]
    requests: int
    uses: tuple[TierUse, ...]
    labels: tuple[tuple[str, str, int], ...]
    found_tiers: tuple[tuple[str, int], ...]
    complete: SetBias
    labeled: SetBias
    segments: tuple[Segment, ...]
    disagreement: float | None
    disagreement_basis: str
    labels_needed: int | None
    max_quality_drop: float
    confidence_level: float
    problems: tuple[str, ...] = ()
    steps: tuple[Step, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        for name in ("complete", "labeled"):
            data[name]["biased"] = getattr(self, name).biased
        return data


def describe_path(path: str, cheapest: str) -> str:
    if not path:
        return "production called no tier on"
    if path == cheapest:
        return f"production kept on {cheapest}"
    called = path.split(">")
    if called[0] == cheapest:
        through = f" through {', '.join(called[1:-1])}" if len(called) > 2 else ""
        return f"production escalated{through} to {called[-1]}"
    return f"production sent to {path}"


def _coverage(in_set: float, requests: int) -> float:
    return in_set / requests if requests else 0.0


def set_bias(name: str, cells: Iterable[CoverageCell], labeled: bool) -> SetBias:
    """Compare the evaluable set's mix of production paths with the traffic's (module docstring)."""
    requests: dict[str, int] = defaultdict(int)
    weight: dict[str, float] = defaultdict(float)
    weight_sq, size = 0.0, 0
    for c in cells:
        requests[c.path] += c.requests
        weight[c.path] += c.weight_sum if labeled else c.complete
        weight_sq += c.weight_sq_sum if labeled else c.complete
        size += c.labeled if labeled else c.complete
    traffic, total = sum(requests.values()), sum(weight.values())
    paths = tuple(PathCoverage(p, requests[p], weight[p]) for p in sorted(requests))
    if not total or len(paths) < 2:
        return SetBias(name, size, traffic, 0.0, 1.0, paths)
    set_share = [p.in_set / total for p in paths]
    traffic_share = [p.requests / traffic for p in paths]
    distance = 0.5 * sum(abs(a - b) for a, b in zip(set_share, traffic_share, strict=True))
    n_eff = total * total / weight_sq
    stat = n_eff * sum((a - b) ** 2 / b for a, b in zip(set_share, traffic_share, strict=True))
    return SetBias(name, size, traffic, distance, float(chi2.sf(stat, len(paths) - 1)), paths)


def replay_size(bias: SetBias, at_least: int) -> int:
    """The uniform replay sample (drawn from all traffic) after which the expected mix of the
    requests with every tier's answer is within half the allowed distance, and at least
    `at_least` (capped at the traffic)."""
    traffic = bias.traffic
    shares = [p.requests / traffic for p in bias.paths] if traffic else []

    def distance(n: int) -> float:
        rate = n / traffic
        got = [p.in_set + (p.requests - p.in_set) * rate for p in bias.paths]
        total = sum(got)
        if not total:
            return 1.0
        return 0.5 * sum(abs(g / total - s) for g, s in zip(got, shares, strict=True))

    low, high = 0, traffic
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if distance(mid) <= MAX_MIX_DISTANCE / 2 else (mid, high)
    return min(traffic, max(high, at_least))


def _disagreement(cells: Sequence[CoverageCell]) -> tuple[float | None, str]:
    """The cheapest tier's regret rate against premium on the labelled requests (weighted), else
    the share of requests where the two answers differ as text (an upper bound, label-free)."""
    weight = sum(c.weight_sum for c in cells)
    if weight:
        return sum(c.regret_weight for c in cells) / weight, "labels"
    compared = sum(c.compared for c in cells)
    if compared:
        return sum(c.differ for c in cells) / compared, "answer text"
    return None, "none"


def certificate_labels(rate: float | None, objective: Objective) -> int | None:
    """Uniform labels a certificate at the objective's ε and δ needs for a policy whose regret
    rate is min(rate, ε/2) (ε/2 when the rate is unknown): the order of magnitude to plan for."""
    eps = objective.max_quality_drop
    target = eps / 2 if rate is None else min(rate, eps / 2)
    return labels_to_certify(target, Budget(eps, objective.delta, "regret"))


def _segments(cells: Sequence[CoverageCell]) -> tuple[Segment, ...]:
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for c in cells:
        for key in (("app", c.app), ("region", c.region)):
            t = totals[key]
            t[0], t[1], t[2] = t[0] + c.requests, t[1] + c.complete, t[2] + c.labeled
    return tuple(Segment(col, val, *totals[(col, val)]) for col, val in sorted(totals))


def check_store(
    store: Store,
    tiers: Sequence[str],
    objective: Objective | None = None,
    *,
    db: str | None = None,
    tiers_file: str = "tiers.yaml",
    logs: str = "LOGS…",
    tiers_config: TiersConfig | None = None,
) -> CheckReport:
    """What the stored logs can support for `tiers` (cheapest first), the reasons a sweep would
    not be trustworthy, and the next commands (naming `db`, the store file, None for a store in
    memory, and `tiers_file`; `tiers_config`: the tiers' declared confidence scales, for the
    one-scale-per-tier check)."""
    objective = objective or Objective()
    report = _judge(store.check_data(tiers, texts=True), objective, (db, tiers_file, logs))
    if tiers_config is None:
        return report
    mixed = judge_scales(store.confidence_ranges(tiers), tiers_config).problems
    if not mixed:
        return report
    fix = Step(f"edit {tiers_file}", FIX)
    return replace(report, problems=(*mixed, *report.problems), steps=(fix, *report.steps))


def preflight(
    store: Store, tiers: Sequence[str], objective: Objective, built: bool = False
) -> str | None:
    """The sweep's entry guard. Raise when no request has every tier's answer (naming the tiers
    the logs hold), or when the evaluable set is selected by production routing unless
    `objective.allow_biased`; then return the warning the report leads with (None: no bias).
    `built`: the store's outcome relation is built for `tiers`, so its base is read instead of
    the attempts."""
    cells = store.preflight_cells(tiers) if built else store.check_data(tiers, texts=False).cells
    complete = set_bias("every tier's answer", cells, labeled=False)
    if not complete.size:
        found = ", ".join(f"{t} ({n} requests)" for t, n in store.found_tiers()) or "none"
        raise DataError(
            f"no request has an attempt from every tier of tiers.yaml ({', '.join(tiers)}); "
            f"tiers in the logs: {found}",
            hint="Check the tier names in tiers.yaml against the logs, ingest logs with an attempt "
            "for each tier, or `calibrate replay` a sample; `calibrate check` shows the coverage.",
        )
    labeled = set_bias("every tier's answer and labels", cells, labeled=True)
    bias = complete if complete.biased else labeled if labeled.biased else None
    if bias is None:
        return None
    what = bias.explain(tiers[0])
    if objective.allow_biased:
        return (
            f"{BIASED_WARNING} (--allow-biased): {what}. Nothing is certified; the numbers describe "
            "that subset, not the traffic."
        )
    n = replay_size(complete, min(DEFAULT_REPLAY_SAMPLE, complete.traffic))
    raise DataError(
        f"no recommendation from a biased set: {what}",
        hint=f"Replay a uniform sample of the traffic (`calibrate replay --tiers tiers.yaml --db "
        f"FILE --sample {n}`), label it (`calibrate sample`), and sweep again; `calibrate check` "
        "shows the coverage. --allow-biased sweeps anyway, uncertified.",
    )


def _judge(
    data: CheckData, objective: Objective, names: tuple[str | None, str, str]
) -> CheckReport:
    cells = data.cells
    complete = set_bias("every tier's answer", cells, labeled=False)
    labeled = set_bias("every tier's answer and labels", cells, labeled=True)
    rate, basis = _disagreement(cells)
    needed = certificate_labels(rate, objective)
    report = CheckReport(
        tiers=data.tiers,
        requests=sum(c.requests for c in cells),
        uses=data.uses,
        labels=data.labels,
        found_tiers=data.found_tiers,
        complete=complete,
        labeled=labeled,
        segments=_segments(cells),
        disagreement=rate,
        disagreement_basis=basis,
        labels_needed=needed,
        max_quality_drop=objective.max_quality_drop,
        confidence_level=objective.confidence_level,
    )
    problems, steps = _verdict(report, *names)
    return CheckReport(**{**report.__dict__, "problems": problems, "steps": steps})


def _verdict(
    r: CheckReport, db: str | None, tiers_file: str, logs: str
) -> tuple[tuple[str, ...], tuple[Step, ...]]:
    """(problems that make a sweep untrustworthy, next commands with numbers)."""
    tiers, cheapest = r.tiers, r.tiers[0] if r.tiers else ""
    store = f" --db {db}" if db else " --db .calibrate/calibrate.duckdb"
    steps: list[Step] = []
    if not db and r.requests:
        steps.append(Step(f"calibrate ingest {logs}{store}", "keep these logs in a store file"))
    problems: list[str] = []
    needed = r.labels_needed or 0
    if not r.requests:
        problems.append("the store holds no requests")
        return tuple(problems), (Step(f"calibrate ingest {logs}{store}", "load your logs"),)
    if not r.complete.size:
        found = ", ".join(f"{t} ({n})" for t, n in r.found_tiers) or "none"
        problems.append(
            f"no request has an attempt from every tier ({', '.join(tiers)}); tiers found in "
            f"the logs: {found}"
        )
    elif r.complete.biased:
        problems.append(r.complete.explain(cheapest))
    if not r.complete.size or r.complete.biased:
        n = replay_size(r.complete, max(needed, min(DEFAULT_REPLAY_SAMPLE, r.requests)))
        steps.append(
            Step(
                f"calibrate replay --tiers {tiers_file}{store} --sample {n}",
                "shadow-call every tier on a uniform sample of the traffic (an unbiased set)",
            )
        )
    have = r.labeled.size
    if r.complete.size and not r.complete.biased:
        if not have:
            problems.append("no request with every tier's answer is labelled for every tier")
        elif r.labeled.biased:
            problems.append(r.labeled.explain(cheapest))
    if not have or r.labeled.biased or have < needed:
        n = max(needed - (0 if r.labeled.biased else have), 1)
        steps.append(
            Step(
                f"calibrate sample --tiers {tiers_file}{store} --n {n} --out label-queue.csv",
                f"a labelling queue; then `calibrate labels import`, or `calibrate labels judge "
                f"--judge {tiers[-1]} --sample {n}`"
                + (f" (a certificate needs about {needed} labels)" if needed else ""),
            )
        )
    if not problems:
        steps.append(
            Step(f"calibrate sweep --tiers {tiers_file}{store} --out calibrate-out", "the sweep")
        )
    return tuple(problems), tuple(steps)

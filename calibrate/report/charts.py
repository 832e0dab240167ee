"""Static SVG charts of a sweep, made with matplotlib's object API (no pyplot, no global state).

Each chart is a function from the sweep result to SVG text. Output is deterministic: a fixed hash
salt for element ids, no date in the metadata, text kept as text, and data in a stable order, so
the same inputs give byte-identical files.
"""

from __future__ import annotations

import io
import re
from typing import Any

import matplotlib
import numpy as np
import polars as pl
from matplotlib.figure import Figure
from matplotlib.typing import RcKeyType

from calibrate.policies.frontier import frontier_rows
from calibrate.sweep.stage import SweepResult

_STYLE: dict[RcKeyType, Any] = {
    "svg.hashsalt": "calibrate",
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_COLORS = {
    "cascade": "#0969da",
    "hybrid": "#1a7f37",
    "length": "#bf8700",
    "rules": "#bc4c00",
    "router": "#8250df",
    "consensus": "#24292f",
    "always": "#57606a",
}
_FEW_POINTS = ("always", "consensus")  # drawn large and as vectors; the others are point clouds
_SERIES = ("#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#57606a")


def chart_svgs(result: SweepResult) -> dict[str, str]:
    """File name → SVG text, in the order the report shows them."""
    charts = {
        "frontier.svg": frontier_chart(result),
        "thresholds.svg": threshold_chart(result),
        "escalation_by_region.svg": timeline_chart(result),
        "reliability.svg": reliability_chart(result),
        "segments.svg": segment_chart(result),
    }
    return {name: svg for name, svg in charts.items() if svg is not None}


def _render(fig: Figure) -> str:
    with matplotlib.rc_context(_STYLE):
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buf.getvalue()
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)  # RDF boilerplate
    return text[text.index("<svg") :]


def _figure(width: float = 7.0, height: float = 4.0) -> Figure:
    with matplotlib.rc_context(_STYLE):
        return Figure(figsize=(width, height), layout="constrained")


def frontier_chart(result: SweepResult) -> str:
    """Cost per 1k requests against quality for every policy of every strategy, one colour each;
    baselines and the pick marked."""
    fig = _figure()
    with matplotlib.rc_context(_STYLE):
        ax = fig.add_subplot()
        f = result.report.frontier
        for strategy, color in _COLORS.items():
            part = f.filter(pl.col("strategy") == strategy)
            if part.is_empty():
                continue
            few = strategy in _FEW_POINTS
            ax.scatter(
                part["cost_per_1k_requests_usd"].to_list(),
                part["quality"].to_list(),
                s=36 if few else 6,
                marker="D" if strategy == "consensus" else "o",
                color=color,
                alpha=1.0 if few else 0.35,
                rasterized=not few,
                label=strategy,
            )
        for row in frontier_rows(f.filter(pl.col("strategy") == "always")):
            ax.annotate(
                row.policy.tiers_text,
                (row.metrics.cost_per_1k_requests_usd, row.metrics.quality),
                xytext=(4, 4),
                textcoords="offset points",
            )
        rec = result.decision.recommendation.row.metrics
        ax.scatter(
            [rec.cost_per_1k_requests_usd],
            [rec.quality],
            s=160,
            marker="*",
            color="#cf222e",
            zorder=5,
            label="recommended",
        )
        ax.set_xscale("log")
        ax.set_xlabel("cost per 1k requests (USD, log scale)")
        ax.set_ylabel("quality (labeled requests)")
        ax.set_title("Cost–quality frontier of every policy")
        ax.legend(loc="lower right", frameon=False)
    return _render(fig)


def threshold_chart(result: SweepResult) -> str | None:
    """Quality and escalation rate against the threshold, one panel per cheap tier → premium."""
    names = result.decision.tiers.names
    premium = names[-1]
    f = result.report.frontier.filter(
        (pl.col("strategy") == "cascade")
        & (pl.col("tiers").list.len() == 2)
        & (pl.col("tiers").list.last() == premium)
    )
    cheap = pl.col("tiers").list.first()
    cheap_tiers = [t for t in names[:-1] if f.filter(cheap == t).height]
    if not cheap_tiers:
        return None
    fig = _figure(3.4 * len(cheap_tiers), 3.2)
    with matplotlib.rc_context(_STYLE):
        axes = fig.subplots(1, len(cheap_tiers), squeeze=False)[0]
        for ax, tier in zip(axes, cheap_tiers, strict=True):
            part = f.with_columns(tau=pl.col("thresholds").list.first())
            part = part.filter((cheap == tier) & pl.col("tau").is_finite()).sort("tau")
            ax.plot(
                part["tau"].to_list(), part["quality"].to_list(), color=_SERIES[0], label="quality"
            )
            ax.set_xlabel(f"{tier}: escalate below")
            ax.set_ylabel("quality", color=_SERIES[0])
            twin = ax.twinx()
            twin.plot(
                part["tau"].to_list(),
                part["escalation_rate"].to_list(),
                color=_SERIES[1],
                label="escalation",
            )
            twin.set_ylabel("escalation rate", color=_SERIES[1])
            ax.set_title(f"{tier} → {premium}")
    return _render(fig)


def timeline_chart(result: SweepResult) -> str | None:
    """Weekly escalation rate of the recommended policy per region."""
    t = result.report.timeline
    if t.is_empty():
        return None
    fig = _figure(7.0, 3.2)
    with matplotlib.rc_context(_STYLE):
        ax = fig.add_subplot()
        for color, region in zip(_SERIES * 4, sorted(set(t["region"].to_list())), strict=False):
            part = t.filter(pl.col("region") == region).sort("week")
            rate = (part["escalated"] / part["requests"]).to_list()
            ax.plot(
                [str(w) for w in part["week"].to_list()],
                rate,
                marker="o",
                ms=3,
                color=color,
                label=region or "(none)",
            )
        ax.set_ylabel("escalation rate")
        ax.set_title("Escalation rate of the recommendation per region, by week")
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
        ax.legend(frameon=False, fontsize=7)
    return _render(fig)


def reliability_chart(result: SweepResult) -> str | None:
    """Share of acceptable answers against mean confidence, per tier (equal-mass bins)."""
    tiers = [c for c in result.report.calibration if c.curve]
    if not tiers:
        return None
    fig = _figure(4.2, 4.0)
    with matplotlib.rc_context(_STYLE):
        ax = fig.add_subplot()
        ax.plot(
            [0, 1],
            [0, 1],
            color="#8c959f",
            linestyle="--",
            linewidth=1,
            label="perfectly calibrated",
        )
        for color, c in zip(_SERIES, tiers, strict=False):
            ax.plot(
                [p[0] for p in c.curve],
                [p[1] for p in c.curve],
                marker="o",
                ms=3,
                color=color,
                label=c.tier,
            )
        ax.set_xlabel("mean confidence (bin)")
        ax.set_ylabel("share acceptable")
        ax.set_title("Reliability per tier")
        ax.legend(frameon=False)
    return _render(fig)


def segment_chart(result: SweepResult) -> str | None:
    """Per intent: quality of the requests the recommendation keeps below premium, next to the
    premium tier's quality on the same requests."""
    rows = [
        s
        for s in result.report.failure_modes.segments
        if s.column == "intent" and s.kept_quality is not None and s.kept_labeled >= 5
    ]
    if not rows:
        return None
    rows.sort(key=lambda s: (-(s.kept_gap or 0.0), s.value))
    fig = _figure(7.0, 0.3 * len(rows) + 1.2)
    with matplotlib.rc_context(_STYLE):
        ax = fig.add_subplot()
        y = list(range(len(rows)))
        # both qualities are known on these rows (kept requests); as floats for matplotlib
        ax.barh(
            [v + 0.2 for v in y],
            np.array([s.kept_premium_quality for s in rows], dtype=np.float64),
            height=0.4,
            color="#8c959f",
            label="premium on the same requests",
        )
        ax.barh(
            [v - 0.2 for v in y],
            np.array([s.kept_quality for s in rows], dtype=np.float64),
            height=0.4,
            color=_SERIES[0],
            label="kept (served below premium)",
        )
        ax.set_yticks(y, [f"{s.value} (n={s.kept_labeled})" for s in rows])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("quality of kept labeled requests")
        ax.set_title("Kept-request quality per intent")
        ax.legend(
            frameon=False, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2
        )
    return _render(fig)

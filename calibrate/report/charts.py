"""Static SVG charts of a sweep, made with matplotlib's object API (no pyplot, no global state).

Each chart is drawn from plain inputs (frames, tiers, the target) into a `Drawn`: the figure, its
alt text and a caption that says what to read from it (not the title again). `chart_files` pulls
those inputs out of the sweep result and renders each to SVG, with the alt text as the SVG's
`<title>` and `aria-label`. Output is deterministic: a fixed hash salt for element ids, no date in
the metadata, text kept as text, and data in a stable order, so the same inputs give
byte-identical files. Artists the reader (and the tests) look for carry a `gid`, written as the
SVG element's id: `frontier-target`, `frontier-certified`, `thresholds-chosen`, `timeline-outage-…`.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import matplotlib
import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Annotation, Text
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, PercentFormatter
from matplotlib.typing import RcKeyType

from calibrate.stats.regional_health import Outage
from calibrate.stats.reliability import TierCalibration
from calibrate.sweep.failure_modes import SegmentRow
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
_INK, _TARGET = "#1b1f24", "#cf222e"
_WEEK = timedelta(days=7)
# where a point's label may go, in points from the point (tried in this order)
_LABEL_OFFSETS = (
    (-45, 28),
    (30, -30),
    (-45, -30),
    (30, 28),
    (0, 40),
    (0, -40),
    (-80, 8),
    (50, 0),
    (-80, -12),
    (50, 40),
    (-80, 40),
    (50, -45),
)


@dataclass(frozen=True)
class Target:
    """The quality the objective allows: always-`premium`'s quality minus `max_drop`."""

    premium: str
    max_drop: float
    confidence_level: float


@dataclass(frozen=True)
class Drawn:
    """A drawn chart: the figure, its alt text and its caption."""

    fig: Figure
    alt: str
    caption: str


@dataclass(frozen=True)
class ChartFile:
    """A chart as written: SVG text (alt text inside as `<title>`), alt text and caption."""

    svg: str
    alt: str
    caption: str


def chart_files(result: SweepResult) -> dict[str, ChartFile]:
    """File name → chart, in the order the report shows them."""
    decision, report = result.decision, result.report
    target = Target(
        decision.premium, report.evidence.max_regret, decision.objective.confidence_level
    )
    health = report.endpoint_health
    window = decision.window
    drawn = {
        "frontier.svg": frontier_figure(report.frontier, target),
        "thresholds.svg": threshold_figure(report.frontier, decision.tiers.names, target),
        "escalation_by_region.svg": timeline_figure(
            report.timeline,
            _day(window.start),
            _day(window.end),
            health.health.outages if health else (),
        ),
        "reliability.svg": reliability_figure(report.calibration),
        "segments.svg": segment_figure(report.failure_modes.segments),
    }
    return {name: chart_file(d) for name, d in drawn.items() if d is not None}


def _day(timestamp: str | None) -> date | None:
    return None if timestamp is None else date.fromisoformat(timestamp[:10])


def chart_file(drawn: Drawn) -> ChartFile:
    """The drawn chart as SVG text, its alt text as the `<svg>`'s `<title>` and `aria-label`."""
    with matplotlib.rc_context(_STYLE):
        buf = io.StringIO()
        drawn.fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buf.getvalue()
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)  # RDF boilerplate
    text = text[text.index("<svg") :]
    label = html.escape(drawn.alt)
    text = text.replace("<svg ", f'<svg role="img" aria-label="{label}" ', 1)
    end = text.index(">") + 1
    svg = f"{text[:end]}\n <title>{label}</title>{text[end:]}"
    return ChartFile(svg, drawn.alt, drawn.caption)


def _figure(width: float = 7.0, height: float = 4.0) -> Figure:
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # a renderer to measure text with (savefig still writes SVG)
    return fig


def _usd_tick(x: float, _pos: object = None) -> str:
    """$0.002, $0.10, $1, $2.50: whole dollars bare, two decimals otherwise (more below a cent)."""
    if x >= 1 and float(x).is_integer():
        return f"${x:,.0f}"
    decimals = 2 if x >= 0.01 else -math.floor(math.log10(x))
    return f"${x:,.{decimals}f}"


def _quality_target(frontier: pl.DataFrame, target: Target) -> tuple[float, float] | None:
    """(always-premium's quality, the target quality), or None without the premium baseline."""
    premium = frontier.filter(
        (pl.col("strategy") == "always") & (pl.col("tiers").list.first() == target.premium)
    )
    if premium.is_empty():
        return None
    quality = float(premium["quality"][0])
    return quality, quality - target.max_drop


def frontier_figure(frontier: pl.DataFrame, target: Target) -> Drawn:
    """Cost per 1k requests against quality for every policy of every strategy, one colour each;
    certified policies outlined, the target quality as a line, baselines and the pick labelled
    off the data."""
    fig = _figure(7.0, 4.6)
    cost, quality = "cost_per_1k_requests_usd", "quality"
    with matplotlib.rc_context(_STYLE):
        ax = fig.add_subplot()
        handles: list[Any] = []
        for strategy, color in _COLORS.items():
            part = frontier.filter(pl.col("strategy") == strategy)
            if part.is_empty():
                continue
            few = strategy in _FEW_POINTS
            ax.scatter(
                part[cost].to_list(),
                part[quality].to_list(),
                s=36 if few else 6,
                marker="D" if strategy == "consensus" else "o",
                color=color,
                alpha=1.0 if few else 0.3,
                rasterized=not few,
                zorder=4 if few else 1,
            )
            handles.append(_key(strategy, color, "D" if strategy == "consensus" else "o"))
        certified = frontier.filter("certified")
        if not certified.is_empty():
            ax.scatter(
                certified[cost].to_list(),
                certified[quality].to_list(),
                s=14,
                c=[_COLORS.get(s, _INK) for s in certified["strategy"].to_list()],
                edgecolors=_INK,
                linewidths=0.6,
                label="certified",
                gid="frontier-certified",
                zorder=3,
            )
            handles.append(
                Line2D(
                    [],
                    [],
                    ls="",
                    marker="o",
                    mfc="white",
                    mec=_INK,
                    mew=0.8,
                    label=f"certified ({certified.height:,}, dark outline)",
                )
            )
        limit = _quality_target(frontier, target)
        if limit is not None:
            ax.axhline(limit[1], color=_TARGET, ls="--", lw=1, gid="frontier-target", zorder=2)
            handles.append(
                Line2D(
                    [],
                    [],
                    color=_TARGET,
                    ls="--",
                    lw=1,
                    label=f"target {limit[1]:.3f} (always-{target.premium} − {target.max_drop:g})",
                )
            )
        rec = frontier.filter("recommended")
        if not rec.is_empty():
            ax.scatter(
                rec[cost].to_list(),
                rec[quality].to_list(),
                s=160,
                marker="*",
                color=_TARGET,
                edgecolors="white",
                linewidths=0.6,
                zorder=5,
                gid="frontier-recommended",
            )
            handles.append(_key("recommended", _TARGET, "*", 11))
        _dollar_axis(ax)
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.15 * (high - low))  # room above the frontier for labels
        ax.set_xlabel("cost per 1k requests (USD, log scale)")
        ax.set_ylabel("quality (mean label on labeled requests, 0–1)")
        ax.set_title("Cost–quality frontier of every policy")
        fig.legend(handles=handles, loc="outside lower center", ncol=4, frameon=False, fontsize=8)
        _label_points(fig, ax, _frontier_labels(frontier), _points(frontier, cost, quality, limit))
    return Drawn(fig, _frontier_alt(frontier, limit), _frontier_caption(frontier, target, limit))


def _key(label: str, color: str, marker: str, size: float = 6) -> Line2D:
    return Line2D([], [], ls="", marker=marker, color=color, ms=size, label=label)


def _dollar_axis(ax: Axes) -> None:
    """Log-scale dollars with ticks at 1, 2 and 5 of each decade, labelled in $."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))
    ax.xaxis.set_major_formatter(FuncFormatter(_usd_tick))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _frontier_labels(frontier: pl.DataFrame) -> list[tuple[str, float, float]]:
    """The points named on the chart: the recommendation, then each baseline."""
    cost, quality = "cost_per_1k_requests_usd", "quality"
    out = [
        (f"recommended\n{_usd_tick(r[cost])}, {r[quality]:.3f}", r[cost], r[quality])
        for r in frontier.filter("recommended").iter_rows(named=True)
    ]
    for r in frontier.filter(pl.col("strategy") == "always").iter_rows(named=True):
        out.append((f"always-{r['tiers'][0]}", r[cost], r[quality]))
    return out


def _points(
    frontier: pl.DataFrame, cost: str, quality: str, limit: tuple[float, float] | None
) -> np.ndarray:
    """Every plotted point (data coordinates), and samples along the target line."""
    xy = frontier.select(cost, quality).to_numpy().astype(np.float64)
    if limit is not None and frontier.height:
        line_x = np.geomspace(xy[:, 0].min(), xy[:, 0].max(), 60)
        xy = np.vstack([xy, np.column_stack([line_x, np.full(line_x.size, limit[1])])])
    return xy


def _label_points(
    fig: Figure, ax: Axes, labels: Sequence[tuple[str, float, float]], data: np.ndarray
) -> None:
    """Name each point with a text joined to it by a thin line, placed where it covers the fewest
    plotted points, no other label and stays inside the axes (the first best offset wins)."""
    fig.draw_without_rendering()  # settles the layout, so display positions are final
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)  # attached by `_figure`
    renderer = canvas.get_renderer()
    shown = ax.transData.transform(data)
    frame = ax.get_window_extent(renderer)
    taken: list[Any] = []
    for text, x, y in labels:
        best: tuple[float, Annotation, Any] | None = None
        for dx, dy in _LABEL_OFFSETS:
            ann = ax.annotate(
                text,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize=8,
                ha="right" if dx < 0 else "left" if dx > 0 else "center",
                va="bottom" if dy > 0 else "top",
                arrowprops={"arrowstyle": "-", "color": "#6e7781", "lw": 0.7, "shrinkB": 3},
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85},
                zorder=6,
            )
            ann.set_in_layout(False)
            ann.get_window_extent(renderer)  # positions the text and its line
            box = Text.get_window_extent(ann, renderer).padded(2)
            covered = int(
                ((shown >= (box.x0, box.y0)) & (shown <= (box.x1, box.y1))).all(axis=1).sum()
            )
            clash = sum(box.overlaps(t) for t in taken)
            outside = not (frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1))
            score = covered + 1000 * (clash + outside)
            if best is None or score < best[0]:
                if best is not None:
                    best[1].remove()
                best = (score, ann, box)
            else:
                ann.remove()
        assert best is not None
        best[1].set_gid("frontier-label")
        taken.append(best[2])


def _frontier_alt(frontier: pl.DataFrame, limit: tuple[float, float] | None) -> str:
    cost = frontier["cost_per_1k_requests_usd"].to_numpy()
    quality = frontier["quality"].to_numpy()
    line = "" if limit is None else f"; a dashed target line at quality {limit[1]:.3f}"
    return (
        f"Scatter chart of {frontier.height:,} routing policies: cost per 1k requests from "
        f"{_usd_tick(cost.min())} to {_usd_tick(cost.max())} (log scale) against quality from "
        f"{quality.min():.3f} to {quality.max():.3f}{line}; certified policies outlined; the "
        "recommendation as a star."
    )


def _frontier_caption(
    frontier: pl.DataFrame, target: Target, limit: tuple[float, float] | None
) -> str:
    certified = int(frontier["certified"].sum())
    text = "Each dot is one policy, evaluated exactly on the same requests. " + (
        f"{certified:,} of {frontier.height:,} are certified (outlined): their quality drop "
        f"against always-{target.premium} is at most {target.max_drop:g} at "
        f"{target.confidence_level:.0%} confidence."
        if certified
        else f"None of the {frontier.height:,} is certified."
    )
    if limit is not None:
        text += (
            f" The dashed line is the target {limit[1]:.3f}: always-{target.premium}'s "
            f"{limit[0]:.3f} minus {target.max_drop:g}."
        )
    rec = frontier.filter("recommended")
    if not rec.is_empty() and limit is not None:
        rec_cost = float(rec["cost_per_1k_requests_usd"][0])
        cheaper = frontier.filter(
            ~pl.col("certified")
            & (pl.col("cost_per_1k_requests_usd") < rec_cost)
            & (pl.col("quality") >= limit[1])
        ).height
        if cheaper:
            text += (
                f" {cheaper:,} uncertified policies above the line are cheaper than the "
                "recommendation (star): they meet the target on this sample, but their drop is "
                "not bounded with enough confidence."
            )
    return text


def threshold_figure(frontier: pl.DataFrame, tiers: Sequence[str], target: Target) -> Drawn | None:
    """Quality and escalation rate against the threshold, one panel per cheap tier → premium, all
    on one quality scale; the chosen threshold marked when the recommendation is such a cascade."""
    premium = tiers[-1]
    f = frontier.filter(
        (pl.col("strategy") == "cascade")
        & (pl.col("tiers").list.len() == 2)
        & (pl.col("tiers").list.last() == premium)
    ).with_columns(tau=pl.col("thresholds").list.first())
    cheap = pl.col("tiers").list.first()
    cheap_tiers = [t for t in tiers[:-1] if f.filter(cheap == t).height]
    if not cheap_tiers:
        return None
    chosen = f.filter("recommended")
    limit = _quality_target(frontier, target)
    fig = _figure(3.6 * len(cheap_tiers), 3.6)
    with matplotlib.rc_context(_STYLE):
        axes = fig.subplots(1, len(cheap_tiers), squeeze=False, sharey=True)[0]
        for i, (ax, tier) in enumerate(zip(axes, cheap_tiers, strict=True)):
            part = f.filter((cheap == tier) & pl.col("tau").is_finite()).sort("tau")
            mark = chosen.filter(cheap == tier)
            _threshold_panel(ax, tier, premium, part, mark, limit, last=i == len(axes) - 1)
        axes[0].set_ylabel("quality (mean label, 0–1)", color=_SERIES[0])
        fig.legend(
            handles=_threshold_keys(limit, chosen),
            loc="outside lower center",
            ncol=4,
            frameon=False,
            fontsize=8,
        )
    return Drawn(
        fig,
        f"Line charts, one per cheap tier ({', '.join(cheap_tiers)}) cascading to {premium}: "
        "quality (left axis, one scale for all) and escalation rate (right axis, percent) "
        "against the confidence threshold below which a request escalates.",
        _threshold_caption(chosen, limit, target),
    )


def _threshold_panel(
    ax: Axes,
    tier: str,
    premium: str,
    part: pl.DataFrame,
    mark: pl.DataFrame,
    limit: tuple[float, float] | None,
    *,
    last: bool,
) -> None:
    ax.plot(part["tau"].to_list(), part["quality"].to_list(), color=_SERIES[0])
    ax.set_xlabel(f"threshold on {tier}'s confidence")
    ax.set_title(f"{tier} → {premium}")
    if limit is not None:
        ax.axhline(limit[1], color=_TARGET, ls="--", lw=1, gid="thresholds-target")
    twin = ax.twinx()
    twin.plot(part["tau"].to_list(), part["escalation_rate"].to_list(), color=_SERIES[1])
    twin.set_ylim(0, 1.02)
    twin.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    twin.spines["right"].set_visible(True)
    if last:
        twin.set_ylabel("escalation rate (% of requests)", color=_SERIES[1])
    if not mark.is_empty():
        tau = float(mark["tau"][0])
        ax.axvline(tau, color=_INK, ls=":", lw=1, gid="thresholds-chosen")
        ax.scatter([tau], mark["quality"].to_list(), marker="*", s=90, color=_SERIES[0], zorder=4)
        twin.scatter(
            [tau], mark["escalation_rate"].to_list(), marker="*", s=90, color=_SERIES[1], zorder=4
        )


def _threshold_keys(limit: tuple[float, float] | None, chosen: pl.DataFrame) -> list[Any]:
    keys: list[Any] = [
        Line2D([], [], color=_SERIES[0], label="quality"),
        Line2D([], [], color=_SERIES[1], label="escalation rate"),
    ]
    if limit is not None:
        keys.append(Line2D([], [], color=_TARGET, ls="--", lw=1, label=f"target {limit[1]:.3f}"))
    if not chosen.is_empty():
        tau = float(chosen["tau"][0])
        keys.append(Line2D([], [], color=_INK, ls=":", lw=1, label=f"chosen threshold {tau:.4g}"))
    return keys


def _threshold_caption(
    chosen: pl.DataFrame, limit: tuple[float, float] | None, target: Target
) -> str:
    text = (
        "Raising the threshold escalates more requests to the premium tier: quality rises and so "
        "does cost."
    )
    if not chosen.is_empty():
        row = chosen.row(0, named=True)
        text += (
            f" At the chosen threshold {row['tau']:.4g} ({row['tiers'][0]} → {row['tiers'][1]}, "
            f"dotted line) quality is {row['quality']:.3f} and {row['escalation_rate']:.1%} of "
            "requests escalate."
        )
    else:
        text += " The recommendation is not a two-tier cascade, so no threshold is marked."
    if limit is not None:
        text += (
            f" Dashed: the target {limit[1]:.3f} (always-{target.premium} − {target.max_drop:g})."
        )
    return text


def timeline_figure(
    timeline: pl.DataFrame, start: date | None, end: date | None, outages: Sequence[Outage]
) -> Drawn | None:
    """Weekly escalation rate of the recommended policy per region (full weeks only; a partial
    first or last week is left out), with the regional outage windows shaded."""
    if timeline.is_empty():
        return None
    days = _days_covered(timeline, start, end)
    full = days.filter(pl.col("days") == 7)
    partial = days.filter(pl.col("days") < 7)
    shown = timeline.join(full if full.height else days, on="week", how="semi")
    regions = sorted(set(timeline["region"].to_list()))
    colors = {r: c for r, c in zip(regions, _SERIES * 4, strict=False)}
    fig = _figure(7.0, 3.8)
    with matplotlib.rc_context(_STYLE):
        ax = fig.add_subplot()
        for region in regions:
            part = shown.filter(pl.col("region") == region).sort("week")
            ax.plot(
                date2num([_mid_week(w) for w in part["week"].to_list()]),
                (part["escalated"] / part["requests"]).to_list(),
                marker="o",
                ms=3,
                color=colors[region],
                label=region or "(none)",
            )
        for o in outages:
            ax.axvspan(
                date2num(datetime.combine(o.start, time())),
                date2num(datetime.combine(o.end + timedelta(days=1), time())),
                color=colors.get(o.region, _INK),
                alpha=0.15,
                lw=0,
                gid=f"timeline-outage-{o.region}-{o.start.isoformat()}",
                label=f"outage {o.region} {o.start:%b %d}–{o.end:%b %d}",
            )
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        dates = AutoDateLocator()
        ax.xaxis.set_major_locator(dates)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(dates))
        ax.set_ylabel("escalated (% of the region's requests)")
        ax.set_xlabel("week (Monday to Sunday, UTC; point at mid-week)")
        ax.set_title("Escalation rate of the recommendation per region, by week")
        fig.legend(loc="outside lower center", ncol=3, frameon=False, fontsize=8)
    return Drawn(
        fig,
        f"Line chart: weekly share of requests escalated by the recommendation, in percent, for "
        f"regions {', '.join(r or '(none)' for r in regions)}"
        + (f"; {len(outages)} outage window(s) shaded." if outages else "."),
        _timeline_caption(timeline, partial, full.height == 0, outages),
    )


def _days_covered(timeline: pl.DataFrame, start: date | None, end: date | None) -> pl.DataFrame:
    """Per week (Monday): the days of it inside the data window [start, end] (7 when unknown)."""
    weeks = sorted(set(timeline["week"].to_list()))
    first, last = start or weeks[0], end or weeks[-1] + _WEEK - timedelta(days=1)
    covered = [
        (min(w + _WEEK, last + timedelta(days=1)) - max(w, first)).days if start and end else 7
        for w in weeks
    ]
    return pl.DataFrame({"week": weeks, "days": covered}, schema_overrides={"week": pl.Date})


def _mid_week(week: date) -> datetime:
    return datetime.combine(week, time()) + timedelta(days=3, hours=12)


def _timeline_caption(
    timeline: pl.DataFrame, partial: pl.DataFrame, all_partial: bool, outages: Sequence[Outage]
) -> str:
    overall = int(timeline["escalated"].sum()) / max(int(timeline["requests"].sum()), 1)
    text = (
        f"Share of each region's requests the recommendation escalates (sends past its first "
        f"tier), per calendar week; {overall:.1%} over the whole window."
    )
    if partial.height and not all_partial:
        left_out = ", ".join(
            f"{w.isoformat()} ({d} day{'s' if d != 1 else ''} of data)"
            for w, d in partial.iter_rows()
        )
        text += (
            f" Partial weeks are left out, as their few requests would show as spikes: {left_out}."
        )
    elif all_partial:
        text += " The data window holds no full week: every point is a partial week."
    for o in outages:
        moves = ", ".join(f"{a} → {b}" for a, b, _ in o.fallbacks)
        text += (
            f" Shaded: outage in {o.region} from {o.start.isoformat()} to {o.end.isoformat()}, "
            f"production fell back {moves} for {o.share:.1%} of its requests."
        )
    return text


def reliability_figure(calibration: Sequence[TierCalibration]) -> Drawn | None:
    """Share of acceptable answers against mean confidence, per tier (equal-mass bins)."""
    tiers = [c for c in calibration if c.curve]
    if not tiers:
        return None
    fig = _figure(4.2, 4.0)
    with matplotlib.rc_context(_STYLE):
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color="#8c959f", ls="--", lw=1, label="perfectly calibrated")
        for color, c in zip(_SERIES, tiers, strict=False):
            ax.plot(
                [p[0] for p in c.curve],
                [p[1] for p in c.curve],
                marker="o",
                ms=3,
                color=color,
                label=c.tier,
            )
        ax.set_xlabel("mean confidence in the bin (0–1)")
        ax.set_ylabel("share of answers acceptable (0–1)")
        ax.set_title("Reliability per tier")
        ax.legend(frameon=False)
    ece = "; ".join(f"{c.tier} {c.ece:.3f}" for c in tiers if c.ece is not None)
    return Drawn(
        fig,
        f"Line chart: share of acceptable answers against mean confidence, per tier "
        f"({', '.join(c.tier for c in tiers)}), with the diagonal of perfect calibration.",
        "Each point is a bin of labeled requests with equal counts. Below the diagonal a tier is "
        "over-confident (its answers are acceptable less often than its confidence says), above "
        "it under-confident. Thresholds act on the raw confidence, so for routing what matters is "
        "that the curve rises; the table gives P(correct) at the chosen threshold."
        + (f" Expected calibration error (mean distance to the diagonal): {ece}." if ece else ""),
    )


def segment_figure(segments: Sequence[SegmentRow]) -> Drawn | None:
    """Per intent: quality of the requests the recommendation keeps below premium, next to the
    premium tier's quality on the same requests."""
    rows = [
        s
        for s in segments
        if s.column == "intent" and s.kept_quality is not None and s.kept_labeled >= 5
    ]
    if not rows:
        return None
    rows.sort(key=lambda s: (-(s.kept_gap or 0.0), s.value))
    fig = _figure(7.0, 0.3 * len(rows) + 1.4)
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
        ax.set_xlabel("quality of kept labeled requests (mean label, 0–1)")
        ax.set_title("Kept-request quality per intent")
        ax.legend(
            frameon=False, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2
        )
    worst = rows[0]
    return Drawn(
        fig,
        f"Bar chart, {len(rows)} intents: quality of the requests the recommendation keeps below "
        "premium, next to the premium tier's quality on the same requests.",
        "Intents with at least 5 kept labeled requests, largest gap first; n counts the kept "
        f"labeled requests. Largest gap: {worst.value}, {worst.kept_quality:.3f} kept against "
        f"{worst.kept_premium_quality:.3f} for premium on the same {worst.kept_labeled} requests.",
    )

"""The sweep report's SVG charts, made with matplotlib's object API (no pyplot, no global state).

Each chart is drawn from plain inputs (frames, tiers, the target) into a `Drawn`: the figure, its
alt text and a caption that says what to read from it (not the title again). `chart_files` pulls
those inputs out of the sweep result and writes each as SVG (`chart_render`); the frontier has its
own module (`frontier_chart`). Marked elements: `thresholds-chosen`, `thresholds-target`,
`timeline-outage-<region>-<start>` (and the frontier's `frontier-target`, `frontier-certified`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

import matplotlib
import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.lines import Line2D
from matplotlib.ticker import PercentFormatter

from calibrate.report.chart_layout import fit
from calibrate.report.chart_render import (
    INK,
    SERIES,
    STYLE,
    TARGET_COLOR,
    ChartFile,
    Drawn,
    Target,
    chart_file,
    figure,
    quality_target,
)
from calibrate.report.frontier_chart import frontier_figure
from calibrate.stats.regional_health import Outage
from calibrate.stats.reliability import TierCalibration
from calibrate.sweep.failure_modes import SegmentRow
from calibrate.sweep.stage import SweepResult

_WEEK = timedelta(days=7)


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
    limit = quality_target(frontier, target)
    fig = figure(3.6 * len(cheap_tiers), 3.6)
    with matplotlib.rc_context(STYLE):
        axes = fig.subplots(1, len(cheap_tiers), squeeze=False, sharey=True)[0]
        for i, (ax, tier) in enumerate(zip(axes, cheap_tiers, strict=True)):
            part = f.filter((cheap == tier) & pl.col("tau").is_finite()).sort("tau")
            mark = chosen.filter(cheap == tier)
            _threshold_panel(ax, tier, premium, part, mark, limit, last=i == len(axes) - 1)
        axes[0].set_ylabel("quality (mean label, 0–1)", color=SERIES[0])
        legend = fig.legend(
            handles=_threshold_keys(limit, chosen),
            loc="outside lower center",
            ncol=4,
            frameon=False,
            fontsize=8,
        )
        fit(fig, legend)
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
    ax.plot(part["tau"].to_list(), part["quality"].to_list(), color=SERIES[0])
    ax.set_xlabel(f"threshold on {tier}'s confidence")
    ax.set_title(f"{tier} → {premium}")
    if limit is not None:
        ax.axhline(limit[1], color=TARGET_COLOR, ls="--", lw=1, gid="thresholds-target")
    twin = ax.twinx()
    twin.plot(part["tau"].to_list(), part["escalation_rate"].to_list(), color=SERIES[1])
    twin.set_ylim(0, 1.02)
    twin.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    twin.spines["right"].set_visible(True)
    if last:
        twin.set_ylabel("escalation rate (% of requests)", color=SERIES[1])
    if not mark.is_empty():
        tau = float(mark["tau"][0])
        ax.axvline(tau, color=INK, ls=":", lw=1, gid="thresholds-chosen")
        ax.scatter([tau], mark["quality"].to_list(), marker="*", s=90, color=SERIES[0], zorder=4)
        twin.scatter(
            [tau], mark["escalation_rate"].to_list(), marker="*", s=90, color=SERIES[1], zorder=4
        )


def _threshold_keys(limit: tuple[float, float] | None, chosen: pl.DataFrame) -> list[Any]:
    keys: list[Any] = [
        Line2D([], [], color=SERIES[0], label="quality"),
        Line2D([], [], color=SERIES[1], label="escalation rate"),
    ]
    if limit is not None:
        keys.append(
            Line2D([], [], color=TARGET_COLOR, ls="--", lw=1, label=f"target {limit[1]:.3f}")
        )
    if not chosen.is_empty():
        tau = float(chosen["tau"][0])
        keys.append(Line2D([], [], color=INK, ls=":", lw=1, label=f"chosen threshold {tau:.4g}"))
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
    colors = {r: c for r, c in zip(regions, SERIES * 4, strict=False)}
    fig = figure(7.0, 3.8)
    with matplotlib.rc_context(STYLE):
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
                color=colors.get(o.region, INK),
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
        fit(fig, fig.legend(loc="outside lower center", ncol=3, frameon=False, fontsize=8))
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
    fig = figure(4.2, 4.0)
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color="#8c959f", ls="--", lw=1, label="perfectly calibrated")
        for color, c in zip(SERIES, tiers, strict=False):
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
        fit(fig)
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
    fig = figure(7.0, 0.3 * len(rows) + 1.4)
    with matplotlib.rc_context(STYLE):
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
            color=SERIES[0],
            label="kept (served below premium)",
        )
        ax.set_yticks(y, [f"{s.value} (n={s.kept_labeled})" for s in rows])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("quality of kept labeled requests (mean label, 0–1)")
        ax.set_title("Kept-request quality per intent")
        fit(fig, fig.legend(loc="outside lower center", ncol=2, frameon=False, fontsize=7))
    worst = rows[0]
    return Drawn(
        fig,
        f"Bar chart, {len(rows)} intents: quality of the requests the recommendation keeps below "
        "premium, next to the premium tier's quality on the same requests.",
        "Intents with at least 5 kept labeled requests, largest gap first; n counts the kept "
        f"labeled requests. Largest gap: {worst.value}, {worst.kept_quality:.3f} kept against "
        f"{worst.kept_premium_quality:.3f} for premium on the same {worst.kept_labeled} requests.",
    )

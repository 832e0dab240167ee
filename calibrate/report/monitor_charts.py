"""The time-series charts of monitor.html, as hand-written inline SVG (deterministic text).

A chart is a set of named series over the same calendar days (None = no point that day), an
optional shaded band (an interval around one series), horizontal reference lines and vertical
markers (the end of the reference window, alarm days). Numbers are written with one decimal, so
the same result gives byte-identical HTML.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from calibrate.monitor.stage import MonitorResult

WIDTH, HEIGHT = 860, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 150, 14, 28
PALETTE = ("#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#57606a", "#e16f24", "#1b7c83")

Values = Sequence[float | None]


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart over `days`; y values in data units, scaled to [y_min, y_max]."""

    title: str
    days: tuple[date, ...]
    series: tuple[tuple[str, Values], ...]
    y_max: float
    y_min: float = 0.0
    percent: bool = False
    band: tuple[Values, Values] | None = None
    hlines: tuple[tuple[str, float], ...] = ()
    markers: tuple[tuple[str, date], ...] = field(default=())


def _x(chart: Chart, i: int) -> float:
    span = max(len(chart.days) - 1, 1)
    return LEFT + (WIDTH - LEFT - RIGHT) * i / span


def _y(chart: Chart, v: float) -> float:
    span = (chart.y_max - chart.y_min) or 1.0
    clipped = min(max(v, chart.y_min), chart.y_max)
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - (clipped - chart.y_min) / span)


def _runs(chart: Chart, values: Values) -> list[str]:
    """Polyline point lists, broken where a day has no value."""
    runs: list[str] = []
    current: list[str] = []
    for i, v in enumerate(values):
        if v is None:
            if current:
                runs.append(" ".join(current))
            current = []
        else:
            current.append(f"{_x(chart, i):.1f},{_y(chart, v):.1f}")
    if current:
        runs.append(" ".join(current))
    return runs


def _label(chart: Chart, v: float) -> str:
    return f"{v:.0%}" if chart.percent else f"{v:.3g}"


def _axes(chart: Chart) -> list[str]:
    out = [
        f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" '
        'stroke="#8c959f"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="#8c959f"/>',
    ]
    for k in range(5):
        v = chart.y_min + (chart.y_max - chart.y_min) * k / 4
        y = _y(chart, v)
        out.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_label(chart, v)}</text>'
        )
    step = max(len(chart.days) // 8, 1)
    for i in range(0, len(chart.days), step):
        out.append(
            f'<text x="{_x(chart, i):.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
            f"{chart.days[i]:%m-%d}</text>"
        )
    return out


def _band(chart: Chart) -> list[str]:
    if chart.band is None:
        return []
    low, high = chart.band
    points = [(i, hi) for i, hi in enumerate(high) if hi is not None]
    points += [(i, lo) for i, lo in reversed(list(enumerate(low))) if lo is not None]
    if not points:
        return []
    text = " ".join(f"{_x(chart, i):.1f},{_y(chart, v):.1f}" for i, v in points)
    return [f'<polygon points="{text}" fill="#0969da" fill-opacity="0.12" stroke="none"/>']


def _marks(chart: Chart) -> list[str]:
    out = []
    for name, value in chart.hlines:
        y = _y(chart, value)
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#57606a" '
            f'stroke-dasharray="4 3"/><text x="{WIDTH - RIGHT + 4}" y="{y + 4:.1f}">'
            f"{html.escape(name)}</text>"
        )
    index = {d: i for i, d in enumerate(chart.days)}
    for name, day in chart.markers:
        if day not in index:
            continue
        x = _x(chart, index[day])
        # labels right of the line, or left of it in the right half (clear of the legend)
        left = x > (LEFT + WIDTH - RIGHT) / 2
        tx, anchor = (x - 3, "end") if left else (x + 3, "start")
        out.append(
            f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM}" stroke="#cf222e" '
            f'stroke-dasharray="2 2"/><text x="{tx:.1f}" y="{TOP + 10}" text-anchor="{anchor}" '
            f'fill="#cf222e">{html.escape(name)}</text>'
        )
    return out


def render_svg(chart: Chart) -> str:
    """The chart as one <figure> with an inline <svg>."""
    parts = [*_axes(chart), *_band(chart)]
    for k, (name, values) in enumerate(chart.series):
        color = PALETTE[k % len(PALETTE)]
        parts += [
            f'<polyline points="{run}" fill="none" stroke="{color}" stroke-width="1.6"/>'
            for run in _runs(chart, values)
        ]
        y = TOP + 14 * k + 8
        parts.append(
            f'<rect x="{WIDTH - RIGHT + 8}" y="{y - 6}" width="10" height="3" fill="{color}"/>'
            f'<text x="{WIDTH - RIGHT + 22}" y="{y}">{html.escape(name)}</text>'
        )
    parts += _marks(chart)
    return (
        f"<figure><figcaption>{html.escape(chart.title)}</figcaption>"
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" font-size="11" font-family="system-ui,sans-serif">'
        + "".join(parts)
        + "</svg></figure>"
    )


# --- the monitor's charts ---


def _days(result: MonitorResult) -> tuple[date, ...]:
    return tuple(c.start for c in result.chunks if c.segment == "all" and c.period == "day")


def _markers(result: MonitorResult) -> tuple[tuple[str, date], ...]:
    first = tuple((a.kind.replace("_", " "), a.first_day) for a in result.alarms if a.recalibrate)
    return (("reference end", result.reference.end), *first)


def escalation_chart(result: MonitorResult) -> Chart:
    """The daily escalation rate of `all` with its Wilson band and the reference rate."""
    days = [c for c in result.chunks if c.segment == "all" and c.period == "day"]
    rates = [c.summary.escalation_rate for c in days]
    top = max([c.escalation_interval.high for c in days] + [0.05])
    p0 = result.detectors[0].p0 if result.detectors else None
    return Chart(
        title="Escalation rate per day (band: 95% Wilson interval)",
        days=_days(result),
        series=(("escalation rate", rates),),
        y_max=min(1.0, top * 1.1),
        percent=True,
        band=(
            [c.escalation_interval.low for c in days],
            [c.escalation_interval.high for c in days],
        ),
        hlines=(("reference", p0),) if p0 is not None else (),
        markers=_markers(result),
    )


def cusum_chart(result: MonitorResult) -> Chart:
    """Both CUSUM paths of `all` over the monitored days, against h."""
    days = _days(result)
    overall = next((d for d in result.detectors if d.segment == "all"), None)
    if overall is None:
        return Chart("CUSUM (none)", days, (), 1.0)
    offset = len(days) - len(overall.days)
    pad: list[float | None] = [None] * offset
    top = max([*overall.upper, *overall.lower, overall.h]) * 1.1
    return Chart(
        title="CUSUM of the daily escalation rate (alarm above h)",
        days=days,
        series=(("rising", pad + list(overall.upper)), ("falling", pad + list(overall.lower))),
        y_max=top,
        hlines=(("h", overall.h),),
        markers=_markers(result),
    )


def quality_chart(result: MonitorResult) -> Chart:
    """Estimated (served, kept) and measured quality per day."""
    days = [c for c in result.chunks if c.segment == "all" and c.period == "day"]
    return Chart(
        title="Quality per day: estimated without labels (CBPE) and measured on labels",
        days=_days(result),
        series=(
            ("est. served", [c.summary.estimated_quality for c in days]),
            ("est. kept", [c.summary.estimated_kept_quality for c in days]),
            ("measured", [c.measured_quality for c in days]),
        ),
        y_min=0.5,
        y_max=1.0,
        percent=True,
        markers=_markers(result),
    )


def psi_chart(result: MonitorResult) -> Chart:
    """Each tier's daily confidence PSI."""
    days = _days(result)
    index = {d: i for i, d in enumerate(days)}
    series = []
    for tier in dict.fromkeys(p.tier for p in result.psi):
        values: list[float | None] = [None] * len(days)
        for p in result.psi:
            if p.tier == tier and p.period == "day" and p.start in index:
                values[index[p.start]] = p.psi
        series.append((tier, values))
    top = max([p.psi for p in result.psi if p.period == "day"] + [0.1]) * 1.1
    return Chart(
        "Daily confidence PSI per tier",
        days,
        tuple(series),
        top,
        hlines=(("0.1", 0.1),),
        markers=_markers(result),
    )


def health_chart(result: MonitorResult) -> Chart:
    """Each region's daily share of traffic served below the intended tier."""
    days = _days(result)
    index = {d: i for i, d in enumerate(days)}
    series = []
    for region in sorted({d.region for d in result.health.days}):
        values: list[float | None] = [0.0] * len(days)
        for d in result.health.days:
            if d.region == region and d.day in index:
                values[index[d.day]] = d.degraded / d.requests
        series.append((region, values))
    top = max([max((v or 0.0) for v in s) for _, s in series] + [0.05]) * 1.1
    marks = tuple((f"outage {o.region}", o.start) for o in result.health.outages)
    return Chart(
        "Share of each region's traffic served below the intended tier",
        days,
        tuple(series),
        top,
        percent=True,
        markers=marks,
    )

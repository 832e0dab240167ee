"""Hand-written inline SVG line charts for monitor.html: deterministic text, no dependencies.

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
    runs, current = [], []
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

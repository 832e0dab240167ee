"""What every sweep chart shares: the style, the records of a drawn and a written chart, SVG
output with the alt text inside, dollar ticks, the quality target, and labels placed off the data.
Figures have no layout engine: `chart_layout.fit` places their axes once.

Output is deterministic: a fixed hash salt for element ids, no date in the metadata, text kept as
text, so the same figure gives byte-identical SVG. Artists the reader (and the tests) look for
carry a `gid`, written as the SVG element's id.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox
from matplotlib.typing import RcKeyType

STYLE: dict[RcKeyType, Any] = {
    "svg.hashsalt": "calibrate",
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
SERIES = ("#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#57606a")
INK, TARGET_COLOR = "#1b1f24", "#cf222e"
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


def chart_file(drawn: Drawn) -> ChartFile:
    """The drawn chart as SVG text, its alt text as the `<svg>`'s `<title>` and `aria-label`."""
    with matplotlib.rc_context(STYLE):
        buf = io.StringIO()
        drawn.fig.savefig(buf, format="svg", metadata={"Date": None})  # placed by `fit`
    text = buf.getvalue()
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)  # RDF boilerplate
    text = text[text.index("<svg") :]
    label = html.escape(drawn.alt)
    text = text.replace("<svg ", f'<svg role="img" aria-label="{label}" ', 1)
    end = text.index(">") + 1
    svg = f"{text[:end]}\n <title>{label}</title>{text[end:]}"
    return ChartFile(svg, drawn.alt, drawn.caption)


def figure(width: float = 7.0, height: float = 4.0) -> Figure:
    """A figure in the house style, with a canvas that can measure text (savefig still writes
    SVG). No layout engine: `chart_layout.fit` places the axes once, so saving draws it once."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def usd_tick(x: float, _pos: object = None) -> str:
    """$0.002, $0.10, $1, $2.50: whole dollars bare, two decimals otherwise (more below a cent)."""
    if x <= 0 or (x >= 1 and float(x).is_integer()):
        return f"${x:,.0f}"
    decimals = 2 if x >= 0.01 else -math.floor(math.log10(x))
    return f"${x:,.{decimals}f}"


def quality_target(frontier: pl.DataFrame, target: Target) -> tuple[float, float] | None:
    """(always-premium's quality, the target quality), or None without the premium baseline."""
    premium = frontier.filter(
        (pl.col("strategy") == "always") & (pl.col("tiers").list.first() == target.premium)
    )
    if premium.is_empty():
        return None
    quality = float(premium["quality"][0])
    return quality, quality - target.max_drop


def label_points(
    fig: Figure,
    ax: Axes,
    labels: Sequence[tuple[str, float, float]],
    data: np.ndarray,
    gid: str,
) -> None:
    """Name each point with a text joined to it by a thin line, placed where it covers the fewest
    plotted points, no other label and stays inside the axes (the first best offset wins). Call it
    once the axes are placed (`chart_layout.fit`), as it reads display positions."""
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)  # attached by `figure`
    renderer = canvas.get_renderer()
    shown = ax.transData.transform(data)
    frame = ax.get_window_extent(renderer)
    pixels_per_point = fig.dpi / 72
    taken: list[Bbox] = []
    for text, x, y in labels:
        probe = _annotate(ax, text, x, y, _LABEL_OFFSETS[0])
        size = Text.get_window_extent(probe, renderer)  # the same at every offset
        probe.remove()
        at_x, at_y = ax.transData.transform((x, y))
        boxes = [
            _text_box(at_x + dx * pixels_per_point, at_y + dy * pixels_per_point, dx, dy, size)
            for dx, dy in _LABEL_OFFSETS
        ]
        scores = [
            _covered(box, shown)
            + 1000 * (sum(box.overlaps(t) for t in taken) + (not _within(box, frame)))
            for box in boxes
        ]
        best = scores.index(min(scores))  # the first best
        _annotate(ax, text, x, y, _LABEL_OFFSETS[best]).set_gid(gid)
        taken.append(boxes[best])


def _annotate(ax: Axes, text: str, x: float, y: float, offset: tuple[int, int]) -> Annotation:
    """The label `text` at `offset` points from the point (x, y), joined to it by a thin line."""
    dx, dy = offset
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
    return ann


def _text_box(x: float, y: float, dx: int, dy: int, size: Bbox) -> Bbox:
    """Where a text of `size` aligned as `_annotate` aligns it for the offset (dx, dy) sits, its
    anchor at display (x, y), padded by 2 pixels."""
    x0 = x - size.width if dx < 0 else x if dx > 0 else x - size.width / 2
    y0 = y if dy > 0 else y - size.height
    return Bbox.from_bounds(x0, y0, size.width, size.height).padded(2)


def _covered(box: Bbox, points: np.ndarray) -> int:
    """How many of the points (display coordinates) fall inside the box."""
    return int(((points >= (box.x0, box.y0)) & (points <= (box.x1, box.y1))).all(axis=1).sum())


def _within(box: Bbox, frame: Bbox) -> bool:
    return bool(frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1))

"""The sweep charts' layout: `fit` places a figure's one row of panels once, from the sizes of
the texts around them (tick labels, axis labels, axis offsets, titles) and of the figure legend
below them.

A layout engine measures the whole figure again on every draw, and a crop to the tight bounding
box draws it once more; this reads each text's size once, so saving the SVG draws it once.
"""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis, Tick, XAxis
from matplotlib.backend_bases import RendererBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.text import Text

PAD_IN = 0.06  # blank margin around a chart's texts and between its panels (inches)
_MOST = 0.4  # the largest share of the figure a margin may take
_SMALLEST_PANEL_IN = 0.5
_OFFSET_PAD_PT = 3.0  # matplotlib's gap between the tick labels and the axis offset (points)
_LEFT, _RIGHT, _BOTTOM, _TOP = range(4)  # a reach: pixels past the frame on each side


def fit(fig: Figure, legend: Legend | None = None) -> None:
    """Place the one row of panels so their texts, and the figure `legend` below them, fit inside
    the figure with `PAD_IN` around them and between the panels."""
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)  # attached by `chart_render.figure`
    renderer = canvas.get_renderer()
    dpi = fig.dpi
    width_in, height_in = fig.get_size_inches()
    columns = max(_columns(ax).stop for ax in fig.axes)
    sides = np.zeros((columns, 4))  # per column: the reach of its axes (inches)
    for ax in fig.axes:
        span, reach = _columns(ax), _reach(ax, renderer) / dpi
        sides[span.start, _LEFT] = max(sides[span.start, _LEFT], reach[_LEFT])
        sides[span.stop - 1, _RIGHT] = max(sides[span.stop - 1, _RIGHT], reach[_RIGHT])
        sides[:, _BOTTOM:] = np.maximum(sides[:, _BOTTOM:], reach[_BOTTOM:])
    below = legend.get_window_extent(renderer).y1 / dpi if legend is not None else 0.0
    left, right = sides[0, _LEFT] + PAD_IN, sides[-1, _RIGHT] + PAD_IN
    gaps = [sides[i, _RIGHT] + sides[i + 1, _LEFT] + 2 * PAD_IN for i in range(columns - 1)]
    panel_in = max((width_in - left - right - sum(gaps)) / columns, _SMALLEST_PANEL_IN)
    fig.subplots_adjust(  # texts too large for the figure squeeze the panels, never past _MOST
        left=min(left / width_in, _MOST),
        right=max(1 - right / width_in, 1 - _MOST),
        bottom=min((below + sides[0, _BOTTOM] + PAD_IN) / height_in, _MOST),
        top=max(1 - (sides[0, _TOP] + PAD_IN) / height_in, 1 - _MOST),
        wspace=max(gaps, default=0.0) / panel_in,
    )


def _columns(ax: Axes) -> range:
    spec = ax.get_subplotspec()
    assert spec is not None  # every chart's axes come from a grid
    return spec.colspan


def _reach(ax: Axes, renderer: RendererBase) -> np.ndarray:
    """How far (pixels) the axes' tick labels, axis labels, offsets and title reach past its
    frame: left, right, bottom, top."""
    frame = ax.get_window_extent(renderer)
    reach = np.zeros(4)
    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_visible():
            reach = np.maximum(reach, _axis_reach(ax, axis, frame.bounds, renderer))
    if ax.title.get_visible() and ax.title.get_text():
        width, height = _size(ax.title, renderer)
        pad = matplotlib.rcParams["axes.titlepad"] * ax.figure.dpi / 72
        overhang = max(0.0, (width - frame.width) / 2)
        reach = np.maximum(reach, (overhang, overhang, 0.0, pad + height))
    return reach


def _axis_reach(
    ax: Axes, axis: Axis, frame: tuple[float, float, float, float], renderer: RendererBase
) -> np.ndarray:
    """The reach of one axis: its tick labels (ends included), its label and its offset."""
    horizontal = isinstance(axis, XAxis)
    x0, y0, width, height = frame
    start, length = (x0, width) if horizontal else (y0, height)
    near, far = (_BOTTOM, _TOP) if horizontal else (_LEFT, _RIGHT)
    before, after = (_LEFT, _RIGHT) if horizontal else (_BOTTOM, _TOP)
    reach = np.zeros(4)
    thickness = {near: 0.0, far: 0.0}  # how far the tick labels reach on each side
    for at, tick in _shown_ticks(ax, axis):
        pad: float = tick.get_pad()  # type: ignore[func-returns-value,assignment]  # stub: None
        out = (tick.get_tick_padding() + pad) * ax.figure.dpi / 72
        for label, side in ((tick.label1, near), (tick.label2, far)):
            if not (label.get_visible() and label.get_text()):
                continue
            width, height = _size(label, renderer)
            across, along = (height, width) if horizontal else (width, height)
            thickness[side] = max(thickness[side], out + across)
            reach[before] = max(reach[before], start - (at - along / 2))
            reach[after] = max(reach[after], at + along / 2 - (start + length))
    for side, extent in thickness.items():
        reach[side] = max(reach[side], extent)
    label_side = near if axis.get_label_position() in ("bottom", "left") else far
    if axis.label.get_visible() and axis.label.get_text():
        across = _size(axis.label, renderer)[1 if horizontal else 0]
        pad = axis.labelpad * ax.figure.dpi / 72
        reach[label_side] = max(reach[label_side], thickness[label_side] + pad + across)
    offset = axis.get_offset_text()
    if offset.get_visible() and offset.get_text():
        side = near if horizontal else _TOP  # x: below the tick labels; y: above the axes
        base = thickness[near] if horizontal else 0.0
        pad = _OFFSET_PAD_PT * ax.figure.dpi / 72
        reach[side] = max(reach[side], base + pad + _size(offset, renderer)[1])
    return np.maximum(reach, 0.0)


def _shown_ticks(ax: Axes, axis: Axis) -> list[tuple[float, Tick]]:
    """The major ticks drawn (inside the view), with their display position along the axis."""
    horizontal = isinstance(axis, XAxis)
    locs = axis.get_majorticklocs()
    axis.get_ticklabels()  # sets the tick labels' texts for these ticks
    ticks = axis.get_major_ticks(len(locs))
    (x_low, x_high), (y_low, y_high) = ax.get_xlim(), ax.get_ylim()
    points = [(loc, y_low) if horizontal else (x_low, loc) for loc in locs]
    shown: Any = ax.transData.transform(points)[:, 0 if horizontal else 1] if points else []
    low, high = ax.transData.transform([(x_low, y_low), (x_high, y_high)])[
        :, 0 if horizontal else 1
    ]
    low, high = min(low, high), max(low, high)
    return [
        (float(at), tick)
        for at, tick in zip(shown, ticks, strict=True)
        if low - 0.5 <= at <= high + 0.5
    ]


def _size(text: Text, renderer: RendererBase) -> tuple[float, float]:
    """Width and height (pixels) of the text as drawn (a rotated text's box)."""
    box = text.get_window_extent(renderer)
    return box.width, box.height

"""The sweep report's charts, drawn from small hand-made inputs (no sweep): what each must show.

Frontier: dollar ticks, the target line, certified policies outlined, labels off the data.
Thresholds: one quality scale for every panel, the chosen threshold marked. Escalation over time:
percent axis, partial first/last weeks left out (and said so), outage windows shaded. Every
chart: alt text inside the SVG and a caption that is more than the title."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.dates import date2num
from matplotlib.text import Annotation, Text
from matplotlib.ticker import PercentFormatter

from calibrate.report.chart_render import Drawn, Target, chart_file, usd_tick
from calibrate.report.charts import threshold_figure, timeline_figure
from calibrate.report.frontier_chart import frontier_figure
from calibrate.stats.regional_health import Outage

TIERS = ("small", "medium", "large")
TARGET = Target(premium="large", max_drop=0.02, confidence_level=0.95)
CHOSEN_TAU = 0.6


def _cascades(cheap: str, cost0: float, quality0: float) -> list[dict]:
    """A two-tier cascade cheap → large at thresholds 0.1 … 0.9: dearer and better as τ rises."""
    rows = []
    for tau in np.round(np.arange(0.1, 1.0, 0.1), 1):
        rows.append(
            {
                "strategy": "cascade",
                "tiers": [cheap, "large"],
                "thresholds": [float(tau)],
                "cost_per_1k_requests_usd": cost0 + 1.5 * tau**2,
                "quality": quality0 + (0.957 - quality0) * tau,
                "escalation_rate": float(tau**2),
                "certified": tau >= 0.5 and cheap == "medium",
                "recommended": tau == CHOSEN_TAU and cheap == "medium",
            }
        )
    return rows


def frontier_frame() -> pl.DataFrame:
    baselines = [
        {
            "strategy": "always",
            "tiers": [tier],
            "thresholds": [],
            "cost_per_1k_requests_usd": cost,
            "quality": quality,
            "escalation_rate": 0.0,
            "certified": False,
            "recommended": False,
        }
        for tier, cost, quality in (
            ("small", 0.1, 0.835),
            ("medium", 0.29, 0.89),
            ("large", 1.6, 0.957),
        )
    ]
    rows = baselines + _cascades("small", 0.1, 0.835) + _cascades("medium", 0.29, 0.89)
    return pl.DataFrame(rows, schema_overrides={"thresholds": pl.List(pl.Float64)})


@pytest.fixture(scope="module")
def frontier() -> Drawn:
    return frontier_figure(frontier_frame(), TARGET)


def _by_gid(ax: Axes, gid: str) -> list:
    return [a for a in ax.get_children() if a.get_gid() == gid]


def test_frontier_dollar_axis_has_a_labelled_tick_at_1_2_and_5_of_each_decade(frontier) -> None:
    ax = frontier.fig.axes[0]
    frontier.fig.draw_without_rendering()
    low, high = ax.get_xlim()
    labels = [
        t.get_text()
        for t in ax.get_xticklabels()
        if t.get_text() and low <= t.get_position()[0] <= high
    ]
    assert labels == ["$0.10", "$0.20", "$0.50", "$1"]  # costs run from $0.10 to $1.60
    assert ax.get_xlabel() == "cost per 1k requests (USD, log scale)"


def test_frontier_draws_the_target_quality_line(frontier) -> None:
    (line,) = _by_gid(frontier.fig.axes[0], "frontier-target")
    assert list(line.get_ydata()) == pytest.approx([0.957 - 0.02] * 2)
    assert "the target 0.937: always-large's 0.957 minus 0.02" in frontier.caption


def test_certified_policies_are_outlined_and_uncertified_ones_are_not(frontier) -> None:
    ax = frontier.fig.axes[0]
    (certified,) = _by_gid(ax, "frontier-certified")
    expected = frontier_frame().filter("certified")
    assert sorted(map(tuple, certified.get_offsets())) == sorted(
        zip(expected["cost_per_1k_requests_usd"], expected["quality"], strict=True)
    )
    assert certified.get_linewidths()[0] > 0 and certified.get_edgecolors()[0][:3] == pytest.approx(
        (0x1B / 255, 0x1F / 255, 0x24 / 255)
    )
    clouds = [c for c in ax.collections if isinstance(c, PathCollection) and c.get_gid() is None]
    assert clouds  # every policy as a dot edged in its own colour
    assert all(np.allclose(c.get_edgecolors(), c.get_facecolors()) for c in clouds)
    assert "5 of 21 are certified (outlined)" in frontier.caption


def test_frontier_labels_sit_beside_the_points_not_on_them(frontier) -> None:
    fig = frontier.fig
    ax = fig.axes[0]
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    data = frontier_frame().select("cost_per_1k_requests_usd", "quality").to_numpy()
    shown = ax.transData.transform(data)
    labels = [a for a in ax.texts if isinstance(a, Annotation)]
    assert sorted(a.get_text().split("\n")[0] for a in labels) == [
        "always-large",
        "always-medium",
        "always-small",
        "recommended",
    ]
    frame = ax.get_window_extent(renderer)
    for label in labels:
        box = Text.get_window_extent(label, renderer)
        inside = ((shown >= (box.x0, box.y0)) & (shown <= (box.x1, box.y1))).all(axis=1)
        assert not inside.any(), label.get_text()
        assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), label.get_text()
        assert label.arrow_patch is not None  # joined to its point by a line


def test_threshold_panels_share_one_quality_scale_and_mark_the_chosen_threshold() -> None:
    drawn = threshold_figure(frontier_frame(), TIERS, TARGET)
    assert drawn is not None
    small, medium = (ax for ax in drawn.fig.axes if ax.get_title())
    assert small.get_title() == "small → large" and medium.get_title() == "medium → large"
    assert small.get_shared_y_axes().joined(small, medium)
    assert small.get_ylim() == medium.get_ylim()
    assert _by_gid(small, "thresholds-chosen") == []
    (chosen,) = _by_gid(medium, "thresholds-chosen")
    assert list(chosen.get_xdata()) == [CHOSEN_TAU, CHOSEN_TAU]
    twins = [ax for ax in drawn.fig.axes if not ax.get_title()]
    assert all(isinstance(t.yaxis.get_major_formatter(), PercentFormatter) for t in twins)
    assert "At the chosen threshold 0.6 (medium → large, dotted line)" in drawn.caption
    assert "36.0% of requests escalate" in drawn.caption


def test_without_a_cascade_recommendation_no_threshold_is_marked() -> None:
    frame = frontier_frame().with_columns(recommended=pl.lit(False))
    drawn = threshold_figure(frame, TIERS, TARGET)
    assert drawn is not None
    assert not any(_by_gid(ax, "thresholds-chosen") for ax in drawn.fig.axes)
    assert "no threshold is marked" in drawn.caption


def timeline_frame() -> pl.DataFrame:
    """Weeks (Mondays) of 2026-07-27 … 2026-08-17 for two regions; the first week has 2 days of
    data (Saturday and Sunday) and a spike, the last 3 days."""
    weeks = [date(2026, 7, 27), date(2026, 8, 3), date(2026, 8, 10), date(2026, 8, 17)]
    rows = []
    for region, base in (("eu", 0.4), ("us", 0.3)):
        for week, requests, escalated in zip(
            weeks,
            (6, 300, 300, 120),
            (5, int(300 * base), int(300 * base), int(120 * base)),
            strict=True,
        ):
            rows.append(
                {"week": week, "region": region, "requests": requests, "escalated": escalated}
            )
    return pl.DataFrame(rows)


OUTAGE = Outage("eu", date(2026, 8, 5), date(2026, 8, 7), 200, 20, (("large", "medium", 20),))


@pytest.fixture(scope="module")
def timeline() -> Drawn:
    drawn = timeline_figure(timeline_frame(), date(2026, 8, 1), date(2026, 8, 19), [OUTAGE])
    assert drawn is not None
    return drawn


def test_timeline_leaves_out_the_partial_first_and_last_weeks_and_says_so(timeline) -> None:
    ax = timeline.fig.axes[0]
    lines = [line for line in ax.get_lines() if line.get_label() in ("eu", "us")]
    assert len(lines) == 2
    mid_weeks = [date2num(date(2026, 8, 6)) + 0.5, date2num(date(2026, 8, 13)) + 0.5]
    for line in lines:
        assert list(line.get_xdata()) == pytest.approx(mid_weeks)
        assert max(line.get_ydata()) < 0.5  # the 5-of-6 spike of the 2-day week is not drawn
    assert "2026-07-27 (2 days of data), 2026-08-17 (3 days of data)" in timeline.caption
    assert "Partial weeks are left out" in timeline.caption


def test_timeline_keeps_every_week_when_none_is_full() -> None:
    frame = timeline_frame().filter(pl.col("week") == date(2026, 7, 27))
    drawn = timeline_figure(frame, date(2026, 8, 1), date(2026, 8, 2), [])
    assert drawn is not None
    (line, _) = [line for line in drawn.fig.axes[0].get_lines() if line.get_label() in ("eu", "us")]
    assert len(line.get_xdata()) == 1
    assert "no full week" in drawn.caption


def test_timeline_axis_is_in_percent_and_the_outage_is_shaded(timeline) -> None:
    ax = timeline.fig.axes[0]
    assert isinstance(ax.yaxis.get_major_formatter(), PercentFormatter)
    assert "%" in ax.get_ylabel()
    (span,) = _by_gid(ax, "timeline-outage-eu-2026-08-05")
    assert span.get_x() == date2num(date(2026, 8, 5))
    assert span.get_x() + span.get_width() == date2num(date(2026, 8, 8))  # through the end day
    assert "outage in eu from 2026-08-05 to 2026-08-07" in timeline.caption


def test_every_svg_carries_its_alt_text_and_the_marked_elements(frontier, timeline) -> None:
    thresholds = threshold_figure(frontier_frame(), TIERS, TARGET)
    assert thresholds is not None
    for drawn, ids in (
        (frontier, ("frontier-target", "frontier-certified")),
        (thresholds, ("thresholds-chosen", "thresholds-target")),
        (timeline, ("timeline-outage-eu-2026-08-05",)),
    ):
        written = chart_file(drawn)
        assert written.svg.startswith(f'<svg role="img" aria-label="{drawn.alt}"')
        assert f"<title>{drawn.alt}</title>" in written.svg
        for gid in ids:
            assert f'id="{gid}' in written.svg, gid
        assert len(drawn.caption) > 80 and len(drawn.alt) > 60


def test_the_same_inputs_give_the_same_svg() -> None:
    first, second = (chart_file(frontier_figure(frontier_frame(), TARGET)) for _ in range(2))
    assert first == second


@pytest.mark.parametrize(
    ("usd", "text"),
    [(0.002, "$0.002"), (0.1, "$0.10"), (0.5, "$0.50"), (1, "$1"), (2.5, "$2.50"), (0, "$0")],
)
def test_dollar_ticks_read_as_money(usd: float, text: str) -> None:
    assert usd_tick(usd) == text


def test_every_chart_fits_its_figure_without_cropping(frontier, timeline) -> None:
    """Charts are laid out once (`fit`) and saved at their size, not cropped to their contents:
    ticks, axis labels, titles and legends must all lie inside the figure, close to its edges."""
    thresholds = threshold_figure(frontier_frame(), TIERS, TARGET)
    assert thresholds is not None
    for drawn in (frontier, timeline, thresholds):
        fig = drawn.fig
        fig.draw_without_rendering()
        box = fig.get_tightbbox(fig.canvas.get_renderer())  # inches
        width, height = fig.get_size_inches()
        assert 0 <= box.x0 < 0.2 and 0 <= box.y0 < 0.2, drawn.alt
        assert width - 0.2 < box.x1 <= width and height - 0.2 < box.y1 <= height, drawn.alt

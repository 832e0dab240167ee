"""The frontier chart: cost per 1k requests (log dollars) against quality for every policy of
every strategy, certified policies outlined, the quality target as a line, and the baselines and
the recommendation named by labels placed off the data."""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from calibrate.report.chart_layout import fit
from calibrate.report.chart_render import (
    INK,
    STYLE,
    TARGET_COLOR,
    Drawn,
    Target,
    figure,
    label_points,
    quality_target,
    usd_tick,
)

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
_COST, _QUALITY = "cost_per_1k_requests_usd", "quality"


def frontier_figure(frontier: pl.DataFrame, target: Target) -> Drawn:
    """Cost per 1k requests against quality for every policy of every strategy, one colour each;
    certified policies outlined, the target quality as a line, baselines and the pick labelled
    off the data."""
    fig = figure(7.0, 4.6)
    limit = quality_target(frontier, target)
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        keys = _clouds(ax, frontier) + _certified(ax, frontier.filter("certified"))
        if limit is not None:
            ax.axhline(limit[1], color=TARGET_COLOR, ls="--", lw=1, gid="frontier-target", zorder=2)
            label = f"target {limit[1]:.3f} (always-{target.premium} − {target.max_drop:g})"
            keys.append(Line2D([], [], color=TARGET_COLOR, ls="--", lw=1, label=label))
        rec = frontier.filter("recommended")
        if not rec.is_empty():
            ax.scatter(
                rec[_COST].to_list(),
                rec[_QUALITY].to_list(),
                s=160,
                marker="*",
                color=TARGET_COLOR,
                edgecolors="white",
                linewidths=0.6,
                zorder=5,
                gid="frontier-recommended",
            )
            keys.append(_key("recommended", TARGET_COLOR, "*", 11))
        _dollar_axis(ax)
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.15 * (high - low))  # room above the frontier for labels
        ax.set_xlabel("cost per 1k requests (USD, log scale)")
        ax.set_ylabel("quality (mean label on labeled requests, 0–1)")
        ax.set_title("Cost–quality frontier of every policy")
        fit(
            fig,
            fig.legend(handles=keys, loc="outside lower center", ncol=4, frameon=False, fontsize=8),
        )
        label_points(fig, ax, _labels(frontier), _points(frontier, limit), "frontier-label")
    return Drawn(fig, _alt(frontier, limit), _caption(frontier, target, limit))


def _clouds(ax: Axes, frontier: pl.DataFrame) -> list[Any]:
    """Every policy, one colour per strategy (faint point clouds; baselines and consensus large);
    their legend keys."""
    keys: list[Any] = []
    for strategy, color in _COLORS.items():
        part = frontier.filter(pl.col("strategy") == strategy)
        if part.is_empty():
            continue
        few, marker = strategy in _FEW_POINTS, "D" if strategy == "consensus" else "o"
        ax.scatter(
            part[_COST].to_list(),
            part[_QUALITY].to_list(),
            s=36 if few else 6,
            marker=marker,
            color=color,
            alpha=1.0 if few else 0.3,
            rasterized=not few,
            zorder=4 if few else 1,
        )
        keys.append(_key(strategy, color, marker))
    return keys


def _certified(ax: Axes, certified: pl.DataFrame) -> list[Any]:
    """The certified policies again, in their strategy's colour with a dark outline; its key."""
    if certified.is_empty():
        return []
    ax.scatter(
        certified[_COST].to_list(),
        certified[_QUALITY].to_list(),
        s=14,
        c=[_COLORS.get(s, INK) for s in certified["strategy"].to_list()],
        edgecolors=INK,
        linewidths=0.6,
        gid="frontier-certified",
        zorder=3,
    )
    label = f"certified ({certified.height:,}, dark outline)"
    return [Line2D([], [], ls="", marker="o", mfc="white", mec=INK, mew=0.8, label=label)]


def _key(label: str, color: str, marker: str, size: float = 6) -> Line2D:
    return Line2D([], [], ls="", marker=marker, color=color, ms=size, label=label)


def _dollar_axis(ax: Axes) -> None:
    """Log-scale dollars with ticks at 1, 2 and 5 of each decade, labelled in $."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))
    ax.xaxis.set_major_formatter(FuncFormatter(usd_tick))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _labels(frontier: pl.DataFrame) -> list[tuple[str, float, float]]:
    """The points named on the chart: the recommendation, then each baseline."""
    out = [
        (f"recommended\n{usd_tick(r[_COST])}, {r[_QUALITY]:.3f}", r[_COST], r[_QUALITY])
        for r in frontier.filter("recommended").iter_rows(named=True)
    ]
    for r in frontier.filter(pl.col("strategy") == "always").iter_rows(named=True):
        out.append((f"always-{r['tiers'][0]}", r[_COST], r[_QUALITY]))
    return out


def _points(frontier: pl.DataFrame, limit: tuple[float, float] | None) -> np.ndarray:
    """Every plotted point (data coordinates), and samples along the target line."""
    xy = frontier.select(_COST, _QUALITY).to_numpy().astype(np.float64)
    if limit is not None and frontier.height:
        line_x = np.geomspace(xy[:, 0].min(), xy[:, 0].max(), 60)
        xy = np.vstack([xy, np.column_stack([line_x, np.full(line_x.size, limit[1])])])
    return xy


def _alt(frontier: pl.DataFrame, limit: tuple[float, float] | None) -> str:
    cost, quality = frontier[_COST].to_numpy(), frontier[_QUALITY].to_numpy()
    line = "" if limit is None else f"; a dashed target line at quality {limit[1]:.3f}"
    return (
        f"Scatter chart of {frontier.height:,} routing policies: cost per 1k requests from "
        f"{usd_tick(cost.min())} to {usd_tick(cost.max())} (log scale) against quality from "
        f"{quality.min():.3f} to {quality.max():.3f}{line}; certified policies outlined; the "
        "recommendation as a star."
    )


def _caption(frontier: pl.DataFrame, target: Target, limit: tuple[float, float] | None) -> str:
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
        cheaper = frontier.filter(
            ~pl.col("certified")
            & (pl.col(_COST) < float(rec[_COST][0]))
            & (pl.col(_QUALITY) >= limit[1])
        ).height
        if cheaper:
            text += (
                f" {cheaper:,} uncertified policies above the line are cheaper than the "
                "recommendation (star): they meet the target on this sample, but their drop is "
                "not bounded with enough confidence."
            )
    return text

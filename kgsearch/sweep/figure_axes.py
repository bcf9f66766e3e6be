"""Axis limits and ticks of the report's figures (kgsearch/sweep/figures.py): a wall-time unit, a y-range
that keeps the better trials legible, a searched range as the x-axis."""

from __future__ import annotations

import math


def time_unit(seconds: float) -> tuple[float, str]:
    """(divisor, name) for an axis of wall time up to `seconds`."""
    return (1.0, "seconds") if seconds < 180 else (60.0, "minutes") if seconds < 3 * 3600 else (3600.0, "hours")


def focus_range(values, mode: str = "max", keep: float = 0.5) -> tuple[float, float] | None:
    """y-limits that show the better `keep` share of the trials' values, or None when all of them fit
    anyway. One collapsed trial (val 0.2 beside winners at 0.97) would otherwise squeeze every trial
    that matters into a sliver of the axis; values outside are drawn at the edge (`clip_to`)."""
    finite = sorted(v for v in values if math.isfinite(v))
    if len(finite) < 4:
        return None
    if mode == "min":
        finite = finite[::-1]
    best, cut = finite[-1], finite[int((1.0 - keep) * (len(finite) - 1))]
    span = abs(best - cut) or abs(best) * 0.01 or 0.01
    worst_edge = cut - 0.15 * span if mode == "max" else cut + 0.15 * span
    best_edge = best + 0.08 * span if mode == "max" else best - 0.08 * span
    if abs(cut - finite[0]) <= 2 * span:
        return None  # the worse share spreads no wider than the better: matplotlib's own limits are fine
    return (worst_edge, best_edge) if mode == "max" else (best_edge, worst_edge)


def clip_to(values, limits: tuple[float, float] | None) -> tuple[list[float], list[bool]]:
    """(values moved inside `limits`, which of them were outside)."""
    if limits is None:
        return list(values), [False] * len(values)
    lo, hi = limits
    return [min(max(v, lo), hi) for v in values], [not lo <= v <= hi for v in values]


def range_axis(ax, spec: dict) -> None:
    """x from the searched range's low to high end; on a log axis three plain ticks, no 10^x clutter."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    if spec.get("type") == "choice":
        return
    low, high = float(spec["low"]), float(spec["high"])
    if (spec.get("type") == "loguniform" or spec.get("log")) and low > 0:
        ax.set_xscale("log")
        pad = (high / low) ** 0.04
        ax.set_xlim(low / pad, high * pad)
        ax.xaxis.set_major_locator(FixedLocator([low, math.sqrt(low * high), high]))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
    elif high > low:
        pad = (high - low) * 0.04
        ax.set_xlim(low - pad, high + pad)

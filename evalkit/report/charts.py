"""The report's charts, drawn by matplotlib and inlined as SVG text, each with its alt text.

Each function takes plain numbers (already computed by the analysis) and returns a `Chart`:
the SVG and a sentence carrying the same numbers (for screen readers and for anyone who cannot
read a picture); nothing here computes statistics.

Legibility rules the charts follow (issue 13.4): money axes print dollars (`$0.02`, never
`2e-05`), per-query costs are shown per 1,000 queries so ticks are round numbers, labels are
placed so they never overlap (a greedy search over a few offsets, in display pixels), every
chart is drawn at the content column's width, and the ladder is drawn in ladder order as
numbered arrows from rung to rung rather than a line that zig-zags when cost is not monotone.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import Formatter, LogLocator, MaxNLocator  # noqa: E402

from evalkit.analysis.verdicts import pts  # noqa: E402
from evalkit.money import usd  # noqa: E402

plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                     "axes.spines.right": False, "svg.hashsalt": "evalkit"})

WIDTH_IN = 13.2  # the content column (1,320 px at the SVG's 96 px per inch): CSS scales to fit
PER = 1000  # costs per query are plotted per 1,000 queries
COLORS = ("#1f5fa8", "#c2571a", "#2a7d3f", "#8e44ad", "#b8860b", "#555f6d", "#c0392b")
STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (3, 2)), (0, (1, 1)))


@dataclass(frozen=True)
class Chart:
    """An inline SVG and its alt text (the same numbers, in words)."""

    svg: str
    alt: str


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: inlined in HTML


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def volume(v: float) -> str:
    """A monthly volume as the table prints it: 175,000."""
    return f"{v:,.0f}"


class UsdFormatter(Formatter):
    """Dollar tick labels with the fewest decimals that print every tick exactly."""

    ticks: Sequence[float] = ()

    def set_locs(self, locs):
        self.ticks = list(locs)

    def __call__(self, x, pos=None):
        if abs(x) >= 1000:
            return f"${x:,.0f}"
        return f"{'-' if x < 0 else ''}${abs(x):.{tick_decimals(self.ticks or [x])}f}"


def tick_decimals(locs: Sequence[float], *, most: int = 10) -> int:
    """The decimals needed so that each tick value prints without rounding (0.015 -> 3)."""
    for d in range(most + 1):
        if all(abs(v * 10 ** d - round(v * 10 ** d)) < 1e-6 for v in locs):
            return d
    return most


class LogUsdFormatter(Formatter):
    """Dollar labels on a log axis (ticks at 1, 2, 5 x 10^k): `$0.005`, `$20`, `$5,000`."""

    def __call__(self, x, pos=None):
        if x <= 0:
            return ""
        if x >= 1:
            return f"${x:,.0f}" if abs(x - round(x)) < 1e-9 * x else f"${x:,.2f}"
        return f"${x:.{-math.floor(math.log10(x) + 1e-9)}f}"


class VolumeFormatter(Formatter):
    def __call__(self, x, pos=None):
        for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if x >= div:
                return f"{x / div:g}{suffix}"
        return f"{x:g}"


def _money_axis(axis, *, log: bool, decades: float = 1.0) -> None:
    if log:  # 1-2-5 ticks over a few decades; one a decade when there are many
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 3
                                          else (1.0,), numticks=12))
        axis.set_major_formatter(LogUsdFormatter())
        axis.set_minor_formatter(plt.NullFormatter())
    else:
        axis.set_major_locator(MaxNLocator(nbins=6))
        axis.set_major_formatter(UsdFormatter())


def _overlaps(box, boxes) -> bool:
    return any(box.overlaps(b) for b in boxes)


OFFSETS = ((7, 6), (7, -14), (-7, 6), (-7, -14), (7, 18), (-7, 18), (7, -26), (-7, -26),
           (0, 30), (0, -38))


def _place_labels(ax, points: Sequence[tuple[float, float]], texts: Sequence[str], *,
                  spans: Sequence[tuple[float, float]] = (), **kw) -> None:
    """Annotate each point with its text at the first offset that overlaps no earlier label,
    no point and no error bar (`spans`: each point's y extent); the last candidate wins if
    every one collides."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    taken = []
    for i, (x, y) in enumerate(points):
        lo, hi = spans[i] if i < len(spans) else (y, y)
        (x0, y0), (x1, y1) = ax.transData.transform([(x, lo), (x, hi)])
        taken.append(Bbox([[x0 - 5, y0 - 5], [x1 + 5, y1 + 5]]))
    for (x, y), text in zip(points, texts, strict=True):
        for dx, dy in OFFSETS:
            ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy),
                              ha="left" if dx >= 0 else "right", **kw)
            box = ann.get_window_extent(renderer).padded(4)
            if not _overlaps(box, taken) or (dx, dy) == OFFSETS[-1]:
                taken.append(box)
                break
            ann.remove()


def _bar(upper: float | None, lower: float | None) -> float:
    """An error bar's length `upper - lower`, never negative: a Wilson bound for 60 of 60 is
    0.9999999999999998, a hair under the mean 1.0, and matplotlib refuses the whole chart (and
    so the report) for that; an undefined bound (NaN, None) draws no bar."""
    return max(0.0, upper - lower) if _finite(upper) and _finite(lower) else 0.0


def quality_vs_cost(names: Sequence[str], cost: Sequence[float], mean: Sequence[float],
                    low: Sequence[float], high: Sequence[float], *, metric: str) -> Chart:
    """One point per variant at its cost per 1,000 queries, with the metric's 95% CI, and
    numbered arrows in ladder order (rung 1 -> 2 -> ...)."""
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 4.2))
    pts_ = [(i + 1, n, c * PER, m, lo, hi) for i, (n, c, m, lo, hi)
            in enumerate(zip(names, cost, mean, low, high)) if _finite(c) and _finite(m)]
    log = False
    if pts_:
        xs, ys = [p[2] for p in pts_], [p[3] for p in pts_]
        yerr = [[_bar(m, lo) for *_, m, lo, _ in pts_], [_bar(hi, m) for *_, m, _, hi in pts_]]
        ax.errorbar(xs, ys, yerr=yerr, fmt="o", color="#1f5fa8", ecolor="#1f5fa8", capsize=3,
                    zorder=3)
        log = min(xs) > 0 and max(xs) / min(xs) > 20
        if log:
            ax.set_xscale("log")
            _money_axis(ax.xaxis, log=True, decades=math.log10(max(xs) / min(xs)))
        for a, b in zip(pts_, pts_[1:]):
            ax.annotate("", xy=(b[2], b[3]), xytext=(a[2], a[3]), zorder=2,
                        arrowprops={"arrowstyle": "-|>", "color": "#9aa5b1", "lw": 1,
                                    "shrinkA": 5, "shrinkB": 5,
                                    "connectionstyle": "arc3,rad=0.12"})
        ax.margins(x=0.12, y=0.15)
        ax.autoscale_view()
        spans = [(m - e0, m + e1) for m, e0, e1 in zip(ys, *yerr)]
        _place_labels(ax, list(zip(xs, ys)), [f"{p[0]}. {p[1]}" for p in pts_], spans=spans,
                      fontsize=9)
    if not log:
        _money_axis(ax.xaxis, log=False)
    ax.set_xlabel(f"cost per {PER:,} queries (USD)")
    ax.set_ylabel(f"{metric} (95% CI)")
    ax.set_title("Quality against cost (arrows follow the ladder)")
    alt = f"Quality against cost per {PER:,} queries, in ladder order: " + "; ".join(
        f"{i}. {n} {usd(c)} per {PER:,}, {metric} {m:.3f}"
        + (f" [{lo:.3f}, {hi:.3f}]" if _finite(lo) and _finite(hi) else "")
        for i, n, c, m, lo, hi in pts_) + "."
    return Chart(_svg(fig), alt)


@dataclass(frozen=True)
class BreakEven:
    """Where a step's two TCO lines cross: `volume` queries a month, or None (they never do)."""

    label: str  # "rag → fine-tuned"
    volume: float | None
    from_index: int  # which line (in `names`) the step starts from


def volume_range(break_evens: Sequence[BreakEven], volume_now: float | None,
                 default: tuple[float, float] = (1e2, 1e7)) -> tuple[float, float]:
    """The plotted volumes: the default decades widened to hold every break-even and the
    configured volume (so a break-even is never off the chart when it exists)."""
    vals = [b.volume for b in break_evens if _finite(b.volume) and b.volume > 0]
    if _finite(volume_now) and volume_now > 0:
        vals.append(volume_now)
    lo = min([default[0], *[v / 3 for v in vals]])
    hi = max([default[1], *[v * 3 for v in vals]])
    return 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))


def tco_vs_volume(names: Sequence[str], setup: Sequence[float], fixed: Sequence[float],
                  per_query: Sequence[float], *, horizon_months: float,
                  break_evens: Sequence[BreakEven] = (),
                  volume_now: float | None = None) -> Chart:
    """TCO = setup + H·(fixed + V·per_query) against monthly volume V, each variant labelled at
    the line's end, the configured volume drawn, each step's break-even marked and labelled."""
    import numpy as np

    lo, hi = volume_range(break_evens, volume_now)
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 4.6))
    vols = np.logspace(math.log10(lo), math.log10(hi), 200)
    ok = [all(_finite(x) for x in (s, f, q)) for s, f, q in zip(setup, fixed, per_query)]

    def tco_at(i: int, v):
        return setup[i] + horizon_months * (fixed[i] + v * per_query[i])

    ends = []
    for i, n in enumerate(names):
        if not ok[i]:
            continue
        ax.plot(vols, tco_at(i, vols), label=n, linewidth=1.6, color=COLORS[i % len(COLORS)],
                linestyle=STYLES[i % len(STYLES)])
        ends.append((i, n, float(tco_at(i, hi))))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi * 1.02)
    marked = [b for b in break_evens if _finite(b.volume) and lo <= b.volume <= hi
              and ok[b.from_index]]
    for b in marked:
        y = float(tco_at(b.from_index, b.volume))
        ax.plot([b.volume], [y], "o", color="#b44", markersize=6, zorder=4)
    if _finite(volume_now):
        ax.axvline(volume_now, color="#333", linewidth=0.8, linestyle=":")
        ax.annotate(f"your volume: {volume(volume_now)}/month", (volume_now, 1.0),
                    xycoords=("data", "axes fraction"), xytext=(4, -10),
                    textcoords="offset points", fontsize=8, color="#333")
    y_lo, y_hi = ax.get_ylim()
    _money_axis(ax.yaxis, log=True, decades=math.log10(y_hi / y_lo))
    ax.xaxis.set_major_formatter(VolumeFormatter())
    ax.set_xlabel("queries per month")
    ax.set_ylabel(f"TCO over {horizon_months:g} months (USD)")
    ax.set_title("Total cost of ownership against volume (red dots: break-even volumes)")
    _place_labels(ax, [(b.volume, float(tco_at(b.from_index, b.volume))) for b in marked],
                  [f"{b.label}: {volume(b.volume)}/month" for b in marked], fontsize=8,
                  color="#b44", bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none",
                                      "alpha": 0.9}, zorder=5)
    _label_line_ends(ax, hi, ends)
    alt = (f"TCO over {horizon_months:g} months against monthly volume, "
           f"{volume(lo)} to {volume(hi)} queries: "
           + "; ".join(f"{n} {usd(setup[i])} setup + {usd(per_query[i] * PER)} per {PER:,}"
                       + (f" + {usd(fixed[i])}/month" if fixed[i] else "")
                       for i, n, _ in ends) + ". "
           + ("Break-even volumes: " + "; ".join(f"{b.label} at {volume(b.volume)}/month"
                                                  for b in marked) + "."
              if marked else "No step's TCO lines cross in this range."))
    return Chart(_svg(fig), alt)


def _label_line_ends(ax, x_end: float, ends: list[tuple[int, str, float]]) -> None:
    """Name each line at its right end, nudged apart vertically so no two names overlap."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    placed: list[float] = []
    gap = 12  # px between label baselines
    for i, name, y in sorted(ends, key=lambda e: e[2]):
        py = to_px((x_end, y))[1]
        while any(abs(py - q) < gap for q in placed):
            py += 2
        placed.append(py)
        dy = py - to_px((x_end, y))[1]
        ax.annotate(name, (x_end, y), xytext=(6, dy), textcoords="offset points",
                    va="center", fontsize=9, color=COLORS[i % len(COLORS)],
                    annotation_clip=False)
    del renderer


def step_deltas(labels: Sequence[str], delta: Sequence[float], low: Sequence[float],
                high: Sequence[float], *, metric: str,
                title: str = "Each rung against the incumbent") -> Chart:
    """Each step's paired difference in points with its 95% CI, the numbers printed beside."""
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 0.8 + 0.45 * max(1, len(labels))))
    ys = list(range(len(labels)))[::-1]
    words = []
    for y, lab, d, lo, hi in zip(ys, labels, delta, low, high):
        if not _finite(d):
            words.append(f"{lab}: no difference computed")
            continue
        color = "#2a7d3f" if _finite(lo) and lo > 0 else "#b44" if _finite(hi) and hi < 0 \
            else "#777"
        ax.errorbar([d * 100], [y], xerr=[[_bar(d, lo) * 100], [_bar(hi, d) * 100]],
                    fmt="o", color=color, capsize=3)
        ci = f" [{pts(lo)}, {pts(hi)}]" if _finite(lo) and _finite(hi) else ""
        ax.annotate(f"{pts(d)}{ci}", ((hi if _finite(hi) else d) * 100, y), xytext=(8, 0),
                    textcoords="offset points", va="center", fontsize=8, color=color)
        words.append(f"{lab}: {pts(d)} pts{ci}")
    ax.axvline(0, color="#333", linewidth=0.8)
    ax.margins(x=0.15)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels)
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set_xlabel(f"Δ {metric}, points (paired, 95% CI)")
    ax.set_title(title)
    alt = f"{title}: paired difference in {metric}, points with 95% CI: " + \
        "; ".join(words) + "."
    return Chart(_svg(fig), alt)

"""The report's charts, drawn by matplotlib and inlined as SVG text.

Each function takes plain numbers (already computed by the analysis) and returns an SVG string;
nothing here computes statistics.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                     "axes.spines.right": False})


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: inlined in HTML


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def quality_vs_cost(names: Sequence[str], cost: Sequence[float], mean: Sequence[float],
                    low: Sequence[float], high: Sequence[float], *, metric: str) -> str:
    """One point per variant, ladder order connected, with the metric's 95% CI as error bars."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    pts = [(n, c, m, lo, hi) for n, c, m, lo, hi in zip(names, cost, mean, low, high)
           if _finite(c) and _finite(m)]
    if pts:
        xs = [p[1] for p in pts]
        ys = [p[2] for p in pts]
        yerr = [[m - lo if _finite(lo) else 0 for _, _, m, lo, _ in pts],
                [hi - m if _finite(hi) else 0 for _, _, m, _, hi in pts]]
        ax.plot(xs, ys, color="#9aa5b1", linewidth=1, zorder=1)
        ax.errorbar(xs, ys, yerr=yerr, fmt="o", color="#1f5fa8", ecolor="#1f5fa8", capsize=3,
                    zorder=2)
        for n, x, y, *_ in pts:
            ax.annotate(n, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        if min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
    ax.set_xlabel("cost per query (USD)")
    ax.set_ylabel(f"{metric} (95% CI)")
    ax.set_title("Quality against cost per query")
    return _svg(fig)


def tco_vs_volume(names: Sequence[str], setup: Sequence[float], fixed: Sequence[float],
                  per_query: Sequence[float], *, horizon_months: float,
                  break_evens: Sequence[tuple[str, float]] = (),
                  volume_range: tuple[float, float] = (1e2, 1e7)) -> str:
    """TCO = setup + H·(fixed + V·per_query) against monthly volume V, break-evens marked."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    vols = np.logspace(math.log10(volume_range[0]), math.log10(volume_range[1]), 200)
    for n, s, f, q in zip(names, setup, fixed, per_query):
        if not all(_finite(x) for x in (s, f, q)):
            continue
        ax.plot(vols, s + horizon_months * (f + vols * q), label=n, linewidth=1.4)
    for label, v in break_evens:
        if _finite(v) and volume_range[0] <= v <= volume_range[1]:
            ax.axvline(v, color="#b44", linestyle=":", linewidth=1)
            ax.annotate(label, (v, 0.95), xycoords=("data", "axes fraction"), rotation=90,
                        fontsize=7, color="#b44", ha="right", va="top")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("queries per month")
    ax.set_ylabel(f"TCO over {horizon_months:g} months (USD)")
    ax.set_title("Total cost of ownership against volume")
    if ax.lines:
        ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def step_deltas(labels: Sequence[str], delta: Sequence[float], low: Sequence[float],
                high: Sequence[float], *, metric: str) -> str:
    """Each step's paired difference with its 95% CI; zero marked."""
    fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.45 * max(1, len(labels))))
    ys = list(range(len(labels)))[::-1]
    for y, d, lo, hi in zip(ys, delta, low, high):
        if not _finite(d):
            continue
        color = "#2a7d3f" if _finite(lo) and lo > 0 else "#b44" if _finite(hi) and hi < 0 \
            else "#777"
        ax.errorbar([d], [y], xerr=[[d - lo if _finite(lo) else 0], [hi - d if _finite(hi) else 0]],
                    fmt="o", color=color, capsize=3)
    ax.axvline(0, color="#333", linewidth=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels)
    ax.set_xlabel(f"Δ {metric} (paired, 95% CI)")
    ax.set_title("Each rung against the incumbent")
    return _svg(fig)

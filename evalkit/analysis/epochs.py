"""Repeated sampling (`--epochs K`, issue 15.5): how much of a variant's score is noise.

Input is `epoch_scores.csv` (one row per answer: variant, item, epoch, metric, value). Per
variant and for the primary metric:

- `means`: the mean over items of each epoch, in epoch order;
- `spread`: max minus min of those means, and `sd`: their sample standard deviation (ddof=1)
  — how far one run of the ladder can move on sampling alone;
- `flaky_items`: items whose outcome differs between epochs (any two non-NaN values differ:
  a 0/1 metric that flips, or a graded one that moves), sorted by id.

The variant's reported mean and interval come from scores.csv, which holds each item's mean
over its epochs (so the interval is clustered by item; see evalkit.pipeline.experiment). When
no provider of the run samples (the local provider is deterministic), the spread is 0 by
construction and `note` says so instead of presenting it as evidence of stability.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

MAX_LISTED = 50  # flaky item ids listed per variant; `n_flaky` counts them all


def is_flaky(values: Iterable[float]) -> bool:
    """An item's outcome differs between epochs: two of its non-NaN values differ (the one
    definition, shared by summary.json's `flaky_items` and the report's "flaky" view)."""
    return len({float(v) for v in values if not math.isnan(v)}) > 1


def item_epochs(by_epoch: pd.DataFrame, *, metric: str) -> dict[tuple[str, str], list[float]]:
    """(variant, item id) -> the metric's value in each epoch, in epoch order (NaN where the
    epoch has none), for the report's per-epoch view."""
    rows = by_epoch[by_epoch["metric"] == metric]
    if rows.empty:
        return {}
    wide = rows.pivot_table(index=["variant", "item_id"], columns="epoch", values="value",
                            aggfunc="last", dropna=False)
    wide = wide.reindex(columns=range(int(rows["epoch"].max()) + 1))
    return {(str(v), str(i)): [float(x) for x in vals]
            for (v, i), vals in zip(wide.index, wide.to_numpy(), strict=True)}


def summarize_epochs(by_epoch: pd.DataFrame, *, ladder: list[str], metric: str,
                     sampling: bool) -> dict[str, Any]:
    """The `epochs` block of summary.json (see the module docstring)."""
    rows = by_epoch[by_epoch["metric"] == metric]
    k = int(rows["epoch"].max()) + 1 if len(rows) else 1
    out: dict[str, Any] = {"k": k, "metric": metric, "sampling": sampling, "variants": {}}
    for name in ladder:
        mine = rows[rows["variant"] == name]
        if mine.empty:
            continue
        wide = mine.pivot_table(index="item_id", columns="epoch", values="value",
                                aggfunc="last", dropna=False)
        means = [float(np.nanmean(wide[e])) if wide[e].notna().any() else math.nan
                 for e in sorted(wide.columns)]
        flaky = sorted(str(i) for i, row in wide.iterrows() if is_flaky(row))
        finite = [m for m in means if math.isfinite(m)]
        out["variants"][name] = {
            "means": means,
            "spread": (max(finite) - min(finite)) if finite else math.nan,
            "sd": float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan,
            "n_flaky": len(flaky),
            "flaky_items": flaky[:MAX_LISTED],
        }
    if not sampling:
        out["note"] = ("every provider of this run is deterministic (the same request gets "
                       "the same answer), so the epochs cannot differ: a spread of 0 here says "
                       "nothing about sampling noise")
    return out


def epoch_lines(summary: dict[str, Any]) -> list[str]:
    """Console lines: per variant the spread across epochs and the flaky items."""
    block = summary.get("epochs")
    if not block:
        return []
    lines = [f"epochs: {block['k']} per item; {block['metric']} per epoch, spread "
             f"(max - min) and flaky items (outcome differs between epochs):"]
    for name, v in block["variants"].items():
        means = ", ".join("–" if m is None or not math.isfinite(m) else f"{m:.3f}"
                          for m in v["means"])
        spread = v["spread"]
        listed = ", ".join(v["flaky_items"][:10]) + (" ..." if v["n_flaky"] > 10 else "")
        lines.append(f"  {name}: [{means}], spread "
                     f"{'–' if spread is None else f'{spread:.3f}'}, {v['n_flaky']} flaky"
                     + (f" ({listed})" if v["n_flaky"] else ""))
    if block.get("note"):
        lines.append(f"  note: {block['note']}")
    return lines

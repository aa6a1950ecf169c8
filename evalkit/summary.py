"""Per-variant summary of a scores table: what `summary.json` holds.

Schema version 1 holds, per variant, each metric's mean and n (items scored) and n_nan
(items not scorable), plus call counts and cost/latency/token aggregates; macro-F1 for
classification is computed from the predicted labels, since it is not a mean of items.
Confidence intervals, paired steps and verdicts are added by `evalkit.analysis`.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from evalkit import metrics
from evalkit.journal import Prediction
from evalkit.scoring import quality_metrics
from evalkit.testset import Task

SCHEMA_VERSION = 1


def metric_stats(values: pd.Series) -> dict[str, Any]:
    n_nan = int(values.isna().sum())
    clean = values.dropna()
    return {"mean": float(clean.mean()) if len(clean) else math.nan,
            "n": int(len(clean)), "n_nan": n_nan}


def summarize_variant(task: Task, variant: str, scores: pd.DataFrame,
                      predictions: list[Prediction], items_expected: dict[str, Any]) -> dict:
    mine = scores[scores["variant"] == variant]
    by_metric = {m: g.set_index("item_id")["value"] for m, g in mine.groupby("metric")}
    out: dict[str, Any] = {"metrics": {}}
    for m in (*quality_metrics(task), "recall_at_k", "mrr"):
        if m in by_metric:
            out["metrics"][m] = metric_stats(by_metric[m])
    preds = [p for p in predictions if p.variant == variant]
    if task.type == "classification":
        ok = [p for p in preds if p.error_class is None and p.item_id in items_expected]
        y_true = [items_expected[p.item_id] for p in ok]
        y_pred = [metrics.parse_label(p.output or "", list(task.labels)) or "<none>" for p in ok]
        out["metrics"]["macro_f1"] = {
            "mean": metrics.macro_f1(y_true, y_pred, labels=list(task.labels)) if ok else math.nan,
            "n": len(ok), "n_nan": len(preds) - len(ok)}
    lat = by_metric.get("latency_s", pd.Series(dtype=float))
    cost = by_metric.get("cost_usd", pd.Series(dtype=float))
    out["latency"] = {"p50_s": _q(lat, 0.5), "p95_s": _q(lat, 0.95)}
    out["tokens"] = {"input": _mean(by_metric.get("input_tokens")),
                     "output": _mean(by_metric.get("output_tokens"))}
    out["cost"] = {"per_query_usd": _mean(cost), "total_notional_usd": float(cost.sum())}
    out["calls"] = {"items": len(preds), "errors": sum(p.error_class is not None for p in preds),
                    "cached": sum(p.cached for p in preds)}
    return out


def build_summary(*, run_id: str, task: Task, variants: list[str], scores: pd.DataFrame,
                  predictions: list[Prediction], items_expected: dict[str, Any]) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "testset": task.name,
        "task_type": task.type,
        "primary_metric": task.primary_metric,
        "ladder": variants,
        "variants": {v: summarize_variant(task, v, scores, predictions, items_expected)
                     for v in variants},
    }


def _q(s: pd.Series, q: float) -> float:
    return float(s.quantile(q)) if s is not None and len(s) else math.nan


def _mean(s: pd.Series | None) -> float:
    return float(s.mean()) if s is not None and len(s) else math.nan

"""Predictions -> per-item scores, in long format (run, variant, item_id, metric, value).

Which metrics apply follows from the task type; retrieval metrics are added for items with
gold `doc_ids` on variants that retrieved passages. A failed call scores NaN on the quality
metrics ("not scorable"), so errors are counted, never silently averaged in as zeros.
"""

from __future__ import annotations

import math

import pandas as pd

from evalkit.data.testset import Item, Task
from evalkit.run.journal import Prediction
from evalkit.scoring import metrics

SCORE_COLUMNS = ["run", "variant", "item_id", "metric", "value"]
COST_METRICS = ("latency_s", "input_tokens", "output_tokens", "cost_usd")


_TEXT_METRICS = {"exact_match": metrics.exact_match, "token_f1": metrics.token_f1,
                 "contains": metrics.contains}


def quality_metrics(task: Task) -> tuple[str, ...]:
    """The per-item quality metrics task.yaml asks for: the primary, then the secondary ones."""
    if task.type == "classification":
        return ("accuracy",)
    declared = tuple(m for m in (task.primary_metric, *task.secondary_metrics)
                     if m in _TEXT_METRICS)
    return declared or tuple(_TEXT_METRICS)  # a Task built in code without metric names


def score_item(task: Task, item: Item, pred: Prediction) -> dict[str, float]:
    out: dict[str, float] = {}
    ok = pred.error_class is None and pred.output is not None
    if task.type == "classification":
        label = metrics.parse_label(pred.output, list(task.labels)) if ok else None
        out["accuracy"] = float(label == item.expected) if ok else math.nan
    else:
        for name in quality_metrics(task):
            out[name] = _TEXT_METRICS[name](pred.output, item.references) if ok else math.nan
    if pred.retrieved and item.doc_ids:
        out["recall_at_k"] = metrics.recall_at_k(pred.retrieved, item.doc_ids)
        out["mrr"] = metrics.mrr(pred.retrieved, item.doc_ids)
    if ok:
        out["latency_s"] = pred.latency_s
        out["input_tokens"] = float(pred.input_tokens)
        out["output_tokens"] = float(pred.output_tokens)
        out["cost_usd"] = pred.cost_usd
    return out


def score_predictions(run_id: str, task: Task, items: dict[str, Item],
                      predictions: list[Prediction]) -> pd.DataFrame:
    rows = []
    for pred in predictions:
        item = items.get(pred.item_id)
        if item is None:
            continue
        for metric, value in score_item(task, item, pred).items():
            rows.append((run_id, pred.variant, pred.item_id, metric, value))
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)

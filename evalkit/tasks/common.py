"""Metrics of every task type: retrieval against gold `doc_ids`, and the costs of an answer.

Retrieval metrics are scored wherever a variant retrieved passages and the item names its
gold documents; cost metrics on every answered item. The gate checks costs as costs (a rise
fails), never as quality, which `group="cost"` and `higher_is_better=False` tell it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from evalkit.tasks.base import ItemContext, Metric, register_metric

INF = math.inf


def recall_at_k(retrieved: Sequence[str], gold: Sequence[str], k: int | None = None) -> float:
    """Share of gold doc ids found in the first k retrieved ids; NaN without gold ids."""
    if not gold:
        return math.nan
    top = set(retrieved[:k] if k else retrieved)
    gold_set = set(gold)
    return len(top & gold_set) / len(gold_set)


def mrr(retrieved: Sequence[str], gold: Sequence[str]) -> float:
    """Reciprocal rank of the first gold doc id among retrieved ids; NaN without gold ids."""
    if not gold:
        return math.nan
    gold_set = set(gold)
    for rank, doc in enumerate(retrieved, start=1):
        if doc in gold_set:
            return 1.0 / rank
    return 0.0


def _retrieval(fn):
    def compute(ctx: ItemContext) -> float | None:
        if not ctx.retrieved or not ctx.item.doc_ids:
            return None
        return fn(ctx.retrieved, ctx.item.doc_ids)
    return compute


def _field(name: str):
    return lambda ctx: float(getattr(ctx.prediction, name))


register_metric(Metric("recall_at_k", "item", _retrieval(recall_at_k), group="retrieval",
                       description="share of the gold doc_ids among the retrieved passages"))
register_metric(Metric("mrr", "item", _retrieval(mrr), group="retrieval",
                       description="reciprocal rank of the first gold doc among the retrieved"))
for _name, _what in (("latency_s", "seconds per answer"), ("input_tokens", "prompt tokens"),
                     ("output_tokens", "answer tokens"), ("cost_usd", "dollars per answer")):
    register_metric(Metric(_name, "item", _field(_name), group="cost", range=(0.0, INF),
                           higher_is_better=False, description=_what))

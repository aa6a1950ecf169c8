"""Predictions -> per-item scores, in long format (run, variant, item_id, metric, value).

Which metrics apply comes from the registries (evalkit.tasks): the task type parses each
output once, then every per-item metric task.yaml asks for is computed on it; retrieval
metrics are added for items with gold `doc_ids` on variants that retrieved passages, and cost
metrics for every answered item. A failed call scores NaN on the quality metrics ("not
scorable"), so errors are counted, never silently averaged in as zeros.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from evalkit import tasks
from evalkit.data.testset import Document, Item, Task
from evalkit.run.journal import Prediction
from evalkit.strategies.retrieval import chunk_corpus

SCORE_COLUMNS = ["run", "variant", "item_id", "metric", "value"]
COST_METRICS = tasks.metrics_in("cost")  # latency_s, input_tokens, output_tokens, cost_usd


def passage_texts(task: Task, docs: Sequence[Document]) -> dict[tuple[str, int], str]:
    """(doc id, chunk) -> passage text, chunked with the task's corpus settings (what the
    TF-IDF and embedding indexes are built from)."""
    c = task.corpus
    return {(p.doc_id, p.chunk): p.text
            for p in chunk_corpus(docs, size=c.chunk_size, overlap=c.chunk_overlap)}


def _unasked(task: Task) -> tuple[str, ...]:
    """Opt-in metrics task.yaml did not name, scored wherever they apply (the judge's score,
    once the judge has graded the run)."""
    asked = set(quality_metrics(task))
    return tuple(m for m in tasks.metric_names(task_type=task.type, level="item",
                                               group="quality")
                 if m not in asked and tasks.metric(m).opt_in)


def quality_metrics(task: Task) -> tuple[str, ...]:
    """The per-item quality metrics task.yaml asks for: the primary, then the secondary ones."""
    return tasks.quality_metrics(task)


def score_item(task: Task, item: Item, pred: Prediction,
               passage_texts: Mapping[tuple[str, int], str] | None = None,
               external: Mapping[str, float] | None = None) -> dict[str, float]:
    """Every applicable metric of one prediction. `passage_texts` maps (doc id, chunk) to the
    passage's text, for metrics that read what a rung was shown (groundedness); `external`
    holds this answer's scores made elsewhere (the judge's), by metric name."""
    ok = pred.error_class is None and pred.output is not None
    parsed = tasks.task_type(task.type).parse(pred.output, task) if ok else None
    texts = passage_texts or {}
    shown = tuple(t for doc, chunk in pred.passages
                  if (t := texts.get((doc, chunk))) is not None)
    ctx = tasks.ItemContext(task, item, pred.output if ok else None, parsed,
                            tuple(pred.retrieved or ()), pred, shown, external or {})
    out: dict[str, float] = {}
    for name in (*quality_metrics(task), *_unasked(task)):
        spec = tasks.metric(name)
        if spec.applies is not None and not spec.applies(ctx):
            continue  # not applicable here (no passages to be grounded in): no score at all
        out[name] = float(spec.compute(ctx)) if ok else math.nan
    for name in tasks.metric_names(task_type=task.type, level="item", group="retrieval"):
        value = tasks.metric(name).compute(ctx)
        if value is not None:
            out[name] = float(value)
    if ok:
        for name in tasks.metric_names(task_type=task.type, level="item", group="cost"):
            out[name] = float(tasks.metric(name).compute(ctx))
    return out


def score_predictions(run_id: str, task: Task, items: dict[str, Item],
                      predictions: list[Prediction], *, docs: Sequence[Document] = (),
                      external: Mapping[tuple[str, str], Mapping[str, float]] | None = None,
                      with_epoch: bool = False) -> pd.DataFrame:
    """scores.csv's rows. `docs` is the corpus, chunked as the retrievers chunk it, so a
    journaled (doc id, chunk) finds the passage's text again; `external` maps (variant, item
    id) to the scores made elsewhere for that answer (the judge's); `with_epoch`: one row per
    answer, with its `epoch` column (--epochs)."""
    texts = passage_texts(task, docs) if any(p.passages for p in predictions) else {}
    rows = []
    for pred in predictions:
        item = items.get(pred.item_id)
        if item is None:
            continue
        made = (external or {}).get((pred.variant, pred.item_id))
        for metric, value in score_item(task, item, pred, texts, made).items():
            rows.append((run_id, pred.variant, pred.item_id, metric, value)
                        + ((pred.epoch,) if with_epoch else ()))
    return pd.DataFrame(rows, columns=SCORE_COLUMNS + (["epoch"] if with_epoch else []))


def item_means(by_epoch: pd.DataFrame) -> pd.DataFrame:
    """Each (variant, item, metric) averaged over its epochs (NaN epochs, i.e. failed calls,
    left out; all NaN stays NaN), in scores.csv's columns and first-seen order."""
    grouped = by_epoch.groupby(["run", "variant", "item_id", "metric"], sort=False)["value"]
    return grouped.mean().reset_index()[SCORE_COLUMNS]

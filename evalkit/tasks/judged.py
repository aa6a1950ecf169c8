"""`judge`: the LLM judge's rubric score, a per-item metric like any other.

The judge (evalkit.scoring.judge) grades each answer against the references with a rubric and
its verdict maps to a score in [0, 1] (correct 1, partially_correct 0.5, incorrect 0). The score
is computed outside this process, by a model call, so scoring reads it from the item's
`external` scores (filled from the run folder's judge journal); a reply that did not parse is
NaN ("not scorable"), and an answer the judge never graded gets no score at all. Because the
metric is registered here, task.yaml may name it (`metrics.primary: judge`), and verdicts, the
report and the gate read it through the registry like ROUGE or accuracy.
"""

from __future__ import annotations

from evalkit.tasks.base import ItemContext, Metric, register_metric

JUDGE_METRIC = "judge"


def _judged(ctx: ItemContext) -> float:
    return ctx.external[JUDGE_METRIC]


def _was_judged(ctx: ItemContext) -> bool:
    return JUDGE_METRIC in ctx.external


register_metric(Metric(
    JUDGE_METRIC, "item", _judged, task_types=("qa", "generation"), range=(0.0, 1.0),
    applies=_was_judged, opt_in=True,
    not_applicable="the LLM judge has not graded this variant (configure the experiment "
                   "config's judge: section, or run `evalkit judge score RUN_DIR`)",
    description="the LLM judge's rubric score: correct 1, partially correct 0.5, incorrect 0"))

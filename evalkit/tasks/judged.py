"""`judge`: the LLM judge's rubric score, a per-item metric like any other.

The judge (evalkit.scoring.judge) grades each answer against the references with a rubric and
its verdict maps to a score in [0, 1] (correct 1, partially_correct 0.5, incorrect 0). The score
is computed outside this process, by a model call, so scoring reads it from the item's
`external` scores (filled from the run folder's judge journal); a reply that did not parse is
NaN ("not scorable"), and an answer the judge never graded gets no score at all. Because the
metric is registered here, task.yaml may name it (`metrics.primary: judge`), and verdicts, the
report and the gate read it through the registry like ROUGE or accuracy.

`judge_groundedness` is the judge's counterpart of the offline `groundedness`: on answers a
rung wrote from retrieved passages, whether the passages support them (supported 1, partially
0.5, unsupported 0), asked only when the config says `judge.groundedness: true`.
"""

from __future__ import annotations

from evalkit.tasks.base import REQUEST_OUTPUT_TOKENS, Metric, register_metric

JUDGE_METRIC = "judge"
JUDGE_GROUNDED_METRIC = "judge_groundedness"
# The judge's requests are of no task type: they carry this one, and a verdict (a short JSON
# object with a reason) needs about this many output tokens.
JUDGE_REQUEST = "judge"
REQUEST_OUTPUT_TOKENS.register(JUDGE_REQUEST, 256)


def _external(name: str):
    return lambda ctx: ctx.external[name]


def _made(name: str):
    return lambda ctx: name in ctx.external


register_metric(Metric(
    JUDGE_METRIC, "item", _external(JUDGE_METRIC), task_types=("qa", "generation"),
    range=(0.0, 1.0), applies=_made(JUDGE_METRIC), opt_in=True,
    not_applicable="the LLM judge has not graded this variant (configure the experiment "
                   "config's judge: section, or run `evalkit judge score RUN_DIR`)",
    description="the LLM judge's rubric score: correct 1, partially correct 0.5, incorrect 0"))
register_metric(Metric(
    JUDGE_GROUNDED_METRIC, "item", _external(JUDGE_GROUNDED_METRIC),
    task_types=("generation",), range=(0.0, 1.0), applies=_made(JUDGE_GROUNDED_METRIC),
    opt_in=True,
    not_applicable="the judge checks groundedness only on answers written from retrieved "
                   "passages, with judge.groundedness: true in the experiment config",
    description="the judge's verdict on whether the passages support the answer: supported "
                "1, partially 0.5, unsupported 0"))

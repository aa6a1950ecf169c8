"""A failed call in a step: every per-run metric reads it as a wrong answer, none fails on it.

run_metric_deltas pairs two variants item by item and gives a failed call the parse None
(summary.py), so each registered per-run metric of each task type gets None among the
parsed outputs. One that called a text method on it ended the whole summary (no
summary.json, no report, `evalkit summarize` failing the same way) as soon as any call of a
multi-variant QA run had failed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from evalkit.analysis.summary import RunData, run_metric_deltas
from evalkit.data.testset import Task
from evalkit.run.journal import Prediction
from evalkit.tasks import RunContext, metric, metric_names

# per task type: a Task, then (expected, answer text, parsed answer) for right answers
CASES = {
    "classification": (Task(name="t", type="classification", instructions="",
                            labels={"a": "the a", "b": "the b"}),
                       [("a", "a", "a"), ("b", "b", "b")]),
    "extraction": (Task(name="t", type="extraction", instructions="",
                        primary_metric="field_accuracy", fields={"x": "an x"}),
                   [({"x": "1"}, '{"x": "1"}', {"x": "1"}), ({"x": "2"}, '{"x": "2"}',
                                                            {"x": "2"})]),
    "qa": (Task(name="t", type="qa", instructions="", primary_metric="token_f1"),
           [(["paris"], "paris", "paris"), (None, "unknown", "unknown")]),
}


@pytest.mark.parametrize("task_type", sorted(CASES))
def test_every_run_metric_reads_a_failed_call_as_an_answer_not_an_error(task_type):
    task, good = CASES[task_type]
    names = metric_names(task_type=task_type, level="run")
    assert names, f"{task_type} has no per-run metric to check"
    expected = [e for e, _, _ in good] * 5
    right = [p for _, _, p in good] * 5
    failed = list(right)
    failed[1] = None  # a failed call where an abstention (or a label, a record) was due
    lower = []
    for name in names:
        spec = metric(name)
        values = []
        for parsed in (right, failed):
            statistic = spec.compute(RunContext(task, expected, parsed))
            assert statistic is not None, name
            value = statistic(np.arange(len(expected)))
            assert isinstance(value, float) and (math.isnan(value) or 0 <= value <= 1), name
            values.append(value)
        with_answer, with_failure = values
        # a failed call is a wrong answer: never better than the right one, and some metric
        # of the type says it is worse (read as right, every one would be equal)
        assert not with_failure > with_answer, name
        if with_failure < with_answer:
            lower.append(name)
    assert lower, f"no per-run metric of {task_type} counts the failed call as wrong"


def test_a_qa_step_with_a_failed_call_is_summarised_with_it_counted_wrong():
    task = Task(name="t", type="qa", instructions="", primary_metric="token_f1",
                secondary_metrics=("abstain_recall",))
    ids = [f"i{i}" for i in range(40)]
    expected = {i: (None if n % 4 == 0 else ["paris"]) for n, i in enumerate(ids)}
    answer = {i: ("unknown" if expected[i] is None else "paris") for i in ids}
    preds = [Prediction("A", i, answer[i]) for i in ids]
    preds += [Prediction("B", i, answer[i]) for i in ids[1:]]
    preds.append(Prediction("B", ids[0], None, error_class="APIStatusError", error="400"))
    data = RunData(run_id="r", testset="t", task_type="qa", primary_metric="token_f1",
                   ladder=["A", "B"], scores=None, item_ids=ids, expected=expected, task=task,
                   predictions=preds)
    deltas = run_metric_deltas(data, "A", "B", seed=0)
    # ten unanswerable items, A abstains on all; B's failed call was one of them
    assert deltas["abstain_recall"]["delta"] == pytest.approx(0.9 - 1.0)

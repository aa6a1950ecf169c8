"""Abstention in QA (issue 11.4): unanswerable items, abstain phrases, and who gets credit.

A planted set of 5 answerable and 5 unanswerable questions: a rung that says "unknown" to
everything must score abstention recall 1.0, precision 5/10, answerable F1 0, and an overall
token F1 of 5/10 that summary.json attributes wholly to abstaining. The local provider's RAG
rung must answer the answerable questions and abstain where its passages do not support an
answer. Loading keeps `expected: []` an error and checks `answerable`/`abstain_phrases`.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from evalkit.data.testset import Task, TestsetError, load_testset
from evalkit.pipeline.experiment import RunConfig, run_experiment
from evalkit.tasks.qa import abstains

FIXTURES = Path(__file__).parent / "fixtures"
UNANSWERABLE = [  # nothing in tiny-qa's docs answers these
    {"id": "un-1", "input": "Which city hosts the annual Brightlane gardening festival?",
     "expected": None},
    {"id": "un-2", "input": "What colour is the mascot of the chess club?", "answerable": False},
    {"id": "un-3", "input": "How many moons does the planet Zorblax have?", "expected": None},
    {"id": "un-4", "input": "Who painted the mural in the staff canteen?", "expected": None},
]


def _planted(tmp_path: Path, *, metrics: str) -> Path:
    root = tmp_path / "planted-qa"
    shutil.copytree(FIXTURES / "tiny-qa", root)
    text = (root / "task.yaml").read_text().replace("name: tiny-qa", "name: planted-qa")
    (root / "task.yaml").write_text(re.sub(r"metrics:\n(  .*\n)+", metrics, text))
    # tiny-qa's qte-04 ("unknown" as its answer, the old convention) becomes unanswerable
    answerable = [line.replace('"expected": ["unknown"]', '"expected": null')
                  for line in (root / "test.jsonl").read_text().splitlines()]
    extra = [json.dumps({"id": "qte-06", "input": "Which plan costs €12 per user each month?",
                         "expected": "Team plan", "doc_ids": ["pricing"]})]
    (root / "test.jsonl").write_text("\n".join([*answerable, *extra,
                                               *map(json.dumps, UNANSWERABLE)]) + "\n")
    return root


ALL_METRICS = ("metrics:\n  primary: token_f1\n  secondary: [exact_match, answerable_f1, "
               "abstain_precision, abstain_recall, abstain_f1]\n")


def test_always_unknown_gets_full_abstention_recall_and_no_answer_credit(
        tmp_path, run_dirs, fake_provider_factory):
    fake_provider_factory()  # answers every QA request "unknown"
    root = _planted(tmp_path, metrics=ALL_METRICS)
    result = run_experiment(RunConfig(testset=str(root), variants=["prompt-only"], **run_dirs),
                            progress=False)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    v = summary["variants"]["prompt-only"]
    m = {name: est["mean"] for name, est in v["metrics"].items()}
    assert m["abstain_recall"] == 1.0
    assert m["abstain_precision"] == pytest.approx(5 / 10)
    assert m["abstain_f1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert m["answerable_f1"] == 0.0 and v["metrics"]["answerable_f1"]["n"] == 5
    assert m["token_f1"] == pytest.approx(5 / 10) and m["exact_match"] == pytest.approx(5 / 10)
    split = v["answerability"]
    assert split["answerable"] == {"n": 5, "n_nan": 0, "primary_mean": 0.0, "abstained": 5}
    assert split["unanswerable"] == {"n": 5, "n_nan": 0, "primary_mean": 1.0, "abstained": 5}
    assert split["primary_share_from_abstaining"] == 1.0
    assert any(n.startswith("prompt-only: 100% of its token_f1 comes from abstaining on the 5 "
                            "unanswerable items; on the 5 answerable ones it scores 0.000")
               for n in summary["notes"])


def test_local_rag_answers_the_answerable_and_abstains_on_the_rest(tmp_path, run_dirs):
    root = _planted(tmp_path, metrics=ALL_METRICS)
    result = run_experiment(RunConfig(testset=str(root), variants=["prompt-only", "rag"],
                                      **run_dirs), progress=False)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    prompt, rag = summary["variants"]["prompt-only"], summary["variants"]["rag"]
    # without passages the local provider knows nothing, so it abstains on every item
    assert prompt["answerability"]["answerable"]["abstained"] == 5
    assert prompt["metrics"]["abstain_recall"]["mean"] == 1.0
    # with passages it answers answerable questions, yet still declines the unsupported ones
    assert rag["answerability"]["answerable"]["abstained"] < 5
    assert rag["metrics"]["answerable_f1"]["mean"] > 0.3
    assert rag["answerability"]["unanswerable"]["abstained"] >= 4
    assert rag["metrics"]["abstain_precision"]["mean"] > prompt["metrics"][
        "abstain_precision"]["mean"]
    step = summary["steps"][0]
    assert "prompt-only: 100% of its token_f1 comes from abstaining" in step["reason"]


@pytest.mark.parametrize("row, field, words", [
    ({"id": "x", "input": "q", "expected": []}, "expected", "an empty list of answers"),
    ({"id": "x", "input": "q", "expected": "a", "answerable": False}, "expected",
     "has no answer"),
    ({"id": "x", "input": "q", "expected": "a", "answerable": "no"}, "answerable",
     "must be true or false"),
    ({"id": "x", "input": "q"}, "expected", "missing required field"),
])
def test_unanswerable_items_are_checked_at_load(tmp_path, row, field, words):
    root = _planted(tmp_path, metrics=ALL_METRICS)
    with (root / "test.jsonl").open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    with pytest.raises(TestsetError) as info:
        load_testset(root)
    err = str(info.value)
    assert "test.jsonl:11:" in err and f"field '{field}'" in err and words in err


def test_classification_items_cannot_be_unanswerable(copy_fixture):
    root = copy_fixture("tiny-intents")
    with (root / "test.jsonl").open("a") as fh:
        fh.write(json.dumps({"id": "z9", "input": "hello there", "expected": None}) + "\n")
    with pytest.raises(TestsetError, match="field 'expected': missing required field"):
        load_testset(root)


def test_abstain_phrases_are_a_qa_setting(tmp_path, copy_fixture):
    intents = copy_fixture("tiny-intents")
    with (intents / "task.yaml").open("a") as fh:
        fh.write("abstain_phrases: [unknown]\n")
    with pytest.raises(TestsetError, match="field 'abstain_phrases': unknown key"):
        load_testset(intents)  # a qa-only key, so a typo anywhere else
    root = _planted(tmp_path, metrics=ALL_METRICS)
    with (root / "task.yaml").open("a") as fh:
        fh.write("abstain_phrases: [no idea, not stated]\n")
    task = load_testset(root).task
    assert task.options["abstain_phrases"] == ("no idea", "not stated")
    assert abstains("No idea.", task) and abstains("It is not stated.", task)
    assert not abstains("unknown", task)  # the default list no longer applies
    assert not abstains("the known limit", Task(name="q", type="qa", instructions="i"))
    assert abstains("I don't know", Task(name="q", type="qa", instructions="i"))


def test_the_report_shows_the_split(tmp_path, run_dirs, fake_provider_factory):
    from evalkit.report.build import render_report

    fake_provider_factory()
    root = _planted(tmp_path, metrics=ALL_METRICS)
    result = run_experiment(RunConfig(testset=str(root), variants=["prompt-only"], **run_dirs),
                            progress=False)
    html = render_report(result.run_dir).read_text()
    assert ("prompt-only: 0.000 on 5 answerable (5 abstained), 1.000 on 5 unanswerable "
            "(5 abstained), 100% of its score from abstaining.") in " ".join(html.split())


def test_a_recommendation_to_ship_an_abstaining_rung_says_so(tmp_path, run_dirs,
                                                             fake_provider_factory):
    fake_provider_factory()  # answers every QA request "unknown": all its credit is abstaining
    root = _planted(tmp_path, metrics=ALL_METRICS)
    result = run_experiment(RunConfig(testset=str(root), variants=["prompt-only"], **run_dirs),
                            progress=False)
    rec = json.loads((result.run_dir / "summary.json").read_text())["recommendation"]
    assert rec["variant"] == "prompt-only"
    assert rec["sentence"].startswith("Ship prompt-only: ")
    assert ("Caution: prompt-only: 100% of its token_f1 comes from abstaining on the 5 "
            "unanswerable items; on the 5 answerable ones it scores 0.000.") in rec["sentence"]
    assert rec["reasons"][-1].startswith("prompt-only: 100% of its token_f1")


def test_a_rung_that_never_abstains_has_abstention_f1_zero_not_nan():
    # a chatty model that answers everything: every unanswerable item missed. Its precision is
    # undefined (it never abstained) but its F1 is 2TP / (2TP + FP + FN) = 0, as macro-F1's
    # zero_division=0; a NaN read as "not scorable" and left the gate nothing to compare
    import numpy as np

    from evalkit import tasks
    from evalkit.tasks.base import RunContext

    task = Task(name="q", type="qa", instructions="i")
    ctx = RunContext(task, expected=["30 days", None, None], parsed=["30 days", "Tokyo", "Osaka"])
    stat = {m: tasks.metric(m).compute(ctx) for m in ("abstain_f1", "abstain_recall",
                                                       "abstain_precision")}
    every = np.arange(3)
    assert stat["abstain_f1"](every) == 0.0 and stat["abstain_recall"](every) == 0.0
    assert math.isnan(stat["abstain_precision"](every))
    nothing = RunContext(task, expected=["30 days"], parsed=["30 days"])  # nothing to get wrong
    assert math.isnan(tasks.metric("abstain_f1").compute(nothing)(np.arange(1)))

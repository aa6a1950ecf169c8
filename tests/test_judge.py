"""The LLM judge: verdict parsing (NaN when unparseable), calibration against human labels
(accuracy and Cohen's kappa), and grading a run with the judge's cost kept apart."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from openai_server import FIXTURES, KEY, FakeOpenAI, assert_key_nowhere, cli, read_jsonl

from evalkit.scoring.judge import parse_verdict


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


@pytest.mark.parametrize("text, verdict, score", [
    ('{"verdict": "correct", "reason": "same amount"}', "correct", 1.0),
    ('Sure!\n```json\n{"verdict": "Partially correct", "reason": "no unit"}\n```',
     "partially_correct", 0.5),
    ("Verdict: incorrect\nReason: names another plan", "incorrect", 0.0),
    ('{"verdict": "mostly fine", "reason": "?"}', None, math.nan),
    ("It might be right.", None, math.nan),
    # braces inside the reason, or a stray brace before the object, keep the verdict
    ('{"verdict": "correct", "reason": "uses {plan_id} as asked"}', "correct", 1.0),
    ('Here {draft}: {"verdict": "incorrect", "reason": "the set {a, b} is wrong"}',
     "incorrect", 0.0),
    ("", None, math.nan),
])
def test_parse_verdict(text, verdict, score):
    v = parse_verdict(text)
    assert v.verdict == verdict
    assert (math.isnan(v.score) and math.isnan(score)) or v.score == score


def test_a_reason_with_braces_is_kept_whole():
    assert parse_verdict('{"verdict": "correct", "reason": "uses {x} and {y}"}').reason == \
        "uses {x} and {y}"


def test_reason_is_kept():
    assert parse_verdict("verdict: correct\nreason: matches the policy").reason == \
        "matches the policy"


def _labels(path):
    rows = [  # (answer, human label): the test server's judge says correct iff words overlap
        ("30 days", "correct"),              # judge: correct
        ("within 30 days", "correct"),       # judge: correct
        ("a month", "correct"),              # judge: incorrect (a paraphrase it misses)
        ("blue", "incorrect"),               # judge: incorrect
        ("never", "incorrect"),              # judge: incorrect
        ("30 days, or so", "incorrect"),     # judge: correct (a human was stricter)
        ("GARBLE", "correct"),               # judge: unparseable reply
    ]
    with path.open("w") as fh:
        for i, (answer, label) in enumerate(rows):
            fh.write(json.dumps({"id": f"c{i}", "question": "How long is the refund window?",
                                 "reference": "30 days", "answer": answer,
                                 "label": label}) + "\n")
    return path


def test_check_reports_accuracy_kappa_and_unparseable(tmp_path):
    labels = _labels(tmp_path / "labels.jsonl")
    with FakeOpenAI(api_key=KEY) as server:
        out = cli("judge", "check", labels, "--base-url", server.base_url, "--model",
                  "gpt-4o-mini", "--cache-dir", tmp_path / "cache").output
        assert len(server.chat_calls(200)) == 7
    # 6 judged: agree on 4 -> accuracy 4/6; p_e = 0.5*0.5 + 0.5*0.5 = 0.5 by hand,
    # kappa = (0.6667 - 0.5) / (1 - 0.5) = 0.3333
    assert "7 labelled answers: 6 judged, 1 unparseable (NaN), 0 failed calls" in out
    assert "accuracy 0.667  Cohen's kappa 0.333" in out
    assert "human correct" in out and "incorrect: 1" in out


def test_labels_file_errors_name_line_and_field(tmp_path):
    bad = tmp_path / "labels.jsonl"
    bad.write_text(json.dumps({"question": "q", "reference": "r", "answer": "a",
                               "label": "correct"}) + "\n" +
                   json.dumps({"question": "q", "reference": "r", "label": "maybe"}) + "\n")
    result = cli("judge", "check", bad, "--base-url", "http://127.0.0.1:9/v1", ok=False)
    assert result.exit_code == 2 and f"{bad}:2: field 'answer' is required" in result.output


def test_score_run_keeps_the_judge_cost_apart(tmp_path):
    dirs = ["--reports-dir", tmp_path / "reports", "--cache-dir", tmp_path / "cache",
            "--finetune-dir", tmp_path / "ft"]
    with FakeOpenAI(api_key=KEY) as server:
        cli("run", FIXTURES / "tiny-qa", "--provider", "openai", "--base-url", server.base_url,
            "--variants", "prompt-only,rag", "--no-progress", *dirs)
        run_dir = (tmp_path / "reports" / "latest").resolve()
        before = json.loads((run_dir / "run.json").read_text())["totals"]
        summary_before = (run_dir / "summary.json").read_text()
        calls_before = len(server.chat_calls())
        out = cli("judge", "score", run_dir, "--base-url", server.base_url,
                  "--cache-dir", tmp_path / "cache").output
        judge_calls = len(server.chat_calls()) - calls_before
        cli("judge", "score", run_dir, "--base-url", server.base_url,
            "--cache-dir", tmp_path / "cache")  # resumes: nothing left to judge
        assert len(server.chat_calls()) - calls_before == judge_calls
    judged = json.loads((run_dir / "judge.json").read_text())
    scores = pd.read_csv(run_dir / "judge_scores.csv")
    # one judgement per (variant, item); identical prompts (same item, same answer from both
    # variants) are paid once, the second served like a cache hit
    answers = {(p["item_id"], p["output"]) for p in read_jsonl(run_dir / "predictions.jsonl")}
    assert judge_calls == len(answers) < 10
    assert len(scores) == 10 and set(scores["metric"]) == {"judge"}
    assert set(judged["variants"]) == {"prompt-only", "rag"}
    assert judged["judge_cost"]["calls"] == 10  # judgements, each with its notional cost
    assert judged["judge_cost"]["notional_usd"] > 0
    # the system under test's spend, costs and other metrics are untouched by judging; the
    # judge's score joins the metrics, its cost stays in its own section
    assert json.loads((run_dir / "run.json").read_text())["totals"] == before
    old, new = json.loads(summary_before), json.loads((run_dir / "summary.json").read_text())
    for name, v in old["variants"].items():
        judged_metrics = new["variants"][name]["metrics"]
        assert set(judged_metrics) - set(v["metrics"]) == {"judge"}
        assert {m: judged_metrics[m] for m in v["metrics"]} == v["metrics"]
        assert new["variants"][name]["cost"] == v["cost"]
        mine = scores[scores["variant"] == name]["value"]
        assert judged_metrics["judge"]["mean"] == pytest.approx(mine.mean())
    assert new["judge"]["cost"]["calls"] == 10 and "judge" not in old
    assert "judge cost (apart from the variants')" in out
    assert_key_nowhere(tmp_path)


def test_score_refuses_a_changed_test_set_before_any_judge_call(tmp_path):
    # the judge is paid per answer: re-scoring refuses a test set edited since the run, so
    # that must be found before grading, not after every call has been paid for
    import shutil

    testset = tmp_path / "tiny-qa"
    shutil.copytree(FIXTURES / "tiny-qa", testset)
    dirs = ["--reports-dir", tmp_path / "reports", "--cache-dir", tmp_path / "cache",
            "--finetune-dir", tmp_path / "ft"]
    with FakeOpenAI(api_key=KEY) as server:
        cli("run", testset, "--provider", "openai", "--base-url", server.base_url,
            "--variants", "prompt-only", "--no-progress", *dirs)
        run_dir = (tmp_path / "reports" / "latest").resolve()
        first = (testset / "test.jsonl").read_text().splitlines()[0]
        with (testset / "test.jsonl").open("a") as fh:
            fh.write(first.replace('"id": "', '"id": "extra-', 1) + "\n")
        calls_before = len(server.chat_calls())
        result = cli("judge", "score", run_dir, "--base-url", server.base_url,
                     "--cache-dir", tmp_path / "cache", ok=False)
        assert result.exit_code == 2 and "field 'testset.hash'" in result.output
        assert len(server.chat_calls()) == calls_before
    assert not (run_dir / "judge_scores.csv").exists()


def test_the_judges_cap_holds_over_every_session_of_a_run(tmp_path):
    """`--max-cost-usd` on `judge score` is the judge's cap on the run, as `evalkit run`'s is:
    grading again after a budget stop (or a kill) counts what the judge journal already paid,
    so repeating the command cannot spend the cap once per session."""
    from evalkit.scoring.judge import JUDGE_JOURNAL

    dirs = ["--reports-dir", tmp_path / "reports", "--cache-dir", tmp_path / "cache",
            "--finetune-dir", tmp_path / "ft"]
    cap = 0.0004  # room for one judge call's worst case and a bit: the judge stops part-way
    with FakeOpenAI(api_key=KEY, answer_tokens=200) as server:  # long, dear verdicts
        cli("run", FIXTURES / "tiny-qa", "--provider", "openai", "--base-url", server.base_url,
            "--variants", "prompt-only,rag", "--no-progress", *dirs)
        run_dir = (tmp_path / "reports" / "latest").resolve()
        before = len(server.chat_calls())
        sessions, outs = [], []
        for _ in range(4):
            outs.append(cli("judge", "score", run_dir, "--base-url", server.base_url,
                            "--max-cost-usd", cap, "--cache-dir", tmp_path / "cache").output)
            sessions.append(len(server.chat_calls()) - before - sum(sessions))
    paid = [p for p in read_jsonl(run_dir / JUDGE_JOURNAL) if not p["cached"]]
    spent = sum(p["cost_usd"] for p in paid)
    answers = {(p["item_id"], p["output"]) for p in read_jsonl(run_dir / "predictions.jsonl")}
    assert 0 < sessions[0] < len(answers)  # the cap stopped the first session part-way
    assert spent <= cap, (sessions, spent)
    assert sessions[1:] == [0, 0, 0]  # the cap was reached: later sessions pay nothing
    # and the judge says its scores cover only part of the answers, and why
    judge = json.loads((run_dir / "judge.json").read_text())
    left = sum(v["not_judged"] for v in judge["variants"].values())
    graded = {(p["variant"], p["item_id"]) for p in read_jsonl(run_dir / JUDGE_JOURNAL)}
    cases = {(p["variant"], p["item_id"]) for p in read_jsonl(run_dir / "predictions.jsonl")}
    assert judge["stopped"]["reason"] == "budget" and left == len(cases - graded) > 0
    assert "warning: the judge stopped early" in outs[0] and "not judged=" in outs[0]
    cli("report", run_dir)  # and so does the report, above the judge's cost table
    page = (run_dir / "index.html").read_text()
    assert f"{left} answers were never judged" in page and "the judge stopped" in page

"""The LLM judge as a scorer: the loopback OpenAI-compatible server grades a local run of a
long-form set, and its scores reach scores.csv, summary.json (with the judge's own cost and its
agreement with ROUGE-L beside them), the verdicts (`primary: judge`) and the gate."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from openai_server import FakeOpenAI, openai_env
from scipy.stats import spearmanr

from evalkit.gate.baseline import update_baseline
from evalkit.gate.check import Tolerances, gate_runs
from evalkit.pipeline.experiment import RunConfig, run_experiment

_env = openai_env  # autouse: the test key in the environment, no OPENAI_BASE_URL

DOC = ("## Section 2.4\n\nTaxis home are reimbursed up to €40 when you finish work after 21:00. "
       "Claim the fare in Tally under 'Local travel'.\n\n## Section 2.1\n\nMeals away from the "
       "office are reimbursed up to €45 per day. Keep the itemised receipt.\n")
TAXI = ("Short answer: Yes.\nWhy: Taxis home are reimbursed up to €40 when you finish work "
        "after 21:00.\nNext step: Claim the fare in Tally under 'Local travel'.")
MEAL = ("Short answer: Yes.\nWhy: Meals away from the office are reimbursed up to €45 per "
        "day.\nNext step: Keep the itemised receipt.")
ROWS = {"test": [("t1", "My taxi home at 23:00 cost €20. Is it reimbursed?", TAXI),
                 ("m1", "Lunch away from the office cost €30. Is it reimbursed?", MEAL)],
        "train": [("t2", "Late cab home, can I claim it?", TAXI),
                  ("t3", "Is a taxi after 21:00 reimbursed?", TAXI),
                  ("m2", "Can I expense a meal at a client site?", MEAL),
                  ("m3", "Are meals away from the office paid back?", MEAL)]}


def _set(root: Path, *, primary: str) -> Path:
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "expenses.md").write_text(DOC)
    (root / "task.yaml").write_text(
        f"name: judged\ntype: generation\ninstructions: Answer in the house style.\n"
        f"metrics:\n  primary: {primary}\n  secondary: [rouge_l]\n"
        f"corpus:\n  chunk_size: 60\n  chunk_overlap: 10\n  k: 1\nfew_shot:\n  k: 1\n")
    for split, rows in ROWS.items():
        (root / f"{split}.jsonl").write_text("".join(
            json.dumps({"id": i, "input": q, "expected": a, "doc_ids": ["expenses"]}) + "\n"
            for i, q, a in rows))
    return root


def _config(path: Path, server: FakeOpenAI | None, **judge) -> Path:
    section = {"provider": "openai", "base_url": server.base_url, "model": "gpt-4o-mini",
               **judge} if server else {}
    path.write_text(json.dumps({"judge": section}) if server else "{}")
    return path


def _run(tmp_path: Path, root: Path, config: Path, name: str):
    return run_experiment(RunConfig(testset=str(root), reports_dir=str(tmp_path / name),
                                    cache_dir=str(tmp_path / "cache"),
                                    finetune_dir=str(tmp_path / "ft"),
                                    config_path=str(config)), progress=False)


def test_the_judge_scores_reach_scores_csv_and_summary_with_its_cost_apart(tmp_path):
    root = _set(tmp_path / "set", primary="rouge_l")
    plain = _run(tmp_path, root, _config(tmp_path / "none.yaml", None), "plain")
    with FakeOpenAI() as server:
        judged = _run(tmp_path, root, _config(tmp_path / "judge.yaml", server, score=True,
                                              groundedness=True), "judged")
        calls = server.chat_calls()
    assert calls and {c.model for c in calls} == {"gpt-4o-mini"}  # only the judge called out
    scores = pd.read_csv(judged.run_dir / "scores.csv")
    mine = scores[scores["metric"] == "judge"]
    assert len(mine) == 5 * len(ROWS["test"]) and set(mine["value"]) <= {0.0, 0.5, 1.0}
    assert set(mine["value"]) == {0.0, 1.0}  # the loopback judge tells the rungs apart
    s, before = judged.summary, plain.summary
    for name, v in s["variants"].items():
        want = mine[mine["variant"] == name]["value"].mean()
        assert v["metrics"]["judge"]["mean"] == pytest.approx(want), name
        # the variants' cost is the variants' own, judged or not (setup differs only by the
        # measured indexing time)
        for key in ("per_query_usd", "total_notional_usd"):
            assert v["cost"][key] == before["variants"][name]["cost"][key], (name, key)
        assert v["metrics"]["rouge_l"] == before["variants"][name]["metrics"]["rouge_l"]
    assert "judge" not in before and "judge" not in before["variants"]["rag"]["metrics"]
    section = s["judge"]
    assert section["model"] == "gpt-4o-mini" and section["cost"]["calls"] == len(mine)
    assert section["cost"]["notional_usd"] > 0
    # agreement with ROUGE-L: Spearman's rho as scipy computes it on the same answers
    wide = scores[scores["metric"].isin(["judge", "rouge_l"])].pivot_table(
        index=["variant", "item_id"], columns="metric", values="value")
    rho = spearmanr(wide["judge"], wide["rouge_l"]).statistic
    agreement = section["agreement"]
    assert agreement["reference_metric"] == "rouge_l" and agreement["n"] == len(wide)
    assert agreement["spearman_rho"] == pytest.approx(rho) and rho > 0
    assert set(agreement["per_variant"]) == set(s["variants"])
    assert section["human_agreement"] is None
    # the judge's groundedness: only on the answers written from passages
    grounded = scores[scores["metric"] == "judge_groundedness"]
    assert set(grounded["variant"]) == {"rag", "rag+fine-tuned"}
    assert len(grounded) == 2 * len(ROWS["test"]) and set(grounded["value"]) <= {0.0, 1.0}
    assert s["variants"]["rag"]["metrics"]["judge_groundedness"]["mean"] == 1.0  # it quotes
    assert "judge_groundedness" not in s["variants"]["few-shot"]["metrics"]
    assert section["groundedness_cost"]["calls"] == len(grounded)
    assert (judged.run_dir / "judge.json").is_file()


def test_a_judge_that_cannot_be_priced_is_refused_before_the_run(tmp_path):
    root = _set(tmp_path / "set", primary="rouge_l")
    with FakeOpenAI() as server:
        config = _config(tmp_path / "judge.yaml", server, score=True, model="judge-x")
        with pytest.raises(ValueError, match="the judge \\(judge-x\\) cannot be priced"):
            _run(tmp_path, root, config, "refused")
        assert server.chat_calls() == []
    assert not (tmp_path / "refused").exists()


def test_primary_judge_drives_the_verdicts_and_the_gate(tmp_path):
    root = _set(tmp_path / "set", primary="judge")
    with pytest.raises(ValueError, match="needs an LLM judge"):
        _run(tmp_path, root, _config(tmp_path / "none.yaml", None), "refused")
    assert not (tmp_path / "refused").exists()  # refused before any call or folder
    with FakeOpenAI() as server:
        result = _run(tmp_path, root, _config(tmp_path / "judge.yaml", server), "judged")
    s = result.summary
    assert s["primary_metric"] == "judge" and {st["metric"] for st in s["steps"]} == {"judge"}
    base = tmp_path / "base.json"
    update_baseline([result.run_dir], base)
    raw = json.loads(base.read_text())
    entry = raw["testsets"]["judged"]["variants"]["prompt-only"]
    assert "judge" in entry["metrics"]

    def gate() -> dict:
        report = gate_runs([result.run_dir], [base], tolerances_for=lambda _: Tolerances())
        return {(c.variant, c.check): c for c in report.checks if c.kind == "metric"}

    assert gate()[("prompt-only", "judge")].status == "pass"
    # a baseline whose judge liked prompt-only's answers more: the run's judge score fell
    entry["metrics"]["judge"]["mean"] = s["variants"]["prompt-only"]["metrics"]["judge"][
        "mean"] + 0.5
    base.write_text(json.dumps(raw))
    fell = gate()[("prompt-only", "judge")]
    assert fell.status == "fail" and "judge fell" in fell.reason


def test_human_labels_in_the_config_put_the_judges_agreement_with_people_beside_it(tmp_path):
    """Six labelled answers (see tests/test_judge.py's by-hand numbers): the judge agrees on 4
    of 6, kappa (0.667 - 0.5) / (1 - 0.5) = 1/3."""
    from test_judge import _labels

    root = _set(tmp_path / "set", primary="rouge_l")
    labels = _labels(tmp_path / "labels.jsonl")
    with FakeOpenAI() as server:
        result = _run(tmp_path, root, _config(tmp_path / "judge.yaml", server, score=True,
                                              labels=str(labels)), "judged")
    human = result.summary["judge"]["human_agreement"]
    assert human["n"] == 7 and human["n_scored"] == 6
    assert human["accuracy"] == pytest.approx(4 / 6) and human["kappa"] == pytest.approx(1 / 3)
    assert human["judge_cost"]["calls"] == 7  # the check's own calls (one unparseable), apart


def test_the_judge_section_is_checked_with_file_and_field(tmp_path):
    root = _set(tmp_path / "set", primary="rouge_l")
    config = tmp_path / "judge.yaml"
    config.write_text("judge:\n  model: gpt-4o-mini\n  scroe: true\n")
    with pytest.raises(ValueError, match=r"judge.yaml:3: field 'judge.scroe': unknown key"):
        _run(tmp_path, root, config, "refused")
    config.write_text("judge:\n  model: gpt-4o-mini\n  score: 'yes'\n")
    with pytest.raises(ValueError, match=r"field 'judge.score': must be bool"):
        _run(tmp_path, root, config, "refused")


def test_the_report_shows_the_judges_cost_apart_and_its_agreement_as_summary_json_has_them(
        tmp_path):
    """Beside the judge's scores the report shows what summary.json's `judge` section holds:
    each kind of judge call's cost (money.usd's format), the total kept out of the variants'
    columns, Spearman's rho against ROUGE-L (overall and per variant) and the agreement with
    human labels."""
    import html
    import re

    from test_judge import _labels

    from evalkit.money import usd
    from evalkit.report.build import render_report

    root = _set(tmp_path / "set", primary="rouge_l")
    labels = _labels(tmp_path / "labels.jsonl")
    with FakeOpenAI() as server:
        result = _run(tmp_path, root, _config(tmp_path / "judge.yaml", server, score=True,
                                              groundedness=True, labels=str(labels)), "judged")
    page = render_report(result.run_dir).read_text()
    section = json.loads((result.run_dir / "summary.json").read_text())["judge"]

    def cell(attr: str) -> str:
        found = re.search(re.escape(attr) + r'">([^<]*)</', page)
        assert found, attr
        return html.unescape(found.group(1))

    costs = {"grading": section["cost"], "groundedness": section["groundedness_cost"],
             "human-check": section["human_agreement"]["judge_cost"]}
    for key, cost in costs.items():
        assert cost["calls"] > 0 and cost["notional_usd"] > 0, key
        assert cell(f'id="judge-{key}-calls') == str(cost["calls"])
        assert cell(f'id="judge-{key}-usd') == usd(cost["notional_usd"])
    assert cell('id="judge-total-usd') == usd(sum(c["notional_usd"] for c in costs.values()))
    # kept apart: no variant's $/query cell shows the judge's dollars
    variants = page[page.index('id="variants"'):page.index('id="judge"')]
    assert usd(section["cost"]["notional_usd"]) not in variants
    agreement = section["agreement"]
    assert cell('id="judge-rho') == f"{agreement['spearman_rho']:.3f}"
    assert cell('id="judge-rho-n') == str(agreement["n"])
    for variant, per in agreement["per_variant"].items():
        want = "–" if per["spearman_rho"] is None else f"{per['spearman_rho']:.3f}"
        assert cell(f'data-judge-rho="{html.escape(variant)}') == want, variant
    human = section["human_agreement"]
    assert cell('id="judge-human-accuracy') == f"{human['accuracy']:.3f}"  # 4 of 6
    assert cell('id="judge-human-kappa') == f"{human['kappa']:.3f}"  # 1/3
    assert section["model"] in page[page.index('id="judge"'):]

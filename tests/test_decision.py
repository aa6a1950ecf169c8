"""The decision on small and constructed runs (issue 15): honest intervals at any size,
steps against the incumbent, one recommendation, economics with their sources."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from evalkit.analysis import stats
from evalkit.analysis import summary as analysis
from evalkit.analysis.economics import Economics
from evalkit.analysis.verdicts import ACCEPTED, INCONCLUSIVE, NO_CHANGE, about, pts, usd
from evalkit.config import ConfigError, load_config
from evalkit.run.journal import Prediction


def run_data(values: dict[str, list[float]], *, specs: dict | None = None,
             economics: Economics | None = None, outputs: dict | None = None,
             cost_usd: dict[str, float] | None = None) -> analysis.RunData:
    """An in-memory run: per variant, one accuracy value per item (items i0, i1, ...)."""
    ladder = list(values)
    n = len(next(iter(values.values())))
    ids = [f"i{k}" for k in range(n)]
    rows = []
    for name, vals in values.items():
        for item, v in zip(ids, vals, strict=True):
            rows.append({"run": "r", "variant": name, "item_id": item, "metric": "accuracy",
                         "value": v})
            rows.append({"run": "r", "variant": name, "item_id": item, "metric": "cost_usd",
                         "value": (cost_usd or {}).get(name, 1e-5)})
    preds = [Prediction(name, item, out) for name, outs in (outputs or {}).items()
             for item, out in zip(ids, outs, strict=True)]
    return analysis.RunData(
        run_id="r", testset="t", task_type="classification", primary_metric="accuracy",
        ladder=ladder, scores=pd.DataFrame(rows), item_ids=ids,
        specs={k: analysis.VariantSpec(**v) for k, v in (specs or {}).items()},
        economics=economics or Economics(), predictions=preds)


def test_five_items_all_correct_is_not_certain_and_not_judged():
    s = analysis.analyze(run_data({"prompt-only": [1] * 5, "few-shot": [1] * 5}))
    acc = s["variants"]["prompt-only"]["metrics"]["accuracy"]
    assert (acc["ci_low"], acc["ci_high"]) == pytest.approx(
        proportion_confint(5, 5, method="wilson"))
    assert acc["ci_low"] < 0.6 and acc["method"] == "wilson"
    step = s["steps"][0]
    assert step["verdict"] == INCONCLUSIVE
    assert step["ci_low"] < -0.5 and step["ci_high"] > 0.5  # not [+0.0, +0.0]
    assert step["items_needed"] >= 30
    assert step["items_needed"] == stats.settling_items(0.0, 0.0)  # 5 pts, 20 % of items moving
    assert f"about {about(step['items_needed'])} items would settle it" in step["reason"]


def test_five_identical_answers_are_still_no_verdict():
    # both rungs answer the 5 items the same way: below 30 items that is "inconclusive",
    # not "no change" (5 items say nothing about the next 5)
    s = analysis.analyze(run_data({"prompt-only": [1] * 5, "few-shot": [1] * 5},
                                  outputs={"prompt-only": ["a"] * 5, "few-shot": ["a"] * 5}))
    step = s["steps"][0]
    assert step["same_outputs_as"] == "prompt-only" and step["verdict"] == INCONCLUSIVE
    assert step["items_needed"] >= 30


def test_testset_check_warns_when_too_small_for_a_five_point_difference(intents_dir):
    from click.testing import CliRunner

    from evalkit.cli import main
    out = CliRunner().invoke(main, ["testset", "check", str(intents_dir)]).output
    need = about(stats.items_needed(0.05, stats.assumed_sd()))
    assert (f"warning: 8 test items are too few to detect a 5-pt difference between two rungs "
            f"(80% power); with 20% changing it takes about {need} items, and a step on fewer "
            f"than 30 gets no verdict") in out
    from evalkit.cli.testset import _power_warning
    assert "only if at most 13% of the items change" in _power_warning(392)
    assert _power_warning(5000) is None


# ---- steps against the incumbent (issue 15.2) ---------------------------------------------

N = 400


def _acc(correct: int, *, offset: int = 0) -> list[float]:
    """N items, `correct` of them right, starting at item `offset` (wrapping)."""
    vals = [0.0] * N
    for k in range(correct):
        vals[(offset + k) % N] = 1.0
    return vals


def _cheap(**extra) -> Economics:
    """People's time 0, so verdicts turn on quality and measured cost alone."""
    zero = {k: 0.0 for k in ("prompt_hours", "prompt_upkeep_hours_per_month", "few_shot_hours",
                             "few_shot_upkeep_hours_per_month", "rag_hours",
                             "rag_upkeep_hours_per_month", "fine_tune_hours",
                             "fine_tune_retrain_hours")}
    return Economics(**{**zero, **extra})


def test_a_rejected_rung_never_becomes_the_from_of_a_later_step():
    # b is much worse than a (rejected), c is better than a: c must be judged against a
    s = analysis.analyze(run_data(
        {"a": _acc(200), "b": _acc(100), "c": _acc(240), "d": _acc(230)},
        economics=_cheap()))
    steps = {st["to"]: st for st in s["steps"]}
    assert steps["b"]["from"] == "a" and steps["b"]["verdict"] not in ACCEPTED
    assert steps["c"]["from"] == "a"  # never b, the rejected rung below it
    assert steps["c"]["verdict"] == "earns its cost"
    assert steps["d"]["from"] == "c"  # c earned its cost: it is the incumbent now
    assert all(st["from"] != "b" for st in s["steps"])
    assert s["recommendation"]["variant"] == "c"


def test_support_intents_shape_fine_tuned_is_judged_against_few_shot():
    # prompt-only 271/392 -> few-shot 332 (accepted) -> rag 258 (rejected) -> fine-tuned 372
    s = analysis.analyze(run_data(
        {"prompt-only": _acc(271), "few-shot": _acc(332), "rag": _acc(258),
         "fine-tuned": _acc(372)},
        specs={"few-shot": {"few_shot": True}, "rag": {"retrieves": True},
               "fine-tuned": {"fine_tuned": True}}))
    ft = next(st for st in s["steps"] if st["to"] == "fine-tuned")
    assert ft["from"] == "few-shot" and ft["delta"] == pytest.approx(40 / N)
    rec = s["recommendation"]
    assert rec["variant"] == "few-shot"  # +10 pts is not worth 16 h + re-training at $0.05
    assert rec["sentence"].startswith(f"Ship {rec['variant']}: ")
    assert ft["reason"] in rec["reasons"]


def test_a_rung_repeating_another_rungs_outputs_is_no_change_never_a_gain():
    # policy-qa shape: rag+fine-tuned answers exactly as rag, at a higher cost; fine-tuned
    # was rejected, so the step is from rag, and it reads "no change"
    outs = {"prompt-only": ["x"] * N, "rag": [f"r{k}" for k in range(N)],
            "fine-tuned": ["y"] * N, "rag+fine-tuned": [f"r{k}" for k in range(N)]}
    s = analysis.analyze(run_data(
        {"prompt-only": _acc(20), "rag": _acc(90), "fine-tuned": _acc(10),
         "rag+fine-tuned": _acc(90)}, outputs=outs, economics=_cheap(),
        specs={"rag": {"retrieves": True}, "fine-tuned": {"fine_tuned": True},
               "rag+fine-tuned": {"retrieves": True, "fine_tuned": True}},
        cost_usd={"rag+fine-tuned": 2e-5}))
    combined = s["steps"][-1]
    assert combined["from"] == "rag" and combined["same_outputs_as"] == "rag"
    assert combined["verdict"] == NO_CHANGE
    assert combined["reason"].startswith("rag \u2192 rag+fine-tuned: no change; the same "
                                         "output on all 400 items")
    assert s["recommendation"]["variant"] == "rag"


def test_same_outputs_as_a_rejected_rung_still_reads_no_change_from_it():
    outs = {"a": ["x"] * N, "b": ["y"] * N, "c": ["y"] * N}
    s = analysis.analyze(run_data({"a": _acc(200), "b": _acc(100), "c": _acc(100)},
                                  outputs=outs, economics=_cheap(),
                                  cost_usd={"b": 1e-5, "c": 3e-5}))
    c = s["steps"][-1]
    assert c["from"] == "a" and c["verdict"] == NO_CHANGE and c["same_outputs_as"] == "b"
    assert c["reason"].startswith("a \u2192 c: no change from b; the same output as b")
    # a cheaper copy is not "no change": it is judged on its merits against the incumbent
    cheaper = analysis.analyze(run_data({"a": _acc(200), "b": _acc(200)},
                                        outputs={"a": ["x"] * N, "b": ["x"] * N},
                                        economics=_cheap(), cost_usd={"a": 2e-5, "b": 1e-5}))
    assert cheaper["steps"][0]["verdict"] == "cheaper, no worse"


def test_a_failed_call_is_never_the_same_output():
    outs = {"a": ["x"] * N, "b": ["x"] * N}
    data = run_data({"a": _acc(200), "b": _acc(200)}, outputs=outs, economics=_cheap(),
                    cost_usd={"b": 2e-5})
    data.predictions[-1] = Prediction("b", f"i{N - 1}", None, error_class="Timeout")
    assert analysis.analyze(data)["steps"][0]["verdict"] != NO_CHANGE


def test_what_a_variant_is_comes_from_its_recorded_spec_not_its_name():
    record = {"variant_specs": {
        "fine-tuned": {"name": "fine-tuned", "fine_tuned": False, "rag_k": 0},
        "my-tune": {"name": "my-tune", "fine_tuned": True, "rag_k": 0, "few_shot_k": 0},
        "docs-k8": {"name": "docs-k8", "rag": {"k": 8}, "few_shot": {"k": 4},
                    "base_url": "http://127.0.0.1:8000/v1"}}}
    notes: list[str] = []
    specs = analysis._specs(record, ["fine-tuned", "my-tune", "docs-k8", "rag"], notes)
    assert specs["fine-tuned"] == analysis.VariantSpec()
    assert specs["my-tune"].fine_tuned and not specs["my-tune"].retrieves
    assert specs["docs-k8"] == analysis.VariantSpec(retrieves=True, few_shot=True,
                                                    self_hosted=True)
    assert specs["rag"] == analysis.VariantSpec()  # no recorded spec: not guessed from "rag"
    assert notes == ["run.json records no spec for 'rag': costed as a plain prompt"]
    hosted = analysis.VariantSpec.from_record({"base_url": "https://api.openai.com/v1"})
    assert not hosted.self_hosted


@pytest.mark.parametrize(("base_url", "self_hosted"), [
    ("https://api.openai.com/v1", False),
    ("https://openrouter.ai/api/v1", False),            # hosted APIs genai-prices knows:
    ("https://my-team.openai.azure.com/openai", False),  # their token prices include hosting
    ("https://api.groq.com/openai/v1", False),
    ("http://127.0.0.1:8000/v1", True),                  # your own server
    ("http://localhost:11434/v1", True),
    ("https://vllm.mycorp.internal/v1", True),
    ("https://api.openai.com.mycorp.internal/v1", True),  # a prefix of the host is not it
    ("https://API.OpenAI.com/v1", False),                # host names are case-insensitive
    ("https://api.openai.com:443/v1", False),
    ("https://api.arcee.ai/api/v1", False),             # a pattern ending in (?:/|$)
    ("https://bedrock-runtime.us-east-1.amazonaws.com/openai/v1", False),
    ("https://api.moonshot.cn/v1", False),              # a pattern leaving the TLD open
    ("https://router.huggingface.co/groq/openai/v1", False),  # a pattern naming a path
    ("https://router.huggingface.co.mycorp.internal/groq", True),
    ("http://[::1]:8000/v1", True),
    ("not a url", True),
])
def test_hosting_is_charged_only_for_your_own_server(base_url, self_hosted):
    spec = analysis.VariantSpec.from_record({"base_url": base_url})
    assert spec.self_hosted is self_hosted


# ---- the config's compare: list -----------------------------------------------------------

def test_config_compare_pairs_are_judged_too(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("compare:\n  - [c, a]\n  - {from: b, to: c}\n")
    pairs = analysis.comparisons_from({}, load_config(cfg))
    assert pairs == [("c", "a"), ("b", "c")]
    data = run_data({"a": _acc(200), "b": _acc(100), "c": _acc(240)}, economics=_cheap())
    data.comparisons = pairs
    s = analysis.analyze(data, comparisons=[("a", "b")])
    assert [(c["from"], c["to"]) for c in s["comparisons"]] == [("c", "a"), ("b", "c"),
                                                                ("a", "b")]
    assert s["comparisons"][0]["delta"] == pytest.approx(-40 / N)
    recorded = analysis.comparisons_from({"experiment_config": {"compare": [["a", "b"]]}}, None)
    assert recorded == [("a", "b")]


@pytest.mark.parametrize("text,line,where", [
    ("compare: {a: b}\n", 1, "'compare'"),
    ("compare:\n  - [a]\n", 2, "'compare[0]'"),
    ("compare:\n  - [a, b]\n  - [a, a]\n", 3, "'compare[1]'"),
])
def test_a_bad_compare_entry_names_the_file_line_and_field(tmp_path, text, line, where):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(f"exp.yaml:{line}: field {where}")):
        analysis.comparisons_from({}, load_config(cfg))


def test_check_config_refuses_a_compare_pair_naming_no_variant(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("compare:\n  - [rag, fine-tunned]\n")
    with pytest.raises(ConfigError, match=r"field 'compare\[0\]'.*'fine-tunned'"):
        analysis.check_config(load_config(cfg), ladder=["rag", "fine-tuned"])


# ---- the recommendation sentence (issue 15.3) ----------------------------------------------

def test_recommendation_names_an_unsettled_rival_with_the_items_that_would_settle_it():
    # b is +2 pts on 400 items with many changes: inconclusive, and it costs more
    a = _acc(200)
    b = _acc(208, offset=60)
    s = analysis.analyze(run_data({"a": a, "b": b}, economics=_cheap(),
                                  cost_usd={"a": 1e-5, "b": 1e-4}))
    step = s["steps"][0]
    assert step["verdict"] == INCONCLUSIVE
    rec = s["recommendation"]
    assert rec["variant"] == "a"
    assert rec["sentence"] == (
        f"Ship a: b is {pts(step['delta'])} pts accuracy [{pts(step['ci_low'])}, "
        f"{pts(step['ci_high'])}] better on 400 items, inconclusive (about "
        f"{about(step['items_needed'])} items would settle it), and costs "
        f"{usd(step['delta_tco_usd'])} more over 12 months.")
    assert rec["reasons"] == [step["reason"]]


def test_recommendation_quotes_the_step_that_made_the_incumbent():
    s = analysis.analyze(run_data({"a": _acc(200), "b": _acc(300)}, economics=_cheap()))
    assert s["recommendation"]["sentence"].startswith(
        "Ship b: +25.0 pts accuracy [") and " over a on 400 items; " in \
        s["recommendation"]["sentence"]


# ---- economics you can see (issue 15.6) ----------------------------------------------------

def test_changing_one_economics_input_in_the_config_changes_verdict_and_assumption_line(
        tmp_path):
    from evalkit.analysis.economics import parse_economics
    from evalkit.config import load_config

    values = {"few-shot": _acc(300), "fine-tuned": _acc(340)}
    specs = {"few-shot": {"few_shot": True}, "fine-tuned": {"fine_tuned": True}}
    default = analysis.analyze(run_data(values, specs=specs))
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("economics:\n  fine_tune_hours: 1\n  fine_tune_retrain_hours: 0\n")
    loaded = load_config(cfg)
    econ = parse_economics(loaded.section("economics"), path=loaded.path)
    configured = analysis.analyze(run_data(values, specs=specs, economics=econ))

    assert default["steps"][0]["verdict"] == "not worth it"  # 16 h + re-training at $100/h
    assert configured["steps"][0]["verdict"] == "earns its cost"
    line = default["economics"]["assumptions_line"]
    assert line == ("assumed: 10,000 queries/month, 12 months, $0.05 per correct answer, "
                    "2-pt margin, people at $100/h, prompt work 4 h + 0.5 h/month, few-shot "
                    "curation 2 h + 0.5 h/month, fine-tune setup 16 h, re-trained every 6 "
                    "months (8 h) (defaults \u2014 set them in economics:)")
    changed = configured["economics"]["assumptions_line"]
    assert "fine-tune setup 1 h, re-trained every 6 months (0 h)" in changed
    assert changed.endswith("(from the config: fine_tune_hours, fine_tune_retrain_hours; the "
                            "rest are defaults \u2014 set them in economics:)")
    sources = {a["key"]: a["source"] for a in configured["economics"]["assumptions"]}
    assert sources["fine_tune_hours"] == "config" and sources["queries_per_month"] == "default"
    assert "rag_hours" not in sources  # no retrieving rung: not an input of any verdict
    assert default["recommendation"]["variant"] == "few-shot"
    assert configured["recommendation"]["variant"] == "fine-tuned"


# ---- one money format (issue 13.6) ----------------------------------------------------------

def test_the_gate_prints_money_as_the_report_does():
    from evalkit.gate.baseline import VariantStats
    from evalkit.gate.check import Tolerances, _operational_checks
    from evalkit.gate.render import _value
    from evalkit.money import usd as money_usd

    assert usd is money_usd  # verdicts re-exports the one formatter
    base = VariantStats({}, 3.8484375e-06, 0.001, 0.002, 320, 0, 0)
    run = VariantStats({}, 3.9e-06, 0.001, 0.002, 320, 0, 0)
    cost = _operational_checks("t", "v", base, run, Tolerances())[0]
    assert cost.reason.startswith("cost/query $0.0000038 -> $0.0000039 (+1%)")
    assert _value("cost", 3.85e-06) == "$0.0000039"
    assert not re.search(r"\de-\d", cost.reason)


def test_recommendation_on_too_few_items_says_it_is_a_default_not_a_finding():
    # 12 items, every rung right on all of them: no step can be judged, and the sentence must
    # not read as if the ladder had been climbed and found wanting
    s = analysis.analyze(run_data({"prompt-only": [1] * 12, "few-shot": [1] * 12,
                                   "fine-tuned": [1] * 12}))
    assert all(step["verdict"] == INCONCLUSIVE for step in s["steps"])
    assert s["recommendation"]["sentence"] == (
        "Ship prompt-only: on 12 items no step up the ladder can be judged (a verdict needs 30 "
        "paired items), so it is the first rung by default, not a finding.")


def test_a_small_step_where_every_item_moved_alike_is_settled_by_few_items():
    """12 items, prompt-only wrong on all, fine-tuned right on all (a TriviaQA-shaped set):
    the sd of the differences is 0, and settling_items fell back to a 5-pt difference with
    20 % of items moving, so a +100-pt step read 'about 620 items would settle it' while a
    +67-pt step beside it read 'about 30'. A bigger observed difference never needs more."""
    s = analysis.analyze(run_data({"prompt-only": [0] * 12, "few-shot": [0] * 4 + [1] * 8,
                                   "fine-tuned": [1] * 12}))
    by_pair = {(st["from"], st["to"]): st for st in s["steps"]}
    whole = by_pair[("prompt-only", "fine-tuned")]
    assert whole["verdict"] == INCONCLUSIVE and whole["items_needed"] == stats.MIN_PAIRED_ITEMS
    assert "about 30 items would settle it" in whole["reason"]
    sizes = [stats.settling_items(d, 0.0) for d in (0.05, 0.1, 0.3, 0.5, 1.0)]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == stats.MIN_PAIRED_ITEMS
    assert stats.settling_items(0.0, 0.0) == stats.items_needed(0.05, stats.assumed_sd())


def test_a_tiny_run_whose_next_rung_looks_better_still_says_ship_is_a_default():
    """15 items, few-shot right on 12 where prompt-only is right on none (a TREC-shaped
    set): the recommendation read 'Ship prompt-only: few-shot is +80.0 pts accuracy [+47.6,
    +93.0] better on 15 items, inconclusive ...', a ship call against the only evidence the
    run has. Too few items to judge any step is said first; the rival's numbers follow."""
    s = analysis.analyze(run_data({"prompt-only": [0] * 15, "few-shot": [1] * 12 + [0] * 3}))
    sentence = s["recommendation"]["sentence"]
    assert sentence.startswith("Ship prompt-only: on 15 items no step up the ladder can be "
                               "judged (a verdict needs 30 paired items), so it is the first "
                               "rung by default, not a finding; few-shot is +80.0 pts accuracy")
    assert "about 30 items would settle it" in sentence


def test_a_graded_mean_equal_on_every_item_is_not_a_certainty():
    """12 TriviaQA-shaped items: fine-tuned's token F1 is 1.0 on each and prompt-only's 0.0,
    and the variants table read 1.000 [1.000, 1.000] and 0.000 [0.000, 0.000] (a t interval
    of sd 0) beside exact match's Wilson 1.000 [0.758, 1.000] for the same answers. A [0, 1]
    metric equal on every item gets the exact bound on the share of items that could differ."""
    ids = [f"i{k}" for k in range(12)]
    rows = [{"run": "r", "variant": name, "item_id": item, "metric": metric, "value": value}
            for name, f1 in (("prompt-only", 0.0), ("fine-tuned", 1.0))
            for item in ids for metric, value in (("token_f1", f1), ("cost_usd", 1e-5))]
    data = analysis.RunData(run_id="r", testset="t", task_type="qa", primary_metric="token_f1",
                            ladder=["prompt-only", "fine-tuned"], scores=pd.DataFrame(rows),
                            item_ids=ids, specs={}, economics=Economics(), predictions=[])
    s = analysis.analyze(data)
    u = stats.no_change_bound(12)
    top = s["variants"]["fine-tuned"]["metrics"]["token_f1"]
    low = s["variants"]["prompt-only"]["metrics"]["token_f1"]
    assert (top["mean"], top["ci_low"], top["ci_high"]) == pytest.approx((1.0, 1 - u, 1.0))
    assert (low["mean"], low["ci_low"], low["ci_high"]) == pytest.approx((0.0, 0.0, u))
    assert top["method"] == "same_value_exact"

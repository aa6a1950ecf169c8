"""The `economics:` section, setup items, TCO and the per-step economics."""

from __future__ import annotations

import re

import pytest
import yaml

from evalkit.analysis import economics as econ_mod
from evalkit.analysis.economics import (
    DEFAULTS,
    Economics,
    RungKind,
    VariantCost,
    break_even_volume,
    monthly_items,
    parse_economics,
    setup_items,
    step_cost,
    tco,
    variant_cost,
)
from evalkit.config import ConfigError, load_config


def test_documented_defaults_are_the_defaults():
    """The YAML example in the module docstring parses, and its top-level numbers are DEFAULTS."""
    block = re.search(r"```yaml\n(.*?)```", econ_mod.__doc__, re.S).group(1)
    documented = yaml.safe_load(block)["economics"]
    assert {k: documented[k] for k in DEFAULTS} == DEFAULTS
    parsed = parse_economics(documented)
    assert parsed.variants["fine-tuned"].hours == {"writing_examples": 6, "reviewing": 2}
    empty = parse_economics(None)
    assert empty.as_dict() == DEFAULTS and empty.variants == {}


def test_a_config_file_section_parses(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("economics:\n  queries_per_month: 250000\n  value_per_correct_usd: 0.4\n"
                    "  variants:\n    rag: {fixed_monthly_usd: 30, hours: {curating_docs: 5}}\n")
    cfg = load_config(path)
    e = parse_economics(cfg.section("economics"), path=cfg.path)
    assert e.queries_per_month == 250000 and e.value_per_correct_usd == 0.4
    assert e.horizon_months == DEFAULTS["horizon_months"]
    assert e.for_variant("rag").fixed_monthly_usd == 30
    assert e.for_variant("few-shot").fixed_monthly_usd is None  # None: the default hosting
    assert e.source("queries_per_month") == "config" and e.source("horizon_months") == "default"


@pytest.mark.parametrize("yaml_text,field", [
    ("economics:\n  queries_per_mnth: 5\n", "economics.queries_per_mnth"),
    ("economics:\n  horizon_months: 0\n", "economics.horizon_months"),
    ("economics:\n  queries_per_month: 0\n", "economics.queries_per_month"),
    ("economics:\n  value_per_correct_usd: lots\n", "economics.value_per_correct_usd"),
    ("economics:\n  non_inferiority_margin: -0.1\n", "economics.non_inferiority_margin"),
    ("economics:\n  variants: [rag]\n", "economics.variants"),
    ("economics:\n  variants:\n    rag: {fixed_monthly: 3}\n",
     "economics.variants.rag.fixed_monthly"),
    ("economics:\n  variants:\n    fine-tuned: {hours: {reviewing: two}}\n",
     "economics.variants.fine-tuned.hours.reviewing"),
    ("economics:\n  variants:\n    fine-tuned: {hours: 3}\n",
     "economics.variants.fine-tuned.hours"),
    ("economics:\n  variants:\n    rag: {fixed_monthly_usd: -5}\n",
     "economics.variants.rag.fixed_monthly_usd"),
    ("economics:\n  variants:\n    rag: {training_usd: true}\n",
     "economics.variants.rag.training_usd"),
])
def test_errors_name_the_file_and_field(tmp_path, yaml_text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    cfg = load_config(path)
    with pytest.raises(ConfigError) as err:
        parse_economics(cfg.section("economics"), path=cfg.path)
    assert err.value.field == field
    assert str(path) in str(err.value) and field in str(err.value)


RUN_SETUP = {"fine_tune": {"training_cost_usd": 1.25, "training_time_s": 45000},
             "indexing_time_s": 36.0}


def test_setup_items_take_training_and_indexing_from_run_json():
    e = Economics()
    ft = setup_items("fine-tuned", e, fine_tuned=True, retrieves=False, run_setup=RUN_SETUP)
    assert [(i.item, i.usd) for i in ft][0] == ("training", 1.25)
    assert ft[0].source == "run.json setup.fine_tune.training_cost_usd"
    rag = setup_items("rag", e, fine_tuned=False, retrieves=True, run_setup=RUN_SETUP)
    # 36 s of indexing at the default $0.10 per hour
    assert [(i.item, i.usd) for i in rag][0] == ("indexing", pytest.approx(36 * 0.10 / 3600))
    both = setup_items("rag+fine-tuned", e, fine_tuned=True, retrieves=True, run_setup=RUN_SETUP)
    assert [i.item for i in both][:2] == ["training", "indexing"]


def test_people_hours_default_per_rung_kind_with_their_source():
    e = Economics()
    plain = setup_items("prompt-only", e, fine_tuned=False, retrieves=False, run_setup={})
    assert [(i.item, i.hours, i.usd, i.source) for i in plain] == [
        ("people: prompt work", 4, 400, "default economics.prompt_hours")]
    both = setup_items("x", e, fine_tuned=True, retrieves=True, few_shot=True, run_setup={})
    people = {i.item: i.hours for i in both if i.item.startswith("people")}
    assert people == {"people: prompt work": 4, "people: few-shot curation": 2,
                      "people: indexing setup": 8,
                      "people: fine-tune data preparation and iterations": 16}
    configured = parse_economics({"fine_tune_hours": 40})
    ft = setup_items("ft", configured, fine_tuned=True, retrieves=False, run_setup={})
    tuned = next(i for i in ft if i.item.startswith("people: fine-tune"))
    assert (tuned.hours, tuned.source) == (40, "config economics.fine_tune_hours")


def test_monthly_costs_upkeep_retraining_and_hosting():
    e = Economics()
    kind = RungKind(retrieves=True, fine_tuned=True, self_hosted=True)
    items = {i.item: i for i in monthly_items("x", e, kind, run_setup=RUN_SETUP)}
    assert items["people: prompt work upkeep"].usd == pytest.approx(0.5 * 100)
    assert items["people: indexing setup upkeep"].usd == pytest.approx(2 * 100)
    # 8 h and the recorded $1.25 training every 6 months
    assert items["re-training every 6 months"].usd == pytest.approx((8 * 100 + 1.25) / 6)
    assert items["hosting"].usd == 700 and items["hosting"].source.startswith("default")
    hosted_api = monthly_items("x", e, RungKind(fine_tuned=True), run_setup=RUN_SETUP)
    assert "hosting" not in {i.item for i in hosted_api}  # per-token prices include it
    own = parse_economics({"variants": {"x": {"upkeep_hours_per_month": 1,
                                              "fixed_monthly_usd": 40}}})
    items = {i.item: i for i in monthly_items("x", own, kind, run_setup=RUN_SETUP)}
    assert items["people: upkeep"].usd == 100 and items["hosting"].usd == 40
    assert "people: prompt work upkeep" not in items


def test_config_overrides_and_people_hours_times_rate():
    e = parse_economics({"hourly_rate_usd": 50, "variants": {
        "fine-tuned": {"training_usd": 300, "hours": {"writing_examples": 10, "reviewing": 2},
                       "hourly_rate_usd": 80, "other_setup_usd": 15},
        "few-shot": {"hours": {"picking_examples": 3}}}})
    ft = setup_items("fine-tuned", e, fine_tuned=True, retrieves=False, run_setup=RUN_SETUP)
    assert [(i.item, i.usd) for i in ft] == [("training", 300), ("people: writing_examples", 800),
                                             ("people: reviewing", 160), ("other", 15)]
    assert ft[1].hours == 10 and ft[1].rate_usd == 80
    fs = setup_items("few-shot", e, fine_tuned=False, retrieves=False, run_setup=RUN_SETUP)
    assert [(i.item, i.usd, i.rate_usd) for i in fs] == [("people: picking_examples", 150, 50)]
    # a variant's own hours replace its kind's defaults (no "people: prompt work" line)


def test_missing_training_cost_is_a_visible_default():
    items = setup_items("fine-tuned", Economics(), fine_tuned=True, retrieves=False, run_setup={})
    assert items[0].usd == 0 and items[0].source.startswith("default 0")


def test_tco_formula():
    # setup 100 + 12 months * (10 fixed + 10,000 queries * $0.001) = 100 + 12 * 20 = 340
    assert tco(100, 10, 0.001, queries_per_month=10_000, horizon_months=12) == pytest.approx(340)
    e = parse_economics({"variants": {"rag": {"fixed_monthly_usd": 10, "indexing_usd": 100,
                                              "hours": {}, "upkeep_hours_per_month": 0}}})
    cost = variant_cost("rag", 0.001, e, fine_tuned=False, retrieves=True, run_setup={})
    assert (cost.setup_usd, cost.fixed_monthly_usd, cost.tco_usd) == pytest.approx((100, 10, 340))
    default = variant_cost("rag", 0.001, Economics(), fine_tuned=False, retrieves=True,
                           run_setup={})
    # defaults: prompt 4 h + RAG 8 h to build, 0.5 h + 2 h a month to keep up, at $100/h
    assert default.setup_usd == pytest.approx(1200)
    assert default.fixed_monthly_usd == pytest.approx(250)
    assert default.tco_usd == pytest.approx(1200 + 12 * (250 + 10))


def _cost(setup, fixed, per_query, horizon=12, volume=10_000):
    return VariantCost(per_query, setup, fixed,
                       tco(setup, fixed, per_query, queries_per_month=volume,
                           horizon_months=horizon), ())


def test_step_cost_per_extra_correct_answer():
    e = Economics(queries_per_month=10_000, horizon_months=12)
    a, b = _cost(0, 0, 0.001), _cost(600, 0, 0.001)
    sc = step_cost(a, b, 0.05, e)
    # delta TCO 600 over 0.05 * 10,000 * 12 = 6,000 extra correct answers = $0.10 each
    assert sc.delta_tco_usd == pytest.approx(600)
    assert sc.usd_per_extra_correct == pytest.approx(0.10)
    assert step_cost(a, b, 0.0, e).usd_per_extra_correct is None
    assert step_cost(a, b, -0.02, e).usd_per_extra_correct is None


def test_break_even_volume_is_where_the_tcos_cross():
    # A: no setup, $0.002/query; B: $240 setup, $0.001/query; H = 12
    # 240 = 12 * V * (0.002 - 0.001)  ->  V = 20,000 queries a month
    a, b = _cost(0, 0, 0.002), _cost(240, 0, 0.001)
    v = break_even_volume(a, b, 12)
    assert v == pytest.approx(20_000)
    at = dict(queries_per_month=v, horizon_months=12)
    assert tco(0, 0, 0.002, **at) == pytest.approx(tco(240, 0, 0.001, **at))
    assert step_cost(a, b, 0.0, Economics()).break_even_queries_per_month == pytest.approx(v)
    # B dearer to set up and per query: they never cross
    assert break_even_volume(a, _cost(240, 0, 0.003), 12) is None
    # same per-query cost: no volume makes them equal
    assert break_even_volume(a, _cost(240, 0, 0.002), 12) is None
    # fixed monthly costs count H times: B $5/month more, A $0.0005/query more -> V = 10,000
    assert break_even_volume(_cost(0, 0, 0.0015), _cost(0, 5, 0.001), 12) == pytest.approx(10_000)


def test_embedding_index_costs_come_from_run_json_retrieval():
    run_setup = {"indexing_time_s": 2.0,
                 "retrieval": {"indexing_usd": 0.42, "query_usd_per_query": 0.0001}}
    rag = variant_cost("rag", 0.002, Economics(), fine_tuned=False, retrieves=True,
                       run_setup=run_setup)
    assert [(i.item, i.usd, i.source) for i in rag.setup_items][0] == (
        "indexing", 0.42, "run.json setup.retrieval.indexing_usd")
    assert rag.per_query_usd == pytest.approx(0.0021)
    assert rag.per_query_retrieval_usd == pytest.approx(0.0001)
    plain = variant_cost("few-shot", 0.002, Economics(), fine_tuned=False, retrieves=False,
                         run_setup=run_setup)
    assert plain.per_query_usd == 0.002
    assert [i.item for i in plain.setup_items] == ["people: prompt work"]

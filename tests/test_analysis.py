"""summary.json (schema 2) from real runs on the tiny fixtures: fields, numbers, recomputation."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats as sps
from sklearn.metrics import f1_score
from statsmodels.regression.linear_model import OLS
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from evalkit.analysis import stats
from evalkit.analysis import summary as analysis
from evalkit.analysis.verdicts import VERDICTS
from evalkit.cli import main
from evalkit.config import ConfigError
from evalkit.pipeline.experiment import RunConfig, run_experiment
from evalkit.scoring import metrics

DOC = Path(__file__).parent.parent / "docs" / "summary-schema.md"
METRIC_FIELDS = {"mean", "se", "ci_low", "ci_high", "n", "n_nan"}
STEP_FIELDS = {"from", "to", "metric", "delta", "ci_low", "ci_high", "p_value", "p_holm",
               "items_needed", "delta_tco_usd", "usd_per_extra_correct",
               "break_even_queries_per_month", "verdict", "reason"}


def _run(testset: Path, run_dirs: dict, **kw) -> Path:
    cfg = RunConfig(testset=str(testset), **run_dirs, **kw)
    return run_experiment(cfg, progress=False).run_dir


def _strict_json(path: Path) -> dict:
    def no_nan(token):
        raise AssertionError(f"{path} holds {token}; undefined numbers must be null")
    return json.loads(path.read_text(), parse_constant=no_nan)


def _fixture_run(tmp_path_factory, name: str) -> Path:
    """The whole local ladder on a fixture set, in folders of its own."""
    tmp = tmp_path_factory.mktemp(name)
    return _run(Path(__file__).parent / "fixtures" / name,
                {"reports_dir": str(tmp / "r"), "cache_dir": str(tmp / "c"),
                 "finetune_dir": str(tmp / "f")})


@pytest.fixture(scope="module")
def intents_run(tmp_path_factory) -> Path:
    return _fixture_run(tmp_path_factory, "tiny-intents")


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory) -> Path:
    return _fixture_run(tmp_path_factory, "tiny-qa")


def _scores(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "scores.csv", dtype={"item_id": str})


def _values(scores: pd.DataFrame, variant: str, metric: str) -> pd.Series:
    s = scores[(scores["variant"] == variant) & (scores["metric"] == metric)]
    return s.set_index("item_id")["value"]


def test_summary_has_every_listed_field(intents_run):
    s = _strict_json(intents_run / "summary.json")
    assert s["schema_version"] == 2 and s["primary_metric"] == "accuracy"
    ladder = s["ladder"]
    assert list(s["variants"]) == ladder
    for v in s["variants"].values():
        assert set(v["cost"]) >= {"per_query_usd", "setup_usd", "fixed_monthly_usd", "tco_usd"}
        assert set(v["latency"]) >= {"p50_s", "p95_s"}
        assert set(v["tokens"]) >= {"input", "output"}
        for m in ("accuracy", "macro_f1"):
            assert set(v["metrics"][m]) >= METRIC_FIELDS
    assert [st["to"] for st in s["steps"]] == ladder[1:]
    incumbent = ladder[0]
    for st in s["steps"]:  # judged against the incumbent: the first rung or an accepted one
        assert st["from"] == incumbent
        if st["verdict"] in ("earns its cost", "cheaper, no worse"):
            incumbent = st["to"]
    assert s["recommendation"]["variant"] == incumbent
    for st in s["steps"]:
        assert set(st) >= STEP_FIELDS
        assert st["metric"] == "accuracy" and st["verdict"] in VERDICTS
        assert st["reason"].startswith(f"{st['from']} \u2192 {st['to']}: ")
        assert f", {st['verdict']}; " in st["reason"] or st["verdict"] == "no change"
        assert st["verdict"] not in st["sentence"]  # the page shows it beside the sentence


def _paths(obj, prefix=""):
    """(dotted path, is_leaf) for every field, variable names generalised as in the doc."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            name = {"variants": "<variant>", "metrics": "<name>",
                    "run_metrics": "<name>"}.get(prefix.rsplit(".", 1)[-1])
            key = f"{prefix}.{name or k}" if prefix else k
            nested = isinstance(v, dict) or (isinstance(v, list) and v and isinstance(v[0], dict))
            yield key, not nested
            yield from _paths(v, key)
    elif isinstance(obj, list) and obj and isinstance(obj[0], dict):
        for item in obj:
            yield from _paths(item, f"{prefix}[]")


def test_every_field_written_is_documented(intents_run, qa_run):
    documented = set(re.findall(r"^\| `([^`]+)` \|", DOC.read_text(), re.M))
    leaves, every = set(), set()
    for run_dir in (intents_run, qa_run):
        s = analysis.summarize_run(run_dir, comparisons=[("prompt-only", "rag")])
        for path, leaf in _paths(s):
            path = path.replace("comparisons[]", "steps[]")
            every.add(path)
            if leaf:
                leaves.add(path)
    assert leaves - documented == set(), "document these fields in docs/summary-schema.md"
    # `epochs` is written only by --epochs runs: tests/test_epochs.py checks those fields
    assert {f for f in documented - every if not f.startswith("epochs.")} == set(), \
        "documented but never written"


def test_variant_interval_matches_scipy_on_the_scores(intents_run):
    s = _strict_json(intents_run / "summary.json")
    scores = _scores(intents_run)
    acc = _values(scores, "prompt-only", "accuracy").to_numpy()
    # 0/1 scores on 8 independent items: Wilson, as statsmodels computes it
    low, high = proportion_confint(int(acc.sum()), len(acc), alpha=0.05, method="wilson")
    got = s["variants"]["prompt-only"]["metrics"]["accuracy"]
    assert got["mean"] == pytest.approx(acc.mean()) and got["se"] == pytest.approx(sps.sem(acc))
    assert got["ci_low"] == pytest.approx(low) and got["ci_high"] == pytest.approx(high)
    assert got["method"] == "wilson" and got["n"] == 8 and got["n_nan"] == 0


def test_step_matches_scipy_paired_interval_and_binomial_p(intents_run):
    s = _strict_json(intents_run / "summary.json")
    scores = _scores(intents_run)
    step = s["steps"][0]
    a = _values(scores, step["from"], "accuracy")
    b = _values(scores, step["to"], "accuracy").reindex(a.index)
    assert step["delta"] == pytest.approx((b - a).mean())
    # 0/1 pairs: Newcombe's paired interval (checked against a published example and
    # statsmodels in test_stats), or the exact no-change bound when no item moved
    if (a != b).any():
        low, high = stats.newcombe_paired_ci(a.to_numpy(), b.to_numpy())
        assert step["ci_method"] == "newcombe_paired"
    else:
        high = stats.no_change_bound(len(a))
        low = -high
        assert step["ci_method"] == "no_change_exact"
    assert (step["ci_low"], step["ci_high"]) == pytest.approx((low, high))
    a_only, b_only = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    assert step["p_method"] == "mcnemar_exact"
    assert step["discordant"] == {"from_only_correct": a_only, "to_only_correct": b_only}
    assert step["p_value"] == pytest.approx(sps.binomtest(b_only, a_only + b_only).pvalue
                                            if a_only + b_only else 1.0)


def test_holm_is_across_the_ladders_steps(qa_run):
    s = _strict_json(qa_run / "summary.json")
    p = [st["p_value"] for st in s["steps"]]
    assert [st["p_holm"] for st in s["steps"]] == pytest.approx(
        list(multipletests(p, method="holm")[1]))


def test_clusters_come_from_the_items(qa_run):
    s = _strict_json(qa_run / "summary.json")
    assert s["clustered"] and s["primary_metric"] == "token_f1"
    items = [json.loads(x) for x in (qa_run / "items.jsonl").read_text().splitlines()]
    groups = [it["cluster"] for it in items]
    f1 = _values(_scores(qa_run), "rag", "token_f1").reindex([it["id"] for it in items])
    codes = pd.factorize(pd.Series(groups))[0]
    fit = OLS(f1.to_numpy(), np.ones(len(f1))).fit(cov_type="cluster", cov_kwds={"groups": codes})
    got = s["variants"]["rag"]["metrics"]["token_f1"]
    assert got["method"] == "t_clustered" and got["n_clusters"] == len(set(groups))
    assert got["se"] == pytest.approx(float(fit.bse[0]))
    # token F1 is graded: McNemar does not apply, p comes from the clustered paired t test
    assert {st["p_method"] for st in s["steps"]} == {"paired_t_clustered"}


def test_macro_f1_fast_path_matches_scikit_learn():
    labels = ["refund", "login", "export", "bug"]
    y_true = ["refund", "login", "login", "bug", "bug", "refund", "login"]
    y_pred = ["refund", "login", "bug", "bug", "<none>", "login", "login"]  # no "export" at all
    code = {label: i for i, label in enumerate(labels)}
    fast = analysis.macro_f1_codes(np.array([code[y] for y in y_true]),
                                   np.array([code.get(y, len(labels)) for y in y_pred]),
                                   len(labels))
    # the labels that occur, expected or predicted ("<none>" is no label): "export" has
    # neither and is not scored, as scikit-learn's default label set leaves it out
    present = sorted({y for y in (*y_true, *y_pred) if y in labels})
    assert fast == pytest.approx(metrics.macro_f1(y_true, y_pred, labels=present))
    assert fast == pytest.approx(f1_score(y_true, y_pred, labels=present, average="macro"))


def test_failed_calls_are_counted_never_averaged(intents_dir, run_dirs, fake_provider_factory):
    failing = ["I want my money back for the charge on my card",
               "password reset link never shows up and I cannot sign in"]
    provider = fake_provider_factory(fail_inputs=failing)
    run_dir = _run(intents_dir, run_dirs, variants=["prompt-only", "few-shot"])
    assert provider.calls
    s = _strict_json(run_dir / "summary.json")
    acc = _values(_scores(run_dir), "prompt-only", "accuracy")
    got = s["variants"]["prompt-only"]["metrics"]["accuracy"]
    assert got["n_nan"] == 2 and got["n"] == 6
    assert got["mean"] == pytest.approx(acc.dropna().mean())
    # a step judges every item: the 2 failed calls on each side count as wrong answers
    step = s["steps"][0]
    assert step["n"] == 8 and step["n_excluded"] == 0 and step["n_failed"] == 4
    assert "(4 failed calls counted as wrong)" in step["reason"]


def test_a_rung_that_fails_on_hard_items_does_not_look_better():
    """On its successes alone the upper rung gains 50 points (0.5 -> 1.0 on items 0-19); it
    fails on items 20-39, where the lower rung gets half right. Counted as wrong answers, the
    failures cancel the gain: both rungs get 20 of 40."""
    from evalkit.run.journal import Prediction

    ids = [f"i{k}" for k in range(40)]
    lower = ([1.0] * 10 + [0.0] * 10) * 2  # half right in each half
    rows = [("r", "a", i, "accuracy", v) for i, v in zip(ids, lower)]
    rows += [("r", "b", i, "accuracy", 1.0) for i in ids[:20]]  # b fails on the second half
    rows += [("r", v, i, "cost_usd", 0.001) for v in "ab" for i in ids]
    preds = [Prediction("a", i, "x") for i in ids]
    preds += [Prediction("b", i, "x") for i in ids[:20]]
    preds += [Prediction("b", i, None, error_class="APITimeoutError", error="t") for i in ids[20:]]
    data = analysis.RunData(run_id="r", testset="t", task_type="classification",
                            primary_metric="accuracy", ladder=["a", "b"],
                            scores=pd.DataFrame(rows, columns=["run", "variant", "item_id",
                                                               "metric", "value"]),
                            item_ids=ids, predictions=preds)
    summary = analysis.analyze(data)
    assert summary["variants"]["b"]["metrics"]["accuracy"]["mean"] == 1.0  # over its successes
    assert summary["variants"]["b"]["metrics"]["accuracy"]["n_nan"] == 20
    step = summary["steps"][0]
    assert step["delta"] == 0.0 and step["n"] == 40 and step["n_failed"] == 20
    assert step["verdict"] != "earns its cost"


def test_bad_economics_fails_before_any_call(intents_dir, run_dirs, fake_provider_factory,
                                             tmp_path):
    provider = fake_provider_factory()
    bad = tmp_path / "exp.yaml"
    bad.write_text("economics:\n  variants:\n    rag: {fixed_monthly_usd: lots}\n")
    with pytest.raises(ConfigError, match="economics.variants.rag.fixed_monthly_usd"):
        _run(intents_dir, run_dirs, config_path=str(bad))
    assert provider.calls == []


def test_summarize_recomputes_from_the_run_folder_alone(copy_fixture, run_dirs, tmp_path,
                                                        monkeypatch):
    testset = copy_fixture("tiny-intents")
    run_dir = _run(testset, run_dirs)
    before = _strict_json(run_dir / "summary.json")
    scores_hash = hashlib.sha256((run_dir / "scores.csv").read_bytes()).hexdigest()
    shutil.rmtree(testset)  # the folder alone must do

    def no_model(*a, **k):
        raise AssertionError("summarize must not reach a provider")
    monkeypatch.setattr("evalkit.pipeline.routing.build_provider", no_model)

    result = CliRunner().invoke(main, ["summarize", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert _strict_json(run_dir / "summary.json") == before  # same inputs, same summary

    econ = tmp_path / "econ.yaml"
    econ.write_text("economics:\n  queries_per_month: 50000\n  variants:\n"
                    "    fine-tuned: {fixed_monthly_usd: 400, hours: {labelling: 10}}\n")
    result = CliRunner().invoke(main, ["summarize", str(run_dir), "--config", str(econ),
                                       "--compare", "prompt-only,fine-tuned"])
    assert result.exit_code == 0, result.output
    after = _strict_json(run_dir / "summary.json")
    # the console's assumption line says which inputs the config set
    line = next(x for x in result.output.splitlines() if x.startswith("assumed: "))
    assert line == after["economics"]["assumptions_line"]
    assert line.startswith("assumed: 50,000 queries/month, 12 months, ")
    assert line.endswith("(from the config: queries_per_month, variants.fine-tuned.hours, "
                         "variants.fine-tuned.fixed_monthly_usd; the rest are defaults \u2014 "
                         "set them in economics:)")
    ft = after["variants"]["fine-tuned"]["cost"]
    # the variant's own hours replace its kind's default build hours (prompt work 4 h and
    # fine-tune preparation 16 h at $100) with 10 h
    assert ft["setup_usd"] == pytest.approx(
        before["variants"]["fine-tuned"]["cost"]["setup_usd"] - (4 + 16) * 100 + 10 * 100)
    monthly = {i["item"]: i for i in ft["monthly_items"]}
    assert monthly["hosting"]["usd"] == 400 and monthly["hosting"]["source"].startswith("config")
    assert ft["fixed_monthly_usd"] == pytest.approx(sum(i["usd"] for i in ft["monthly_items"]))
    assert ft["tco_usd"] == pytest.approx(
        ft["setup_usd"] + 12 * (ft["fixed_monthly_usd"] + 50_000 * ft["per_query_usd"]))
    step = next(st for st in after["steps"] if st["to"] == "fine-tuned")
    assert step["delta_tco_usd"] == pytest.approx(
        ft["tco_usd"] - after["variants"][step["from"]]["cost"]["tco_usd"])
    assert after["economics"]["queries_per_month"] == 50000
    assert after["comparisons"][0]["from"] == "prompt-only"
    assert after["comparisons"][0]["p_holm"] is None
    assert hashlib.sha256((run_dir / "scores.csv").read_bytes()).hexdigest() == scores_hash
    assert result.output.strip().splitlines()[-1] == after["comparisons"][0]["reason"]


def test_summarize_reports_a_bad_config(intents_run, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("economics:\n  horizon_months: -3\n")
    result = CliRunner().invoke(main, ["summarize", str(intents_run), "--config", str(bad)])
    assert result.exit_code == 2
    assert str(bad) in result.output and "economics.horizon_months" in result.output


def test_compare_any_two_variants(intents_run):
    out = analysis.compare(intents_run, "prompt-only", "rag+fine-tuned")
    assert set(out) >= STEP_FIELDS and out["p_holm"] is None
    assert (out["from"], out["to"], out["metric"]) == ("prompt-only", "rag+fine-tuned",
                                                      "accuracy")
    with pytest.raises(ValueError, match="not in this run"):
        analysis.compare(intents_run, "prompt-only", "gpt-9")


def test_run_console_ends_with_the_verdicts(intents_dir, run_dirs):
    args = ["run", str(intents_dir), "--no-progress", "--no-report", "--variants",
            "prompt-only,few-shot,rag"]
    for k, v in run_dirs.items():
        args += [f"--{k.replace('_', '-')}", v]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    run_dir = Path(run_dirs["reports_dir"]) / "latest"
    reasons = [st["reason"] for st in _strict_json(run_dir / "summary.json")["steps"]]
    lines = result.output.strip().splitlines()
    assert lines[-len(reasons) - 1:-1] == reasons  # then the line saying where the report is
    assert lines[-1].startswith("report: ")


def test_old_run_json_falls_back_to_the_test_set(intents_run, tmp_path):
    run_dir = tmp_path / "old-run"
    shutil.copytree(intents_run, run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    del record["task"], record["variant_specs"]
    (run_dir / "run.json").write_text(json.dumps(record))
    s = analysis.summarize_run(run_dir)
    assert s["primary_metric"] == "accuracy" and s["notes"]
    fresh = _strict_json(intents_run / "summary.json")
    assert [st["verdict"] for st in s["steps"]] == [st["verdict"] for st in fresh["steps"]]
    assert not math.isnan(s["steps"][0]["delta"])


@pytest.mark.parametrize("arg,message", [("rag", "two variant names"),
                                         ("rag,gpt-9", "'gpt-9' is not in this run")])
def test_summarize_rejects_a_bad_comparison(intents_run, arg, message):
    result = CliRunner().invoke(main, ["summarize", str(intents_run), "--compare", arg])
    assert result.exit_code == 2 and message in result.output


def test_economics_for_a_variant_the_run_does_not_have_is_an_error(intents_dir, run_dirs,
                                                                  fake_provider_factory,
                                                                  tmp_path):
    """A typo (finetuned for fine-tuned) would silently drop $2,400 of setup cost."""
    provider = fake_provider_factory()
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("economics:\n  variants:\n    finetuned:\n      hours: {labelling: 40}\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml:3: field 'economics\.variants\.finetuned'"):
        _run(intents_dir, run_dirs, config_path=str(cfg))
    assert provider.calls == []

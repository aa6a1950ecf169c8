"""The decision on small and constructed runs (issue 15): honest intervals at any size,
steps against the incumbent, one recommendation, economics with their sources."""

from __future__ import annotations

import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from evalkit.analysis import stats
from evalkit.analysis import summary as analysis
from evalkit.analysis.economics import Economics
from evalkit.analysis.verdicts import INCONCLUSIVE, about
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

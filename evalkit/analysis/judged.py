"""summary.json's `judge` section: who judged, what the judging cost, and how far to trust it.

The judge's scores are a metric like any other (variants.<v>.metrics.judge); this section sits
beside them with what a reader needs to weigh them:
- `model`, `rubric_sha256`: which judge, with which rubric (the rubric itself is in judge.json);
- `cost`: the judge's own calls, tokens and notional dollars, never added to any variant's cost
  (`groundedness_cost` the same for its groundedness verdicts, null when not asked);
- `agreement`: Spearman's rank correlation (scipy.stats.spearmanr) between the judge's score
  and a reference metric on the same answers: the task's first quality metric that is not the
  judge (ROUGE-L for long-form answers, token F1 for QA), over every judged answer of every
  variant, and per variant. A judge that disagrees with the reference metric everywhere is
  grading something else; one that agrees perfectly adds nothing the metric did not say;
- `human_agreement`: accuracy and Cohen's kappa against human labels, when the config's
  `judge.labels` named a labelled sample (what `evalkit judge check` reports), else null.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from evalkit.tasks import METRICS
from evalkit.tasks.judged import JUDGE_METRIC

MIN_PAIRS = 3  # fewer answers than this give no correlation worth printing


def judge_section(judge_json: dict[str, Any] | None, scores: pd.DataFrame,
                  metrics: Sequence[str]) -> dict[str, Any] | None:
    """The section, or None when the run has no judge scores. `metrics` is the task's metric
    list (primary first), from which the reference metric is taken."""
    if scores.empty or not (scores["metric"] == JUDGE_METRIC).any():
        return None
    j = judge_json or {}
    rubric = j.get("rubric")
    return {"model": j.get("model"),
            "rubric_sha256": hashlib.sha256(rubric.encode()).hexdigest() if rubric else None,
            "cost": j.get("judge_cost"),
            "groundedness_cost": j.get("groundedness_cost"),
            "agreement": agreement(scores, reference_metric(scores, metrics)),
            "human_agreement": j.get("human_agreement"),
            "not_judged": sum(v.get("not_judged") or 0 for v in (j.get("variants") or {}).values()),
            "stopped": j.get("stopped")}


def reference_metric(scores: pd.DataFrame, metrics: Sequence[str]) -> str | None:
    """The task's first per-item quality metric other than the judge that the run scored."""
    present = set(scores["metric"])
    for name in metrics:
        spec = METRICS.find(name)
        if (name != JUDGE_METRIC and name in present and spec is not None
                and spec.level == "item" and spec.group == "quality"):
            return name
    return None


def agreement(scores: pd.DataFrame, reference: str | None) -> dict[str, Any]:
    """Spearman's rho between the judge and `reference`, overall and per variant."""
    none = {"reference_metric": reference, "spearman_rho": None, "p_value": None, "n": 0,
            "per_variant": {}}
    if reference is None:
        return none
    wide = (scores[scores["metric"].isin([JUDGE_METRIC, reference])]
            .pivot_table(index=["variant", "item_id"], columns="metric", values="value",
                         aggfunc="last"))
    if JUDGE_METRIC not in wide or reference not in wide:
        return none
    wide = wide[[JUDGE_METRIC, reference]].dropna()
    rho, p = _spearman(wide)
    per_variant = {}
    for variant, group in wide.groupby(level=0, sort=False):
        v_rho, v_p = _spearman(group)
        per_variant[str(variant)] = {"spearman_rho": v_rho, "p_value": v_p, "n": len(group)}
    return {"reference_metric": reference, "spearman_rho": rho, "p_value": p, "n": len(wide),
            "per_variant": per_variant}


def _spearman(wide: pd.DataFrame) -> tuple[float | None, float | None]:
    """rho and its p-value; None when too few pairs or either side is constant."""
    if len(wide) < MIN_PAIRS or wide.nunique().min() < 2:
        return None, None
    from scipy.stats import spearmanr

    result = spearmanr(wide.iloc[:, 0].to_numpy(float), wide.iloc[:, 1].to_numpy(float))
    rho, p = float(result.statistic), float(result.pvalue)
    return (rho if math.isfinite(rho) else None), (p if math.isfinite(p) else None)

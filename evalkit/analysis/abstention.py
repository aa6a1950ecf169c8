"""Answerable vs unanswerable: how much of a rung's score comes from declining to answer.

On a QA set with unanswerable questions (`expected: null`), the primary metric scores an
abstention on an unanswerable item as right (SQuAD 2.0), so a rung that says "unknown" to
everything scores the unanswerable share of the set. That is a real skill only alongside
answers: this module splits every variant's primary into its answerable and unanswerable items
(`variants.<v>.answerability` in summary.json) and, when most of a rung's score comes from
abstaining (`ABSTAIN_SHARE`), says so in the notes and in the verdict of each step it is in.
Whether an output abstains is the task type's `abstains` hook; a type without one (or a set
without unanswerable items) gets no split.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from evalkit.tasks import task_type

if TYPE_CHECKING:
    from evalkit.analysis.summary import RunData

ABSTAIN_SHARE = 0.5  # above this share of its primary from abstentions, a rung is flagged


def split(data: RunData, variant: str) -> dict[str, Any] | None:
    """The variant's primary on answerable and on unanswerable items, abstentions counted."""
    task = data.task_view()
    abstains = task_type(task.type).abstains
    if abstains is None or not any(e is None for e in data.expected.values()):
        return None
    values = data.values(variant, data.primary_metric)
    said = {p.item_id: p.output for p in data.predictions if p.variant == variant
            and p.error_class is None and p.output is not None}
    declined = np.array([i in said and abstains(said[i], task) for i in data.item_ids])
    unanswerable = np.array([data.expected.get(i, "") is None for i in data.item_ids])
    out: dict[str, Any] = {}
    for group, rows in (("answerable", ~unanswerable), ("unanswerable", unanswerable)):
        vals = values[rows]
        scored = vals[~np.isnan(vals)]
        out[group] = {"n": int(rows.sum()), "n_nan": int(len(vals) - len(scored)),
                      "primary_mean": float(scored.mean()) if len(scored) else math.nan,
                      "abstained": int(declined[rows].sum())}
    total = float(np.nansum(values))
    from_abstaining = float(np.nansum(values[unanswerable & declined]))
    out["primary_share_from_abstaining"] = from_abstaining / total if total > 0 else math.nan
    return out


def flagged(answerability: dict[str, Any] | None) -> bool:
    share = (answerability or {}).get("primary_share_from_abstaining")
    return share is not None and not math.isnan(share) and share > ABSTAIN_SHARE


def sentence(variant: str, metric: str, answerability: dict[str, Any]) -> str:
    """`rag: 70% of its token_f1 comes from abstaining on the 40 unanswerable items; on the
    60 answerable ones it scores 0.100.`"""
    a, u = answerability["answerable"], answerability["unanswerable"]
    on_answerable = ("n/a" if a["primary_mean"] is None or math.isnan(a["primary_mean"])
                     else f"{a['primary_mean']:.3f}")
    return (f"{variant}: {answerability['primary_share_from_abstaining']:.0%} of its {metric} "
            f"comes from abstaining on the {u['n']} unanswerable items; on the {a['n']} "
            f"answerable ones it scores {on_answerable}.")


def annotate(summary_variants: dict[str, dict], steps: list[dict], metric: str) -> list[str]:
    """Notes for the flagged variants; each step with a flagged end gets the sentence too."""
    said = {name: sentence(name, metric, v["answerability"])
            for name, v in summary_variants.items() if flagged(v.get("answerability"))}
    for step in steps:
        extra = [said[n] for n in (step["from"], step["to"]) if n in said]
        if extra:
            step["reason"] = " ".join([f"{step['reason'].rstrip('.')}.", *extra])
    return list(said.values())

"""The report's breakdowns section: confusion matrices, per-label P/R/F1, per-field quality
(extraction), per-cluster quality and the answerable/unanswerable split, gathered for the
template (numbers from analysis)."""

from __future__ import annotations

from typing import Any

from evalkit.analysis import breakdowns
from evalkit.analysis.summary import RunData


def breakdowns_context(data: RunData | None, summary: dict[str, Any],
                       ladder: list[str]) -> dict[str, Any]:
    """What breakdowns.html.j2 draws; empty lists where a view does not apply (or where the
    analysis could not read the run folder, `data` None: the report still draws the rest)."""
    if data is None:
        return {"confusions": [], "clusters": [], "fields": [], "cluster_variants": [],
                "answerability": [], "unparsed": breakdowns.UNPARSED}
    data.ladder = [v for v in ladder if v in data.ladder] or data.ladder
    confusions = [c for v in data.ladder if (c := breakdowns.confusion(data, v)) is not None]
    answerability = [(v, a) for v in ladder
                     if (a := (summary["variants"].get(v) or {}).get("answerability"))]
    return {"confusions": confusions, "clusters": breakdowns.cluster_quality(data),
            "fields": breakdowns.field_quality(data),
            "cluster_variants": data.ladder, "answerability": answerability,
            "unparsed": breakdowns.UNPARSED}

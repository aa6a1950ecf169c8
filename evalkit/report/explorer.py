"""The item explorer's data: one compact record per item, embedded once as escaped JSON.

The page's script renders a page of rows at a time from this data (never all 10,000), and only
through `textContent`, so model output can never become markup. The JSON itself is made safe
for a `<script type="application/json">` element by writing `<`, `>` and `&` as \\u escapes:
no `</script>` or `<!--` can appear in it, whatever an output says.

Per item: id, input, expected, label or cluster, the gold document ids, and per variant a cell
`[output, score, wrong, error, retrieved, reason, epochs, flaky, outputs, explained]`:
- `score` is the primary metric (null when unscored), `wrong` 1/0 by `is_wrong` (a failed call
  counts as wrong, as it does when steps are judged), null when neither is known;
- `error` is "ErrorClass: message" for a failed call, `retrieved` the ranked doc ids the rung's
  passages came from (the journal's `retrieved`), `reason` the judge's explanation when
  `evalkit judge score` graded the run (judge_scores.csv);
- after `--epochs K` (epoch_scores.csv): `epochs` the primary metric in each epoch (null where
  an epoch has no score), `flaky` 1 when two of them differ (`analysis.epochs.is_flaky`, the
  definition summary.json's `flaky_items` counts) and, for a flaky cell only, `outputs` the
  answer of each epoch. `output` is the first epoch's answer; `score` the mean over epochs;
- `explained`: for an answer that did not score full marks, the task type's sentence on why
  (`TaskType.explain`: an extraction's fields that differ, gold beside answer, or that the
  answer is no JSON record; the label a classification answer was read as, or that it names
  none or several).
Trailing empty fields are dropped to keep 60,000 cells light.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from evalkit.analysis.epochs import is_flaky
from evalkit.run.journal import Prediction
from evalkit.tasks import METRICS, bounds


def is_wrong(value: float, metric: str) -> bool:
    """An item counts as wrong when a 0/1 metric is 0, or a graded one is in the worse half of
    its range (below 0.5 for a [0, 1] metric); binary and range come from the metric registry,
    and a metric no module registers is read as a graded [0, 1] one."""
    return wrong_test(metric)(value)


def wrong_test(metric: str) -> Callable[[float], bool]:
    """`is_wrong` for one metric, with the registry read once (60,000 cells call it)."""
    spec = METRICS.find(metric)
    higher = spec is None or spec.higher_is_better
    if spec is not None and spec.binary:
        return (lambda v: v < 1) if higher else (lambda v: v > 0)
    lo, hi = bounds(metric) or (0.0, 1.0)
    middle = (lo + hi) / 2
    return (lambda v: v < middle) if higher else (lambda v: v > middle)


def judge_reasons(run_dir: Path) -> dict[tuple[str, str], str]:
    """(variant, item id) -> the judge's one-sentence reason, when the run was judged."""
    path = run_dir / "judge_scores.csv"
    if not path.is_file():
        return {}
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return {}  # the explanation is a nicety; a damaged file must not cost the report
    if not {"variant", "item_id", "reason"} <= set(table.columns):
        return {}
    return {(v, i): r for v, i, r in zip(table["variant"], table["item_id"], table["reason"])
            if r}


UNANSWERABLE = "(unanswerable: abstaining is right)"  # expected null, or answerable: false


def _expected_text(expected: Any) -> str:
    """The expected cell: an answer list as alternatives, a record as JSON; a null (the only
    task types that allow it abstain) as what it means, not the word None."""
    if expected is None:
        return UNANSWERABLE
    if isinstance(expected, list):
        return " | ".join(map(str, expected))
    if isinstance(expected, dict):
        return json.dumps(expected, ensure_ascii=False, sort_keys=True)
    return str(expected)


def _group(item: dict) -> str:
    cluster = item.get("cluster")
    if cluster:
        return str(cluster)
    return item["expected"] if isinstance(item.get("expected"), str) else ""


def _score(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 4)


def _cell(p: Prediction | None, score: float | None, wrong_if: Callable[[float], bool],
          reason: str | None, epochs: list[float] | None = None,
          outputs: dict[int, str | None] | None = None,
          explained: str | None = None) -> list[Any]:
    failed = p is not None and p.error_class is not None
    if score is not None:
        wrong: int | None = int(wrong_if(score))
    else:
        wrong = 1 if failed else None
    cell = [None if p is None else p.output, score, wrong,
            f"{p.error_class}: {p.error}" if failed else None,
            list(p.retrieved) if p is not None and p.retrieved else None, reason]
    if epochs:
        flaky = is_flaky(epochs)
        cell += [[_score(x) for x in epochs], 1 if flaky else None,
                 [(outputs or {}).get(e) for e in range(len(epochs))] if flaky else None]
    else:
        cell += [None, None, None]
    cell.append(explained)
    while cell and cell[-1] is None:
        cell.pop()
    return cell


def explorer_data(items: list[dict], preds: list[Prediction], scores: pd.DataFrame,
                  ladder: list[str], primary: str, *,
                  reasons: dict[tuple[str, str], str] | None = None,
                  epochs: dict[tuple[str, str], list[float]] | None = None,
                  explain: Callable[[Any, str], str | None] | None = None) -> dict[str, Any]:
    """The explorer's records (see the module docstring), in item order; `epochs`:
    `analysis.epochs.item_epochs` of the primary metric, after a run with --epochs;
    `explain(expected, output)`: the task type's sentence on an answer short of full marks."""
    prim = scores[scores["metric"] == primary]
    score_of = {(v, i): s for v, i, s in zip(prim["variant"], prim["item_id"], prim["value"])}
    pred_of: dict[tuple[str, str], Prediction] = {}
    outputs: dict[tuple[str, str], dict[int, str | None]] = {}
    for p in sorted(preds, key=lambda p: -p.epoch):  # the first epoch's answer is the cell's
        pred_of[(p.variant, p.item_id)] = p
        if epochs:
            outputs.setdefault((p.variant, p.item_id), {})[p.epoch] = (
                p.output if p.error_class is None else f"{p.error_class}: {p.error}")
    reasons = reasons or {}
    epochs = epochs or {}
    wrong_if = wrong_test(primary)
    spec = METRICS.find(primary)
    lo, hi = bounds(primary) or (0.0, 1.0)
    best = hi if spec is None or spec.higher_is_better else lo
    rows = []
    for it in items:
        cells = []
        for v in ladder:
            key = (v, it["id"])
            p, score = pred_of.get(key), _score(score_of.get(key))
            explained = (_explained(explain, it["expected"], p.output)
                         if explain is not None and p is not None and p.error_class is None
                         and p.output is not None and score is not None and score != best
                         else None)
            cells.append(_cell(p, score, wrong_if, reasons.get(key), epochs.get(key),
                               outputs.get(key), explained))
        row = {"id": it["id"], "in": it["input"], "exp": _expected_text(it["expected"]),
               "grp": _group(it), "o": cells}
        if it.get("doc_ids"):
            row["gold"] = list(it["doc_ids"])
        rows.append(row)
    return {"variants": ladder, "metric": primary, "lo": lo, "hi": hi,
            "higher": spec is None or spec.higher_is_better,
            "grouping": "cluster" if any(it.get("cluster") for it in items) else "label",
            "epochs": max((len(e) for e in epochs.values()), default=0), "items": rows}


def _explained(explain: Callable[[Any, str], str | None], expected: Any,
               output: str) -> str | None:
    """`explain(expected, output)`, or None if it fails: a sentence the page can do without
    never stops a report."""
    try:
        return explain(expected, output)
    except Exception:
        return None


def embed_json(data: Any) -> str:
    """JSON safe inside <script type="application/json">: no HTML-significant characters."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")

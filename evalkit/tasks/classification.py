"""`classification`: one label per item, from the labels task.yaml defines.

Scored by accuracy per item and macro-F1 over the run (bootstrapped by the analysis through
the statistic this module returns, so 2,000 resamples stay fast).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalkit.tasks.base import (
    ItemContext,
    Metric,
    Rows,
    RunContext,
    Scaffold,
    TaskType,
    register_metric,
    register_task_type,
)

if TYPE_CHECKING:
    import numpy as np

    from evalkit.data.testset import Task


def parse_label(output: str, labels: Sequence[str]) -> str | None:
    """The label an answer names: an exact match, else the only label mentioned in it.

    A mention is the label as whole words, case-insensitively, with its separators (`_`, `-`,
    spaces) read as any of them: small models write `refund_request` as "Refund Request" or
    "refund-request", and that answer names the label. A label found only inside a longer
    label's mention ("refund" in "refund request") is not mentioned apart from it."""
    bare = output.strip().strip("`'\".")
    if bare in labels:  # exactly a label: that one, even beside another differing in case
        return bare
    text = bare.lower()
    by_lower: dict[str, list[str]] = {}
    for label in labels:
        by_lower.setdefault(label.lower(), []).append(label)
    if len(by_lower.get(text, ())) == 1:  # labels equal but for case: no guessing among them
        return by_lower[text][0]
    mentioned = mentioned_labels(output, labels)
    if len(mentioned) > 1:  # labels alike but for case: the one spelled exactly, if only one
        exact = [label for label in mentioned
                 if re.search(r"(?<!\w)" + re.escape(label) + r"(?!\w)", output)]
        if len(exact) == 1 and len({label.lower() for label in mentioned}) == 1:
            return exact[0]
    return mentioned[0] if len(mentioned) == 1 else None


def mentioned_labels(output: str, labels: Sequence[str]) -> list[str]:
    """The labels `output` mentions (see `parse_label`), a label found only inside a longer
    label's mention left out."""
    lowered = output.lower()
    spans = {label: [m.span() for m in _mention(label).finditer(lowered)] for label in labels}
    taken = [s for found in spans.values() for s in found]
    return [label for label, found in spans.items()
            if any(not any(a <= start and end <= b and (a, b) != (start, end)
                           for a, b in taken) for start, end in found)]


_SEPARATORS = re.compile(r"[\s_-]+")


def alike_labels(labels) -> list[list[str]]:
    """Groups of labels equal once lower-cased with `_`, `-` and spaces read alike
    (`Change_PIN`, `change pin`): `parse_label` reads an answer as one of them only when it
    spells that one exactly, which a user merging them by mistake should be told."""
    groups: dict[str, list[str]] = {}
    for label in labels:
        key = " ".join(p for p in _SEPARATORS.split(label.lower()) if p)
        groups.setdefault(key, []).append(label)
    return [group for group in groups.values() if len(group) > 1]


@lru_cache(maxsize=1024)
def _mention(label: str) -> re.Pattern[str]:
    """`label` as whole words in lower-cased text, any run of separators matching any other."""
    parts = [re.escape(p) for p in _SEPARATORS.split(label.lower()) if p]
    words = r"[\s_-]+".join(parts) or re.escape(label.lower())  # a label of separators only
    return re.compile(r"(?<!\w)" + words + r"(?!\w)")


def check_expected(expected: Any, task: Task) -> None:
    if not isinstance(expected, str):
        raise ValueError("must be one label (a string)")
    if expected not in task.labels:
        raise ValueError(f"unknown label {expected!r}; task.yaml defines "
                         f"{', '.join(sorted(task.labels))}")


def _parse(output: str, task: Task) -> str | None:
    return parse_label(output, list(task.labels))


def _accuracy(ctx: ItemContext) -> float:
    return float(ctx.parsed == ctx.item.expected)


def macro_f1_codes(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int) -> float:
    """Macro-F1 from integer codes 0..n_labels-1 (a prediction of n_labels means "no
    label": a miss of the true label, not a class of its own), averaged over the labels
    that occur, as expected or as predicted: scikit-learn's default label set (f1_score
    with no `labels=`). A label of the task that no item has and no answer names is not
    scored: counted as 0 it capped a perfect rung at 14/17 on a set whose three labels had
    no test items. On a bootstrap resample it is the same over the resample's labels. Fast
    enough to bootstrap 2,000 times."""
    import numpy as np

    hit = y_true == y_pred
    tp = np.bincount(y_true[hit], minlength=n_labels + 1)[:n_labels]
    true_n = np.bincount(y_true, minlength=n_labels + 1)[:n_labels]
    pred_n = np.bincount(y_pred, minlength=n_labels + 1)[:n_labels]
    denom = true_n + pred_n
    present = denom > 0
    if not present.any():
        return 0.0
    return float((2 * tp[present] / denom[present]).mean())


def _macro_f1(ctx: RunContext):
    import numpy as np

    labels = list(ctx.task.labels)
    if not labels:
        return None
    code = {label: i for i, label in enumerate(labels)}
    keep = [i for i, e in enumerate(ctx.expected) if e in code]
    y_true = np.array([code[ctx.expected[i]] for i in keep], dtype=int)
    y_pred = np.array([code.get(ctx.parsed[i], len(code)) for i in keep], dtype=int)
    return lambda ix: macro_f1_codes(y_true[ix], y_pred[ix], len(code))


register_metric(Metric("accuracy", "item", _accuracy, task_types=("classification",),
                       binary=True, description="1 if the parsed label is the expected one"))
register_metric(Metric("macro_f1", "run", _macro_f1, task_types=("classification",),
                       description="F1 per label that occurs (expected or answered), averaged "
                                   "with equal weight (bootstrap CI)"))
# --- evalkit init: how a file looks like labelled texts, and how one is read ------------------

LABEL_LIMIT = 200  # more distinct answers than this is free text, not labels


def few_distinct(values: Sequence[Any]) -> bool:
    """Few enough distinct values to be labels: at most LABEL_LIMIT and a fifth of the rows."""
    distinct = len(set(map(str, values)))
    return distinct <= min(LABEL_LIMIT, max(2, len(values) // 5))


def fit(rows: Rows) -> float:
    """0.8 for a label column (label, category, intent, class), 0.6 when `expected` holds
    few distinct strings or whole numbers (labels by their count; TREC's and AG News's
    labels are numbers), else 0."""
    from evalkit.data.importers import LABEL_KEYS, pick_key

    if any((key := pick_key(rows[0], (k,))) and not isinstance(rows[0][key], dict)
           for k in LABEL_KEYS if k != "expected"):
        return 0.8  # a label column (an object under `label` is a record: extraction's)
    values = [r.get("expected") for r in rows]
    labels = all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values)
    return 0.6 if labels and few_distinct(values) else 0.0


def read(path: Path, *, text_key: str | None = None,
         target_key: str | None = None) -> list[dict[str, Any]]:
    """A `text,label` CSV or TSV (columns guessed from the header) or a JSONL of labelled
    texts."""
    from evalkit.data import importers

    if not importers.is_csv(path):
        return importers.from_jsonl_classification(path, text_key=text_key,
                                                   label_key=target_key)
    header = importers.csv_header(path)
    columns = dict.fromkeys(header)
    text = importers.pick_key(columns, importers.TEXT_KEYS, text_key) or "text"
    label = importers.pick_key(columns, importers.LABEL_KEYS, target_key) or "label"
    ids = importers.pick_key(columns, ("id", "_id"))  # the file's own ids, as JSONL keeps them
    return importers.from_csv(path, text_column=text, label_column=label, id_column=ids)


def _label(item: Mapping[str, Any]) -> Any:
    return item["expected"]


def explain(expected: str, output: str, task: Task) -> str | None:
    """Why an answer scored 0: the label it was read as, or that it named no label of the
    task or several (the parse takes an exact label, else the only one mentioned)."""
    if not output.strip():
        return "no answer: the reply was empty"
    labels = list(task.labels)
    parsed = parse_label(output, labels)
    if parsed == expected:
        return None
    if parsed is not None:
        return f"read as the label {parsed!r}, not {expected!r}"
    named = mentioned_labels(output, labels)
    if len(named) > 1:
        shown = ", ".join(map(repr, named[:5])) + (", ..." if len(named) > 5 else "")
        return f"names {len(named)} labels ({shown}), so it is read as none of them"
    return "names no label of the task, so it is read as none"


register_task_type(TaskType(
    "classification", check_expected=check_expected, metrics=("accuracy", "macro_f1"),
    explain=explain,
    parse=_parse, uses_labels=True, description="one label per item from task.yaml's labels",
    default_output_tokens=16,  # a label (the provider raises it to fit the longest one)
    scaffold=Scaffold(
        fit=fit, read=read, formats=("csv", "jsonl"), stratum=_label, stratum_name="label",
        instructions="Classify the text into exactly one of the labels. Reply with the label "
                     "only.")))

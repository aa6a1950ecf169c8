"""`qa`: short answers, `expected` one acceptable answer or a list of them.

Text metrics follow the SQuAD v1.1 evaluation script: lower-case, strip punctuation and the
articles a/an/the, fold whitespace, and take the maximum over the acceptable references.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from evalkit.tasks.base import Metric, TaskType, register_metric, register_task_type

if TYPE_CHECKING:
    from evalkit.data.testset import Task

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 normalisation."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _refs(references: str | Sequence[str]) -> list[str]:
    return [references] if isinstance(references, str) else [str(r) for r in references]


def exact_match(prediction: str, references: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised reference."""
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(r) for r in _refs(references)))


def _f1(prediction: str, reference: str) -> float:
    p, r = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not p or not r:
        return float(p == r)
    common = Counter(p) & Counter(r)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(r)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, references: str | Sequence[str]) -> float:
    """SQuAD token-overlap F1, the best over references."""
    return max(_f1(prediction, r) for r in _refs(references))


def contains(prediction: str, references: str | Sequence[str]) -> float:
    """1.0 if any normalised reference appears inside the normalised prediction."""
    p = f" {normalize_answer(prediction)} "
    return float(any(f" {normalize_answer(r)} " in p for r in _refs(references)
                     if normalize_answer(r)))


def _is_answer(value: Any) -> bool:
    """A string or a number (`true` is not an answer, though Python counts bools as ints)."""
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def check_expected(expected: Any, task: Task) -> None:
    """One answer or a non-empty list of them (scoring takes a max over it)."""
    if isinstance(expected, list):
        if not expected:
            raise ValueError("an empty list of answers: give at least one acceptable answer")
        if all(_is_answer(x) and x != "" for x in expected):
            return
    elif _is_answer(expected):
        return
    raise ValueError(f"must be a string or a list of acceptable answers, got {expected!r}")


def _text_metric(fn):
    return lambda ctx: fn(ctx.parsed, ctx.item.references)


register_metric(Metric("token_f1", "item", _text_metric(token_f1), task_types=("qa",),
                       description="SQuAD token-overlap F1, best over the references"))
register_metric(Metric("exact_match", "item", _text_metric(exact_match), task_types=("qa",),
                       binary=True, description="normalised answer equals a reference"))
register_metric(Metric("contains", "item", _text_metric(contains), task_types=("qa",),
                       binary=True, description="a normalised reference appears in the answer"))
register_task_type(TaskType(
    "qa", check_expected=check_expected, metrics=("token_f1", "exact_match", "contains"),
    description="short answers: one acceptable answer or a list of them"))


"""`qa`: short answers, `expected` one acceptable answer or a list of them, or `null` (or
`answerable: false`) for a question the documents do not answer.

Text metrics follow the SQuAD v1.1 evaluation script: lower-case, strip punctuation and the
articles a/an/the, fold whitespace, and take the maximum over the acceptable references; one
addition, typographic quotes (’ ‘ “ ”) count as the ASCII punctuation they stand for.

Abstention (issue 11.4), as SQuAD 2.0 scores no-answer questions: an answer *abstains* when,
after the same normalisation, it contains one of task.yaml's `abstain_phrases` as whole words
(default `DEFAULT_ABSTAIN_PHRASES`). On an unanswerable item the text metrics score 1 for an
abstention and 0 for any answer, so the overall primary rewards knowing when to decline. Beside
it: `answerable_f1` (token F1 on answerable items only, so abstaining earns nothing there) and
`abstain_precision` / `abstain_recall` / `abstain_f1` (per run: of the abstentions, how many
were on unanswerable items; of the unanswerable items, how many drew an abstention).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
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
    from evalkit.data.testset import Item, Task

# what the instructions ask for ("unknown"), and how chat models decline when they talk
DEFAULT_ABSTAIN_PHRASES = ("unknown", "not in the documents", "i don't know", "i do not know",
                           "cannot be answered", "i cannot answer", "i can't answer")

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


# Typographic quotes as the ASCII ones (which normalisation then strips): chat models write
# "don’t" and "O’Brien" where a reference or an abstain phrase says "don't", "O'Brien"
_TYPOGRAPHIC = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201c": '"',
                              "\u201d": '"'})


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 normalisation, typographic quotes first read as ASCII ones."""
    s = s.translate(_TYPOGRAPHIC).lower()
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
    """One answer, a non-empty list of them (scoring takes a max over it), or None for an
    unanswerable question."""
    if expected is None:
        return
    if isinstance(expected, list):
        if not expected:
            raise ValueError("an empty list of answers: give at least one acceptable answer, "
                             "or null for a question the documents do not answer")
        if all(_is_answer(x) and x != "" for x in expected):
            return
    elif _is_answer(expected):
        return
    raise ValueError(f"must be a string or a list of acceptable answers, got {expected!r}")


def check_phrases(value: Any) -> tuple[str, ...]:
    """task.yaml `abstain_phrases`: a non-empty list of non-empty strings."""
    if not isinstance(value, list) or not value or not all(
            isinstance(p, str) and p.strip() for p in value):
        raise ValueError("must be a non-empty list of phrases (strings)")
    return tuple(value)


def abstain_phrases(task: Task) -> tuple[str, ...]:
    return tuple(task.options.get("abstain_phrases") or DEFAULT_ABSTAIN_PHRASES)


def abstains(output: str, task: Task) -> bool:
    """Whether an answer declines: it holds an abstain phrase as whole words (normalised)."""
    text = f" {normalize_answer(output)} "
    return any(f" {p} " in text for p in map(normalize_answer, abstain_phrases(task)) if p)


def _target(item: Item, task: Task) -> str:
    """What an example shows: the first reference, or the first abstain phrase."""
    return item.references[0] if item.answerable else abstain_phrases(task)[0]


def _text_metric(fn):
    def compute(ctx: ItemContext) -> float:
        if not ctx.item.answerable:  # right exactly when it abstains
            return float(abstains(ctx.output, ctx.task))
        return fn(ctx.parsed, ctx.item.references)
    return compute


def _answerable_f1(ctx: ItemContext) -> float:
    return token_f1(ctx.parsed, ctx.item.references)


def _answerable(ctx: ItemContext) -> bool:
    return ctx.item.answerable


def _abstention(which: str):
    """Precision, recall or F1 of abstaining, with unanswerable items as the positives."""
    def factory(ctx: RunContext):
        import numpy as np

        truth = np.array([e is None for e in ctx.expected], dtype=bool)
        # a failed call (None) said nothing: not an abstention, so wrong where one was due
        said = np.array([o is not None and abstains(o, ctx.task) for o in ctx.parsed],
                        dtype=bool)

        def statistic(ix: np.ndarray) -> float:
            t, s = truth[ix], said[ix]
            hit = float(np.sum(t & s))
            precision = hit / s.sum() if s.sum() else math.nan
            recall = hit / t.sum() if t.sum() else math.nan
            if which == "precision":
                return precision
            if which == "recall":
                return recall
            # 2TP / (2TP + FP + FN), the harmonic mean where P and R exist, and 0 for a rung
            # that never abstains (P undefined, R 0: as macro-F1's zero_division=0); NaN
            # without unanswerable items, where abstaining has nothing to be measured on
            if math.isnan(recall):
                return math.nan
            return 2 * hit / (2 * hit + float(s.sum() - hit) + float(t.sum() - hit))
        return statistic
    return factory


register_metric(Metric("token_f1", "item", _text_metric(token_f1), task_types=("qa",),
                       description="SQuAD token-overlap F1, best over the references"))
register_metric(Metric("exact_match", "item", _text_metric(exact_match), task_types=("qa",),
                       binary=True, description="normalised answer equals a reference"))
register_metric(Metric("contains", "item", _text_metric(contains), task_types=("qa",),
                       binary=True, description="a normalised reference appears in the answer"))
register_metric(Metric("answerable_f1", "item", _answerable_f1, task_types=("qa",),
                       applies=_answerable, not_applicable="the set has no answerable items",
                       description="token F1 on answerable items only"))
for _which in ("precision", "recall", "f1"):
    register_metric(Metric(f"abstain_{_which}", "run", _abstention(_which), task_types=("qa",),
                           description=f"abstention {_which}: unanswerable items as positives"))
# --- evalkit init: how a file looks like questions and answers, and how one is read -----------

def fit(rows: Rows) -> float:
    """0.9 for answer, unanswerable or gold-passage keys (answers, is_impossible, doc_ids,
    ...); otherwise 0.1: any text answer may be a short answer, the fallback of last resort."""
    from evalkit.data.importers import DOC_ID_KEYS, pick_key

    keys = ("answers", "answer", "is_impossible", "answerable", *DOC_ID_KEYS)
    return 0.9 if pick_key(rows[0], keys) else 0.1


def read(path: Path, *, text_key: str | None = None,
         target_key: str | None = None) -> list[dict[str, Any]]:
    from evalkit.data.importers import from_qa_jsonl

    return from_qa_jsonl(path, question_key=text_key, answer_key=target_key)


def _unanswerable(item: Mapping[str, Any]) -> bool:
    return item["expected"] is None


register_task_type(TaskType(
    "qa", check_expected=check_expected,
    metrics=("token_f1", "exact_match", "contains", "answerable_f1", "abstain_precision",
             "abstain_recall", "abstain_f1"),
    target=_target, abstains=abstains, options={"abstain_phrases": check_phrases},
    description="short answers: one acceptable answer, a list of them, or null (unanswerable)",
    default_output_tokens=64,  # a short answer
    scaffold=Scaffold(
        fit=fit, read=read, stratum=_unanswerable, stratum_name="answerable/unanswerable",
        instructions='Answer the question from the passages you are given, with a short '
                     'answer only. If the answer is not in them, reply "unknown".')))

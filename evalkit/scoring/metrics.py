"""Metrics as plain functions. Per-item ones return a float; NaN means "not scorable".

Text metrics follow the SQuAD v1.1 evaluation script: lower-case, strip punctuation and the
articles a/an/the, fold whitespace, and take the maximum over the acceptable references.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

from sklearn.metrics import accuracy_score, f1_score

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


def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    return float(accuracy_score(y_true, y_pred))


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str],
             labels: Sequence[str] | None = None) -> float:
    """Macro-averaged F1 over `labels` (default: the labels present in y_true)."""
    labels = list(labels) if labels is not None else sorted(set(y_true))
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def recall_at_k(retrieved: Sequence[str], gold: Sequence[str], k: int | None = None) -> float:
    """Share of gold doc ids found in the first k retrieved ids; NaN without gold ids."""
    if not gold:
        return math.nan
    top = set(retrieved[:k] if k else retrieved)
    gold_set = set(gold)
    return len(top & gold_set) / len(gold_set)


def mrr(retrieved: Sequence[str], gold: Sequence[str]) -> float:
    """Reciprocal rank of the first gold doc id among retrieved ids; NaN without gold ids."""
    if not gold:
        return math.nan
    gold_set = set(gold)
    for rank, doc in enumerate(retrieved, start=1):
        if doc in gold_set:
            return 1.0 / rank
    return 0.0


def parse_label(output: str, labels: Sequence[str]) -> str | None:
    """The label an answer names: an exact match, else the only label mentioned in it."""
    text = output.strip().strip("`'\".").lower()
    by_lower = {label.lower(): label for label in labels}
    if text in by_lower:
        return by_lower[text]
    mentioned = [label for label in labels if re.search(rf"\b{re.escape(label.lower())}\b",
                                                          output.lower())]
    return mentioned[0] if len(mentioned) == 1 else None

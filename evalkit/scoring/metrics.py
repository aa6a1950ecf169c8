"""Metrics as plain functions. Per-item ones return a float; NaN means "not scorable".

The metric registry (evalkit.tasks) declares each metric once and holds these functions; they
live with their task type there (SQuAD text metrics in `tasks.qa`, label parsing in
`tasks.classification`, retrieval in `tasks.common`) and are re-exported here. `accuracy` and
`macro_f1` over label lists are scikit-learn's, the references the fast versions are tested
against.
"""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.metrics import accuracy_score, f1_score

from evalkit.tasks.classification import parse_label
from evalkit.tasks.common import mrr, recall_at_k
from evalkit.tasks.qa import contains, exact_match, normalize_answer, token_f1

__all__ = ["accuracy", "contains", "exact_match", "macro_f1", "mrr", "normalize_answer",
           "parse_label", "recall_at_k", "token_f1"]


def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    return float(accuracy_score(y_true, y_pred))


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str],
             labels: Sequence[str] | None = None) -> float:
    """Macro-averaged F1 over `labels` (default: the labels present in y_true)."""
    labels = list(labels) if labels is not None else sorted(set(y_true))
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))

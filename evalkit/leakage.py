"""Leakage between a held-out test split and anything a model or prompt may have seen.

Exact duplicates are compared after whitespace/case folding; near-duplicates are test/train
pairs whose TF-IDF cosine (word 1-2 grams plus character 3-5 grams) reaches the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evalkit.retrieval import make_vectorizer
from evalkit.testset import Item


@dataclass(frozen=True)
class LeakPair:
    test_id: str
    train_id: str
    similarity: float
    exact: bool


def _fold(text: str) -> str:
    return " ".join(text.lower().split())


def find_leaks(test: tuple[Item, ...], train: tuple[Item, ...], *,
               threshold: float = 0.9) -> list[LeakPair]:
    """Test/train pairs that are the same or nearly the same input, most similar first."""
    if not test or not train:
        return []
    vec = make_vectorizer().fit([it.input for it in (*test, *train)])
    from sklearn.preprocessing import normalize
    a = normalize(vec.transform([it.input for it in test]))
    b = normalize(vec.transform([it.input for it in train]))
    sims = (a @ b.T).tocoo()
    pairs = []
    for i, j, s in zip(sims.row, sims.col, sims.data):
        exact = _fold(test[i].input) == _fold(train[j].input)
        if exact or s >= threshold:
            pairs.append(LeakPair(test[i].id, train[j].id, float(min(s, 1.0)), exact))
    pairs.sort(key=lambda p: (-p.similarity, p.test_id, p.train_id))
    return pairs


def max_similarity(test: tuple[Item, ...], train: tuple[Item, ...]) -> float:
    if not test or not train:
        return 0.0
    vec = make_vectorizer().fit([it.input for it in (*test, *train)])
    from sklearn.preprocessing import normalize
    a = normalize(vec.transform([it.input for it in test]))
    b = normalize(vec.transform([it.input for it in train]))
    return float(np.max((a @ b.T).toarray()))

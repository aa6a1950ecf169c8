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
    sims = _similarities(test, train)
    pairs = {(int(i), int(j)) for i, j in zip(*np.nonzero(sims >= threshold))}
    by_text: dict[str, list[int]] = {}
    for j, it in enumerate(train):
        by_text.setdefault(_fold(it.input), []).append(j)
    exact = {(i, j) for i, it in enumerate(test) for j in by_text.get(_fold(it.input), ())}
    out = [LeakPair(test[i].id, train[j].id, float(min(sims[i, j], 1.0)), (i, j) in exact)
           for i, j in pairs | exact]
    out.sort(key=lambda p: (-p.similarity, p.test_id, p.train_id))
    return out


def _similarities(test: tuple[Item, ...], train: tuple[Item, ...]) -> np.ndarray:
    """Dense test x train cosine matrix over a vectorizer fitted on both splits."""
    from sklearn.preprocessing import normalize

    vec = make_vectorizer().fit([it.input for it in (*test, *train)])
    a = normalize(vec.transform([it.input for it in test]))
    b = normalize(vec.transform([it.input for it in train]))
    return (a @ b.T).toarray()


def max_similarity(test: tuple[Item, ...], train: tuple[Item, ...]) -> float:
    if not test or not train:
        return 0.0
    return float(_similarities(test, train).max())

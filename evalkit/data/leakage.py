"""Leakage between a held-out test split and anything a model or prompt may have seen.

Exact duplicates are compared after whitespace/case folding; near-duplicates are test/train
pairs whose TF-IDF cosine (word 1-2 grams plus character 3-5 grams) reaches the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

from evalkit.data.testset import Item
from evalkit.data.text import make_vectorizer


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
    import numpy as np  # here, not at the top: a set with no train split never needs it

    by_text: dict[str, list[int]] = {}
    for j, it in enumerate(train):
        by_text.setdefault(_fold(it.input), []).append(j)
    found: dict[tuple[int, int], float] = {}
    for start, sims in _similarity_blocks(test, train):
        for i, j in zip(*np.nonzero(sims >= threshold)):
            found[(start + int(i), int(j))] = float(sims[i, j])
        for i in range(sims.shape[0]):
            for j in by_text.get(_fold(test[start + i].input), ()):
                found[(start + i, j)] = float(sims[i, j])
    out = [LeakPair(test[i].id, train[j].id, min(sim, 1.0),
                    _fold(test[i].input) == _fold(train[j].input))
           for (i, j), sim in found.items()]
    out.sort(key=lambda p: (-p.similarity, p.test_id, p.train_id))
    return out


def _similarity_blocks(test: tuple[Item, ...], train: tuple[Item, ...],
                       max_cells: int = 20_000_000):
    """(first test row, dense cosine block) over a vectorizer fitted on both splits.

    Blocks of test rows keep memory near max_cells floats (160 MB) however large the splits:
    the whole test x train matrix of a 100k x 10k set would need 8 GB.
    """
    from sklearn.preprocessing import normalize

    vec = make_vectorizer().fit([it.input for it in (*test, *train)])
    b = normalize(vec.transform([it.input for it in train])).T.tocsr()
    rows = max(1, max_cells // len(train))
    for start in range(0, len(test), rows):
        a = normalize(vec.transform([it.input for it in test[start:start + rows]]))
        yield start, (a @ b).toarray()


def max_similarity(test: tuple[Item, ...], train: tuple[Item, ...]) -> float:
    if not test or not train:
        return 0.0
    return max(float(sims.max()) for _, sims in _similarity_blocks(test, train))

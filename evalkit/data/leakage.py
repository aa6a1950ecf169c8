"""Leakage between a held-out test split and anything a model or prompt may have seen.

Exact duplicates are compared after whitespace/case folding; near-duplicates are test/train
pairs whose TF-IDF cosine (word 1-2 grams plus character 3-5 grams) reaches the threshold.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

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


# --- the scan remembered ---------------------------------------------------------------------
# The scan is seconds of scikit-learn on a real set (3.7 s on support-intents, most of it before
# `evalkit run`'s first call), and its answer depends only on the items' ids and inputs, the
# threshold and the code that computes it. So a scan's pairs are kept under
# `<cache-dir>/leakage/<key>.json`, the key a SHA-256 of exactly those: every test and train
# item's id and input (length-prefixed, in order), the threshold, this file's and
# evalkit/data/text.py's source, and the installed scikit-learn, scipy and numpy versions. Any
# change to one of them is another key, so a remembered answer is never used for other data
# or other code; an unreadable memo is a miss and the scan runs again.

MEMO_FORMAT = "evalkit-leakage-memo/1"
_SCAN_CODE = (Path(__file__), Path(__file__).with_name("text.py"))
_SCAN_LIBRARIES = ("scikit-learn", "scipy", "numpy")


def memo_path(memo_dir: Path, test: tuple[Item, ...], train: tuple[Item, ...], *,
              threshold: float) -> Path | None:
    """Where the scan of these splits at this threshold is remembered (see above); None when
    the scan's source cannot be read (a zipped install), so nothing is remembered."""
    from importlib import metadata

    code = _code_digest(_SCAN_CODE)
    if code is None:
        return None
    h = hashlib.sha256(f"{MEMO_FORMAT}\n{float(threshold)!r}\n".encode())
    h.update(code)
    for dist in _SCAN_LIBRARIES:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "-"
        h.update(f"{dist}={version}\n".encode())
    for split in (test, train):
        h.update(f"split {len(split)}\n".encode())
        for it in split:
            ident, text = it.id.encode(), it.input.encode()
            h.update(b"%d:%s%d:%s" % (len(ident), ident, len(text), text))
    return Path(memo_dir) / f"{h.hexdigest()}.json"


@functools.lru_cache(maxsize=4)
def _code_digest(sources: tuple[Path, ...]) -> bytes | None:
    try:
        return b"".join(hashlib.sha256(source.read_bytes()).digest() for source in sources)
    except OSError:
        return None


def read_memo(path: Path) -> list[LeakPair] | None:
    """The remembered pairs, or None when there is no memo or it cannot be read whole."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("format") != MEMO_FORMAT:
            return None
        return [LeakPair(str(t), str(r), float(s), bool(e)) for t, r, s, e in record["pairs"]]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def write_memo(path: Path, leaks: list[LeakPair]) -> None:
    """Remember a scan's pairs (atomically: a reader sees the old file or the new one). A
    memo that cannot be written costs only the next scan, so an OSError is not raised."""
    record = {"format": MEMO_FORMAT,
              "pairs": [[p.test_id, p.train_id, p.similarity, p.exact] for p in leaks]}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def near_duplicate_groups(texts: list[str], *, threshold: float = 0.9) -> list[int]:
    """A group number per text: texts the leakage check would pair (the same after folding,
    or TF-IDF cosine >= threshold) share one, transitively, so a split that keeps each group
    on one side leaves that check nothing to find.

    The vectorizer is fitted on all the texts, as `find_leaks` fits it on both splits (the
    same texts, so the same weights); the threshold is lowered by a rounding margin so a pair
    the check puts at exactly the threshold is grouped here too.
    """
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    first: dict[str, int] = {}
    for i, text in enumerate(texts):
        join(i, first.setdefault(_fold(text), i))
    if len(texts) > 1:
        import numpy as np
        from sklearn.preprocessing import normalize

        m = normalize(make_vectorizer().fit_transform(texts))  # fitted once on each text
        rows = max(1, 20_000_000 // len(texts))  # dense blocks as _similarity_blocks keeps
        for start in range(0, len(texts), rows):
            # a pair is one pair either way round: each block against itself and what follows
            sims = (m[start:start + rows] @ m[start:].T).toarray()
            for i, j in zip(*np.nonzero(sims >= threshold - 1e-9)):
                join(start + int(i), start + int(j))
    return [root(i) for i in range(len(texts))]

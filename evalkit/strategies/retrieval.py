"""Retrieval for the RAG rungs: chunk a corpus, index it with TF-IDF, return top-k passages.

The index combines word (1-2 gram) and character (3-5 gram, word-bounded) TF-IDF, so it
survives typos and inflections without any model download. It is built once per corpus
hash and chunking settings, kept in memory and pickled under the cache folder for reuse.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evalkit.data.testset import Document
from evalkit.data.text import make_vectorizer


@dataclass(frozen=True)
class Passage:
    doc_id: str
    chunk: int
    text: str
    score: float = 0.0


# Bump when chunk boundaries change, so cached indexes built by the old chunker are not reused.
CHUNKER_VERSION = 2

_HEADING = re.compile(r"^ {0,3}#{1,6}(\s|$)")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def chunk_corpus(docs: Sequence[Document], *, size: int, overlap: int) -> list[Passage]:
    """Every document's passages (`chunk_document`), in document order: what an index over
    the corpus holds."""
    return [p for d in docs for p in chunk_document(d, size=size, overlap=overlap)]


def chunk_document(doc: Document, *, size: int, overlap: int) -> list[Passage]:
    """Split a document into passages of about `size` words, keeping headings with their text.

    Markdown headings open sections; a passage never holds only headings (a title line
    followed by one long paragraph used to become a title-only passage, which then won
    retrieval for many queries). Whole sections are packed together while they fit in `size`
    words; a longer section is cut into windows of at most `size` body words that overlap by
    `overlap` words, each prefixed by the section's heading(s) so it keeps its context.
    Line breaks are kept, so headings, list items and sentences stay recognisable.
    """
    texts: list[str] = []
    pack: list[str] = []
    packed = 0
    for headings, body in _sections(doc.text):
        if not body:  # a document of headings only: its headings are its text
            headings, body = [], headings
        words = sum(len(line.split()) for line in headings + body)
        if words <= size:
            if pack and packed + words > size:
                texts.append("\n".join(pack))
                pack, packed = [], 0
            pack += headings + body
            packed += words
            continue
        if pack:
            texts.append("\n".join(pack))
            pack, packed = [], 0
        texts += ["\n".join(headings + [window]) for window in _windows(body, size, overlap)]
    if pack:
        texts.append("\n".join(pack))
    return [Passage(doc.id, i, text) for i, text in enumerate(texts)]


def _sections(text: str) -> list[tuple[list[str], list[str]]]:
    """(heading lines, body lines) per section; consecutive headings with nothing between them
    (a title over a sub-heading) share one section, and trailing empty headings join the
    section before them, so no section is headings only unless the document is."""
    sections: list[tuple[list[str], list[str]]] = [([], [])]
    fenced = False
    for line in text.splitlines():
        if not line.strip():
            continue
        if _FENCE.match(line):
            fenced = not fenced
        headings, body = sections[-1]
        if not fenced and _HEADING.match(line):
            if body:
                sections.append(([line], []))
            else:
                headings.append(line)
        else:
            body.append(line)
    if len(sections) > 1 and not sections[-1][1]:
        headings, _ = sections.pop()
        sections[-1][1].extend(headings)
    return [s for s in sections if s[0] or s[1]]


def _windows(lines: list[str], size: int, overlap: int) -> list[str]:
    """Windows of at most `size` words over `lines`, cut on line boundaries where possible and
    overlapping by about `overlap` words; a line longer than `size` is cut into word windows."""
    words_per_line = [len(line.split()) for line in lines]
    out, start = [], 0
    while start < len(lines):
        end, count = start, 0
        while end < len(lines) and (count == 0 or count + words_per_line[end] <= size):
            count += words_per_line[end]
            end += 1
        if count > size:  # one very long line: fall back to word windows inside it
            words = lines[start].split()
            step = max(1, size - overlap)
            out += [" ".join(words[i:i + size])
                    for i in range(0, max(1, len(words) - overlap), step)]
        else:
            out.append("\n".join(lines[start:end]))
        if end >= len(lines):
            break
        back, kept = end, 0  # step back whole lines to overlap by about `overlap` words
        while back - 1 > start and kept + words_per_line[back - 1] <= overlap:
            back -= 1
            kept += words_per_line[back]
        start = back
    return out


class TfidfIndex:
    """A fitted TF-IDF index over passages. `search(query, k)` returns scored passages."""

    def __init__(self, passages: list[Passage]):
        if not passages:
            raise ValueError("cannot index an empty corpus")
        self.passages = passages
        self.vectorizer = make_vectorizer()
        self.matrix = self.vectorizer.fit_transform([p.text for p in passages])
        self.matrix = _l2_normalise(self.matrix)

    def search(self, query: str, k: int) -> list[Passage]:
        return self.search_many([query], k)[0]

    def search_many(self, queries: list[str], k: int) -> list[list[Passage]]:
        """`search` for several queries with one transform and one product: a query's scores
        are the same numbers either way (each sums the same terms in the same order)."""
        if k <= 0:
            return [[] for _ in queries]
        import numpy as np  # with the index, not the module: prompt-only runs import this

        q = _l2_normalise(self.vectorizer.transform(queries))
        scores = (self.matrix @ q.T).toarray()
        out = []
        for j in range(len(queries)):
            top = np.argsort(-scores[:, j], kind="stable")[:k]
            out.append([Passage(self.passages[i].doc_id, self.passages[i].chunk,
                                self.passages[i].text, float(scores[i, j])) for i in top])
        return out


def _l2_normalise(m):
    from sklearn.preprocessing import normalize
    return normalize(m)


_MEMO: dict[str, TfidfIndex] = {}


def build_index(docs: tuple[Document, ...] | list[Document], *, chunk_size: int,
                chunk_overlap: int, corpus_hash: str,
                cache_dir: Path | None = None) -> TfidfIndex:
    """The index for this corpus and chunking, from memory, disk, or built fresh."""
    ident = f"tfidf:v{CHUNKER_VERSION}:{corpus_hash}:{chunk_size}:{chunk_overlap}"
    key = hashlib.sha256(ident.encode()).hexdigest()
    if key in _MEMO:
        return _MEMO[key]
    path = cache_dir / "index" / f"{key}.pkl" if cache_dir else None
    if path and path.is_file():
        with path.open("rb") as fh:
            index = pickle.load(fh)
    else:
        passages = chunk_corpus(docs, size=chunk_size, overlap=chunk_overlap)
        index = TfidfIndex(passages)
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            with tmp.open("wb") as fh:
                pickle.dump(index, fh)
            tmp.replace(path)
    _MEMO[key] = index
    return index

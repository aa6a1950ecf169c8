"""The local "fine-tune" for long-form answers: a house style learned from the train split.

What a small fine-tune learns best is form: the way every answer is laid out. `learn_frame`
finds it in the train answers as data, never from a hard-coded template: the line prefixes
(`Short answer:`, `Why:` ...) that most answers open a line with at the same position, and the
fixed lines (a sign-off) that most answers share. The model also remembers every train answer
by its question (a nearest-question memory, like the QA fine-tune), which is all it can know of
content: the facts of a rule it never saw in training have to come from retrieved passages.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from evalkit.data.text import make_vectorizer

MIN_SHARE = 0.6  # a prefix or fixed line is part of the frame when this share of answers has it
_PREFIX = re.compile(r"^(\S+(?:\s+\S+){0,2}?:)\s")  # up to three words ending in a colon


@dataclass(frozen=True)
class Slot:
    """One line of the frame: `prefix` + content, or a `fixed` line said as it is."""

    text: str
    fixed: bool = False


def line_prefix(line: str) -> str | None:
    m = _PREFIX.match(line.strip())
    return m.group(1) if m else None


def learn_frame(answers: list[str], *, min_share: float = MIN_SHARE) -> tuple[Slot, ...]:
    """The layout most `answers` share, line by line (empty when they share none).

    A line position belongs to the frame when at least `min_share` of the answers have a line
    there that is the same fixed text (counted from the end, so a sign-off is found whatever
    the length of the body) or opens with the same prefix (counted from the start)."""
    if not answers:
        return ()
    lines = [[ln.strip() for ln in a.splitlines() if ln.strip()] for a in answers]
    need = min_share * len(answers)
    head: list[Slot] = []
    for pos in range(max(map(len, lines))):
        counts = Counter(line_prefix(ls[pos]) for ls in lines if len(ls) > pos)
        prefix, n = counts.most_common(1)[0]
        if prefix is None or n < need:
            break
        head.append(Slot(prefix))
    tail: list[Slot] = []
    for pos in range(1, max(map(len, lines)) + 1):
        counts = Counter(ls[-pos] for ls in lines if len(ls) >= pos)
        text, n = counts.most_common(1)[0]
        if n < need or line_prefix(text) in {s.text for s in head}:
            break
        tail.insert(0, Slot(text, fixed=True))
    return (*head, *tail)


def fill(frame: tuple[Slot, ...], contents: list[str]) -> str:
    """The frame's lines with `contents` after its prefixes, in order; prefixes left without
    content are dropped, and content beyond the prefixes goes on the last prefixed line."""
    prefixed = [s for s in frame if not s.fixed]
    if not prefixed:
        return "\n".join([*contents, *(s.text for s in frame)])
    pieces = list(contents[:len(prefixed)])
    if len(contents) > len(prefixed):
        pieces[-1] = " ".join([pieces[-1], *contents[len(prefixed):]])
    out, i = [], 0
    for slot in frame:
        if slot.fixed:
            out.append(slot.text)
        elif i < len(pieces):
            out.append(f"{slot.text} {pieces[i]}")
            i += 1
    return "\n".join(out)


def body(answer: str, frame: tuple[Slot, ...]) -> list[str]:
    """An answer's content lines without the frame's prefixes and fixed lines."""
    prefixes = [s.text for s in frame if not s.fixed]
    fixed = {s.text for s in frame if s.fixed}
    out = []
    for line in (ln.strip() for ln in answer.splitlines()):
        if not line or line in fixed:
            continue
        p = line_prefix(line)
        out.append(line[len(p):].strip() if p in prefixes else line)
    return out


class HouseStyleModel:
    """The trained model: the frame of the train answers, and their nearest-question memory."""

    def __init__(self, questions: list[str], answers: list[str]):
        from sklearn.preprocessing import normalize  # on use: scikit-learn is ~1 s to import

        self.frame = learn_frame(answers)
        self.vectorizer = make_vectorizer().fit(questions)
        self.matrix = normalize(self.vectorizer.transform(questions))
        self.answers = answers

    def recall(self, question: str) -> tuple[str, float]:
        """The answer of the most similar train question, and that cosine similarity."""
        from sklearn.preprocessing import normalize

        q = normalize(self.vectorizer.transform([question]))
        sims = (self.matrix @ q.T).toarray().ravel()
        i = int(sims.argmax())  # the array's own argmax: no numpy import here
        return self.answers[i], float(sims[i])

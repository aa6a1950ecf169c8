"""What the embedded local provider writes for `generation` (long-form answers).

Not an LLM: it composes answers only from what the Request carries, so each rung's gain is the
gain of what that rung adds.
- prompt-only: a generic holding answer that restates the question (no facts, no house style).
- few-shot: the answer of the example whose question is nearest: the examples' form, and their
  content, which fits only when the nearest example is about the same rule.
- rag: the passage paragraph that best matches the question, its first sentences (a rule and
  the procedure that follows it sit together in policy documents): content, no form.
- fine-tuned (`HouseStyleModel`, trained on the train split): the nearest train answer, which
  is in the house style; with passages (rag+fine-tuned), the learned frame filled with the
  recalled lead line and the passage sentences, so form comes from training and facts from
  the documents.
"""

from __future__ import annotations

import re

import numpy as np

from evalkit.strategies.house_style import HouseStyleModel, body, fill
from evalkit.strategies.request import Request

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
MIN_WORDS = 3  # shorter pieces are headings or list stubs, not sentences
# Words only: the numbers in a question are the asker's case ("30 weeks"), which would match
# an unrelated rule that happens to share the number ("up to 30 days").
WORDS = r"(?u)\b[^\W\d_]{2,}\b"
MAX_SENTENCES = 2  # from the start of the best paragraph


def answer_long(request: Request, ft: HouseStyleModel | None = None) -> str:
    """The local answer to a long-form request (see the module docstring for each rung)."""
    evidence = supporting_sentences(request.input, [p.text for p in request.passages])
    if ft is not None:
        recalled, _similarity = ft.recall(request.input)
        if not evidence:
            return recalled  # the nearest train answer, in the frame it was trained on
        return fill(ft.frame, [*body(recalled, ft.frame)[:1], *evidence])
    if evidence:
        return " ".join(evidence)
    if request.examples:
        return nearest_example(request)
    return holding_answer(request.input)


def holding_answer(question: str) -> str:
    """What a model with nothing to go on can say: the question back and where to look."""
    q = " ".join(question.split())
    return (f"Thanks for asking: {q} The answer depends on the policy that covers your case, "
            f"so please check the handbook or ask the team that owns it.")


def nearest_example(request: Request) -> str:
    """The output of the example whose input is most similar to the request's (word TF-IDF)."""
    texts = [request.input, *(e.input for e in request.examples)]
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    m = normalize(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(texts))
    sims = (m[1:] @ m[0].T).toarray().ravel()
    return request.examples[int(np.argmax(sims))].output


def paragraphs(passage: str) -> list[list[str]]:
    """A passage's paragraphs (its lines), each as its sentences, markdown marks removed."""
    out = []
    for line in passage.splitlines():
        if line.lstrip().startswith("#"):
            continue  # a heading names a section; it says nothing an answer can use
        ss = (s.replace("**", "").strip(" #*-\t") for s in _SENTENCE.split(line))
        ss = [s for s in ss if len(s.split()) >= MIN_WORDS]
        if ss:
            out.append(ss)
    return out


def supporting_sentences(question: str, passages: list[str], *, most: int = MAX_SENTENCES
                         ) -> list[str]:
    """The first `most` sentences of the passage paragraph most similar to the question
    (word TF-IDF, English stop words dropped): in a policy document a paragraph is a rule and the
    procedure after it. [] without passages."""
    paras = [para for p in passages for para in paragraphs(p)]
    if not paras:
        return []
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    try:
        m = normalize(TfidfVectorizer(stop_words="english", sublinear_tf=True,
                                      token_pattern=WORDS)
                      .fit_transform([question, *(" ".join(para) for para in paras)]))
    except ValueError:  # nothing but stop words
        return []
    para = paras[int(np.argmax((m[1:] @ m[0].T).toarray().ravel()))]
    return para[:most]

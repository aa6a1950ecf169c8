"""The embedded offline provider: classical scikit-learn models, not an LLM.

It answers only from what the Request carries, so each rung's gain is the gain of the
information that rung adds:
- classification: similarity to the label descriptions (zero-shot), a similarity-weighted vote
  over the few-shot examples, evidence from retrieved passages (each passage speaks for the
  label whose description it resembles), and, for the fine-tuned rung, a logistic regression
  trained on the train split (`evalkit finetune --provider local`).
- extraction: candidate spans picked by rules from the field descriptions and the schema
  (prompt-only), by patterns induced from the examples (few-shot), with the passages' names
  (RAG), or by a tagger trained on the train split (evalkit.strategies.extract_local).
- qa: "unknown" without evidence; the answer of a near-identical example question; an
  extractive reader that picks the best-supported sentence of the passages (never a heading,
  and one that shares a word with the question beyond its headings', else "unknown") and the
  span in it that fits the question; and, for the fine-tuned rung, a nearest-question memory
  of the train split (which is all a small "fine-tune" can learn about facts it was shown).
- generation: see evalkit.providers.local_generation (passage sentences for content, a house
  style learned from the train split for form).
Costs are notional and deterministic: tokens are counted by whitespace and priced per million
like a hosted small model (a fine-tuned model at a premium, as hosted fine-tunes are), so the
economics sections have non-zero numbers that do not drift with the machine's load.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from evalkit.providers.base import Completion, FineTuneOptions, Provider, ProviderSetup, Usage
from evalkit.providers.local_generation import answer_long
from evalkit.registry import Registry
from evalkit.strategies import extract_local, finetune
from evalkit.strategies.finetune import LOCAL_MODEL_PREFIX, load_local_model
from evalkit.strategies.request import Request
from evalkit.tasks.extraction import extract_json

if TYPE_CHECKING:
    from evalkit.data.testset import Testset

UNKNOWN = "unknown"
# The code is part of the "model": this file, the answerer modules it dispatches to and the
# code the local fine-tunes answer with (their pickles hold data, not code)
_CODE = (Path(__file__), Path(__file__).with_name("local_generation.py"),
         Path(__file__).parents[1] / "strategies" / "house_style.py",
         Path(extract_local.__file__))
CODE_VERSION = hashlib.sha256(b"".join(p.read_bytes() for p in _CODE)).hexdigest()[:16]

# Task type -> what the local provider does for it: (request, fine-tuned model or None,
# provider) -> the answer text. The fine-tuned model is what `finetune.LOCAL_TRAINERS` trained
# for that type. A task type without an entry is refused when a request of it arrives.
Answerer = Callable[[Request, Any, "LocalProvider"], str]
LOCAL_ANSWERERS: Registry[Answerer] = Registry("local-provider task type")


class LocalProvider(Provider):
    """Offline provider. `finetune_dir` is where `local-ft:NAME` models are looked up."""

    name = finetune.LOCAL_PROVIDER
    takes_server_options = False  # no server: --base-url / --model mean nothing here
    cost_is_notional = True  # runs offline: its per-token prices only let variants compare
    samples = False  # deterministic: no temperature, no seed; every epoch answers alike
    sends_messages = False  # it reads the Request's fields; no chat messages are sent

    def __init__(self, *, model: str = "local-tfidf", finetune_dir: Path | str = "finetunes",
                 usd_per_m_input: float = 0.05, usd_per_m_output: float = 0.20,
                 fine_tuned_markup: float = 2.0, qa_min_support: float = 0.12):
        self.model = model
        self.finetune_dir = Path(finetune_dir)
        self.usd_per_m_input, self.usd_per_m_output = usd_per_m_input, usd_per_m_output
        self.fine_tuned_markup = fine_tuned_markup
        self.qa_min_support = qa_min_support
        self._models: dict[str, Any] = {}

    def model_for(self, request: Request) -> str:
        return request.model or self.model

    def cache_params(self) -> dict[str, Any]:
        # the code is part of the "model": an edit to this file must not be served old answers
        return {"qa_min_support": self.qa_min_support, "code": CODE_VERSION, "prices": [
            self.usd_per_m_input, self.usd_per_m_output, self.fine_tuned_markup]}

    @classmethod
    def from_config(cls, setup: ProviderSetup) -> LocalProvider:
        return cls(**{"finetune_dir": setup.finetune_dir, **setup.options})

    @classmethod
    def fine_tune_missing(cls, testset: Testset, finetune_dir: str) -> str | None:
        """Trained on demand, so only a train split is needed."""
        return None if testset.train else f"{testset.path}: cannot fine-tune without train.jsonl"

    @classmethod
    def recorded_fine_tune(cls, testset: Testset, finetune_dir: str) -> None:
        """Trained (or reused) when the run starts, and never billed: nothing to price
        beforehand, and no need to import scikit-learn to say so."""
        return None

    @classmethod
    def fine_tune_for_run(cls, testset: Testset, finetune_dir: str) -> finetune.FineTuneRecord:
        """Trained on demand (and reused while the train split is unchanged). The run has
        already refused, or been allowed, any leak: don't check twice."""
        return finetune.ensure_local(testset, finetune_dir, provider=cls.name,
                                     allow_leakage=True)

    @classmethod
    def fine_tune(cls, testset: Testset, finetune_dir: str, options: FineTuneOptions
                  ) -> finetune.FineTuneRecord:
        return finetune.train_local(testset, finetune_dir, provider=cls.name,
                                    allow_leakage=options.allow_leakage)

    @classmethod
    def check_task_type(cls, task_type: str) -> None:
        if LOCAL_ANSWERERS.find(task_type) is None:
            raise ValueError(
                f"the local provider cannot answer {task_type!r} tasks (it answers "
                f"{', '.join(LOCAL_ANSWERERS.names())}); run it against a model with "
                f"--provider openai --base-url ... --model ..., or add an entry to "
                f"evalkit.providers.local.LOCAL_ANSWERERS")

    async def complete(self, request: Request) -> Completion:
        start = time.perf_counter()
        answer = LOCAL_ANSWERERS.find(request.task_type)
        if answer is None:
            raise NotImplementedError(
                f"the local provider handles {', '.join(LOCAL_ANSWERERS.names())}, "
                f"not {request.task_type!r}")
        ft = self._fine_tuned(request.model)
        text = answer(request, ft, self)
        latency = time.perf_counter() - start
        usage = Usage(input_tokens=sum(len(m["content"].split()) for m in request.messages()),
                      output_tokens=len(text.split()))
        markup = self.fine_tuned_markup if ft is not None else 1.0
        cost = markup * (usage.input_tokens * self.usd_per_m_input
                         + usage.output_tokens * self.usd_per_m_output) / 1e6
        return Completion(text=text, usage=usage, latency_s=latency, cost_usd=cost,
                          model=self.model_for(request))

    def _fine_tuned(self, model: str | None):
        if not model or not model.startswith(LOCAL_MODEL_PREFIX):
            return None
        if model not in self._models:
            self._models[model] = _Remembering(load_local_model(self.finetune_dir, model))
        return self._models[model]


class _Remembering:
    """A loaded local fine-tune that remembers its answer for each input.

    The fine-tuned and rag+fine-tuned rungs ask it about the same inputs, and one sklearn
    call on a single text costs milliseconds of input validation and vectorizing."""

    LIMIT = 200_000  # inputs remembered; past that the memory starts over

    def __init__(self, model: Any):
        self.model = model
        self._memo: dict[tuple[str, str], Any] = {}

    def __getattr__(self, name: str) -> Any:  # classes_ and the rest: the model's own
        return getattr(self.model, name)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        if len(texts) != 1:
            return self.model.predict_proba(texts)
        proba = self._remember(("proba", texts[0]), lambda: self.model.predict_proba(texts))
        return proba.copy()

    def predict(self, text: str) -> Any:  # an extraction tagger: a record per input
        return dict(self._remember(("predict", text), lambda: self.model.predict(text)))

    def recall(self, question: str) -> tuple[str, float]:
        return self._remember(("recall", question), lambda: self.model.recall(question))

    def _remember(self, key: tuple[str, str], compute: Any) -> Any:
        if key not in self._memo:
            if len(self._memo) >= self.LIMIT:
                self._memo.clear()
            self._memo[key] = compute()
        return self._memo[key]


# --- classification ---------------------------------------------------------------------------

@LOCAL_ANSWERERS.decorator("classification")
def _classify(request: Request, ft: Any, provider: LocalProvider) -> str:
    return classify(request, ft)


def classify(request: Request, ft=None) -> str:
    labels = [label for label, _ in request.labels]
    if not labels:
        raise ValueError("a classification request needs labels")
    descriptions = [f"{label.replace('_', ' ')}: {desc}" for label, desc in request.labels]
    m = request_tfidf([request.input, *descriptions, *(e.input for e in request.examples),
                       *(p.text for p in request.passages)], remember_first=False)
    # every cosine among the request's texts in one product: entry (i, j) sums row i's terms
    # in row i's order, exactly as a product of the two rows alone would
    g = (m @ m.T).toarray()
    d = slice(1, 1 + len(labels))
    ex = slice(d.stop, d.stop + len(request.examples))
    ps = slice(ex.stop, None)

    if ft is not None:
        proba = ft.predict_proba([request.input])[0]
        index = {c: i for i, c in enumerate(ft.classes_)}
        scores = np.array([proba[index[label]] if label in index else 0.0 for label in labels])
    else:
        scores = g[d, 0].copy()
    if request.examples:
        sims = g[ex, 0]
        for e, s in zip(request.examples, sims):
            if e.output in labels:
                scores[labels.index(e.output)] += 2.0 * s
    if request.passages:
        passage_sims = g[ps, 0]
        passage_label = g[ps, d].argmax(axis=1)
        for s, li in zip(passage_sims, passage_label):
            scores[li] += 0.5 * s
    return labels[int(np.argmax(scores))]


@lru_cache(maxsize=1)
def _hasher():
    """The char n-gram hasher, built on first use: scikit-learn is imported only when the
    local provider answers, not when a pre-flight merely asks it what it can do."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), alternate_sign=False,
                             norm=None, n_features=2**20)


@lru_cache(maxsize=65536)
def _hashed(text: str):
    return _hasher().transform([text])


def request_tfidf(texts: list[str], *, remember_first: bool = True):
    """TF-IDF over just these texts (character 3-5 grams), L2-normalised rows.

    Equivalent to fitting a TfidfVectorizer on the request's own texts, but the n-gram counts
    of each text are hashed once and memoised: label descriptions, examples and passages
    recur across requests, and building a vocabulary per request dominated the run time.
    The columns are then renumbered to just the n-grams present (in the same order, so every
    dot product adds the same terms in the same order): a product with a 2**20-column
    transpose would otherwise allocate a 2**20-long index per call.
    `remember_first=False` hashes the first text (the item's input) without memoising it:
    inputs are all different, so remembering them only held memory (~5 KB an input, up to
    the memo's bound) for a hit that comes, if ever, a whole ladder rung later.
    """
    first = _hashed(texts[0]) if remember_first else _hasher().transform(texts[:1])
    rows = [first, *(_hashed(t) for t in texts[1:])]
    # stacked by hand (what sp.vstack does, without its per-call checks)
    indices = np.concatenate([r.indices for r in rows])
    counts = np.concatenate([r.data for r in rows]).astype(np.float64, copy=False)
    indptr = np.zeros(len(rows) + 1, dtype=indices.dtype)
    np.cumsum([r.nnz for r in rows], out=indptr[1:])
    _, where = np.unique(indices, return_inverse=True)
    df = np.bincount(where)  # rows in which each n-gram occurs (indices are unique per row)
    idf = np.log((1 + len(rows)) / (1 + df)) + 1.0  # smooth idf, as sklearn's
    data = (1.0 + np.log(counts)) * idf[where]  # sublinear tf
    m = sp.csr_matrix((data, where.astype(indices.dtype), indptr), shape=(len(rows), len(df)))
    from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l2

    inplace_csr_row_normalize_l2(m)  # sklearn's normalize(m) minus its input validation
    return m


def _cos(q, m) -> np.ndarray:
    return np.asarray((m @ q.T).todense()).ravel()


# --- question answering -----------------------------------------------------------------------

@LOCAL_ANSWERERS.decorator("qa")
def _answer(request: Request, ft: Any, provider: LocalProvider) -> str:
    return answer_question(request, ft, min_support=provider.qa_min_support)


def answer_question(request: Request, ft=None, *, min_support: float) -> str:
    question = request.input
    if ft is not None:
        remembered, confidence = ft.recall(question)
        if confidence >= 0.75 or (confidence >= 0.5 and not request.passages):
            return remembered
    if request.examples:
        best = _best_example(question, request)
        if best is not None:
            return best
    if request.passages:
        found = extract_answer(question, [p.text for p in request.passages],
                               min_support=min_support)
        if found is not None:
            return found
    return UNKNOWN


def _best_example(question: str, request: Request, threshold: float = 0.6) -> str | None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    m = normalize(vec.fit_transform([question, *(e.input for e in request.examples)]))
    sims = _cos(m[0], m[1:])
    i = int(np.argmax(sims))
    return request.examples[i].output if sims[i] >= threshold else None


_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_SPANS = {
    "money": r"(?:[€$£]\s?\d[\d,]*(?:\.\d+)?|\d[\d,]*(?:\.\d+)?\s?(?:EUR|USD|GBP|euros?|dollars?))"
             r"(?:\s?(?:per|/)\s?[a-z]+(?:\s(?:per|/)\s?[a-z]+)?)?",
    "percent": r"\d+(?:\.\d+)?\s?%",
    "date": r"(?:\d{1,2}\s)?(?:January|February|March|April|May|June|July|August|September|"
            r"October|November|December)(?:\s\d{1,2})?,?\s\d{4}|\d{4}-\d{2}-\d{2}",
    "duration": r"\d[\d,]*\s(?:business\s|calendar\s|working\s)?"
                r"(?:seconds?|minutes?|hours?|days?|weeks?|months?|years?)",
    "time": r"\d{1,2}:\d{2}(?:\s?[–-]\s?\d{1,2}:\d{2})?(?:\s?[A-Z]{2,4})?",
    "number": r"\d[\d,]*(?:\.\d+)?(?:\s?(?:[KMGT]B|requests?|seats?|users?|projects?|"
              r"calls?|members?|GB|MB|TB))?",
}
_QUESTION_KINDS = [
    (r"\b(price|cost|how much|fee|charge|pay)\b", ("money", "percent", "number")),
    (r"\b(percent|percentage|uptime|discount|credit)\b", ("percent", "money", "number")),
    (r"\b(when|what date|which date|since|effective)\b", ("date", "time", "duration")),
    (r"\b(how long|how many days|how many hours|within|period|retain|kept|window)\b",
     ("duration", "number", "date")),
    (r"\b(what time|hours|open)\b", ("time", "duration")),
    (r"\b(how many|how much|limit|maximum|max|minimum|quota)\b", ("number", "duration", "money")),
]


def extract_answer(question: str, passages: list[str], *, min_support: float) -> str | None:
    """The span that fits the question in the best-supported passage sentence, or None.

    Headings are not candidates: the chunker prefixes every passage with its section's
    headings, and a short title line holding the question's subject ("The Nova plan") used
    to out-score the sentence that states the fact, so the reader answered with the title.
    They still say what the passage is about: a sentence supports an answer only when it
    shares a content word with the question beyond its passage's heading words. A passage
    that is merely on topic, as a SQuAD 2.0 unanswerable question's passage is, gives no
    answer, and the reader abstains."""
    sentences, topics = _candidate_sentences(passages)
    if not sentences:
        return None
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    vec = TfidfVectorizer(stop_words="english", sublinear_tf=True)
    try:
        m = normalize(vec.fit_transform([question, *sentences]))
    except ValueError:  # only stop words
        return None
    words = vec.build_analyzer()
    asked = _stems(words(question))
    sims = _cos(m[0], m[1:])
    for i in np.argsort(-sims, kind="stable"):
        if sims[i] < min_support:
            break
        if asked & _stems(words(sentences[i])) - topics[i]:
            return _best_span(question, sentences[i], asked=asked, words=words)
    return None


def _candidate_sentences(passages: list[str]) -> tuple[list[str], list[set[str]]]:
    """The passages' sentences (3 words or more, markdown emphasis dropped), each with the
    stemmed words of its passage's headings."""
    sentences: list[str] = []
    topics: list[set[str]] = []
    for p in passages:
        lines = p.splitlines()
        headings = " ".join(line for line in lines if line.lstrip().startswith("#"))
        body = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
        topic = _stems(_WORD.findall(headings.lower()))
        for s in _SENTENCE.split(body):
            s = s.replace("**", "").strip(" #*-\t")
            if len(s.split()) >= 3:
                sentences.append(s)
                topics.append(topic)
    return sentences, topics


_WORD = re.compile(r"(?u)\b\w\w+\b")  # TfidfVectorizer's default token pattern


def _stems(words: Any) -> set[str]:
    """Words with a plural or verb -s dropped ("seats" meets "seat"), for overlap tests."""
    return {w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
            for w in words}


def _best_span(question: str, sentence: str, *, asked: set[str] = frozenset(),
               words: Callable[[str], list[str]] | None = None) -> str:
    """A typed span (a price, a date, ...) the question asks for; else, for a question of no
    such kind, the words after the last question word the sentence repeats (up to the end of
    its clause: "It ships from Oslo." answers "Which city ships it?" with "Oslo"); else the
    sentence."""
    q = question.lower()
    typed = None
    for pattern, preferred in _QUESTION_KINDS:
        if re.search(pattern, q):
            typed = preferred
            break
    kinds = typed or ("money", "percent", "date", "duration", "time", "number")
    for kind in kinds:
        for match in re.finditer(_SPANS[kind], sentence):
            span = match.group(0).strip(" ,.")
            if span.lower() not in q:
                return span
    if typed is None and words is not None:
        after = _after_last_asked(sentence, asked, words)
        if after:
            return after
    return sentence


def _after_last_asked(sentence: str, asked: set[str], words: Callable[[str], list[str]]
                      ) -> str | None:
    """The content words of the clause after the sentence's last word that the question
    holds, or None when the question's words end the clause or the sentence has none."""
    tokens = sentence.split()
    last = max((i for i, t in enumerate(tokens) if _stems(words(t)) & asked), default=None)
    if last is None:
        return None
    out: list[str] = []
    for t in tokens[last + 1:]:
        if not out and not words(t):  # a leading stop word ("from", "the")
            continue
        out.append(t)
        if t[-1] in ",;:.!?":
            break
    text = " ".join(out).strip(" ,;:.!?")
    return text or None


# --- long-form answers (evalkit.providers.local_generation) -----------------------------------

@LOCAL_ANSWERERS.decorator("generation")
def _long_form(request: Request, ft: Any, provider: LocalProvider) -> str:
    return answer_long(request, ft)


# --- extraction -------------------------------------------------------------------------------

@LOCAL_ANSWERERS.decorator("extraction")
def _extract(request: Request, ft: Any, provider: LocalProvider) -> str:
    return extract_local.to_json(extract_record(request, ft))


def extract_record(request: Request, ft=None) -> dict[str, Any]:
    """The record for one request, from only what it carries (see extract_local)."""
    if ft is not None:
        return ft.predict(request.input)
    specs = extract_local.request_specs(request.fields, request.response_format)
    if request.passages:
        found = extract_local.passage_names(p.text for p in request.passages)
        for spec in specs:
            if spec.kind == "name":
                spec.names = {**extract_local.name_aliases(found), **(spec.names or {})}
    if not request.examples:
        return extract_local.rules_answer(request.input, specs)
    examples = [(e.input, extract_json(e.output) or {}) for e in request.examples]
    learned = extract_local.learn_from_examples(specs, examples)
    votes: dict[str, Counter] = {}
    for spec in specs:
        if spec.kind == "choice":  # the examples come nearest first: the nearer, the louder
            votes[spec.name] = Counter()
            for rank, (_, record) in enumerate(examples):
                value = record.get(spec.name)
                votes[spec.name][value if value is not None else "__none__"] += 1 / (rank + 1)
    return extract_local.rules_answer(request.input, specs, learned=learned, votes=votes)

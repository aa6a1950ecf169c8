"""The local provider's extraction: candidate spans, rules from a request, and a trained tagger.

Every rung starts from the same *candidates*: spans of the input that could be a field's
value, found by the field's kind (e-mail, date, number, identifier, name, or a choice among
values), each with its normalised value (a date as YYYY-MM-DD, "two" as 2, a name as its
catalogue form). The rungs differ only in how they pick among them, and each uses only what
its request carries:
- prompt-only (`rules_from_request`): the kind from the field's description and schema; an
  identifier's shape from the example in its description ("like KP-482913"); the words of the
  description as context cues (a date after "placed" beats one after "delivered"); a choice's
  values and cue words from the description ("refund (money back), ...") or the schema's enum;
  names from the description's example, the passages' Title-Case phrases (the RAG rungs), and
  the Title-Case phrases of the input itself;
- few-shot: the same, plus what the examples show: where each example's value sits (the words
  before it become cues, its kind wins), the names they mention, and for choices a vote of
  the examples weighted by their similarity to the input;
- fine-tuned (`SlotTagger`, trained on the train split by `evalkit.strategies.finetune`): a
  logistic regression per field over each candidate's context (the words around it, its
  position, its shape), so "my earlier order KP-..." or "I also have your X" is learned to be
  a distractor; choices by a TF-IDF logistic regression over the whole text, "none" included.
A candidate is taken when its probability is at least 0.5, else the field is null.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache
from typing import Any

from evalkit.tasks.extraction import is_empty, values_match

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december"]
_MON = "|".join(m[:3] + f"(?:{m[3:]})?" for m in MONTHS)
_DATE = re.compile(
    rf"\b(?:(?P<iso>\d{{4}}-\d{{2}}-\d{{2}})|(?P<dmy>\d{{1,2}})/(?P<dm>\d{{1,2}})/(?P<dy>\d{{4}})"
    rf"|(?P<mon>{_MON})\.? (?P<md>\d{{1,2}})(?:st|nd|rd|th)?,? (?P<my>\d{{4}})"
    rf"|(?P<d2>\d{{1,2}})(?:st|nd|rd|th)? (?:of )?(?P<mon2>{_MON}),? (?P<y2>\d{{4}}))\b",
    re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_ID = re.compile(r"#?\b[A-Za-z]{1,4}-?\d{3,}(?:-\d+)*\b")
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a pair": 2,
                "a couple": 2, "a dozen": 12}
_NUMBER = re.compile(r"(?<![$\w.,/-])(?:(\d{1,3})(?:x)?|(" + "|".join(NUMBER_WORDS) +
                     r"))(?![\w%/-]|[.,]\d)", re.IGNORECASE)
_TITLE = re.compile(r"\b[A-Z][a-z]+(?:-[A-Z]?[a-z]+)?(?: [A-Z][a-z]+(?:-[A-Z]?[a-z]+)?){1,3}\b")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = {"the", "a", "an", "of", "to", "and", "or", "in", "on", "for", "is", "was", "it", "as",
         "with", "what", "how", "like", "eg", "e", "g", "be", "by", "this", "that", "its",
         "one", "new", "where", "number", "name", "whole", "many"}
KINDS = ("email", "date", "number", "id", "choice", "name")


@dataclass(frozen=True)
class Candidate:
    """A span of the input that may be a field's value, and the value it stands for."""

    start: int
    end: int
    text: str
    value: Any


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def cue_words(text: str) -> set[str]:
    """Content words cut to 5 letters, so "ordered" meets "order" and "placed" "place"."""
    return {w[:5] for w in words(text) if w not in _STOP and not w.isdigit()}


# --- candidates by kind -----------------------------------------------------------------------

def parse_date(m: re.Match) -> str | None:
    g = m.groupdict()
    try:
        if g["iso"]:
            return date.fromisoformat(g["iso"]).isoformat()
        if g["dmy"]:
            return date(int(g["dy"]), int(g["dm"]), int(g["dmy"])).isoformat()
        month = g["mon"] or g["mon2"]
        idx = next(i for i, name in enumerate(MONTHS) if name.startswith(month.lower()[:3]))
        day, year = (g["md"], g["my"]) if g["mon"] else (g["d2"], g["y2"])
        return date(int(year), idx + 1, int(day)).isoformat()
    except (ValueError, StopIteration):
        return None


def _spans(pattern: re.Pattern, text: str, value) -> list[Candidate]:
    out = []
    for m in pattern.finditer(text):
        v = value(m)
        if v is not None:
            out.append(Candidate(m.start(), m.end(), m.group(0), v))
    return out


def _inside(c: Candidate, taken: Iterable[Candidate]) -> bool:
    return any(t.start <= c.start < t.end or c.start <= t.start < c.end for t in taken)


def candidates(text: str, kind: str, *, id_pattern: re.Pattern | None = None,
               id_example: str | None = None,
               names: dict[str, str] | None = None,
               choices: dict[str, set[str]] | None = None) -> list[Candidate]:
    """The spans of `text` that could be a value of this kind, in reading order."""
    if kind == "email":
        return _spans(_EMAIL, text, lambda m: m.group(0))
    if kind == "date":
        return _spans(_DATE, text, parse_date)
    if kind == "id":
        if id_pattern is None or id_example is None:
            return _spans(_ID, text, lambda m: m.group(0).lstrip("#"))
        return _spans(id_pattern, text, lambda m: in_shape(m, id_example))
    if kind == "number":
        blocked = [*_spans(_DATE, text, parse_date), *_spans(_ID, text, lambda m: m.group(0)),
                   *_spans(_EMAIL, text, lambda m: m.group(0))]
        found = _spans(_NUMBER, text, lambda m: int(m.group(1)) if m.group(1)
                       else NUMBER_WORDS[m.group(2).lower()])
        return [c for c in found if not _inside(c, blocked) and c.value > 0]
    if kind == "choice":
        return _choice_candidates(text, choices or {})
    return _name_candidates(text, names or {})


def _name_candidates(text: str, names: dict[str, str]) -> list[Candidate]:
    """Known names (and their short forms) first, then the input's own Title-Case phrases."""
    out: list[Candidate] = []
    if names:
        pattern, lookup = _names_pattern(tuple(sorted(names.items())))
        out = [Candidate(m.start(), m.end(), m.group(0), lookup[m.group(0).lower()])
               for m in pattern.finditer(text)]
    if not out:  # nothing known: guess from capitalisation (not at a line or sentence start)
        for m in _TITLE.finditer(text):
            before = text[:m.start()].rstrip()
            if before and before[-1] not in ".!?\n:":
                out.append(Candidate(m.start(), m.end(), m.group(0), m.group(0)))
    return out


@lru_cache(maxsize=4096)
def _names_pattern(names: tuple[tuple[str, str], ...]) -> tuple[re.Pattern, dict[str, str]]:
    """One alternation over the surfaces, longest first (so "Aurora Desk Lamp" wins over
    "Aurora"), matched case-insensitively on word boundaries."""
    lookup = {surface.lower(): value for surface, value in names}
    ordered = sorted(lookup, key=len, reverse=True)
    pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, ordered)) + r")\b", re.IGNORECASE)
    return pattern, lookup


def _choice_candidates(text: str, choices: dict[str, set[str]]) -> list[Candidate]:
    """A candidate per cue word of a value found in the text."""
    out = []
    for w in _WORD.finditer(text.lower()):
        for value, cues in choices.items():
            if w.group(0)[:5] in cues:
                out.append(Candidate(w.start(), w.end(), w.group(0), value))
    return out


def name_aliases(names: Iterable[str]) -> dict[str, str]:
    """Surface form -> name: the name itself, and its first word when that word is not shared
    with another name (customers write "the Aurora" for the Aurora Desk Lamp)."""
    names = [n for n in dict.fromkeys(names) if n]
    firsts = Counter(n.split()[0].lower() for n in names)
    out = {n: n for n in names}
    for n in names:
        first = n.split()[0]
        if firsts[first.lower()] == 1 and len(first) > 3:
            out.setdefault(first, n)
    return out


def context(text: str, c: Candidate, n: int = 3) -> tuple[list[str], list[str]]:
    """The n words before and after a candidate."""
    return words(text[:c.start])[-n:], words(text[c.end:])[:n]


# --- the fields of a request ------------------------------------------------------------------

@dataclass
class FieldSpec:
    """What a request says about one field: its kind and the hints for picking a value."""

    name: str
    kind: str
    cues: set[str]
    id_pattern: re.Pattern | None = None
    id_example: str | None = None  # the description's example: how an identifier is written
    names: dict[str, str] | None = None
    choices: dict[str, set[str]] | None = None

    def find(self, text: str) -> list[Candidate]:
        """The candidates for this field in `text`."""
        return candidates(text, self.kind, id_pattern=self.id_pattern,
                          id_example=self.id_example, names=self.names, choices=self.choices)


def schema_properties(response_format: dict[str, Any] | None) -> dict[str, dict]:
    schema = ((response_format or {}).get("json_schema") or {}).get("schema") or {}
    props = schema.get("properties")
    return props if isinstance(props, dict) else {}


_PAIR = re.compile(r"\b([a-z][a-z_]+) \(([^)]*)\)")
_EXAMPLE = re.compile(r"\b(?:like|e\.g\.|eg|for example|such as)\s+['\"]?([^'\",;]+?)['\"]?"
                      r"(?:[,;.]|$)")


def shape_pattern(example: str) -> re.Pattern:
    r"""A regex of an example's shape: its letters kept (case-insensitive), digit runs as
    groups, separators optional ("KP-482913" -> KP-?(\d{6}))."""
    out = []
    for p in re.findall(r"[A-Za-z]+|\d+|[^A-Za-z\d]", example):
        if p.isdigit():
            out.append(rf"(\d{{{len(p)}}})")
        elif p.isalpha():
            out.append(re.escape(p))
        else:
            out.append(re.escape(p) + "?")
    return re.compile(r"#?\b" + "".join(out) + r"\b", re.IGNORECASE)


def in_shape(match: re.Match, example: str) -> str:
    """A matched identifier written as the example is ("kp482913" -> "KP-482913")."""
    digits = iter(match.groups())
    return "".join(next(digits) if p.isdigit() else p
                   for p in re.findall(r"[A-Za-z]+|\d+|[^A-Za-z\d]", example))


def field_spec(name: str, description: str, prop: dict[str, Any] | None = None) -> FieldSpec:
    """A field's kind and hints from its name, description and schema property alone (a
    fresh copy each call: callers add names to it)."""
    return replace(_field_spec(name, description, json.dumps(prop or {}, sort_keys=True)))


@lru_cache(maxsize=1024)
def _field_spec(name: str, description: str, prop_json: str) -> FieldSpec:
    prop = json.loads(prop_json)
    text = f"{name.replace('_', ' ')} {description}".lower()
    cues = cue_words(description) or cue_words(name.replace("_", " "))
    pairs = dict(_PAIR.findall(description))
    enum = [v for v in prop.get("enum") or [] if isinstance(v, str)]
    if enum or len(pairs) >= 2:
        values = enum or list(pairs)
        choices = {v: cue_words(f"{v.replace('_', ' ')} {pairs.get(v, '')}") for v in values}
        return FieldSpec(name, "choice", cues, choices=choices)
    example = next((m.group(1).strip() for m in _EXAMPLE.finditer(description)), "")
    if "mail" in text:
        return FieldSpec(name, "email", cues)
    if "date" in text or "yyyy" in text:
        return FieldSpec(name, "date", cues)
    if example and re.search(r"\d", example):  # "like KP-482913": an identifier's shape
        return FieldSpec(name, "id", cues, id_pattern=shape_pattern(example), id_example=example)
    if any(k in text for k in ("how many", "quantity", "number of", "count", "whole number")):
        return FieldSpec(name, "number", cues)
    return FieldSpec(name, "name", cues, names=name_aliases([example] if example else []))


def request_specs(fields: Sequence[tuple[str, str]],
                  response_format: dict[str, Any] | None) -> list[FieldSpec]:
    props = schema_properties(response_format)
    names = [n for n, _ in fields] or list(props)
    desc = dict(fields)
    return [field_spec(n, desc.get(n, ""), props.get(n)) for n in names]


def passage_names(passages: Iterable[str]) -> list[str]:
    """Title-Case phrases of two or more words in the passages: a catalogue's names."""
    return [m.group(0) for p in passages for m in _TITLE.finditer(p.replace("**", ""))]


# --- picking a value --------------------------------------------------------------------------

def pick(text: str, spec: FieldSpec, *, learned_cues: Counter | None = None) -> Any:
    """The best candidate's value by context cues (the description's words, and the words
    examples showed before their values), the first one on a tie; None without candidates."""
    found = spec.find(text)
    if not found:
        return None
    if spec.kind == "choice":  # the value with the most distinct cue words, then the first
        votes = Counter(v for v, _ in {(c.value, c.text[:5]) for c in found})
        # sorted first: a cue word shared by two values ties them on both counts, and the
        # Counter's order comes from a set, which differs per process (hash seed)
        return max(sorted(votes), key=lambda v: (votes[v], -min(c.start for c in found
                                                                 if c.value == v)))
    best, best_score = None, -1.0
    for c in found:
        before, _ = context(text, c, 4)
        cues = {w[:5] for w in before}
        score = len(cues & spec.cues) + sum((learned_cues or {}).get(w, 0) for w in cues)
        if score > best_score:
            best, best_score = c, score
    return best.value if best is not None else None


def rules_answer(text: str, specs: Sequence[FieldSpec], *,
                 learned: dict[str, Counter] | None = None,
                 votes: dict[str, Counter] | None = None) -> dict[str, Any]:
    """One record by the rules; `votes` (few-shot) can outvote a choice's cue words."""
    out: dict[str, Any] = {}
    for spec in specs:
        if spec.kind == "choice" and votes and votes.get(spec.name):
            cue_pick = pick(text, spec)
            tally = Counter(votes[spec.name])
            if cue_pick is not None:
                tally[cue_pick] += 0.5
            out[spec.name] = tally.most_common(1)[0][0]
        else:
            out[spec.name] = pick(text, spec, learned_cues=(learned or {}).get(spec.name))
    return {k: (None if v == "__none__" else v) for k, v in out.items()}


def learn_from_examples(specs: Sequence[FieldSpec], examples: Sequence[tuple[str, dict]]
                        ) -> dict[str, Counter]:
    """From examples (input, record): each field's cue words (what precedes its value), its
    kind when the examples show another one, and the names they mention. Updates `specs`."""
    learned: dict[str, Counter] = {s.name: Counter() for s in specs}
    for spec in specs:
        if spec.kind == "name":
            spec.names = {**name_aliases(str(r.get(spec.name)) for _, r in examples
                                         if not is_empty(r.get(spec.name))),
                          **(spec.names or {})}
        if spec.kind == "choice":
            continue
        for text, record in examples:
            value = record.get(spec.name)
            if is_empty(value):
                continue
            for c in spec.find(text):
                if values_match(value, c.value):
                    before, _ = context(text, c, 4)
                    learned[spec.name].update({w[:5] for w in before})
                    break
    return learned


def to_json(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False)


# --- the fine-tuned rung ----------------------------------------------------------------------

def candidate_features(text: str, c: Candidate, index: int, count: int) -> dict[str, float]:
    before, after = context(text, c, 3)
    feats = {f"b{i}:{w}": 1.0 for i, w in enumerate(reversed(before))}
    feats.update({f"a{i}:{w}": 1.0 for i, w in enumerate(after)})
    feats.update({f"bw:{w}": 1.0 for w in words(text[:c.start])[-8:]})
    feats.update({f"aw:{w}": 1.0 for w in words(text[c.end:])[:8]})
    feats[f"first:{index == 0}"] = 1.0
    feats[f"last:{index == count - 1}"] = 1.0
    feats[f"only:{count == 1}"] = 1.0
    feats["pos"] = c.start / max(len(text), 1)
    feats[f"shape:{shape(c.text)}"] = 1.0
    line_start = text.rfind("\n", 0, c.start) + 1
    feats[f"line_first:{not text[line_start:c.start].strip()}"] = 1.0
    return feats


def shape(text: str) -> str:
    """"KP-482913" -> "A-9", "Aurora Desk Lamp" -> "Aa Aa Aa"."""
    return re.sub(r"[a-z]+", "a", re.sub(r"[A-Z]+", "A", re.sub(r"[0-9]+", "9", text)))


class _Int32Indices:
    """A pipeline step casting a sparse matrix's indices to 32 bits, which liblinear needs and
    DictVectorizer does not always give (liblinear: seconds where lbfgs took a minute)."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        X = X.tocsr()
        X.indices = X.indices.astype("int32")
        X.indptr = X.indptr.astype("int32")
        return X

    def fit_transform(self, X, y=None):
        return self.transform(X)


@dataclass
class LinearScorer:
    """A fitted binary logistic regression as feature -> weight: scoring one candidate is a
    sum over its features, not a round of scikit-learn input validation (the same numbers)."""

    weights: dict[str, float]
    intercept: float

    @classmethod
    def from_model(cls, vec, clf) -> LinearScorer:
        coef = clf.coef_[0]
        return cls({f: float(coef[i]) for f, i in vec.vocabulary_.items() if coef[i]},
                   float(clf.intercept_[0]))

    def probability(self, features: dict[str, float]) -> float:
        z = self.intercept + sum(self.weights.get(f, 0.0) * v for f, v in features.items())
        return 1.0 / (1.0 + math.exp(-z))


@dataclass
class LinearChoice:
    """A fitted one-vs-rest logistic regression over TF-IDF: the class with the largest
    decision value (what OneVsRestClassifier.predict picks), computed in one product."""

    vectorizer: Any
    coef: Any  # classes x features
    intercept: Any
    classes: list[str]

    @classmethod
    def from_model(cls, vectorizer, ovr) -> LinearChoice:
        import numpy as np

        coef = np.vstack([e.coef_[0] for e in ovr.estimators_])
        intercept = np.array([e.intercept_[0] for e in ovr.estimators_])
        return cls(vectorizer, coef, intercept, [str(c) for c in ovr.classes_])

    def predict(self, text: str) -> str:
        scores = self.vectorizer.transform([text]) @ self.coef.T + self.intercept
        return self.classes[int(scores.argmax())]


class SlotTagger:
    """The local "fine-tune" for extraction: per field, a logistic regression scoring each
    candidate span by its context (is this the value?), and for choice fields a TF-IDF
    logistic regression over the whole text (with "none" as a class)."""

    def __init__(self, specs: Sequence[FieldSpec], names: Sequence[str]):
        self.specs = list(specs)
        self.aliases = name_aliases(names)
        for spec in self.specs:
            if spec.kind == "name":
                spec.names = {**self.aliases, **(spec.names or {})}
        self.models: dict[str, Any] = {}

    def fit(self, texts: Sequence[str], records: Sequence[dict[str, Any]]) -> SlotTagger:
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        for spec in self.specs:
            if spec.kind == "choice":
                y = [str(r.get(spec.name)) if not is_empty(r.get(spec.name)) else "__none__"
                     for r in records]
                tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
                ovr = OneVsRestClassifier(LogisticRegression(C=20.0, solver="liblinear"))
                ovr.fit(tfidf.fit_transform(list(texts)), y)
                self.models[spec.name] = LinearChoice.from_model(tfidf, ovr)
                continue
            X, y = [], []
            for text, record in zip(texts, records):
                found = self._candidates(text, spec)
                for i, c in enumerate(found):
                    X.append(candidate_features(text, c, i, len(found)))
                    y.append(int(values_match(record.get(spec.name), c.value)))
            if len(set(y)) < 2:  # nothing to learn (no candidates, or all one way)
                self.models[spec.name] = None
                continue
            vec = DictVectorizer()
            clf = LogisticRegression(C=1.0, solver="liblinear").fit(
                _Int32Indices().transform(vec.fit_transform(X)), y)
            self.models[spec.name] = LinearScorer.from_model(vec, clf)
        return self

    def _candidates(self, text: str, spec: FieldSpec) -> list[Candidate]:
        return spec.find(text)

    def predict(self, text: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for spec in self.specs:
            model = self.models.get(spec.name)
            if spec.kind == "choice":
                label = model.predict(text) if model is not None else "__none__"
                out[spec.name] = None if label == "__none__" else label
                continue
            found = self._candidates(text, spec)
            if model is None or not found:
                out[spec.name] = pick(text, spec) if model is None else None
                continue
            proba = [model.probability(candidate_features(text, c, i, len(found)))
                     for i, c in enumerate(found)]
            best = max(range(len(found)), key=proba.__getitem__)
            out[spec.name] = found[best].value if proba[best] >= 0.5 else None
        return out


def train_tagger(fields: Sequence[tuple[str, str]], response_format: dict[str, Any] | None,
                 texts: Sequence[str], records: Sequence[dict[str, Any]]) -> SlotTagger:
    """The tagger for a task's fields, trained on (input, expected record) pairs."""
    specs = request_specs(fields, response_format)
    names = [str(r.get(s.name)) for s in specs if s.kind == "name" for r in records
             if not is_empty(r.get(s.name))]
    return SlotTagger(specs, names).fit(texts, records)

"""`generation`: long-form answers, `expected` one reference answer or a list of references.

Metrics:
- `rouge_l`, `rouge1`: ROUGE-L and ROUGE-1 F-measure from Google's `rouge-score` package
  (`rouge_scorer.RougeScorer`, Porter stemmer on; its stemmer is nltk's PorterStemmer, which
  needs no data download, so scoring stays offline). With several references an answer gets
  its best F-measure over them (the maximum, as SQuAD's text metrics take), since each
  reference is one acceptable answer. `rouge_l` is ROUGE-L over the whole answer (`rougeL`,
  no sentence splitting).
- `groundedness` (retrieval rungs only): how much of the answer the retrieved passages
  support. The answer is split into sentences (at line breaks and after . ! ?), each
  tokenised as ROUGE tokenises (rouge-score's tokenizer: lower-cased alphanumeric tokens,
  Porter-stemmed). A sentence is supported when its best ROUGE-L precision against any one
  passage shown to the rung, LCS(sentence, passage) / len(sentence), reaches
  `SUPPORT_THRESHOLD` (0.5: at least half of its tokens appear, in order, in one passage).
  Groundedness is the share of the answer's tokens that lie in supported sentences (0 to 1).
  A rung that retrieved nothing has nothing to be grounded in: no score is written for it
  (not a 0), and summary.json says so.
- `style_match`: the share of task.yaml's `style` patterns (regular expressions, searched
  with re.MULTILINE) the answer matches: the form a house style asks for, scored apart from
  the content. Scored only when task.yaml lists patterns.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from evalkit.tasks.base import (
    ItemContext,
    Metric,
    Rows,
    Scaffold,
    TaskType,
    register_metric,
    register_task_type,
)

if TYPE_CHECKING:
    from rouge_score.rouge_scorer import RougeScorer

    from evalkit.data.testset import Task

ROUGE_TYPES = {"rouge1": "rouge1", "rouge_l": "rougeL"}  # evalkit name -> rouge-score name


@lru_cache(maxsize=1)
def scorer() -> RougeScorer:
    """One RougeScorer for both types (imported on first use: `evalkit --help` stays light)."""
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES.values()), use_stemmer=True)


@lru_cache(maxsize=65536)
def _fmeasures(reference: str, prediction: str) -> dict[str, float]:
    scores = scorer().score(reference, prediction)
    return {name: scores[kind].fmeasure for name, kind in ROUGE_TYPES.items()}


def rouge(prediction: str, references: str | list[str], kind: str) -> float:
    """ROUGE F-measure of `kind` ('rouge1' or 'rouge_l'), the best over the references."""
    refs = [references] if isinstance(references, str) else list(references)
    return max(_fmeasures(str(r), prediction)[kind] for r in refs)


def style_match(output: str, patterns: list[str]) -> float:
    """Share of the regular expressions found in the output (re.MULTILINE: ^ and $ match at
    each line)."""
    return sum(bool(re.search(p, output, re.MULTILINE)) for p in patterns) / len(patterns)


SUPPORT_THRESHOLD = 0.5  # ROUGE-L precision of an answer sentence against one passage
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@lru_cache(maxsize=1)
def _tokenizer():
    from rouge_score import tokenizers

    return tokenizers.DefaultTokenizer(use_stemmer=True)


@lru_cache(maxsize=65536)
def tokens(text: str) -> tuple[str, ...]:
    """rouge-score's tokens of `text` (what ROUGE-L compares)."""
    return tuple(_tokenizer().tokenize(text))


def lcs_length(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """Length of the longest common subsequence (one row of the dynamic programme at a time)."""
    if len(a) > len(b):
        a, b = b, a
    previous = [0] * (len(a) + 1)
    for y in b:
        current = [0]
        for i, x in enumerate(a):
            current.append(previous[i] + 1 if x == y else max(previous[i + 1], current[i]))
        previous = current
    return previous[-1]


def groundedness(answer: str, passages: list[str] | tuple[str, ...], *,
                 threshold: float = SUPPORT_THRESHOLD) -> float:
    """Share of the answer's tokens in sentences that some passage supports (see above)."""
    sentences = [t for s in _SENTENCE.split(answer) if (t := tokens(s))]
    if not sentences:
        return 0.0
    shown = [tokens(p) for p in passages]
    supported = sum(len(s) for s in sentences
                    if any(lcs_length(s, p) >= threshold * len(s) for p in shown))
    return supported / sum(len(s) for s in sentences)


def check_expected(expected: Any, task: Task) -> None:
    """One non-empty reference answer, or a non-empty list of them."""
    refs = expected if isinstance(expected, list) else [expected]
    if not refs:
        raise ValueError("an empty list of references: give at least one reference answer")
    for ref in refs:
        if not isinstance(ref, str) or not ref.strip():
            raise ValueError(f"must be a reference answer (a non-empty string) or a list of "
                             f"them, got {ref!r}")


def check_style(patterns: Any) -> list[str]:
    """task.yaml's `style`: a list of regular expressions; raises ValueError naming the bad
    one (the loader adds file, line and field)."""
    if not isinstance(patterns, list) or not patterns:
        raise ValueError("must be a non-empty list of regular expressions")
    for p in patterns:
        if not isinstance(p, str):
            raise ValueError(f"must be a list of regular expressions, got {p!r}")
        try:
            re.compile(p)
        except re.error as exc:
            raise ValueError(f"{p!r} is not a regular expression: {exc}") from exc
    return list(patterns)


def _rouge_metric(kind: str):
    return lambda ctx: rouge(ctx.output, ctx.item.references, kind)


def _grounded(ctx: ItemContext) -> float:
    return groundedness(ctx.output, ctx.passages)


def _has_passages(ctx: ItemContext) -> bool:
    return bool(ctx.passages)


def _style(ctx: ItemContext) -> float:
    return style_match(ctx.output, ctx.task.options["style"])


def _has_style(ctx: ItemContext) -> bool:
    return bool(ctx.task.options.get("style"))


register_metric(Metric("rouge_l", "item", _rouge_metric("rouge_l"), task_types=("generation",),
                       description="ROUGE-L F-measure (rouge-score, stemmed), best over the "
                                   "references"))
register_metric(Metric("rouge1", "item", _rouge_metric("rouge1"), task_types=("generation",),
                       description="ROUGE-1 F-measure (rouge-score, stemmed), best over the "
                                   "references"))
register_metric(Metric("style_match", "item", _style, task_types=("generation",),
                       applies=_has_style, not_applicable="task.yaml lists no style patterns",
                       description="share of task.yaml's style patterns the answer matches"))
register_metric(Metric("groundedness", "item", _grounded, task_types=("generation",),
                       applies=_has_passages,
                       not_applicable="this rung retrieved no passages, so there is nothing "
                                      "for its answers to be grounded in",
                       description="share of the answer's tokens in sentences a retrieved "
                                   "passage supports (ROUGE-L precision >= 0.5)"))
# --- evalkit init: how a file looks like long-form answers, and how one is read -------------

LONG_FORM_WORDS = 25  # a median reference this long is an explanation, not a short answer


def fit(rows: Rows) -> float:
    """0.95 when the rows' answers (as QA reads them) run long, a median of LONG_FORM_WORDS
    words or more (ELI5's, ASQA's long answers; SQuAD's and Natural Questions' are a few
    words): SQuAD token F1 and abstain phrases are short-answer measures. Else 0."""
    from evalkit.data.importers import ANSWER_KEYS, pick_key

    lengths = []
    for row in rows[:200]:
        value = row.get(pick_key(row, ANSWER_KEYS) or "answers")
        if isinstance(value, dict):
            value = value.get("text", value.get("value"))
        refs = value if isinstance(value, list) else [value]
        # answer objects, as QA reads them: SQuAD's {"text"}, ASQA's {"long_answer"}
        refs = [r.get("long_answer", r.get("text")) if isinstance(r, dict) else r for r in refs]
        lengths += [len(r.split()) for r in refs if isinstance(r, str) and r.strip()]
    if not lengths:
        return 0.0
    return 0.95 if sorted(lengths)[len(lengths) // 2] >= LONG_FORM_WORDS else 0.0


def read(path, *, text_key: str | None = None,
         target_key: str | None = None) -> list[dict[str, Any]]:
    """Questions and their reference answers, read as QA reads them; a row with no reference
    is refused (a long-form answer needs one to be scored against), naming its line."""
    from evalkit.data.importers import from_qa_jsonl, read_jsonl
    from evalkit.data.testset import TestsetError

    items = from_qa_jsonl(path, question_key=text_key, answer_key=target_key)
    for (lineno, _), item in zip(read_jsonl(path), items):
        if item["expected"] is None:
            raise TestsetError(path, "no reference answer; a generation item needs at least "
                               "one (or choose qa with --type qa, where no answer means "
                               "unanswerable)", line=lineno, field=target_key or "answers")
    return items


register_task_type(TaskType(
    "generation", check_expected=check_expected,
    metrics=("rouge_l", "rouge1", "groundedness", "style_match"),
    description="long-form answers: one reference answer or a list of references",
    options={"style": check_style},
    default_output_tokens=512,  # a long-form answer
    scaffold=Scaffold(
        fit=fit, read=read,
        instructions="Answer the question in a few sentences, from the passages you are "
                     "given when there are any.")))

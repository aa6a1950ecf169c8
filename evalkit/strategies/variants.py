"""Variants: the rungs of the ladder, each turning an item into a Request.

A variant is a small value object (how many examples, how many passages, which model), and
`build(item)` is the only thing the runner asks of it. What the variant needs from the test set
(the few-shot pool, the retrieval indexes) is prepared once in `VariantContext`, not per item.

`VARIANT_KINDS` is the one table of variant kinds: each preset name (the six built-in rungs)
maps to a factory of its `Variant` from the test set, so a new kind is one entry. A variant
declared in the experiment config (`variants:` in evalkit.config) names one of them as its
`base` and overrides what it changes; `resolve` turns `--variants` names (presets and
declared names alike) into Variants. Each Variant's `spec()` is what run.json records, so the
analysis reads a variant's kind from the spec, never from its name.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from evalkit.config import ConfigError, ExperimentConfig, VariantDecl
from evalkit.data.testset import CorpusSettings, Item, Testset
from evalkit.registry import Registry
from evalkit.strategies.ladder import LADDER  # noqa: F401  re-exported for callers
from evalkit.strategies.request import Example, Request
from evalkit.strategies.retrieval import Passage, TfidfIndex, build_index
from evalkit.tasks import task_type


class MissingCorpus(ValueError):
    """A rung that retrieves, on a test set with no docs/ corpus."""


@dataclass(frozen=True)
class Variant:
    """One rung. `fine_tuned` variants run on `fine_tuned_model` when it is given, else on the
    model recorded for the test set's fine-tune. None in an override field: the run's value
    (task.yaml's for instructions and chunking, the run's provider and flags for the rest)."""

    name: str
    kind: str = ""  # the preset it is built on (VARIANT_KINDS)
    few_shot_k: int = 0
    few_shot_selection: str = "similar"  # "similar" (nearest train items) or "fixed"
    rag_k: int = 0
    fine_tuned: bool = False
    model: str | None = None
    instructions: str | None = None
    instructions_file: str | None = None
    retriever: str | None = None  # "tfidf" or "embeddings"; None: the run's default
    chunk_size: int | None = None
    chunk_overlap: int | None = None
    fine_tuned_model: str | None = None
    provider: str | None = None
    base_url: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None

    def build(self, item: Item, ctx: VariantContext) -> Request:
        task = ctx.testset.task
        examples = ()
        if self.few_shot_k:
            examples = ctx.examples_for(item, k=self.few_shot_k, selection=self.few_shot_selection)
        passages = ctx.passages_for(item, self.rag_k, self.index_spec(ctx)) if self.rag_k else ()
        return Request(
            task_type=task.type,
            instructions=self.instructions or task.instructions,
            input=item.input,
            labels=ctx.labels,
            fields=ctx.fields,
            examples=examples,
            passages=passages,
            model=self.model_name(ctx),
            response_format=ctx.response_format,
        )

    def model_name(self, ctx: VariantContext) -> str | None:
        if self.fine_tuned:
            return self.fine_tuned_model or ctx.fine_tuned_model
        return self.model

    @property
    def needs_recorded_fine_tune(self) -> bool:
        """It runs on the test set's recorded (or locally trained) fine-tune."""
        return self.fine_tuned and not self.fine_tuned_model

    def index_spec(self, ctx: VariantContext) -> IndexSpec:
        corpus = ctx.testset.task.corpus
        return IndexSpec(self.retriever or ctx.default_retriever,
                         self.chunk_size or corpus.chunk_size,
                         corpus.chunk_overlap if self.chunk_overlap is None
                         else self.chunk_overlap)

    def spec(self) -> dict[str, Any]:
        """What run.json records: every field, so a reader needs no preset table."""
        return asdict(self)


@dataclass(frozen=True)
class IndexSpec:
    retriever: str
    chunk_size: int
    chunk_overlap: int


VARIANT_KINDS: Registry[Callable[[Testset], Variant]] = Registry("variant")


def _kind(name: str) -> Callable[[Callable[[Testset], Variant]], Callable[[Testset], Variant]]:
    return VARIANT_KINDS.decorator(name)


@_kind("prompt-only")
def _prompt_only(testset: Testset) -> Variant:
    return Variant("prompt-only", "prompt-only")


@_kind("few-shot")
def _few_shot(testset: Testset) -> Variant:
    return Variant("few-shot", "few-shot", few_shot_k=testset.task.few_shot_k)


@_kind("few-shot-fixed")
def _few_shot_fixed(testset: Testset) -> Variant:
    return Variant("few-shot-fixed", "few-shot-fixed", few_shot_k=testset.task.few_shot_k,
                   few_shot_selection="fixed")


@_kind("rag")
def _rag(testset: Testset) -> Variant:
    return Variant("rag", "rag", rag_k=testset.task.corpus.k)


@_kind("fine-tuned")
def _fine_tuned(testset: Testset) -> Variant:
    return Variant("fine-tuned", "fine-tuned", fine_tuned=True)


@_kind("rag+fine-tuned")
def _rag_fine_tuned(testset: Testset) -> Variant:
    return Variant("rag+fine-tuned", "rag+fine-tuned", rag_k=testset.task.corpus.k,
                   fine_tuned=True)


def default_variant(name: str, testset: Testset) -> Variant:
    """A preset rung, with k taken from task.yaml."""
    try:
        factory = VARIANT_KINDS.get(name)
    except KeyError as exc:
        raise ValueError(str(exc)) from None
    return _needs_corpus(factory(testset), testset)


def declared_variant(decl: VariantDecl, testset: Testset, *,
                     config: ExperimentConfig | None = None) -> Variant:
    """A config-declared variant: its base preset with the declaration's overrides."""
    where = f"variants[{config.variants.index(decl)}]" if config else "variants"
    if decl.base not in VARIANT_KINDS:
        err = VARIANT_KINDS.unknown(decl.base)
        raise ConfigError(config.path if config else None, f"{err}", field=f"{where}.base",
                          line=decl.line)
    v = replace(VARIANT_KINDS.get(decl.base)(testset), name=decl.name)
    changes: dict[str, Any] = {k: getattr(decl, k) for k in (
        "model", "instructions", "instructions_file", "fine_tuned_model", "provider",
        "base_url", "temperature", "max_tokens", "seed") if getattr(decl, k) is not None}
    if decl.fine_tuned_model:
        changes["fine_tuned"] = True
    if decl.few_shot:
        changes.update({k: val for k, val in (("few_shot_k", decl.few_shot.k),
                                              ("few_shot_selection", decl.few_shot.selection))
                        if val is not None})
    if decl.rag:
        changes.update({k: val for k, val in (
            ("rag_k", decl.rag.k), ("retriever", decl.rag.retriever),
            ("chunk_size", decl.rag.chunk_size), ("chunk_overlap", decl.rag.chunk_overlap))
            if val is not None})
    v = replace(v, **changes)
    corpus = testset.task.corpus
    size = v.chunk_size or corpus.chunk_size
    overlap = corpus.chunk_overlap if v.chunk_overlap is None else v.chunk_overlap
    if overlap >= size:
        raise ConfigError(config.path if config else None,
                          f"chunk_overlap {overlap} must be smaller than chunk_size {size}",
                          field=f"{where}.rag", line=decl.line)
    try:
        return _needs_corpus(v, testset)
    except ValueError as exc:
        raise ConfigError(config.path if config else None, str(exc), field=where,
                          line=decl.line) from None


def resolve(names: list[str], testset: Testset, config: ExperimentConfig) -> list[Variant]:
    """The Variants `--variants` names: declared in the config first, else presets."""
    out = []
    for name in names:
        decl = config.variant(name)
        if decl is not None:
            out.append(declared_variant(decl, testset, config=config))
        elif name in VARIANT_KINDS:
            out.append(default_variant(name, testset))
        else:
            known = [*(d.name for d in config.variants), *VARIANT_KINDS.names()]
            raise ValueError(f"unknown variant {name!r}; known: {', '.join(known)}"
                             + ("" if config.variants else
                                " (declare others under variants: in --config)"))
    return out


def _needs_corpus(variant: Variant, testset: Testset) -> Variant:
    if variant.rag_k and not testset.docs:
        raise MissingCorpus(f"variant {variant.name!r} needs a docs/ corpus, and "
                            f"{testset.path} has none")
    return variant


class VariantContext:
    """What variants share for one test set: few-shot pool, retrieval indexes (one per
    retriever and chunking a variant asks for), the fine-tuned model.

    `embeddings`: builds the embedding retriever's index for a test set (chunking from its
    task.yaml), when the config sets one up; it is then the default retriever.
    """

    def __init__(self, testset: Testset, *, cache_dir: Path | None = None,
                 fine_tuned_model: str | None = None, seed: int = 0,
                 index_factory: Callable[[], TfidfIndex] | None = None,
                 embeddings: Callable[[Testset], Any] | None = None):
        self.testset = testset
        self.cache_dir = cache_dir
        self.fine_tuned_model = fine_tuned_model
        self.seed = seed
        self.index_factory = index_factory  # the default index's builder; None: by spec
        self.embeddings = embeddings
        self.default_retriever = "embeddings" if (embeddings or index_factory) else "tfidf"
        self.indexes: dict[IndexSpec, Any] = {}
        self._memo: dict[tuple, dict] = {}  # (what, k[, index]) -> {input: result}

    @cached_property
    def response_format(self) -> dict | None:
        """The structured output every request of this task asks for (its task type's hook)."""
        return task_type(self.testset.task.type).response_format(self.testset.task)

    @cached_property
    def labels(self) -> tuple[tuple[str, str], ...]:
        """The task's (label, description) pairs: one tuple for every request, so what is
        worked out per task from it (the system prompt, the output limit) is found by
        identity instead of rebuilt per item."""
        return tuple(self.testset.task.labels.items())

    @cached_property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """The task's (field, description) pairs, one tuple for every request (as `labels`)."""
        return tuple(self.testset.task.fields.items())

    @property
    def default_index_spec(self) -> IndexSpec:
        c = self.testset.task.corpus
        return IndexSpec(self.default_retriever, c.chunk_size, c.chunk_overlap)

    @property
    def index(self) -> Any:
        """The index with task.yaml's chunking and the run's default retriever."""
        return self.index_for(self.default_index_spec)

    def index_for(self, spec: IndexSpec) -> Any:
        """The index `spec` describes, built once (anything with search(query, k))."""
        if spec not in self.indexes:
            self.indexes[spec] = self._build(spec)
        return self.indexes[spec]

    def _build(self, spec: IndexSpec) -> Any:
        if spec == self.default_index_spec and self.index_factory is not None:
            return self.index_factory()
        if spec.retriever == "embeddings":
            if self.embeddings is None:
                raise ValueError("rag.retriever 'embeddings' needs provider.embedding_model "
                                 "in the experiment config")
            corpus = CorpusSettings(chunk_size=spec.chunk_size,
                                    chunk_overlap=spec.chunk_overlap,
                                    k=self.testset.task.corpus.k)
            return self.embeddings(replace(self.testset,
                                           task=replace(self.testset.task, corpus=corpus)))
        return build_index(self.testset.docs, chunk_size=spec.chunk_size,
                           chunk_overlap=spec.chunk_overlap,
                           corpus_hash=self.testset.corpus_hash, cache_dir=self.cache_dir)

    @cached_property
    def _pool(self):
        train = self.testset.train
        if not train:
            raise ValueError(f"{self.testset.path}: few-shot needs a train.jsonl")
        from sklearn.feature_extraction.text import TfidfVectorizer  # on use: ~1 s to import
        from sklearn.preprocessing import normalize

        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        matrix = normalize(vec.fit_transform([it.input for it in train]))
        return vec, matrix

    def examples_for(self, item: Item, *, k: int, selection: str) -> tuple[Example, ...]:
        train = self.testset.train
        if selection == "fixed":
            chosen = self._fixed_examples(k)
        else:
            chosen = [train[i] for i in self._nearest(item.input, k)]
        task = self.testset.task
        target = task_type(task.type).target  # the label, the answer, or an abstention
        return tuple(Example(it.input, target(it, task)) for it in chosen)

    def passages_for(self, item: Item, k: int, spec: IndexSpec | None = None
                     ) -> tuple[Passage, ...]:
        """The index's top-k passages for the item's input (TF-IDF: the whole test set's
        queries are scored in batches the first time, not one transform per item)."""
        spec = spec or self.default_index_spec
        index = self.index_for(spec)
        memo = self._memo.setdefault(("passages", k, spec), {})
        if item.input not in memo:
            many = getattr(index, "search_many", None)
            if many is None:  # another retriever (embeddings): its own per-query path
                return tuple(index.search(item.input, k))
            queries = _pending([item.input, *(it.input for it in self.testset.test)], memo)
            for start in range(0, len(queries), BATCH):
                chunk = queries[start:start + BATCH]
                memo.update(zip(chunk, map(tuple, many(chunk, k)), strict=True))
        return memo[item.input]

    def _nearest(self, text: str, k: int) -> tuple[int, ...]:
        """Train indices most similar to `text`, best first; batched like `passages_for`."""
        memo = self._memo.setdefault(("nearest", k), {})
        if text not in memo:
            vec, matrix = self._pool
            import numpy as np  # here, as sklearn: a run without few-shot never needs them
            from sklearn.preprocessing import normalize

            queries = _pending([text, *(it.input for it in self.testset.test)], memo)
            for start in range(0, len(queries), BATCH):
                chunk = queries[start:start + BATCH]
                # one column per query; each cosine sums the same terms in the same order as
                # a one-query product would, so the ranking is identical
                sims = (matrix @ normalize(vec.transform(chunk)).T).toarray()
                for j, query in enumerate(chunk):
                    memo[query] = tuple(np.argsort(-sims[:, j], kind="stable")[:k].tolist())
        return memo[text]

    @cached_property
    def _fixed_order(self) -> list[Item]:
        """Seeded shuffle, round-robin over labels so a fixed set covers as many as it can."""
        items = list(self.testset.train)
        random.Random(self.seed).shuffle(items)
        by_label: dict[str, list[Item]] = {}
        for it in items:
            by_label.setdefault(str(it.expected), []).append(it)
        order = []
        while any(by_label.values()):
            for bucket in by_label.values():
                if bucket:
                    order.append(bucket.pop(0))
        return order

    def _fixed_examples(self, k: int) -> list[Item]:
        return self._fixed_order[:k]


BATCH = 512  # queries scored together: a dense (train or passages) x BATCH block at most


def _pending(texts: list[str], memo: dict) -> list[str]:
    """The distinct texts not memoised yet, in order."""
    return [t for t in dict.fromkeys(texts) if t not in memo]


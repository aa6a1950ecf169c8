"""Variants: the rungs of the ladder, each turning an item into a Request.

A variant is a small value object (how many examples, how many passages, which model), and
`build(item)` is the only thing the runner asks of it. What the variant needs from the test set
(the few-shot pool, the retrieval index) is prepared once in `VariantContext`, not per item.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from evalkit.data.testset import Item, Testset
from evalkit.strategies.ladder import LADDER  # noqa: F401  re-exported for callers
from evalkit.strategies.request import Example, Request
from evalkit.strategies.retrieval import Passage, TfidfIndex, build_index
from evalkit.tasks import task_type


class MissingCorpus(ValueError):
    """A rung that retrieves, on a test set with no docs/ corpus."""


@dataclass(frozen=True)
class Variant:
    """One rung. `fine_tuned` variants run on the model recorded for the test set's fine-tune."""

    name: str
    few_shot_k: int = 0
    few_shot_selection: str = "similar"  # "similar" (nearest train items) or "fixed"
    rag_k: int = 0
    fine_tuned: bool = False
    model: str | None = None

    def build(self, item: Item, ctx: VariantContext) -> Request:
        task = ctx.testset.task
        examples = ()
        if self.few_shot_k:
            examples = ctx.examples_for(item, k=self.few_shot_k, selection=self.few_shot_selection)
        passages = ctx.passages_for(item, self.rag_k) if self.rag_k else ()
        return Request(
            task_type=task.type,
            instructions=task.instructions,
            input=item.input,
            labels=tuple(task.labels.items()),
            fields=tuple(task.fields.items()),
            examples=examples,
            passages=passages,
            model=ctx.fine_tuned_model if self.fine_tuned else self.model,
            response_format=ctx.response_format,
        )


def default_variant(name: str, testset: Testset) -> Variant:
    """The bundled ladder's rungs, with k taken from task.yaml."""
    task = testset.task
    factories = {
        "prompt-only": lambda: Variant("prompt-only"),
        "few-shot": lambda: Variant("few-shot", few_shot_k=task.few_shot_k),
        "few-shot-fixed": lambda: Variant("few-shot-fixed", few_shot_k=task.few_shot_k,
                                          few_shot_selection="fixed"),
        "rag": lambda: Variant("rag", rag_k=task.corpus.k),
        "fine-tuned": lambda: Variant("fine-tuned", fine_tuned=True),
        "rag+fine-tuned": lambda: Variant("rag+fine-tuned", rag_k=task.corpus.k, fine_tuned=True),
    }
    if name not in factories:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(factories)}")
    variant = factories[name]()
    if variant.rag_k and not testset.docs:
        raise MissingCorpus(f"variant {name!r} needs a docs/ corpus, and {testset.path} has none")
    return variant


class VariantContext:
    """What variants share for one test set: few-shot pool, retrieval index, fine-tuned model."""

    def __init__(self, testset: Testset, *, cache_dir: Path | None = None,
                 fine_tuned_model: str | None = None, seed: int = 0,
                 index_factory: Callable[[], TfidfIndex] | None = None):
        self.testset = testset
        self.cache_dir = cache_dir
        self.fine_tuned_model = fine_tuned_model
        self.seed = seed
        self.index_factory = index_factory  # another retriever (embeddings); None: TF-IDF
        self._memo: dict[tuple[str, int], dict] = {}  # (what, k) -> {input: result}

    @cached_property
    def response_format(self) -> dict | None:
        """The structured output every request of this task asks for (its task type's hook)."""
        return task_type(self.testset.task.type).response_format(self.testset.task)

    @cached_property
    def index(self) -> TfidfIndex:
        if self.index_factory is not None:  # anything with search(query, k) -> [Passage]
            return self.index_factory()
        c = self.testset.task.corpus
        return build_index(self.testset.docs, chunk_size=c.chunk_size,
                           chunk_overlap=c.chunk_overlap, corpus_hash=self.testset.corpus_hash,
                           cache_dir=self.cache_dir)

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

    def passages_for(self, item: Item, k: int) -> tuple[Passage, ...]:
        """The index's top-k passages for the item's input (TF-IDF: the whole test set's
        queries are scored in batches the first time, not one transform per item)."""
        memo = self._memo.setdefault(("passages", k), {})
        if item.input not in memo:
            many = getattr(self.index, "search_many", None)
            if many is None:  # another retriever (embeddings): its own per-query path
                return tuple(self.index.search(item.input, k))
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


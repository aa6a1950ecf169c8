"""`evalkit estimate`: what a run will cost, before any call is made.

Every request the run would send is rendered exactly as the runner renders it; its prompt
tokens are estimated (about 4 characters a token plus message framing, no tokenizer download),
its answer tokens are bounded by `max_completion_tokens` when set, else guessed from the task
(the longest label for classification, the train split's reference answers otherwise), and
both are priced with the same `PriceBook` the provider bills with. Requests already in the
response cache cost nothing to re-run and are counted apart. With an embeddings retriever, the
corpus (setup) and the queries are estimated too; their passages are stood in for by TF-IDF
ones of the same size, since ranking them would need the embeddings themselves.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evalkit.config import ExperimentConfig
from evalkit.data.testset import Testset, load_testset
from evalkit.money import usd
from evalkit.providers import ProviderSetup, build_provider
from evalkit.providers.base import Usage
from evalkit.providers.openai import approx_tokens
from evalkit.providers.pricing import PriceBook, UnknownPrice
from evalkit.run.cache import ResponseCache, request_key
from evalkit.strategies import finetune
from evalkit.strategies.retrieval import chunk_corpus
from evalkit.strategies.variants import VariantContext, resolve
from evalkit.tasks import task_type


@dataclass
class VariantEstimate:
    variant: str
    model: str
    items: int = 0
    cached: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    notional_usd: float = 0.0   # every item as if uncached: what variants are compared on
    to_spend_usd: float = 0.0   # what this run would pay (cache hits are free)
    price_source: str = ""
    note: str = ""


@dataclass
class Estimate:
    testset: str
    provider: str
    variants: list[VariantEstimate] = field(default_factory=list)
    setup: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def total_to_spend_usd(self) -> float:
        return sum(v.to_spend_usd for v in self.variants) + self.setup.get("to_spend_usd", 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_to_spend_usd": self.total_to_spend_usd}


def expected_output_tokens(testset: Testset, max_completion_tokens: int | None) -> int:
    """A per-answer output guess, never above the cap the provider sends."""
    if task_type(testset.task.type).uses_labels and testset.task.labels:
        guess = max(math.ceil(len(label) / 4) for label in testset.task.labels) + 1
    elif testset.train:
        target = task_type(testset.task.type).target
        lengths = [math.ceil(len(target(it, testset.task)) / 4) for it in testset.train]
        guess = math.ceil(1.5 * sum(lengths) / len(lengths)) + 2
    else:
        guess = 64
    return min(guess, max_completion_tokens) if max_completion_tokens else guess


def estimate_run(testset_dir: str, *, variants: list[str], provider: str = "openai",
                 provider_options: dict[str, Any] | None = None,
                 config: ExperimentConfig | None = None, cache_dir: str = ".evalkit-cache",
                 finetune_dir: str = "finetunes") -> Estimate:
    """The expected tokens and dollars of `evalkit run` with these options. Makes no call."""
    config = config or ExperimentConfig()
    testset = load_testset(testset_dir)
    out = Estimate(testset.name, provider)
    rungs = resolve(variants, testset, config)
    record = None
    if any(v.needs_recorded_fine_tune for v in rungs):
        record = finetune.load_record(Path(finetune_dir), finetune.default_name(testset, provider))
    llm = build_provider(provider, ProviderSetup(
        options={k: v for k, v in (provider_options or {}).items() if v is not None},
        config=config, fine_tune=asdict(record) if record else None,
        finetune_dir=finetune_dir, calls=False))
    prices = llm.price_book()
    if prices is None:
        out.notes.append(f"provider {provider!r} has no token prices, so a run on it pays "
                         f"nothing; to estimate an API run give --provider openai (with "
                         f"--model or --config)")
        return out
    ctx = VariantContext(testset, cache_dir=Path(cache_dir),
                         fine_tuned_model=record.fine_tuned_model if record else None)
    out_tokens = expected_output_tokens(testset, llm.max_output_tokens)
    cache_path = Path(cache_dir) / "responses.sqlite"
    cache = ResponseCache(cache_path) if cache_path.is_file() else None
    try:
        for rung in rungs:
            if rung.needs_recorded_fine_tune and (record is None or not record.fine_tuned_model):
                out.variants.append(VariantEstimate(rung.name, "", note="no fine-tuned model "
                                                    "recorded yet: run `evalkit finetune`"))
                continue
            out.variants.append(_estimate_variant(rung, testset, ctx, llm, prices, cache,
                                                  out_tokens))
    finally:
        if cache:
            cache.close()
    if any(v.rag_k for v in rungs):
        out.setup = _embedding_setup(config, testset, prices, len(testset.test))
    return out


def _estimate_variant(rung, testset: Testset, ctx: VariantContext, llm, prices: PriceBook,
                      cache: ResponseCache | None, out_tokens: int) -> VariantEstimate:
    est = None
    for item in testset.test:
        request = rung.build(item, ctx)
        model = llm.model_for(request)
        if est is None:
            est = VariantEstimate(rung.name, model)
            try:
                est.price_source = prices.price(model).source
            except UnknownPrice as exc:
                est.note = str(exc)
        messages = request.messages()
        usage = Usage(input_tokens=approx_tokens(messages), output_tokens=out_tokens)
        est.items += 1
        est.input_tokens += usage.input_tokens
        est.output_tokens += usage.output_tokens
        if est.note:
            continue
        cost = prices.price(model).cost(usage)
        est.notional_usd += cost
        key = request_key(llm, request)
        if cache is not None and cache.get(key) is not None:
            est.cached += 1
        else:
            est.to_spend_usd += cost
    return est or VariantEstimate(rung.name, "", note="no test items")


def _embedding_setup(config: ExperimentConfig, testset: Testset, prices: PriceBook,
                     n_queries: int) -> dict[str, Any]:
    section = config.section("provider")
    model = section.get("embedding_model")
    if not model:
        return {}
    c = testset.task.corpus
    chunks = [p.text for p in chunk_corpus(testset.docs, size=c.chunk_size,
                                           overlap=c.chunk_overlap)]
    corpus_tokens = sum(math.ceil(len(t) / 4) for t in chunks)
    query_tokens = sum(math.ceil(len(it.input) / 4) for it in testset.test)
    try:
        price = prices.price(model)
    except UnknownPrice as exc:
        return {"embedding_model": model, "note": str(exc)}
    indexing = price.cost(Usage(input_tokens=corpus_tokens))
    queries = price.cost(Usage(input_tokens=query_tokens))
    return {"embedding_model": model, "indexing_tokens": corpus_tokens, "indexing_usd": indexing,
            "query_tokens": query_tokens, "query_usd": queries,
            "query_usd_per_query": queries / n_queries if n_queries else 0.0,
            "to_spend_usd": indexing + queries}


def format_estimate(est: Estimate) -> str:
    lines = [f"{est.testset}: estimate for provider {est.provider} (no call made)"]
    for v in est.variants:
        if v.note and not v.items:
            lines.append(f"  {v.variant:<16} {v.note}")
            continue
        lines.append(f"  {v.variant:<16} {v.model:<40} {v.items:>5} items "
                     f"({v.cached} cached)  ~{v.input_tokens:>8} in / {v.output_tokens:>6} out "
                     f"tokens  {usd(v.notional_usd)} notional, {usd(v.to_spend_usd)} to spend"
                     + (f"  [{v.price_source}]" if v.price_source else ""))
        if v.note:
            lines.append(f"    {v.note}")
    if est.setup.get("indexing_usd") is not None:
        s = est.setup
        lines.append(f"  embeddings {s['embedding_model']}: index ~{s['indexing_tokens']} tokens "
                     f"{usd(s['indexing_usd'])} (setup), queries {usd(s['query_usd'])}")
    lines.extend(f"  note: {n}" for n in est.notes)
    lines.append(f"total to spend: {usd(est.total_to_spend_usd)}")
    return "\n".join(lines)

"""One experiment: a test set through a ladder of variants, into a run folder.

This wires the one-way flow together and owns the run folder's files; each step's work lives
in its own module (testset, variants, runner, scoring, summary).

Run folder `reports/<run-id>/`: run.json, predictions.jsonl, calls.jsonl (the call ledger),
items.jsonl, scores.csv, summary.json.

Sessions: each `run` or `--resume` of a run is a session, recorded in run.json when it starts
(status "running") and again when it ends (its counts, and why it stopped early if it did).
A session still "running" when the next one starts was killed: its jobs are recounted from
the journal lines it wrote and the calls it left open in the ledger, so `totals` covers every
session. `--max-cost-usd` covers the run: the next session starts from what was spent.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from evalkit import DISTRIBUTION
from evalkit.config import ExperimentConfig, load_config
from evalkit.data import subset as subsets
from evalkit.data.subset import SubsetSpec
from evalkit.data.testset import HASH_OF, Testset, all_files_hash, load_testset
from evalkit.paths import check_name, inside
from evalkit.pipeline import preflight
from evalkit.pipeline.preflight import LeakageRefused  # noqa: F401  re-exported for callers
from evalkit.pipeline.routing import Providers, fine_tune_provider
from evalkit.providers import Provider, embeddings, provider_class
from evalkit.run.batch import BatchSettings, run_batches
from evalkit.run.budget import usd4
from evalkit.run.cache import ResponseCache
from evalkit.run.journal import Journal, Prediction, latest
from evalkit.run.ledger import CallLedger, OpenCall, Unjournaled, open_calls, unjournaled
from evalkit.run.runner import STOP_INTERRUPTED, Job, RunStats, run_jobs
from evalkit.scoring import judge as judging
from evalkit.secrets import scrub
from evalkit.strategies import finetune
from evalkit.strategies.request import Request
from evalkit.strategies.variants import LADDER, Variant, VariantContext, resolve


@dataclass
class RunConfig:
    testset: str
    # presets and config-declared names; empty: the config's variants, else the LADDER
    variants: list[str] = field(default_factory=list)
    provider: str = "local"
    provider_options: dict[str, Any] = field(default_factory=dict)
    concurrency: int = 8
    max_cost_usd: float | None = None
    allow_leakage: bool = False
    leakage_threshold: float = 0.9
    reports_dir: str = "reports"
    cache_dir: str = ".evalkit-cache"
    finetune_dir: str = "finetunes"
    config_path: str | None = None  # the experiment config (economics, gate, pricing, ...)
    batch: bool = False  # uncached requests go through the provider's Batch API
    batch_poll_interval_s: float = 30.0
    epochs: int | None = None  # each item this many times (None: the config's, else 1)
    limit: int | None = None  # run only the first N test items
    sample: int | None = None  # run N items drawn with sample_seed (stratified)
    sample_seed: int = 0

    def subset_spec(self) -> SubsetSpec | None:
        """What --limit / --sample asked for (None: the whole test set)."""
        if self.limit is not None and self.sample is not None:
            raise ValueError("--limit and --sample are two ways to choose items; give one")
        if self.limit is not None:
            return SubsetSpec("limit", self.limit)
        if self.sample is not None:
            return SubsetSpec("sample", self.sample, self.sample_seed)
        return None


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    stats: RunStats
    warnings: list[str] = field(default_factory=list)  # about the setup; also in run.json
    subset: dict[str, Any] | None = None  # run.json "subset": --limit/--sample, else None


def run_experiment(config: RunConfig, *, resume: str | None = None, progress: bool = True,
                   experiment: ExperimentConfig | None = None,
                   echo: Callable[[str], None] | None = None) -> RunResult:
    """Run (or resume) one experiment and write every file of its run folder.

    `experiment`: the experiment config already read by the caller; else it is read here,
    once, from `config.config_path`, and its sections are handed to whoever needs them.

    `echo` gets one line per setup stage with its duration (loading, leakage check,
    fine-tune, index), so a first run that trains and indexes for seconds is not a blank
    screen before the progress bar."""
    say = _Stages(echo)
    run_dir = None
    if resume:
        check_name(resume, what="run id")
        run_dir = inside(config.reports_dir, Path(config.reports_dir) / resume, what="run folder")
        saved = json.loads((run_dir / "run.json").read_text())["config"]
        # the cap is the run's: a resume keeps it unless given a new one
        cap = saved.get("max_cost_usd") if config.max_cost_usd is None else config.max_cost_usd
        config = RunConfig(**{**saved, "concurrency": config.concurrency, "max_cost_usd": cap,
                              "batch_poll_interval_s": config.batch_poll_interval_s})
        experiment = None  # the run's own config file, not the caller's
    cfg = experiment if experiment is not None else load_config(config.config_path)
    config = replace(config, variants=list(config.variants) or
                     [d.name for d in cfg.variants] or list(LADDER),
                     epochs=config.epochs or cfg.epochs or 1)
    testset, subset, leaks = _load(config, cfg, run_dir, say)
    variants = resolve(config.variants, testset, cfg)
    if run_dir is not None:
        _check_same_variants(run_dir, variants)
    setup = {}
    if any(v.needs_recorded_fine_tune for v in variants):
        with say.stage() as note:
            setup = _prepare_fine_tune(config, testset, variants)
            note(f"{testset.name}: fine-tune {setup['fine_tune']['fine_tuned_model']}: "
                 + (f"trained on {setup['fine_tune']['trained_examples']} examples"
                    if setup.pop("trained_now") else "recorded earlier, reused"))
    if leaks:  # allowed (--allow-leakage), so said where the verdicts are read
        setup["leakage"] = _allowed_leakage(leaks, testset, config.leakage_threshold)
        setup.setdefault("warnings", []).append(setup["leakage"]["sentence"])
    unseen = _unseen_labels(testset, variants)
    if unseen:
        setup.setdefault("warnings", []).append(unseen)
    ctx = _context(config, cfg, testset, variants, setup, say)
    providers = Providers(config.provider, dict(config.provider_options), cfg,
                          fine_tune=setup.get("fine_tune"), finetune_dir=config.finetune_dir)
    by_variant = {(v.name, e): providers.for_variant(v, e)
                  for v in variants for e in range(config.epochs)}
    # a --batch the run cannot honour, a missing key and an unpriced model were refused by
    # the pre-flight (refuse_to_start), before the leakage scan; what is left needs ctx
    probes = _preflight(variants, testset, ctx)
    judge = preflight.judge_for(cfg, testset)  # refused by the pre-flight if it cannot be
    if run_dir is None:  # only now: a run that cannot start leaves no empty folder behind
        run_dir = _new_run_dir(Path(config.reports_dir), testset.name)
    journal = Journal(run_dir / "predictions.jsonl")
    done = {(p.variant, p.item_id, p.epoch) for p in latest(journal.read())
            if p.error_class is None}
    jobs = [Job(v.name, item, lambda it, v=v: v.build(it, ctx),
                provider=by_variant[(v.name, e)], epoch=e)
            for e in range(config.epochs) for v in variants for item in testset.test
            if (v.name, item.id, e) not in done]
    folder = _Folder(run_dir, config, testset, setup, notional=providers.notional,
                     subset=subset, experiment=cfg, variants=tuple(variants),
                     samples=any(p.samples for p in providers.all()),
                     sends_messages={v.name: by_variant[(v.name, 0)].sends_messages
                                     for v in variants},
                     servers={v.name: _server(by_variant[(v.name, 0)], probes[v.name])
                              for v in variants})
    stats = _run_session(folder, providers.all()[0], jobs, progress)
    if stats.stop == STOP_INTERRUPTED:  # out at once: scoring can wait for the resume
        return RunResult(run_dir, {}, stats, list(setup.get("warnings", [])), subset)
    if judge is not None and stats.stop is None:  # a stopped run is graded when it is finished
        _grade(run_dir, judge, cache_dir=config.cache_dir, progress=progress)
    summary = write_scores_and_summary(run_dir, testset, config.variants, config=cfg)
    _point_latest(run_dir, testset.name)
    return RunResult(run_dir, summary, stats, list(setup.get("warnings", [])), subset)


def _load(config: RunConfig, cfg: ExperimentConfig, run_dir: Path | None, say: _Stages
          ) -> tuple[Testset, dict | None, list]:
    """The test set (cut to --limit/--sample), refused by pre-flight or a changed resume, and
    the leaking pairs --allow-leakage let through."""
    with say.stage() as note:
        whole = load_testset(config.testset)
        testset, subset = subsets.apply(whole, config.subset_spec())
        note(f"{testset.name}: loaded {len(testset.test)} test, {len(testset.train)} train, "
             f"{len(testset.docs)} docs")
    leaks = refuse_to_start(testset, config, cfg, say=say, whole=whole)
    if run_dir is not None:
        recorded = json.loads((run_dir / "run.json").read_text())["testset"]
        if not same_testset(recorded, testset):
            raise ValueError(f"{run_dir / 'run.json'}: field 'testset.hash': the test set in "
                             f"{testset.path} changed since this run started; resuming would "
                             f"mix answers to two versions of it. Start a new run instead.")
    return testset, subset, leaks


def _unseen_labels(testset: Testset, variants: list[Variant]) -> str | None:
    """A warning when test items carry labels the train split never shows and a rung reads
    train: few-shot examples and a fine-tuned model cannot give such a label, so their loss
    against the prompt-only rung is partly the split's, not the method's."""
    if not testset.task.labels or not testset.train:
        return None
    readers = [v.name for v in variants if v.few_shot_k or v.fine_tuned]
    seen = {str(it.expected) for it in testset.train}
    counts: dict[str, int] = {}
    for it in testset.test:
        if str(it.expected) not in seen:
            counts[str(it.expected)] = counts.get(str(it.expected), 0) + 1
    if not counts or not readers:
        return None
    n = sum(counts.values())
    shown = ", ".join(f"{label}: {k}" for label, k in sorted(counts.items())[:8])
    return (f"{n} of the {len(testset.test)} test items have a label the train split never "
            f"shows ({shown}{', ...' if len(counts) > 8 else ''}); "
            f"{', '.join(readers)} cannot learn it from train")


def _allowed_leakage(leaks: list, testset: Testset, threshold: float) -> dict[str, Any]:
    """run.json's `setup.leakage`: how much of the test split leaks into train, for a run
    that went on anyway; the rungs that read train (few-shot examples, fine-tuning) may
    score higher on those items than on unseen ones, and a verdict must not hide it."""
    items = sorted({p.test_id for p in leaks})
    n = len(testset.test)
    return {"test_items": len(items), "of": n, "pairs": len(leaks), "threshold": threshold,
            "item_ids": items,
            "sentence": f"leakage allowed (--allow-leakage): {len(items)} of the {n} test "
                        f"items leak into train ({len(leaks)} pair{'s' if len(leaks) != 1 else ''}"
                        f" at cosine >= {threshold:g}); rungs that read train (few-shot, "
                        f"fine-tuned) may score higher on them than on unseen items"}


def _check_same_variants(run_dir: Path, variants: list[Variant]) -> None:
    """A resumed run's variants must be the ones it began with (the config may have moved)."""
    recorded = json.loads((run_dir / "run.json").read_text()).get("variant_specs") or {}
    for v in variants:
        if v.name in recorded and recorded[v.name] != v.spec():
            raise ValueError(f"{run_dir / 'run.json'}: field 'variant_specs.{v.name}': the "
                             f"variant changed since this run started (its config was "
                             f"edited); resuming would mix two versions. Start a new run.")


def _context(config: RunConfig, cfg: ExperimentConfig, testset: Testset,
             variants: list[Variant], setup: dict[str, Any], say: _Stages) -> VariantContext:
    """The shared few-shot pool and indexes; every index a variant needs is built now, its
    time (and an embedding index's cost) recorded as setup."""
    retriever = embeddings.from_config(cfg, config.provider_options, testset,
                                       cache_dir=Path(config.cache_dir))  # None: TF-IDF

    def embedding_index(ts: Testset) -> Any:  # another chunking of the same corpus
        return embeddings.from_config(cfg, config.provider_options, ts,
                                      cache_dir=Path(config.cache_dir)).build()

    ctx = VariantContext(testset, cache_dir=Path(config.cache_dir),
                         fine_tuned_model=setup.get("fine_tuned_model"),
                         index_factory=retriever.build if retriever else None,
                         embeddings=embedding_index if retriever else None)
    specs = list(dict.fromkeys(v.index_spec(ctx) for v in variants if v.rag_k))
    if specs and retriever is not None and config.max_cost_usd is not None:
        _refuse_uncapped_embeddings(retriever, testset, specs, cap=config.max_cost_usd)
    if specs:
        t0 = time.perf_counter()
        with say.stage() as note:
            for spec in specs:
                ctx.index_for(spec)
            note(f"{testset.name}: index of {len(testset.docs)} docs"
                 + (" (embeddings)" if retriever else "")
                 + (f", {len(specs)} chunkings" if len(specs) > 1 else ""))
        setup["indexing_time_s"] = round(time.perf_counter() - t0, 4)
        if retriever and ctx.default_index_spec in ctx.indexes:
            # indexing cost is setup; query embeddings are a per-query cost
            setup["retrieval"] = ctx.index.embed_queries([it.input for it in testset.test])
            # which index the record is of: a variant on another chunking (or TF-IDF) did
            # not use it, and is not charged for it (analysis/summary.py)
            setup["retrieval"].update(chunk_size=ctx.default_index_spec.chunk_size,
                                      chunk_overlap=ctx.default_index_spec.chunk_overlap)
    return ctx


def _refuse_uncapped_embeddings(retriever: Any, testset: Testset, specs: list, *,
                                cap: float) -> None:
    """Refuse a capped run that would pay for embeddings: the index and the queries are
    embedded at setup, before the budget that keeps the cap starts, and it does not count
    them (a helper's run: $0.0102 spent under a $0.002 cap that said it held). Texts already
    in the vector store cost nothing, so a run whose embeddings were made before (by a run
    without the cap) goes ahead."""
    from evalkit.strategies.retrieval import chunk_corpus

    texts = [p.text for spec in specs if spec.retriever == "embeddings"
             for p in chunk_corpus(testset.docs, size=spec.chunk_size,
                                   overlap=spec.chunk_overlap)]
    texts += [it.input for it in testset.test]
    worst = retriever.embedder.worst_usd(texts)
    if worst > 0:
        raise ValueError(
            f"--max-cost-usd {cap:g}: this run would first embed its corpus and questions "
            f"(up to {usd4(worst)}), which the cap does not cover yet; build them once without "
            f"--max-cost-usd (`evalkit estimate` says what that costs), then the capped run "
            f"reads them from the cache and pays for its calls only")


@dataclass(frozen=True)
class _Folder:
    """What run.json is written from, besides the sessions' counts."""

    run_dir: Path
    config: RunConfig
    testset: Testset
    setup: dict[str, Any]
    notional: bool  # no provider of the run bills anybody (local)
    subset: dict[str, Any] | None
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    variants: tuple[Variant, ...] = ()
    samples: bool = False  # some provider can answer one request differently twice
    sends_messages: dict[str, bool] = field(default_factory=dict)  # per variant (run.json)
    servers: dict[str, str | None] = field(default_factory=dict)  # per variant (run.json)


def _run_session(folder: _Folder, provider, jobs: list[Job], progress: bool) -> RunStats:
    """One session: open it in run.json, run the jobs against the run's budget, close it."""
    run_dir, config = folder.run_dir, folder.config
    cache = ResponseCache(Path(config.cache_dir) / "responses.sqlite")

    def price_open(calls: list[OpenCall]) -> Unjournaled:
        return unjournaled(calls, lambda key: _cached_cost(cache, key))

    try:
        session = _write_run_json(folder, None, price_open)
        _write_items(run_dir, folder.testset)
        # the cap covers the run: start from what every earlier session paid or left open
        journal = Journal(run_dir / "predictions.jsonl")
        before = journal.read()
        spent_before = (journal_totals(before)["spent_usd"]
                        + price_open(open_calls(run_dir / "calls.jsonl")).usd)
        if config.batch:
            stats = run_batches(
                jobs, provider=provider, cache=cache, journal=journal, run_dir=run_dir,
                settings=BatchSettings(poll_interval_s=config.batch_poll_interval_s),
                max_cost_usd=config.max_cost_usd, spent_before_usd=spent_before)
        else:
            stats = asyncio.run(run_jobs(
                jobs, total=len(jobs), provider=provider, cache=cache, journal=journal,
                concurrency=config.concurrency, max_cost_usd=config.max_cost_usd,
                spent_before_usd=spent_before,
                dearest_call_usd=max((p.cost_usd for p in before if not p.cached), default=0),
                ledger=CallLedger(run_dir / "calls.jsonl", session), progress=progress,
                label=folder.testset.name))
        _write_run_json(folder, stats, price_open)
    finally:
        cache.close()
    return stats


def _cached_cost(cache: ResponseCache, key: str) -> float | None:
    """What a call cost if its answer reached the cache (a kill before the journal line)."""
    hit = cache.get(key)
    return None if hit is None else hit.cost_usd


class _Stages:
    """One console line per setup stage, with how long it took: `with say.stage() as note:
    ...; done("what happened")` prints "what happened (1.23 s)". Silent without `echo`."""

    def __init__(self, echo: Callable[[str], None] | None):
        self.echo = echo

    @contextmanager
    def stage(self):
        start, said = time.perf_counter(), []
        yield said.append
        if self.echo is not None and said:
            self.echo(f"{said[-1]} ({time.perf_counter() - start:.2f} s)")


def same_testset(recorded: dict, testset: Testset) -> bool:
    """Whether run.json's `testset` record is of `testset` as it is now: its hash, or for a
    run recorded before the hash covered only the set's inputs (no `hash_of`), the hash of
    every file under the folder, as it was then computed."""
    if recorded.get("hash_of") == HASH_OF:
        return recorded.get("hash") == testset.hash
    return recorded.get("hash") == all_files_hash(Path(testset.path))


def refuse_to_start(testset: Testset, config: RunConfig, cfg: ExperimentConfig, *,
                    say: _Stages | None = None, whole: Testset | None = None) -> list:
    """Raise RunRefused with every cheap refusal, else LeakageRefused if the split leaks: the
    rules `evalkit testset check` reports (evalkit.pipeline.preflight), before any call.
    Returns the leaking pairs that --allow-leakage let through (none: []). `whole`: the
    set before --limit/--sample cut it, whose scan decides (see `leakage_refusal`)."""
    say = say or _Stages(None)
    refusals = preflight.cheap_refusals(testset, config.variants, provider=config.provider,
                                        finetune_dir=config.finetune_dir, config=cfg,
                                        provider_options=config.provider_options,
                                        batch=config.batch, epochs=config.epochs or 1)
    if len(refusals) == 1 and refusals[0].error is not None:
        raise refusals[0].error  # one reason: its own typed error (a ConfigError, say)
    if refusals:
        raise preflight.RunRefused(refusals)
    with say.stage() as note:
        leaks, leak = preflight.leakage_refusal(testset, threshold=config.leakage_threshold,
                                                allow=config.allow_leakage,
                                                memo_dir=Path(config.cache_dir) / "leakage",
                                                whole=whole)
        note(f"{testset.name}: leakage check of {len(testset.test)} test x "
             f"{len(testset.train)} train items: "
             + (preflight.leak_counts(leaks) if leaks else "none"))
    if leak:
        raise preflight.LeakageRefused([leak])
    return leaks


def _grade(run_dir: Path, judge: tuple[judging.JudgeSettings, Provider], *, cache_dir: str,
           progress: bool) -> None:
    """The judge grades every answer (its journal resumes; its cost stays in judge.json)."""
    settings, provider = judge
    cache = ResponseCache(Path(cache_dir) / "responses.sqlite")
    try:
        judging.grade_run(run_dir, provider, settings, cache=cache, progress=progress)
    finally:
        cache.close()


def _preflight(variants: list[Variant], testset: Testset, ctx: VariantContext
               ) -> dict[str, Request]:
    """Build and render one full request per variant (its examples and passages) before any
    call, so a rung that cannot work at all (a broken template, say) is one clear error, not
    a failure journaled for every item. Its price was checked by the shared pre-flight.
    Returns each variant's request (the first test item's)."""
    out = {}
    for v in variants:
        try:
            out[v.name] = request = v.build(testset.test[0], ctx)
            request.messages()
        except Exception as exc:
            raise ValueError(f"{testset.path}: variant {v.name!r} cannot build a request: "
                             f"{exc}") from exc
    return out


def _server(provider: Provider, request: Request) -> str | None:
    """The base URL that answers the variant's requests, however it was given (--base-url,
    the config's `provider: base_url:`, the variant's own, OPENAI_BASE_URL), user:password@
    scrubbed: the analysis charges self-hosting only to your own server, and can tell only
    from run.json (`servers`). None: the provider's default server, or none (local)."""
    url = provider.server_for(provider.model_for(request))
    return scrub(url) if url else None


def write_scores_and_summary(run_dir: Path, testset: Testset, variants: list[str], *,
                             config: ExperimentConfig | None = None) -> dict:
    """Score the journal and write scores.csv and summary.json (no provider involved).

    With several epochs, every answer is scored (epoch_scores.csv, with an `epoch` column)
    and scores.csv holds each item's mean over its epochs, so intervals and paired steps
    work on item means: clustered by item, as repeated samples of one item are not
    independent. Scoring and analysis are imported here, not at the top: they pull in
    pandas, scipy and scikit-learn (~2 s of CPU), which a run needs only after its last call
    (issue 16.3)."""
    from evalkit.analysis import summary as analysis
    from evalkit.scoring.score import item_means, score_predictions

    preds = latest(Journal(run_dir / "predictions.jsonl").read())
    items = {it.id: it for it in testset.test}
    scores = score_predictions(run_dir.name, testset.task, items, preds, docs=testset.docs,
                               external=judging.judge_scores(run_dir))
    if any(p.epoch for p in preds):
        by_epoch = score_predictions(run_dir.name, testset.task, items, preds,
                                     docs=testset.docs, with_epoch=True,
                                     external=judging.judge_scores(run_dir))
        by_epoch.to_csv(run_dir / "epoch_scores.csv", index=False)
        scores = item_means(by_epoch)
    scores.to_csv(run_dir / "scores.csv", index=False)
    first = [p for p in preds if p.epoch == 0]  # per-item records (macro-F1, call counts)
    summary = analysis.analyze(analysis.from_testset(run_dir, testset, variants, scores, first,
                                                     config=config))
    analysis.write_summary(run_dir, summary)
    return summary


def rescore(run_dir: Path | str) -> dict:
    """Score a finished run again from its folder and its test set (after the judge graded
    it): scores.csv and summary.json rewritten, no model call. The test set must be the one
    the run answered."""
    config, testset = rescorable(run_dir)
    return write_scores_and_summary(Path(run_dir), testset, config.variants)


def rescorable(run_dir: Path | str) -> tuple[RunConfig, Testset]:
    """The run's config and the test set it answered, or the error `rescore` would raise:
    `evalkit judge score` asks first, so a changed or missing test set costs no judge call."""
    run_dir = Path(run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    config = RunConfig(**record["config"])
    testset, _ = subsets.apply(load_testset(config.testset), config.subset_spec())
    if not same_testset(record["testset"], testset):
        raise ValueError(f"{run_dir / 'run.json'}: field 'testset.hash': the test set in "
                         f"{testset.path} changed since this run; its scores would mix two "
                         f"versions of it")
    return config, testset


def _prepare_fine_tune(config: RunConfig, testset: Testset, variants: list[Variant]
                       ) -> dict[str, Any]:
    """The fine-tuned model the fine-tuned rungs call, as their provider (a declared
    variant's own, else the run's) finds or trains it; `trained_now` says whether it was
    trained by this call (for the stage line)."""
    name = fine_tune_provider(variants, config.provider) or config.provider
    before = finetune.load_record(Path(config.finetune_dir), finetune.default_name(testset, name))
    record = provider_class(name).fine_tune_for_run(testset, config.finetune_dir)
    return {"trained_now": record != before, "fine_tuned_model": record.fine_tuned_model,
            "fine_tune": asdict(record), "warnings": finetune.check_record_for(testset, record)}


def _new_run_dir(reports: Path, name: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = inside(reports, reports / f"{stamp}-{check_name(name, what='test set name')}",
                  what="run folder")
    run_dir, n = base, 1
    while run_dir.exists():
        n += 1
        run_dir = Path(f"{base}-{n}")
    run_dir.mkdir(parents=True)
    return run_dir


def _write_run_json(folder: _Folder, stats: RunStats | None,
                    price_open: Callable[[list[OpenCall]], Unjournaled]) -> int:
    """Write run.json; `stats=None` opens a session, else closes the last one. Returns the
    session's index (the call ledger's session number). `price_open` prices calls left open
    in the ledger (paid, perhaps, but never journaled). `folder.notional`: the provider
    bills nobody (local), so no cost in it was paid; `folder.subset`: the --limit/--sample
    record (None: every test item ran)."""
    run_dir, config, testset = folder.run_dir, folder.config, folder.testset
    path = run_dir / "run.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    sessions = previous.get("sessions", [])
    preds = Journal(run_dir / "predictions.jsonl").read()
    still_open = open_calls(run_dir / "calls.jsonl")
    if stats is None:
        _close_killed(sessions, preds, still_open, price_open)
        sessions.append({"status": "running", "started_at": _now(),
                         "journal_lines_at_start": len(preds)})
    else:
        lost = price_open([c for c in still_open if c.session == len(sessions) - 1])
        sessions[-1] = {**sessions[-1], "status": stats.stop or "finished",
                        "finished_at": _now(), **asdict(stats), **_lost_fields(lost)}
    record = {
        "run_id": run_dir.name,
        "created_at": previous.get("created_at", _now()),
        "config": asdict(config),
        "experiment_config": folder.experiment.sections,
        "testset": {"name": testset.name, "path": str(testset.path), "hash": testset.hash,
                    "hash_of": HASH_OF, "n_test": len(testset.test), "n_train": len(testset.train),
                    "n_docs": len(testset.docs), "files": testset.file_hashes},
        "subset": folder.subset,  # n_test above counts the items this run holds
        "epochs": {"k": config.epochs, "sampling": folder.samples},
        # messages.jsonl holds each request's messages; `sent`: whether the variant's provider
        # sent them as chat messages (else it read the Request's fields: the local provider)
        "messages": {"file": "messages.jsonl", "sent": folder.sends_messages},
        # the server each variant's requests go to, for the analysis' hosting line
        "servers": folder.servers,
        "task": testset.task.to_record(),  # lets `summarize` work from the folder alone
        # every field of every variant: the analysis reads kinds from here, never from names
        "variant_specs": {v.name: v.spec() for v in folder.variants},
        "setup": folder.setup,
        "git_commit": _git_commit(),
        "billing": {"notional": folder.notional},
        "versions": _versions(),
        "sessions": sessions,
        "totals": run_totals(sessions, preds),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)
    return len(sessions) - 1


def _close_killed(sessions: list[dict], preds: list[Prediction], still_open: list[OpenCall],
                  price_open: Callable[[list[OpenCall]], Unjournaled]) -> None:
    """Sessions left "running" were killed: count their jobs from the journal lines they
    wrote and the calls they left open (paid, perhaps, but never journaled)."""
    for n, s in enumerate(sessions):
        if s.get("status") != "running":
            continue
        end = sessions[n + 1]["journal_lines_at_start"] if n + 1 < len(sessions) else len(preds)
        written = preds[s.get("journal_lines_at_start", 0):end]
        lost = price_open([c for c in still_open if c.session == n])
        s.update(status="killed", jobs=len(written) + lost.calls,
                 calls=sum(not p.cached for p in written) + lost.calls,
                 cache_hits=sum(p.cached for p in written),
                 errors=sum(p.error_class is not None for p in written),
                 spent_usd=sum(p.cost_usd for p in written if not p.cached) + lost.usd,
                 **_lost_fields(lost))


def _lost_fields(lost: Unjournaled) -> dict[str, Any]:
    return {"unjournaled_calls": lost.calls, "unjournaled_usd_estimate": lost.usd,
            "unjournaled_priced_from_usage": lost.from_usage}


def run_totals(sessions: list[dict], preds: list[Prediction]) -> dict[str, Any]:
    """The run's counts over every session: jobs and HTTP attempts from the sessions, the
    rest from the journal, plus calls paid but never journaled (an estimate)."""
    totals = {k: sum(s.get(k) or 0 for s in sessions)
              for k in ("jobs", "skipped_budget", "wall_s",
                        # answers the server cut at the output limit, and answers it gave
                        # no token count for (billed at bounds), as their calls were made
                        "cut_at_limit", "usage_estimated")}
    totals.update(journal_totals(preds))
    metered = [s for s in sessions if s.get("http_attempts") is not None]
    if metered:
        attempts = sum(s["http_attempts"] for s in metered)
        totals["http_attempts"] = attempts
        totals["retries"] = attempts - sum(s.get("calls", 0) for s in metered)
    lost_calls = sum(s.get("unjournaled_calls") or 0 for s in sessions)
    lost_usd = sum(s.get("unjournaled_usd_estimate") or 0.0 for s in sessions)
    totals["unjournaled"] = {
        "calls": lost_calls, "usd_estimate": lost_usd,
        "how": "calls in flight when a session was killed: each priced from its cached "
               "answer's usage where the cache has it, else at the worst case reserved"}
    totals["spent_journaled_usd"] = totals["spent_usd"]
    totals["spent_usd"] += lost_usd  # an estimate when lost_calls > 0
    return totals


def _write_items(run_dir: Path, testset: Testset) -> None:
    """The test items beside the predictions, so the run folder alone can be reported on."""
    path = run_dir / "items.jsonl"
    if path.is_file():
        return
    with path.open("w", encoding="utf-8") as fh:
        for it in testset.test:
            fh.write(json.dumps({"id": it.id, "input": it.input, "expected": it.expected,
                                 "doc_ids": list(it.doc_ids), "cluster": it.cluster},
                                ensure_ascii=False) + "\n")


def journal_totals(preds: list) -> dict[str, Any]:
    """Calls, cache hits, errors and spend, counted from the journal itself.

    A session killed mid-run never writes its own counts, but every answer it paid for is in
    the journal; counting from there keeps `totals` true across kills and resumes.
    """
    paid = [p for p in preds if not p.cached]
    failed = sum(p.error_class is not None for p in latest(preds))
    waits = [p.queue_s for p in paid if p.queue_s is not None]
    return {"calls": len(paid), "cache_hits": len(preds) - len(paid),
            "errors": failed,  # what the report shows: items whose latest attempt failed
            "failed_items": failed,
            "error_lines": sum(p.error_class is not None for p in preds),  # ever written
            "spent_usd": sum(p.cost_usd for p in paid),
            "notional_usd": sum(p.cost_usd for p in preds if p.error_class is None),
            # client-side wait before each call was sent, kept apart from latency_s (the
            # server's send-to-last-byte time) so queueing never reads as a slow model
            "queue_p50_s": _quantile(waits, 0.50), "queue_p95_s": _quantile(waits, 0.95)}


def _quantile(values: list[float], q: float) -> float | None:
    """The q-quantile, linearly interpolated (numpy.percentile's default); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo), 6)


def _point_latest(run_dir: Path, testset_name: str) -> None:
    """`reports/latest` -> newest run; `reports/latest-<testset>` -> newest run of that set."""
    for name in ("latest", f"latest-{testset_name}"):
        link, tmp = run_dir.parent / name, run_dir.parent / f".{name}.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(run_dir.name, tmp)
        os.replace(tmp, link)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _git_commit() -> str | None:
    """The commit of the checkout evalkit's code runs from, wherever the run is started
    (a user's data folder is not evalkit's repo); None when it is not a git checkout (an
    installed package), which the report says in so many words."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in (DISTRIBUTION, "pandas", "numpy", "scikit-learn", "jinja2", "click", "openai"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out

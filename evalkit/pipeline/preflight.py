"""Pre-flight: every refusal `evalkit run` would make, found before anything is paid for.

`run_experiment` and `evalkit testset check` both call `cheap_refusals` and `leakage_refusal`,
so the check exits non-zero exactly when the run would refuse; there is no second copy of the
rules to drift. The order is cheapest first, because the leakage scan takes seconds on a large
set and a missing `docs/` should not wait for it:

1. the experiment config's `economics:` section (a typo, a per-variant entry naming no rung);
2. a known provider that can answer the task type; then each variant: a known name (a
   preset, or one declared under `variants:` in the config, its base and overrides checked);
   `docs/` for a rung that retrieves; `train.jsonl` for few-shot examples; what the provider's
   `fine_tune_missing` says its fine-tuned rungs lack (local: a train split to train on;
   others: a recorded model);
3. the run's providers, built as the run builds them (evalkit.pipeline.routing) but never
   called: a credential the server needs and the environment lacks (OpenAI itself without
   OPENAI_API_KEY; a local server needs none), a broken `provider:` or `pricing:` section;
   `--batch` where the run would answer live (a provider without a batch API, two providers,
   more than one epoch); a model with no known price (priced on one bare request per rung:
   the price depends on the model, not on the examples or passages a rung adds);
   then the LLM judge, when the run is judged: a `judge:` section with a model for a task
   that names the judge metric, its provider built, its model priced, its human `labels`
   readable (`judge_for`);
4. leakage: test items that are (nearly) train items, unless allowed. Counted as items and as
   pairs, since one test item can match several train rows.

Nothing here reaches the network: providers are constructed, which reads the environment
and the price tables shipped with evalkit, and no request is sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from evalkit.config import ExperimentConfig
from evalkit.data import leakage
from evalkit.data.leakage import LeakPair, find_leaks
from evalkit.data.testset import Testset
from evalkit.pipeline.routing import Providers, Route, fine_tune_provider
from evalkit.providers import Provider, embeddings, provider_class
from evalkit.strategies.variants import MissingCorpus, Variant, VariantContext, resolve
from evalkit.tasks.classification import alike_labels

LEAKS_LISTED = 20  # pairs shown in a refusal; `testset check --show-all` lists every one


@dataclass(frozen=True)
class Refusal:
    """One reason the run would not start. `check` names the rule (config, variant, docs,
    train, fine-tune, provider, price, batch, embeddings, judge, leakage); `message` says
    where and how to fix it."""

    check: str
    message: str
    error: Exception | None = field(default=None, compare=False)  # the typed error, if any


class RunRefused(ValueError):
    """The run would refuse to start; `refusals` says every reason found."""

    def __init__(self, refusals: list[Refusal]):
        self.refusals = refusals
        super().__init__("\n".join(r.message for r in refusals))


class LeakageRefused(RunRefused):
    """The test set leaks into train and the user did not pass --allow-leakage."""


def cheap_refusals(testset: Testset, variants: list[str], *, provider: str,
                   finetune_dir: str | Path, config: ExperimentConfig,
                   provider_options: Mapping[str, Any] | None = None, batch: bool = False,
                   epochs: int = 1) -> list[Refusal]:
    """Every refusal that needs no scan of the data: milliseconds on any size of set.

    `provider_options` (--base-url, --model), `batch` and `epochs` are the run's: they
    decide which providers it builds and whether they can do what it asks."""
    out = []
    if config.path is not None:  # no config, no economics section to get wrong
        from evalkit.analysis.summary import check_config  # deferred: scipy, pandas
        try:
            check_config(config, ladder=variants)
        except ValueError as exc:
            out.append(Refusal("config", str(exc), exc))
    try:
        provider_cls: type[Provider] | None = provider_class(provider)
    except ValueError as exc:  # an unknown provider: its error lists the known ones
        out.append(Refusal("provider", str(exc), exc))
        provider_cls = None
    if provider_cls is not None:
        try:  # e.g. a plug-in task type the local provider has no answerer for
            provider_cls.check_task_type(testset.task.type)
        except ValueError as exc:
            out.append(Refusal("provider", str(exc), exc))
    resolved: list[Variant] = []  # known, with their data: their providers are built next
    retrieving = False  # some known rung retrieves: an embedding index would be built
    for name in variants:
        try:
            (variant,) = resolve([name], testset, config)
        except MissingCorpus as exc:
            out.append(Refusal("docs", str(exc), exc))
            continue
        except ValueError as exc:  # an unknown name
            out.append(Refusal("variant", str(exc), exc))
            continue
        retrieving = retrieving or bool(variant.rag_k)
        own = provider_cls
        if variant.provider and variant.provider != provider:
            try:
                own = provider_class(variant.provider)
            except ValueError as exc:
                out.append(Refusal("provider", f"variant {name!r}: {exc}", exc))
                continue
        needs = _needs(variant, testset, provider=own, finetune_dir=Path(finetune_dir))
        out.extend(needs)
        if own is not None and not any(r.check == "fine-tune" for r in needs):
            resolved.append(variant)  # (a rung with no fine-tuned model has none to price)
    if provider_cls is not None:
        out.extend(provider_refusals(testset, resolved, provider=provider_cls,
                                     options=provider_options or {}, config=config,
                                     finetune_dir=str(finetune_dir), batch=batch,
                                     epochs=epochs))
    if retrieving:
        out.extend(Refusal("embeddings", problem)
                   for problem in embeddings.embedding_problems(config, provider_options or {}))
    try:
        judge_for(config, testset)
    except ValueError as exc:
        out.append(Refusal("judge", str(exc), exc))
    return out


def _needs(variant: Variant, testset: Testset, *, provider: type[Provider] | None,
           finetune_dir: Path) -> list[Refusal]:
    """What one rung needs beyond its name and docs/: train.jsonl, a fine-tuned model."""
    out = []
    if variant.few_shot_k and not testset.train:
        out.append(Refusal("train", f"{testset.path}: variant {variant.name!r} needs a "
                           f"train.jsonl to draw its few-shot examples from"))
    if variant.needs_recorded_fine_tune and provider is not None:
        problem = provider.fine_tune_missing(testset, str(finetune_dir))
        if problem:
            out.append(Refusal("fine-tune", f"variant {variant.name!r}: {problem}"))
    return out


BATCH_REFUSAL = ("--batch needs a provider with a batch API (openai), the same for every "
                 "variant, and one epoch; this run answers live only")


def provider_refusals(testset: Testset, variants: list[Variant], *, provider: type[Provider],
                      options: Mapping[str, Any], config: ExperimentConfig,
                      finetune_dir: str, batch: bool, epochs: int) -> list[Refusal]:
    """What the run's providers would refuse, found by building them as the run does (one
    per route, none called): a missing credential or a bad provider section, `--batch` the
    run cannot honour, a rung whose model has no price. Messages are the run's own."""
    try:  # the fine-tuned rungs' own provider's record (the run's unless they name one)
        ft_provider = fine_tune_provider(variants, provider.name)
    except ValueError as exc:
        return [Refusal("fine-tune", str(exc), exc)]
    record = (provider_class(ft_provider).recorded_fine_tune(testset, finetune_dir)
              if ft_provider else None)
    providers = Providers(provider.name, dict(options), config,
                          fine_tune=asdict(record) if record else None,
                          finetune_dir=finetune_dir)
    out: list[Refusal] = []
    failed: dict[Route, Refusal] = {}  # a route's build error, said once for all its rungs
    built: dict[str, Provider] = {}
    routes: set[Route] = set()
    for variant in variants:
        try:  # a local rung given a model or base_url is a config error
            route = providers.route(variant, 0)
        except ValueError as exc:
            out.append(Refusal("provider", str(exc), exc))
            continue
        routes.update(providers.route(variant, e) for e in range(epochs))
        if route in failed:
            continue
        try:
            built[variant.name] = providers.for_variant(variant, 0)
        except ValueError as exc:  # no key for OpenAI itself, a bad provider: section, ...
            failed[route] = Refusal("provider", str(exc), exc)
            out.append(failed[route])
    if batch and (len(routes) > 1 or epochs > 1
                  or not all(provider_class(r.provider).supports_batches for r in routes)):
        out.append(Refusal("batch", BATCH_REFUSAL))
    ctx = VariantContext(testset, fine_tuned_model=record.fine_tuned_model if record else None)
    for variant in variants:
        if variant.name in built and testset.test:
            out.extend(_price_refusal(variant, built[variant.name], testset, ctx))
    return out


def judge_for(config: ExperimentConfig, testset: Testset) -> tuple[Any, Provider] | None:
    """The LLM judge that grades this run, if any, as (JudgeSettings, provider): the config's
    `judge:` section when it says `score: true` or task.yaml names the judge metric (which
    then needs the section). Raises ValueError when the run could not be judged: no judge
    for a named metric, a bad section, its provider not buildable (no key), its model not
    priced, its human `labels` file missing or malformed. Both the pre-flight and the run
    call it, so neither learns this after the run."""
    from evalkit.tasks.judged import JUDGE_METRIC
    named = JUDGE_METRIC in testset.task.metrics
    if not named and "judge" not in config.sections:
        return None  # the common case, without importing the judge's machinery
    from evalkit.scoring import judge as judging
    settings = judging.judge_settings(config)
    if named and (settings is None or not settings.model):
        where = config.path or "no experiment config (--config)"
        raise ValueError(f"{testset.path}: task.yaml scores the metric '{JUDGE_METRIC}', "
                         f"which needs an LLM judge: give the experiment config ({where}) a "
                         f"judge: section with a model")
    if settings is None or not (settings.score or named):
        return None
    provider = judging.judge_provider(settings, config)
    probe = judging.judge_request(judging.JudgeCase("preflight", "?", ("?",), "?"),
                                  rubric=settings.rubric, model=settings.model)
    try:  # a judge whose calls cannot be priced would fail on every answer, after the run
        provider.estimate_cost(probe)
    except Exception as exc:
        raise ValueError(f"the judge ({settings.model}) cannot be priced, so its cost could "
                         f"not be kept: {exc}") from exc
    if settings.labels:  # read after every answer is graded: a bad file would fail only then
        judging.load_labels(settings.labels)
    return settings, provider


def _price_refusal(variant: Variant, provider: Provider, testset: Testset,
                   ctx: VariantContext) -> list[Refusal]:
    """A rung whose calls cannot be priced could keep neither its cost nor a budget: refused
    before the first call. Priced on a bare request (no examples, no passages): the price is
    the model's, and a bare request needs no few-shot pool or index built to ask."""
    bare = replace(variant, few_shot_k=0, rag_k=0).build(testset.test[0], ctx)
    try:
        provider.estimate_cost(bare)
    except Exception as exc:  # UnknownPrice (a LookupError), a bad pricing entry, ...
        return [Refusal("price", f"variant {variant.name!r} cannot be priced, so its cost "
                        f"and budget could not be kept: {exc}")]
    return []


def leakage_refusal(testset: Testset, *, threshold: float, allow: bool,
                    memo_dir: Path | None = None, whole: Testset | None = None
                    ) -> tuple[list[LeakPair], Refusal | None]:
    """The leaking pairs (most similar first), and the refusal they make unless allowed.

    With `whole` (the set before --limit or --sample cut `testset`), the scan is the whole
    set's, and its pairs of the items kept are the answer: the TF-IDF weights the cosine
    rests on come from the texts scanned, so a subset scanned alone found pairs the whole
    set did not (`check` passed, `run --sample 30` refused) and could miss others.

    With `memo_dir` (`<cache-dir>/leakage`), a scan of the same items at the same threshold
    with the same code and libraries is read back instead of run again (evalkit/data/
    leakage.py says what the key covers), so `testset check` then `run`, or a second run of
    a set, start their calls without the seconds of scikit-learn a scan takes."""
    scanned = whole if whole is not None else testset
    memo = (leakage.memo_path(memo_dir, scanned.test, scanned.train, threshold=threshold)
            if memo_dir is not None and scanned.test and scanned.train else None)
    leaks = leakage.read_memo(memo) if memo is not None else None
    if leaks is None:
        leaks = find_leaks(scanned.test, scanned.train, threshold=threshold)
        if memo is not None:
            leakage.write_memo(memo, leaks)
    if scanned is not testset:
        kept = {it.id for it in testset.test}
        train = {it.id for it in testset.train}
        leaks = [p for p in leaks if p.test_id in kept and p.train_id in train]
    if not leaks or allow:
        return leaks, None
    listing = "\n".join(f"  {p.test_id} ~ {p.train_id} (cosine {p.similarity:.3f})"
                        for p in leaks[:LEAKS_LISTED])
    more = (f"\n  ... and {len(leaks) - LEAKS_LISTED} more pairs (`evalkit testset check "
            f"--show-all` lists them)" if len(leaks) > LEAKS_LISTED else "")
    return leaks, Refusal("leakage", f"{testset.path}: {leak_counts(leaks)} at cosine >= "
                          f"{threshold}:\n{listing}{more}\nfix the split, or pass "
                          f"--allow-leakage")


def leak_counts(leaks: list[LeakPair]) -> str:
    """'3 test items leak into train (5 pairs)': items and pairs, never one for the other."""
    items = len({p.test_id for p in leaks})
    return (f"{items} test item{'s' if items != 1 else ''} leak{'s' if items == 1 else ''} "
            f"into train ({len(leaks)} pair{'s' if len(leaks) != 1 else ''})")


# What `testset check` says beside the refusals: none of it stops a run.


def balance_notes(testset: Testset) -> list[str]:
    """Per-label counts in each split, and a warning per label missing from one (a label
    with no train items cannot be learned or shown; one with no test items is not measured)."""
    if not testset.task.labels:
        return []
    test = _counts(testset.test)
    train = _counts(testset.train)
    width = max(len(label) for label in testset.task.labels)
    lines = [f"  {'label':<{width}}  test  train"]
    lines += [f"  {label:<{width}}  {test.get(label, 0):>4}  {train.get(label, 0):>5}"
              for label in testset.task.labels]
    for split, counts, present in (("test", test, True), ("train", train, bool(testset.train))):
        missing = [label for label in testset.task.labels if not counts.get(label)]
        if present and missing:
            lines.append(f"warning: labels with no {split} items: {', '.join(missing)}")
    for group in alike_labels(testset.task.labels):
        lines.append(f"warning: labels that differ only in case or separators: "
                     f"{' / '.join(map(repr, group))} (an answer counts as one of them only "
                     f"when it spells it exactly; merge them if they are one intent)")
    return lines


def _counts(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for it in items:
        out[str(it.expected)] = out.get(str(it.expected), 0) + 1
    return out


def detectable_line(testset: Testset) -> str:
    """The smallest step up the ladder this test set can show at 80 % power (paired t test,
    two-sided, alpha 0.05): in standard units (delta / sd of the per-item differences, as
    statsmodels' TTestPower solves it), and in points of the primary metric when
    ASSUMED_CHANGED of the items change between two rungs (0/1 differences with mean delta
    then have sd sqrt(share - delta^2), so delta = d * sqrt(share / (1 + d^2))). Clusters
    shrink the effective sample: with clusters the same is given counting each cluster as
    one item, the worst case."""
    from evalkit.analysis.stats import ASSUMED_CHANGED, POWER, detectable_effect

    def pts(n: int) -> float | None:
        """Points detectable, or None when even every changed item moving one way (delta =
        share, so d = share / sqrt(share - share^2)) is too small a step for n items."""
        d = detectable_effect(n)
        delta = d * math.sqrt(ASSUMED_CHANGED / (1 + d * d))
        return None if delta > ASSUMED_CHANGED else 100 * delta

    def said(points: float | None) -> str:
        if points is None:
            return (f"none in points of {testset.task.primary_metric} when "
                    f"{ASSUMED_CHANGED:.0%} of the items change between two rungs (at most "
                    f"{100 * ASSUMED_CHANGED:.0f} pts can move, too small a step for {n} items)")
        return (f"about {points:.1f} pts of {testset.task.primary_metric} when "
                f"{ASSUMED_CHANGED:.0%} of the items change between two rungs")

    n = len(testset.test)
    if n < 2:
        return f"detectable difference: none with {n} test item; a paired test needs 2 or more"
    line = (f"detectable difference at {POWER:.0%} power: {detectable_effect(n):.3f} sd of the "
            f"paired differences with {n} test items, {said(pts(n))}")
    clusters = {it.cluster for it in testset.test if it.cluster is not None}
    if len(clusters) >= 2:
        worst = pts(len(clusters))
        line += (f" ({f'up to {worst:.1f} pts' if worst is not None else 'none'} if items "
                 f"within each of the {len(clusters)} clusters move together)")
    return line


def ok_line(testset: Testset, variants: list[str], leaks: list[LeakPair]) -> str:
    """The closing line when nothing refuses; it claims only what was checked and held."""
    facts = [f"{leak_counts(leaks)}, allowed" if leaks else "no leakage"]
    if testset.task.labels:
        test, train = _counts(testset.test), _counts(testset.train)
        if all(test.get(label) for label in testset.task.labels):
            facts.append("every label in the test split"
                         + (" and in train" if all(train.get(x) for x in testset.task.labels)
                            else ""))
    if any(it.doc_ids for it in (*testset.test, *testset.train)):
        facts.append("every doc id resolves")
    return (f"ok: `evalkit run` would start {', '.join(variants)} on {testset.name}: "
            f"{'; '.join(facts)}")

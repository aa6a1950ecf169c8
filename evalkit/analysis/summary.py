"""summary.json (schema 2): per-variant uncertainty and costs, paired steps, economics, verdicts.

Input is the run folder only — scores.csv, run.json, items.jsonl (clusters, expected labels)
and predictions.jsonl (predicted labels for macro-F1) — plus the `economics:` settings, so
`evalkit summarize RUN --config other.yaml` re-decides a run under new economics without any
model call. The field names are a contract with the gate and the report; every one is
documented in docs/summary-schema.md. Undefined numbers are written as null, never NaN.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from evalkit.analysis import abstention, stats
from evalkit.analysis.decision import recommend
from evalkit.analysis.economics import (
    Economics,
    RungKind,
    VariantCost,
    assumption_line,
    assumptions,
    parse_economics,
    step_cost,
    variant_cost,
)
from evalkit.analysis.epochs import summarize_epochs
from evalkit.analysis.judged import judge_section
from evalkit.analysis.verdicts import ACCEPTED, StepEvidence, decide, no_change, usd
from evalkit.config import ConfigError, ExperimentConfig
from evalkit.data.testset import Task, Testset
from evalkit.run.budget import usd4
from evalkit.run.journal import Journal, Prediction, latest
from evalkit.run.runfolder import read_items, read_json, read_scores
from evalkit.scoring.score import COST_METRICS
from evalkit.tasks import METRICS, bounds, metrics_in, run_metrics, task_type
from evalkit.tasks.base import RunContext
from evalkit.tasks.classification import macro_f1_codes

__all__ = ["analyze", "compare", "load_run", "macro_f1_codes", "summarize_run"]

SCHEMA_VERSION = 2
RETRIEVAL_METRICS = metrics_in("retrieval")


@dataclass(frozen=True)
class VariantSpec:
    """What the economics need to know about a variant, read from its recorded spec (never
    from its name): does it use examples, does it retrieve, does it train, is it self-hosted."""

    fine_tuned: bool = False
    retrieves: bool = False
    few_shot: bool = False
    self_hosted: bool = False  # served from your own OpenAI-compatible server (base_url)

    @classmethod
    def from_record(cls, spec: dict[str, Any], *,
                    run_base_url: str | None = None) -> VariantSpec:
        """From run.json's variant_specs entry; accepts flat (`rag_k`, `few_shot_k`) and
        nested (`rag: {k}`, `few_shot: {k}`) shapes."""
        def k(flat: str, nested: str) -> int:
            inner = spec.get(nested)
            value = spec.get(flat) or (inner.get("k") if isinstance(inner, dict) else 0)
            return int(value or 0)

        base_url = spec.get("base_url") or run_base_url
        return cls(fine_tuned=bool(spec.get("fine_tuned") or spec.get("fine_tuned_model")),
                   retrieves=k("rag_k", "rag") > 0, few_shot=k("few_shot_k", "few_shot") > 0,
                   self_hosted=bool(base_url) and not _is_api_host(str(base_url)))


def _is_api_host(url: str) -> bool:
    """Is `url` a hosted API, whose per-token prices already include the hosting?

    A base URL genai-prices knows as a provider's API (OpenAI, Azure OpenAI, OpenRouter,
    Together, Groq, Fireworks, Mistral, Bedrock, ...: its `api_pattern`) is one; any other
    (localhost, a private address, your own vLLM host name) is taken as your own server and
    costed `self_hosted_usd_per_month` unless the config gives the variant `fixed_monthly_usd`.
    Only the hosting line depends on this; the assumptions list says which rungs got it.

    A pattern is matched against `scheme://host[:port]/path` with the host lower-cased (host
    names are case-insensitive) and must cover the whole host, not a prefix of a longer one
    (`api.openai.com.mycorp.internal` is yours), unless it leaves the rest of the host open by
    ending in a dot (genai-prices' moonshot pattern). It may go on into the path: its closing
    `(?:/|$)` (arcee, bedrock) or a path of its own (router.huggingface.co/groq)."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:  # an unparsable port or address: no host genai-prices knows
        return False
    if not parts.scheme or not host:
        return False
    authority = f"{parts.scheme.lower()}://{host}"
    text = authority + ("" if port is None else f":{port}") + parts.path
    for pattern in _api_patterns():
        found = pattern.match(text)
        if found and (found.end() >= len(authority) or found.group().endswith(".")):
            return True
    return False


@functools.lru_cache(maxsize=1)
def _api_patterns() -> tuple[re.Pattern[str], ...]:
    from genai_prices import data_snapshot
    found = []
    for provider in data_snapshot.get_snapshot().providers:
        try:
            found.append(re.compile(provider.api_pattern))
        except (re.error, TypeError):  # a pattern this Python cannot compile: not a match
            continue
    return tuple(found)


@dataclass
class RunData:
    """Everything the analysis reads, gathered from a run folder (or an in-memory run)."""

    run_id: str
    testset: str
    task_type: str
    primary_metric: str
    ladder: list[str]
    scores: pd.DataFrame
    item_ids: list[str]
    clusters: dict[str, str] = field(default_factory=dict)  # item id -> cluster, when given
    expected: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)  # classification labels, for macro-F1
    task: Task | None = None  # what task.yaml said (run.json's record); see task_view()
    predictions: list[Prediction] = field(default_factory=list)
    setup: dict[str, Any] = field(default_factory=dict)  # run.json "setup"
    specs: dict[str, VariantSpec] = field(default_factory=dict)
    economics: Economics = field(default_factory=Economics)
    notes: list[str] = field(default_factory=list)
    comparisons: list[tuple[str, str]] = field(default_factory=list)  # config `compare:`
    judge: dict[str, Any] | None = None  # judge.json: the LLM judge's model, rubric and cost
    stop: dict[str, Any] = field(default_factory=dict)  # why the last session ended early
    variant_specs: dict[str, dict] = field(default_factory=dict)  # run.json, shown as given
    epoch_scores: pd.DataFrame | None = None  # epoch_scores.csv when the run had --epochs
    sampling: bool = True  # some provider of the run samples (else epochs cannot differ)
    _by_key: dict[tuple[str, str], pd.Series] | None = field(default=None, init=False,
                                                              repr=False)

    def _table(self) -> dict[tuple[str, str], pd.Series]:
        """scores.csv indexed once by (variant, metric) -> values by item id."""
        if self._by_key is None:
            s = self.scores.astype({"item_id": str, "variant": str, "metric": str})
            s = s.drop_duplicates(["variant", "metric", "item_id"], keep="last")
            self._by_key = {key: g.set_index("item_id")["value"].astype(float)
                            for key, g in s.groupby(["variant", "metric"], sort=False)}
        return self._by_key

    def values(self, variant: str, metric: str) -> np.ndarray:
        """One value per test item (item order), NaN where not scorable or not scored."""
        series = self._table().get((variant, metric))
        if series is None:
            return np.full(len(self.item_ids), math.nan)
        return series.reindex(self.item_ids).to_numpy(dtype=float)

    def task_view(self) -> Task:
        """The task the outputs are parsed against (built from the type, primary metric and
        labels for a run folder that recorded no more than that)."""
        if self.task is not None:
            return self.task
        return Task.from_record({"type": self.task_type, "primary_metric": self.primary_metric,
                                 "labels": self.labels})

    def has(self, variant: str, metric: str) -> bool:
        return (variant, metric) in self._table()

    def cluster_list(self, ids: list[str] | None = None) -> np.ndarray | None:
        """Per-item cluster labels (an item without one stands alone); None if none given."""
        if not self.clusters:
            return None
        ids = self.item_ids if ids is None else ids
        return stats.cluster_labels([self.clusters.get(i) for i in ids], ids)


# ---- gathering the inputs --------------------------------------------------------------------

def economics_from(run_record: dict[str, Any], config: ExperimentConfig | None) -> Economics:
    """The economics to judge by: the given config, else the one recorded in run.json."""
    if config is not None:
        return parse_economics(config.section("economics"), path=config.path)
    recorded = (run_record.get("experiment_config") or {}).get("economics")
    origin = (run_record.get("config") or {}).get("config_path")
    label = f"run.json experiment_config (recorded from {origin})" if origin else "run.json"
    return parse_economics(recorded, path=label)


def parse_compare(raw: Any, *, path: Path | str | None) -> list[tuple[str, str]]:
    """The config's `compare:` list: extra pairs to judge, each `[A, B]` or `{from: A, to: B}`
    (B against A), e.g. `compare: [[large-prompted, small-ft]]`."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(path, "must be a list of pairs, e.g. [[rag, fine-tuned]]",
                          field="compare")
    pairs = []
    for i, entry in enumerate(raw):
        if isinstance(entry, dict) and set(entry) == {"from", "to"}:
            entry = [entry["from"], entry["to"]]
        if not (isinstance(entry, list) and len(entry) == 2
                and all(isinstance(x, str) and x for x in entry) and entry[0] != entry[1]):
            raise ConfigError(path, f"must be two different variant names, [A, B] or "
                              f"{{from: A, to: B}}; got {entry!r}", field=f"compare[{i}]")
        pairs.append((entry[0], entry[1]))
    return pairs


def comparisons_from(run_record: dict[str, Any],
                     config: ExperimentConfig | None) -> list[tuple[str, str]]:
    """The `compare:` pairs: from the given config, else the one recorded in run.json."""
    if config is not None:
        return parse_compare(config.sections.get("compare"), path=config.path)
    recorded = (run_record.get("experiment_config") or {}).get("compare")
    return parse_compare(recorded, path="run.json experiment_config")


def check_config(cfg: ExperimentConfig, *, ladder: list[str] | None = None) -> Economics:
    """Validate the economics section before a run, so a typo fails fast, not after scoring.

    With `ladder`, a per-variant entry naming no variant of the run is an error: a typo there
    would silently drop that variant's setup cost from every verdict.
    """
    econ = parse_economics(cfg.section("economics"), path=cfg.path)
    for name in econ.variants:
        if ladder is not None and name not in ladder:
            raise ConfigError(cfg.path, f"names no variant of this run (its ladder: "
                              f"{', '.join(ladder)})", field=f"economics.variants.{name}")
    for i, pair in enumerate(parse_compare(cfg.sections.get("compare"), path=cfg.path)):
        for name in pair:
            if ladder is not None and name not in ladder:
                raise ConfigError(cfg.path, f"names {name!r}, no variant of this run (its "
                                  f"ladder: {', '.join(ladder)})", field=f"compare[{i}]")
    return econ


def _specs(record: dict[str, Any], ladder: list[str],
           notes: list[str] | None = None) -> dict[str, VariantSpec]:
    """Each variant's kind from run.json's recorded spec; a variant without one is costed as
    a plain prompt (and a note says so), never guessed from its name."""
    recorded = record.get("variant_specs") or {}
    run_base_url = ((record.get("config") or {}).get("provider_options") or {}).get("base_url")
    # the server each variant was sent to, however it was named (flag, config, environment);
    # a run.json from before `servers` knows the --base-url flag only
    servers = record.get("servers") if isinstance(record.get("servers"), dict) else {}
    out = {}
    for name in ladder:
        spec = recorded.get(name)
        if isinstance(spec, dict):
            out[name] = VariantSpec.from_record(spec,
                                                run_base_url=servers.get(name) or run_base_url)
        else:
            out[name] = VariantSpec()
            if notes is not None:
                notes.append(f"run.json records no spec for {name!r}: costed as a plain prompt")
    return out


def _read_record(run_dir: Path) -> dict[str, Any]:
    return read_json(run_dir / "run.json", required=False)


def _last_stop(record: dict[str, Any]) -> dict[str, Any]:
    """The last session's early stop (budget, interrupt, unreachable server), if any."""
    sessions = record.get("sessions") or [{}]
    last = sessions[-1] if isinstance(sessions[-1], dict) else {}
    if not last.get("stop"):
        return {}
    return {k: last.get(k) for k in ("stop", "stop_message", "cap_usd", "run_spent_usd",
                                     "skipped_budget", "skipped_worst_usd")}


def partial(data: RunData) -> dict[str, Any]:
    """Whether some (variant, item) pairs have no answer yet, and why: a verdict on part of
    the test set must say so wherever it is shown (summary.json, the console, the report)."""
    answered = {(p.variant, p.item_id) for p in data.predictions}
    missing = sum((v, i) not in answered for v in data.ladder for i in data.item_ids)
    if not missing:
        return {"partial": False, "partial_reason": None, "missing_answers": 0}
    expected = len(data.ladder) * len(data.item_ids)
    reason = f"{missing} of {expected} (variant, item) answers missing"
    stop = data.stop
    if stop.get("stop") == "budget" and stop.get("cap_usd") is not None:
        reason = (f"budget stop: spent {usd4(stop['run_spent_usd'])} of the "
                  f"{usd4(stop['cap_usd'])} cap; {reason}")
    elif stop.get("stop"):
        reason = f"{stop['stop']}: {stop.get('stop_message') or ''}; {reason}"
    return {"partial": True, "partial_reason": reason, "missing_answers": missing}


def from_testset(run_dir: Path | str, testset: Testset, variants: list[str],
                 scores: pd.DataFrame, predictions: list[Prediction], *,
                 config: ExperimentConfig | None = None) -> RunData:
    """RunData for a run whose test set is loaded in memory (the `evalkit run` path)."""
    run_dir = Path(run_dir)
    record = _read_record(run_dir)
    notes: list[str] = []
    specs = _specs(record, variants, notes)
    task = testset.task
    return RunData(
        run_id=record.get("run_id", run_dir.name), testset=testset.name, task_type=task.type,
        primary_metric=task.primary_metric, ladder=list(variants), scores=scores,
        item_ids=[it.id for it in testset.test],
        clusters={it.id: it.cluster for it in testset.test if it.cluster is not None},
        expected={it.id: it.expected for it in testset.test}, labels=list(task.labels),
        task=task, predictions=predictions, setup=record.get("setup") or {}, specs=specs,
        economics=economics_from(record, config), notes=notes,
        comparisons=comparisons_from(record, config),
        judge=read_json(run_dir / "judge.json", required=False) or None, stop=_last_stop(record),
        **_repeats(run_dir, record))


def _repeats(run_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The recorded variant specs and, after --epochs, the per-epoch scores."""
    path = run_dir / "epoch_scores.csv"
    return {"variant_specs": record.get("variant_specs") or {},
            "epoch_scores": read_scores(path, extra=("epoch",)) if path.is_file() else None,
            "sampling": bool((record.get("epochs") or {}).get("sampling", True))}


def load_run(run_dir: Path | str, *, config: ExperimentConfig | None = None) -> RunData:
    """Gather a run folder's files for analysis (no model call, no test-set folder needed)."""
    run_dir = Path(run_dir)
    record = read_json(run_dir / "run.json")
    scores = read_scores(run_dir / "scores.csv")
    items = read_items(run_dir / "items.jsonl")
    ts, notes = record.get("testset") or {}, []
    task = record.get("task") or {}
    task_type, primary, labels = task.get("type"), task.get("primary_metric"), task.get("labels")
    if task_type is None or primary is None:
        task_type, primary, labels = _task_from_testset(ts.get("path"))
        notes.append("task type and primary metric read from the test-set folder "
                     "(run.json predates recording them)")
    ladder = list((record.get("config") or {}).get("variants") or
                  scores["variant"].drop_duplicates().tolist())
    if items:
        item_ids = [str(it["id"]) for it in items]
    else:
        item_ids = scores["item_id"].drop_duplicates().tolist()
        notes.append("items.jsonl missing: no clusters, no macro-F1")
    return RunData(
        run_id=record.get("run_id", run_dir.name), testset=ts.get("name", ""),
        task_type=task_type, primary_metric=primary, ladder=ladder, scores=scores,
        item_ids=item_ids,
        clusters={str(it["id"]): str(it["cluster"]) for it in items
                  if it.get("cluster") is not None},
        expected={str(it["id"]): it.get("expected") for it in items},
        labels=list(labels or []),
        task=Task.from_record(task) if task.get("type") and task.get("primary_metric") else None,
        predictions=latest(Journal(run_dir / "predictions.jsonl").read()),
        setup=record.get("setup") or {}, specs=_specs(record, ladder, notes),
        economics=economics_from(record, config), notes=notes,
        comparisons=comparisons_from(record, config),
        judge=read_json(run_dir / "judge.json", required=False) or None, stop=_last_stop(record),
        **_repeats(run_dir, record))


def _task_from_testset(path: str | None) -> tuple[str, str, list[str]]:
    from evalkit.data.testset import load_task  # only for run folders from before schema 2

    if not path:
        raise ValueError("run.json records neither the task nor the test-set path")
    task = load_task(Path(path) / "task.yaml")
    return task.type, task.primary_metric, list(task.labels)


# ---- per variant -----------------------------------------------------------------------------

def _metric_names(data: RunData) -> list[str]:
    present = [m for m in data.scores["metric"].drop_duplicates() if m not in COST_METRICS]
    quality = [m for m in present if m not in RETRIEVAL_METRICS]
    ordered = [data.primary_metric] if data.primary_metric in quality else []
    ordered += [m for m in quality if m not in ordered]
    return ordered + [m for m in RETRIEVAL_METRICS if m in present]


def _binary(metric: str) -> bool:
    """The metric is registered as 0/1 per item (accuracy, exact_match, contains)."""
    spec = METRICS.find(metric)
    return spec is not None and spec.binary


def _all_equal(values: np.ndarray) -> bool:
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    return len(x) > 0 and bool(np.all(x == x[0]))


def _same_value_ci(est: stats.Estimate, metric: str, clusters) -> dict[str, Any]:
    """A graded metric (token F1, field accuracy) equal on every item: a t interval is [c, c]
    at any n (sd 0), so 12 items all scoring 1.0 read 1.000 [1.000, 1.000]. At most a share u
    of the items (or clusters) could score otherwise, each anywhere in the metric's range."""
    lo, hi = bounds(metric) or (0.0, 1.0)
    units = est.n if clusters is None else (est.n_clusters or est.n)
    u = stats.no_change_bound(units)
    c = est.mean
    return {"ci_low": c - u * (c - lo), "ci_high": c + u * (hi - c), "method": "same_value_exact"}


def _unit_width(metric: str) -> bool:
    """The metric's registered range spans at most 1, so a difference of two is within +/-1."""
    rng = bounds(metric)
    return rng is not None and rng[1] - rng[0] <= 1.0


def clip(low: float, high: float, metric: str, *, difference: bool = False
         ) -> tuple[float, float]:
    """An interval clipped to the metric's registered range, [lo, hi] (a difference of two to
    [lo - hi, hi - lo]): the true value lies there, so clipping never lowers coverage, and it
    avoids "+122 pts". A metric without a finite range (latency, an unregistered one) is left
    as it is."""
    rng = bounds(metric)
    if rng is None:
        return low, high
    lo_bound, hi_bound = (rng[0] - rng[1], rng[1] - rng[0]) if difference else rng
    return (max(low, lo_bound) if not math.isnan(low) else low,
            min(high, hi_bound) if not math.isnan(high) else high)


def _estimate_dict(e: stats.Estimate, metric: str, clustered: bool) -> dict[str, Any]:
    low, high = clip(e.ci_low, e.ci_high, metric)
    return {"mean": e.mean, "se": e.se, "ci_low": low, "ci_high": high, "n": e.n,
            "n_nan": e.n_nan, "method": "t_clustered" if clustered else "t",
            "n_clusters": e.n_clusters}


def _run_metric(data: RunData, variant: str, metric: str, compute, seed: int
                ) -> dict[str, Any] | None:
    """A per-run metric (macro-F1, ...) with a bootstrap interval over the scorable items."""
    if not data.expected:
        return None
    task = data.task_view()
    kind = task_type(task.type)
    mine = {p.item_id: p for p in data.predictions if p.variant == variant}
    ids = [i for i in data.item_ids if i in mine and mine[i].error_class is None
           and mine[i].output is not None and i in data.expected]
    n_nan = len(data.item_ids) - len(ids)  # failed calls and items never answered
    statistic = compute(RunContext(task, [data.expected[i] for i in ids],
                                   [kind.parse(mine[i].output, task) for i in ids]))
    if statistic is None:
        return None
    clusters = data.cluster_list(ids)
    b = stats.bootstrap_ci(statistic, len(ids), clusters=clusters, seed=seed)
    low, high = clip(b.ci_low, b.ci_high, metric)
    return {"mean": b.estimate, "se": b.se, "ci_low": low, "ci_high": high,
            "n": len(ids), "n_nan": n_nan,
            "method": "bootstrap_clustered" if clusters is not None else "bootstrap",
            "n_clusters": None if clusters is None else len(set(clusters.tolist()))}


def run_metric_deltas(data: RunData, a: str, b: str, *, seed: int = 0) -> dict[str, Any]:
    """B - A on each per-run quality metric (slot F1, macro-F1, ...), with a paired bootstrap
    interval: the same resampled items for both variants, so the interval is the paired one
    (a per-run metric has no per-item differences to average). A failed call counts as a
    wrong answer, as in a step: its parse is None (no label, no JSON record)."""
    if not data.expected:
        return {}
    task = data.task_view()
    kind = task_type(task.type)
    ids = [i for i in data.item_ids if i in data.expected]
    parsed = {}
    for name in (a, b):
        mine = {p.item_id: p for p in data.predictions if p.variant == name}
        parsed[name] = [kind.parse(mine[i].output, task) if i in mine and mine[i].output
                        is not None and mine[i].error_class is None else None for i in ids]
    expected = [data.expected[i] for i in ids]
    clusters = data.cluster_list(ids)
    unchanged = parsed[a] == parsed[b]  # every answer the same: resampling shows only zeros
    units = len(ids) if clusters is None else len(set(clusters.tolist()))
    out: dict[str, Any] = {}
    for spec in run_metrics(task.type, task.metrics):
        sa = spec.compute(RunContext(task, expected, parsed[a]))
        sb = spec.compute(RunContext(task, expected, parsed[b]))
        if sa is None or sb is None or not ids:
            continue
        boot = stats.bootstrap_ci(lambda ix, sa=sa, sb=sb: sb(ix) - sa(ix), len(ids),
                                  clusters=clusters, seed=seed)
        low, high = clip(boot.ci_low, boot.ci_high, spec.name, difference=True)
        method = "paired_bootstrap" + ("_clustered" if clusters is not None else "")
        if unchanged and _unit_width(spec.name):  # as a step does: [-u, +u], never [0, 0]
            bound = stats.no_change_bound(units)
            low, high, method = -bound, bound, "no_change_exact"
        out[spec.name] = {"delta": boot.estimate, "ci_low": low, "ci_high": high,
                          "se": boot.se, "n": len(ids), "method": method}
    return out


def _quantile(x: np.ndarray, q: float) -> float:
    x = x[~np.isnan(x)]
    return float(np.quantile(x, q)) if len(x) else math.nan


def _mean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else math.nan


def _kind(data: RunData, name: str) -> RungKind:
    spec = data.specs.get(name, VariantSpec())
    return RungKind(few_shot=spec.few_shot, retrieves=spec.retrieves, fine_tuned=spec.fine_tuned,
                    self_hosted=spec.self_hosted)


def _variant_cost(data: RunData, name: str) -> VariantCost:
    kind = _kind(data, name)
    return variant_cost(name, _mean(data.values(name, "cost_usd")), data.economics,
                        fine_tuned=kind.fine_tuned, retrieves=kind.retrieves,
                        few_shot=kind.few_shot, self_hosted=kind.self_hosted,
                        run_setup=_setup_for(data, name))


def _setup_for(data: RunData, name: str) -> dict[str, Any]:
    """run.json's setup as it applies to one variant. `setup.retrieval` is the embedding
    index of task.yaml's chunking (and its query embeddings): a variant that retrieved with
    TF-IDF, or from another chunking, did not use it, so its cost is not that variant's (a
    TF-IDF rung was charged the embedding index and the per-query embeddings)."""
    retrieval = data.setup.get("retrieval")
    spec = data.variant_specs.get(name) or {}
    if not isinstance(retrieval, dict) or not isinstance(spec, dict):
        return data.setup
    same = spec.get("retriever") in (None, retrieval.get("retriever")) and all(
        spec.get(k) is None or retrieval.get(k) is None or spec.get(k) == retrieval.get(k)
        for k in ("chunk_size", "chunk_overlap"))
    return data.setup if same else {k: v for k, v in data.setup.items() if k != "retrieval"}


def _not_applicable(data: RunData, variant: str, task: Task) -> dict[str, str]:
    """The task's metrics that do not apply to this variant at all (groundedness on a rung
    without retrieval), each with the reason its spec gives: said, never shown as a 0."""
    out = {}
    for m in task.metrics:
        spec = METRICS.find(m)
        if spec is not None and spec.applies is not None and not data.has(variant, m):
            out[m] = spec.not_applicable or "does not apply to this variant"
    return out


def summarize_variant(data: RunData, name: str, *, seed: int) -> tuple[dict, VariantCost]:
    clusters = data.cluster_list()
    out: dict[str, Any] = {"metrics": {}}
    for m in _metric_names(data):
        if data.has(name, m):
            values = data.values(name, m)
            est = stats.mean_ci(values, clusters=clusters)
            out["metrics"][m] = _estimate_dict(est, m, clusters is not None)
            if est.n and _binary(m) and stats.is_binary(values):
                # a 0/1 metric (registry) with 0/1 values (not epoch means): Wilson (clustered
                # t while it is defined), valid at small n and at 0 % / 100 %, where a t
                # interval collapses to [p, p]
                ci = stats.proportion_ci(values, clusters=clusters)
                out["metrics"][m].update(ci_low=ci.low, ci_high=ci.high, method=ci.method)
            elif est.n and _unit_width(m) and _all_equal(values):
                out["metrics"][m].update(_same_value_ci(est, m, clusters))
    task = data.task_view()
    not_applicable = _not_applicable(data, name, task)
    if not_applicable:
        out["not_applicable"] = not_applicable
    for spec in run_metrics(task.type, task.metrics):
        est = _run_metric(data, name, spec.name, spec.compute, seed)
        if est is not None:
            out["metrics"][spec.name] = est
    answerability = abstention.split(data, name)
    if answerability is not None:
        out["answerability"] = answerability
    cost_values = data.values(name, "cost_usd")
    cost = _variant_cost(data, name)
    latency = data.values(name, "latency_s")
    out["latency"] = {"p50_s": _quantile(latency, 0.5), "p95_s": _quantile(latency, 0.95)}
    out["tokens"] = {"input": _mean(data.values(name, "input_tokens")),
                     "output": _mean(data.values(name, "output_tokens"))}
    out["cost"] = {"per_query_usd": cost.per_query_usd,
                   "per_query_retrieval_usd": cost.per_query_retrieval_usd,
                   "setup_usd": cost.setup_usd,
                   "fixed_monthly_usd": cost.fixed_monthly_usd, "tco_usd": cost.tco_usd,
                   "total_notional_usd": _total_cost(data, name, cost_values),
                   "setup_items": [asdict(i) for i in cost.setup_items],
                   "monthly_items": [asdict(i) for i in cost.monthly_items]}
    preds = [p for p in data.predictions if p.variant == name]
    out["calls"] = {"items": len(preds), "errors": sum(p.error_class is not None for p in preds),
                    "cached": sum(p.cached for p in preds)}
    return out, cost


def _total_cost(data: RunData, name: str, per_item: np.ndarray) -> float:
    """What the variant's answers cost in all: after --epochs the sum over every epoch's
    answers (epoch_scores.csv), not over scores.csv's per-item means, which is one epoch's
    worth and left the variants' totals a third of run.json's after --epochs 3."""
    by_epoch = data.epoch_scores
    if by_epoch is not None and {"variant", "metric", "value"} <= set(by_epoch.columns):
        rows = by_epoch[(by_epoch["variant"] == name) & (by_epoch["metric"] == "cost_usd")]
        if len(rows):
            return float(np.nansum(rows["value"].to_numpy(dtype=float)))
    return float(np.nansum(per_item))


# ---- steps -----------------------------------------------------------------------------------

def _judged(data: RunData, variant: str, metric: str) -> tuple[np.ndarray, int]:
    """A variant's values for judging a step: a failed call counts as a wrong answer (0).

    Per-variant means leave failed items out (NaN, counted in n_nan); a step must not, or a
    rung that fails on every hard item would look better than the rung below it.
    """
    values = data.values(variant, metric).copy()
    failed = {p.item_id for p in data.predictions if p.variant == variant and p.error_class}
    rows = [i for i, item in enumerate(data.item_ids) if item in failed and np.isnan(values[i])]
    values[rows] = 0.0
    return values, len(rows)


def _step(data: RunData, a: str, b: str, metric: str, costs: dict[str, VariantCost], *,
          same_as: str | None = None) -> dict:
    """B judged against A; `same_as`: an earlier rung whose outputs B repeats on every item."""
    (va, fa), (vb, fb) = _judged(data, a, metric), _judged(data, b, metric)
    diff = stats.paired_difference(va, vb, clusters=data.cluster_list(),
                                   bounded=_unit_width(metric))
    sc = step_cost(costs[a], costs[b], diff.delta, data.economics)
    ci_low, ci_high = clip(diff.ci_low, diff.ci_high, metric, difference=True)
    needed = diff.items_needed
    if diff.n < stats.MIN_PAIRED_ITEMS:  # too few to judge: say how many would do
        needed = stats.settling_items(diff.delta, diff.sd)
    verdict = decide(StepEvidence(a, b, metric, diff.delta, ci_low, ci_high, diff.n,
                                  needed, sc.delta_tco_usd, sc.usd_per_extra_correct,
                                  diff.p_value, n_failed=fa + fb),
                     data.economics)
    if (same_as is not None and diff.n >= stats.MIN_PAIRED_ITEMS
            and costs[b].tco_usd >= costs[same_as].tco_usd):  # below 30 items: no verdict
        verdict = no_change(a, b, same_as, len(data.item_ids),
                            costs[b].tco_usd - costs[same_as].tco_usd, data.economics)
    return {
        "from": a, "to": b, "metric": metric,
        "delta": diff.delta, "ci_low": ci_low, "ci_high": ci_high,
        "p_value": diff.p_value, "p_holm": None, "items_needed": needed,
        "delta_tco_usd": sc.delta_tco_usd, "usd_per_extra_correct": sc.usd_per_extra_correct,
        "break_even_queries_per_month": sc.break_even_queries_per_month,
        "verdict": verdict.verdict, "reason": verdict.reason, "sentence": verdict.sentence,
        "same_outputs_as": same_as,
        "se": diff.se, "n": diff.n, "n_excluded": diff.n_excluded, "n_failed": fa + fb,
        "p_method": diff.p_method, "ci_method": diff.ci_method,
        "n_clusters": diff.n_clusters,
        "discordant": None if diff.discordant is None else
        {"from_only_correct": diff.discordant[0], "to_only_correct": diff.discordant[1]},
    }


def compare(data: RunData | Path | str, a: str, b: str, *, metric: str | None = None,
            config: ExperimentConfig | None = None) -> dict[str, Any]:
    """Any two variants of a run, B against A, in the shape of a step (p_holm is null: a
    comparison on request is not part of the ladder's family of tests)."""
    if not isinstance(data, RunData):
        data = load_run(data, config=config)
    _check_variants(data, [(a, b)])
    costs = {n: _variant_cost(data, n) for n in (a, b)}
    step = _step(data, a, b, metric or data.primary_metric, costs)
    step["run_metrics"] = run_metric_deltas(data, a, b)
    return step


def _check_variants(data: RunData, pairs: list[tuple[str, str]]) -> None:
    for name in (n for pair in pairs for n in pair):
        if name not in data.ladder:
            raise ValueError(f"variant {name!r} is not in this run; it has "
                             f"{', '.join(data.ladder)}")
    for name in data.economics.variants:
        if name not in data.ladder:
            raise ConfigError(None, f"names no variant of this run (its ladder: "
                              f"{', '.join(data.ladder)})", field=f"economics.variants.{name}")


def _outputs(data: RunData) -> dict[str, dict[str, str | None]]:
    """Per variant, item id -> output (None for a failed call), from the journal."""
    out: dict[str, dict[str, str | None]] = {}
    for p in data.predictions:
        out.setdefault(p.variant, {})[p.item_id] = None if p.error_class else p.output
    return out


def _same_outputs_as(outputs: dict[str, dict[str, str | None]], name: str,
                     candidates: list[str], item_ids: list[str]) -> str | None:
    """The first candidate whose outputs equal `name`'s on every item (none failed)."""
    mine = outputs.get(name, {})
    if not item_ids or any(mine.get(i) is None for i in item_ids):
        return None
    for other in candidates:
        theirs = outputs.get(other, {})
        if all(theirs.get(i) == mine[i] for i in item_ids):
            return other
    return None


def _economics(data: RunData) -> dict[str, Any]:
    """summary.json's `economics`: the resolved settings, and the assumptions the verdicts
    rest on (each with its source) with the one line the console and the report print."""
    used = assumptions(data.economics, [_kind(data, n) for n in data.ladder])
    return {**data.economics.as_dict(), "assumptions": used,
            "assumptions_line": assumption_line(used, usd=usd)}


def ladder_steps(data: RunData, costs: dict[str, VariantCost]) -> tuple[list[dict], str]:
    """Each rung after the first judged against the incumbent (verdicts.py's docstring), and
    the incumbent left at the top: the variant to ship."""
    outputs = _outputs(data)
    incumbent, steps = data.ladder[0], []
    for i, name in enumerate(data.ladder[1:], start=1):
        earlier = [incumbent, *(n for n in reversed(data.ladder[:i]) if n != incumbent)]
        same = _same_outputs_as(outputs, name, earlier, data.item_ids)
        step = _step(data, incumbent, name, data.primary_metric, costs, same_as=same)
        steps.append(step)
        if step["verdict"] in ACCEPTED:
            incumbent = name
    return steps, incumbent


def analyze(data: RunData, *, seed: int = 0,
            comparisons: list[tuple[str, str]] = ()) -> dict[str, Any]:
    """The full summary (schema 2) of one run, as a JSON-ready dict (null for undefined).

    `comparisons` (e.g. `summarize --compare`) come after the config's `compare:` pairs."""
    pairs = list(dict.fromkeys([*data.comparisons, *comparisons]))
    _check_variants(data, pairs)
    variants, costs = {}, {}
    for name in data.ladder:
        variants[name], costs[name] = summarize_variant(data, name, seed=seed)
        if name in data.variant_specs:
            variants[name]["spec"] = data.variant_specs[name]
    steps, incumbent = ladder_steps(data, costs)
    for step, p in zip(steps, stats.holm([s["p_value"] for s in steps]), strict=True):
        step["p_holm"] = p
    compared = [_step(data, a, b, data.primary_metric, costs) for a, b in pairs]
    notes = abstention.annotate(variants, [*steps, *compared], data.primary_metric)
    for step in (*steps, *compared):
        step["run_metrics"] = run_metric_deltas(data, step["from"], step["to"], seed=seed)
    summary = {
        "schema_version": SCHEMA_VERSION,
        "run_id": data.run_id,
        "testset": data.testset,
        "task_type": data.task_type,
        "primary_metric": data.primary_metric,
        "ladder": list(data.ladder),
        "confidence": stats.CONFIDENCE,
        "clustered": bool(data.clusters),
        "bootstrap": {"seed": seed, "resamples": stats.BOOTSTRAP_RESAMPLES},
        "economics": _economics(data),
        "recommendation": _caution_if_leaking(_caution_if_abstaining(
            recommend(steps, incumbent, data.ladder, data.economics), variants,
            data.primary_metric), data.setup.get("leakage")),
        "variants": variants,
        "steps": steps,
        "comparisons": compared,
        "notes": [*data.notes, *notes, *_setup_warnings(data)],
        "leakage": _leakage(data.setup.get("leakage")),
        **partial(data),
    }
    judge = judge_section(data.judge, data.scores, data.task_view().metrics)
    if judge is not None:  # the judge's model, cost (apart) and agreement, beside its scores
        summary["judge"] = judge
    if data.epoch_scores is not None:
        summary["epochs"] = summarize_epochs(data.epoch_scores, ladder=list(data.ladder),
                                             metric=data.primary_metric,
                                             sampling=data.sampling)
    return to_json_ready(summary)


def _caution_if_abstaining(rec: dict[str, Any], variants: dict[str, dict],
                           metric: str) -> dict[str, Any]:
    """A recommendation to ship a rung whose score comes mostly from abstaining says so in
    its own sentence: "Ship prompt-only" must not read as "prompt-only answers well" when it
    answers none of the answerable questions."""
    answerability = variants.get(rec["variant"], {}).get("answerability")
    if abstention.flagged(answerability):
        caution = abstention.sentence(rec["variant"], metric, answerability)
        rec = {**rec, "sentence": f"{rec['sentence']} Caution: {caution}",
               "reasons": [*rec["reasons"], caution]}
    return rec


def _setup_warnings(data: RunData) -> list[str]:
    """What the run warned of before its first call (run.json setup.warnings: labels train
    never shows, a fine-tune recorded for other data), kept beside the verdicts; the leakage
    caution is left out here, the recommendation's sentence carries it."""
    leak = (data.setup.get("leakage") or {}).get("sentence")
    return [str(w) for w in data.setup.get("warnings") or [] if w != leak]


def _leakage(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """summary.json's `leakage`: what --allow-leakage let through (run.json setup.leakage),
    without the item ids (they stay in run.json); None when nothing leaked."""
    if not record:
        return None
    return {k: record.get(k) for k in ("test_items", "of", "pairs", "threshold", "sentence")}


def _caution_if_leaking(rec: dict[str, Any], leakage: dict[str, Any] | None
                        ) -> dict[str, Any]:
    """A recommendation from a run that was let through with test items leaking into train
    says so in its own sentence: a few-shot or fine-tuned win may be the leak's."""
    if not leakage:
        return rec
    return {**rec, "sentence": f"{rec['sentence']} Caution: {leakage['sentence']}.",
            "reasons": [*rec["reasons"], leakage["sentence"]]}


def to_json_ready(obj: Any) -> Any:
    """NaN and infinities become null, numpy scalars plain numbers, tuples lists."""
    if isinstance(obj, dict):
        return {k: to_json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_ready(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def write_summary(run_dir: Path | str, summary: dict[str, Any]) -> Path:
    path = Path(run_dir) / "summary.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2, allow_nan=False, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    tmp.replace(path)
    return path


def summarize_run(run_dir: Path | str, *, config: ExperimentConfig | None = None,
                  comparisons: list[tuple[str, str]] = ()) -> dict[str, Any]:
    """Recompute and write summary.json from the run folder's files (no model call)."""
    summary = analyze(load_run(run_dir, config=config), comparisons=comparisons)
    write_summary(run_dir, summary)
    return summary


def verdict_lines(summary: dict[str, Any]) -> list[str]:
    """The one-sentence verdicts of the ladder's steps (and any comparisons), for the console;
    on a partial run each says so, after a line saying why."""
    lines = [s["reason"] for s in (*summary.get("steps", []), *summary.get("comparisons", []))]
    if not summary.get("partial"):
        return lines
    return [f"PARTIAL RUN ({summary.get('partial_reason')}): the verdicts below use only the "
            f"answers so far", *(f"[partial] {line}" for line in lines)]

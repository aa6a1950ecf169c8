"""What a variant costs to own, and what a step up the ladder costs per extra correct answer.

The `economics:` section of the experiment config (every key optional; defaults below, and
where each default comes from in docs/economics.md):

```yaml
economics:
  queries_per_month: 10000       # V: production volume the decision is for
  horizon_months: 12             # H: how long the variant would run before being revisited
  value_per_correct_usd: 0.05    # what one more correct answer is worth to you
  non_inferiority_margin: 0.02   # quality loss (metric units, 0.02 = 2 points) you would accept
  hourly_rate_usd: 100           # people's hours, fully loaded
  compute_usd_per_hour: 0.10     # prices measured compute time (indexing) when not given in $
  # people's time per kind of rung, read from each variant's recorded spec (not its name)
  prompt_hours: 4                # every rung: writing and checking the instructions
  prompt_upkeep_hours_per_month: 0.5
  few_shot_hours: 2              # rungs with examples: picking and checking them
  few_shot_upkeep_hours_per_month: 0.5
  rag_hours: 8                   # retrieving rungs: chunking, indexing, retrieval checks
  rag_upkeep_hours_per_month: 2  # corpus upkeep: new and changed documents, re-indexing
  fine_tune_hours: 16            # fine-tuned rungs: data preparation and training rounds
  fine_tune_retrain_months: 6    # re-trained this often (the base model moves on) ...
  fine_tune_retrain_hours: 8     # ... at this many hours plus the recorded training cost
  self_hosted_usd_per_month: 700 # hosting for a rung served from your own server (base_url)
  variants:                      # per variant, by name; all optional
    fine-tuned:
      training_usd: 25           # default: run.json setup.fine_tune.training_cost_usd
      indexing_usd: 0            # default (RAG): run.json setup.retrieval.indexing_usd for an
                                 # embedding index, else setup.indexing_time_s x compute rate
      hours: {writing_examples: 6, reviewing: 2}   # replaces the kind's build hours
      upkeep_hours_per_month: 1  # replaces the kind's upkeep hours
      hourly_rate_usd: 80        # default: the section's hourly_rate_usd
      other_setup_usd: 0
      fixed_monthly_usd: 40      # hosting; replaces the self-hosted default
```

Per variant, with volume V a month over H months: TCO = setup + H * (fixed + V * per_query),
where setup is training, indexing and people's build hours; fixed (per month) is upkeep
hours, re-training (its hours and training cost spread over the interval) and hosting; and
per_query is the measured mean cost of a call plus, for retrieving variants with an
embedding index, run.json's setup.retrieval.query_usd_per_query (queries are embedded apart).
Per step A -> B: delta TCO = TCO_B - TCO_A; cost per extra correct answer =
delta TCO / (delta quality * V * H); break-even volume = the V at which the two TCOs are equal.
`assumptions` lists every input a verdict used with its source, `default` or `config`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.config import ConfigError

DEFAULTS: dict[str, float] = {  # reasoned estimates; docs/economics.md says why each
    "queries_per_month": 10_000.0,
    "horizon_months": 12.0,
    "value_per_correct_usd": 0.05,
    "non_inferiority_margin": 0.02,
    "hourly_rate_usd": 100.0,
    "compute_usd_per_hour": 0.10,  # the local provider's notional CPU price (finetune.py)
    "prompt_hours": 4.0,
    "prompt_upkeep_hours_per_month": 0.5,
    "few_shot_hours": 2.0,
    "few_shot_upkeep_hours_per_month": 0.5,
    "rag_hours": 8.0,
    "rag_upkeep_hours_per_month": 2.0,
    "fine_tune_hours": 16.0,
    "fine_tune_retrain_months": 6.0,
    "fine_tune_retrain_hours": 8.0,
    "self_hosted_usd_per_month": 700.0,
}
POSITIVE = ("queries_per_month", "horizon_months", "fine_tune_retrain_months")  # 0 is moot
VARIANT_KEYS = ("training_usd", "indexing_usd", "hours", "upkeep_hours_per_month",
                "hourly_rate_usd", "other_setup_usd", "fixed_monthly_usd")


@dataclass(frozen=True)
class VariantEconomics:
    """What the config says about one variant; None means "use the default"."""

    training_usd: float | None = None
    indexing_usd: float | None = None
    hours: dict[str, float] | None = None  # None: the rung kind's default build hours
    upkeep_hours_per_month: float | None = None
    hourly_rate_usd: float | None = None
    other_setup_usd: float = 0.0
    fixed_monthly_usd: float | None = None  # None: hosting by default (self-hosted rungs)


@dataclass(frozen=True)
class Economics:
    """The parsed `economics:` section."""

    queries_per_month: float = DEFAULTS["queries_per_month"]
    horizon_months: float = DEFAULTS["horizon_months"]
    value_per_correct_usd: float = DEFAULTS["value_per_correct_usd"]
    non_inferiority_margin: float = DEFAULTS["non_inferiority_margin"]
    hourly_rate_usd: float = DEFAULTS["hourly_rate_usd"]
    compute_usd_per_hour: float = DEFAULTS["compute_usd_per_hour"]
    prompt_hours: float = DEFAULTS["prompt_hours"]
    prompt_upkeep_hours_per_month: float = DEFAULTS["prompt_upkeep_hours_per_month"]
    few_shot_hours: float = DEFAULTS["few_shot_hours"]
    few_shot_upkeep_hours_per_month: float = DEFAULTS["few_shot_upkeep_hours_per_month"]
    rag_hours: float = DEFAULTS["rag_hours"]
    rag_upkeep_hours_per_month: float = DEFAULTS["rag_upkeep_hours_per_month"]
    fine_tune_hours: float = DEFAULTS["fine_tune_hours"]
    fine_tune_retrain_months: float = DEFAULTS["fine_tune_retrain_months"]
    fine_tune_retrain_hours: float = DEFAULTS["fine_tune_retrain_hours"]
    self_hosted_usd_per_month: float = DEFAULTS["self_hosted_usd_per_month"]
    variants: dict[str, VariantEconomics] = field(default_factory=dict)
    configured: frozenset[str] = frozenset()  # the top-level keys the config set

    def for_variant(self, name: str) -> VariantEconomics:
        return self.variants.get(name, VariantEconomics())

    def source(self, key: str) -> str:
        """`config` when the config set this top-level key, else `default`."""
        return "config" if key in self.configured else "default"

    def as_dict(self) -> dict[str, Any]:
        """The resolved settings as written to summary.json's `economics`."""
        return {k: getattr(self, k) for k in DEFAULTS}


def _number(path, where: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(path, f"must be a number, got {value!r}", field=where)
    if value < 0 or (positive and value == 0):
        raise ConfigError(path, f"must be {'above' if positive else 'at least'} 0, got {value}",
                          field=where)
    return float(value)


def parse_economics(section: Mapping[str, Any] | None, *,
                    path: Path | str | None = None) -> Economics:
    """Validate the `economics:` mapping; every error names the file and the dotted field."""
    section = section or {}
    if not isinstance(section, Mapping):
        raise ConfigError(path, "must be a mapping", field="economics")
    known = (*DEFAULTS, "variants")
    for key in section:
        if key not in known:
            raise ConfigError(path, f"unknown key; known: {', '.join(known)}",
                              field=f"economics.{key}")
    top = {k: _number(path, f"economics.{k}", section[k], positive=k in POSITIVE)
           for k in DEFAULTS if k in section and section[k] is not None}
    raw_variants = section.get("variants") or {}
    if not isinstance(raw_variants, Mapping):
        raise ConfigError(path, "must be a mapping of variant name to settings",
                          field="economics.variants")
    variants = {str(name): _parse_variant(path, f"economics.variants.{name}", raw)
                for name, raw in raw_variants.items()}
    return Economics(**top, variants=variants, configured=frozenset(top))


def _parse_variant(path, where: str, raw: Any) -> VariantEconomics:
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(path, "must be a mapping", field=where)
    for key in raw:
        if key not in VARIANT_KEYS:
            raise ConfigError(path, f"unknown key; known: {', '.join(VARIANT_KEYS)}",
                              field=f"{where}.{key}")
    hours_raw = raw.get("hours")
    if hours_raw is not None and not isinstance(hours_raw, Mapping):
        raise ConfigError(path, "must be a mapping of activity to hours, e.g. "
                          "{writing_examples: 6}", field=f"{where}.hours")
    hours = None if hours_raw is None else {
        str(k): _number(path, f"{where}.hours.{k}", v) for k, v in hours_raw.items()}

    def opt(key: str) -> float | None:
        v = raw.get(key)
        return None if v is None else _number(path, f"{where}.{key}", v)

    return VariantEconomics(
        training_usd=opt("training_usd"), indexing_usd=opt("indexing_usd"), hours=hours,
        upkeep_hours_per_month=opt("upkeep_hours_per_month"),
        hourly_rate_usd=opt("hourly_rate_usd"), other_setup_usd=opt("other_setup_usd") or 0.0,
        fixed_monthly_usd=opt("fixed_monthly_usd"))


@dataclass(frozen=True)
class SetupItem:
    """One line of a variant's setup (or monthly) cost, with where its number came from."""

    item: str
    usd: float
    source: str
    hours: float | None = None
    rate_usd: float | None = None


@dataclass(frozen=True)
class RungKind:
    """What a rung is, from its recorded spec: what people build and keep up for it."""

    few_shot: bool = False
    retrieves: bool = False
    fine_tuned: bool = False
    self_hosted: bool = False


@dataclass(frozen=True)
class VariantCost:
    per_query_usd: float  # measured calls + query embeddings (retrieving variants)
    setup_usd: float
    fixed_monthly_usd: float
    tco_usd: float
    setup_items: tuple[SetupItem, ...]
    per_query_retrieval_usd: float = 0.0  # the query-embedding part of per_query_usd
    monthly_items: tuple[SetupItem, ...] = ()


def retrieval_per_query_usd(run_setup: Mapping[str, Any]) -> float:
    """Embedding one query (embedding retrievers), which the completions' costs do not hold."""
    return float((run_setup.get("retrieval") or {}).get("query_usd_per_query") or 0.0)


def _kind_parts(kind: RungKind) -> list[tuple[str, str]]:
    """(economics key prefix, what the hours are for) for each part the rung has."""
    parts = [("prompt", "prompt work")]
    if kind.few_shot:
        parts.append(("few_shot", "few-shot curation"))
    if kind.retrieves:
        parts.append(("rag", "indexing setup"))
    if kind.fine_tuned:
        parts.append(("fine_tune", "fine-tune data preparation and iterations"))
    return parts


def _default(econ: Economics, key: str) -> str:
    return f"{econ.source(key)} economics.{key}"


def _training_cost(name: str, econ: Economics, *, fine_tuned: bool,
                   run_setup: Mapping[str, Any]) -> SetupItem | None:
    v, where = econ.for_variant(name), f"economics.variants.{name}"
    if v.training_usd is not None:
        return SetupItem("training", v.training_usd, f"config {where}.training_usd")
    if not fine_tuned:
        return None
    cost = (run_setup.get("fine_tune") or {}).get("training_cost_usd")
    return SetupItem("training", float(cost or 0.0),
                     "run.json setup.fine_tune.training_cost_usd" if cost is not None
                     else "default 0 (run.json records no training cost)")


def setup_items(name: str, econ: Economics, *, fine_tuned: bool, retrieves: bool,
                run_setup: Mapping[str, Any], few_shot: bool = False) -> list[SetupItem]:
    """A variant's one-off costs: training, indexing, people's build hours, anything else.

    People's hours are the rung kind's defaults (prompt work for every rung, plus few-shot
    curation, indexing setup, fine-tune data preparation as the rung has them) unless the
    variant's own `hours:` replaces them."""
    v = econ.for_variant(name)
    where = f"economics.variants.{name}"
    items: list[SetupItem] = []
    training = _training_cost(name, econ, fine_tuned=fine_tuned, run_setup=run_setup)
    if training is not None:
        items.append(training)
    embedded = (run_setup.get("retrieval") or {}).get("indexing_usd")
    if v.indexing_usd is not None:
        items.append(SetupItem("indexing", v.indexing_usd, f"config {where}.indexing_usd"))
    elif retrieves and embedded is not None:  # an embedding index: what embedding it cost
        items.append(SetupItem("indexing", float(embedded),
                               "run.json setup.retrieval.indexing_usd"))
    elif retrieves:
        secs = run_setup.get("indexing_time_s")
        usd = float(secs or 0.0) * econ.compute_usd_per_hour / 3600.0
        items.append(SetupItem("indexing", usd,
                               "run.json setup.indexing_time_s x economics.compute_usd_per_hour"
                               if secs is not None else "default 0 (no indexing time recorded)"))
    rate = v.hourly_rate_usd if v.hourly_rate_usd is not None else econ.hourly_rate_usd
    if v.hours is not None:
        for activity, hours in v.hours.items():
            items.append(SetupItem(f"people: {activity}", hours * rate,
                                   f"config {where}.hours.{activity}", hours=hours,
                                   rate_usd=rate))
    else:
        kind = RungKind(few_shot=few_shot, retrieves=retrieves, fine_tuned=fine_tuned)
        for prefix, what in _kind_parts(kind):
            hours = getattr(econ, f"{prefix}_hours")
            items.append(SetupItem(f"people: {what}", hours * rate,
                                   _default(econ, f"{prefix}_hours"), hours=hours,
                                   rate_usd=rate))
    if v.other_setup_usd:
        items.append(SetupItem("other", v.other_setup_usd, f"config {where}.other_setup_usd"))
    return items


def monthly_items(name: str, econ: Economics, kind: RungKind, *,
                  run_setup: Mapping[str, Any]) -> list[SetupItem]:
    """A variant's recurring costs per month: people's upkeep, re-training, hosting."""
    v = econ.for_variant(name)
    where = f"economics.variants.{name}"
    rate = v.hourly_rate_usd if v.hourly_rate_usd is not None else econ.hourly_rate_usd
    items: list[SetupItem] = []
    if v.upkeep_hours_per_month is not None:
        h = v.upkeep_hours_per_month
        items.append(SetupItem("people: upkeep", h * rate,
                               f"config {where}.upkeep_hours_per_month", hours=h, rate_usd=rate))
    else:
        for prefix, what in _kind_parts(kind):
            key = f"{prefix}_upkeep_hours_per_month"
            if hasattr(econ, key):
                h = getattr(econ, key)
                items.append(SetupItem(f"people: {what} upkeep", h * rate, _default(econ, key),
                                       hours=h, rate_usd=rate))
    if kind.fine_tuned:
        every = econ.fine_tune_retrain_months
        h = econ.fine_tune_retrain_hours
        training = _training_cost(name, econ, fine_tuned=True, run_setup=run_setup)
        per_month = (h * rate + (training.usd if training else 0.0)) / every
        items.append(SetupItem(f"re-training every {every:g} months", per_month,
                               f"{_default(econ, 'fine_tune_retrain_hours')} and "
                               f"{_default(econ, 'fine_tune_retrain_months')}, plus training",
                               hours=h / every, rate_usd=rate))
    if v.fixed_monthly_usd is not None:
        items.append(SetupItem("hosting", v.fixed_monthly_usd,
                               f"config {where}.fixed_monthly_usd"))
    elif kind.self_hosted:
        items.append(SetupItem("hosting", econ.self_hosted_usd_per_month,
                               _default(econ, "self_hosted_usd_per_month")))
    return items


def tco(setup_usd: float, fixed_monthly_usd: float, per_query_usd: float, *,
        queries_per_month: float, horizon_months: float) -> float:
    """Total cost of ownership: setup + H * (fixed + V * per_query)."""
    return setup_usd + horizon_months * (fixed_monthly_usd + queries_per_month * per_query_usd)


def variant_cost(name: str, measured_per_query_usd: float, econ: Economics, *,
                 fine_tuned: bool, retrieves: bool, run_setup: Mapping[str, Any],
                 few_shot: bool = False, self_hosted: bool = False) -> VariantCost:
    """A variant's costs from its measured per-query cost, the run's setup and the config."""
    kind = RungKind(few_shot=few_shot, retrieves=retrieves, fine_tuned=fine_tuned,
                    self_hosted=self_hosted)
    items = setup_items(name, econ, fine_tuned=fine_tuned, retrieves=retrieves,
                        run_setup=run_setup, few_shot=few_shot)
    monthly = monthly_items(name, econ, kind, run_setup=run_setup)
    setup = sum(i.usd for i in items)
    fixed = sum(i.usd for i in monthly)
    retrieval = retrieval_per_query_usd(run_setup) if retrieves else 0.0
    per_query = measured_per_query_usd + retrieval
    total = tco(setup, fixed, per_query, queries_per_month=econ.queries_per_month,
                horizon_months=econ.horizon_months)
    return VariantCost(per_query, setup, fixed, total, tuple(items), retrieval, tuple(monthly))


@dataclass(frozen=True)
class StepCost:
    delta_tco_usd: float
    usd_per_extra_correct: float | None  # None when the step gains nothing (delta <= 0)
    break_even_queries_per_month: float | None  # None when the TCOs never cross at V > 0


def step_cost(a: VariantCost, b: VariantCost, delta_quality: float, econ: Economics) -> StepCost:
    """The economics of stepping from A to B with quality gain `delta_quality` (metric units)."""
    d_tco = b.tco_usd - a.tco_usd
    extra_correct = delta_quality * econ.queries_per_month * econ.horizon_months
    per_extra = d_tco / extra_correct if extra_correct > 0 and math.isfinite(d_tco) else None
    return StepCost(d_tco, per_extra, break_even_volume(a, b, econ.horizon_months))


def break_even_volume(a: VariantCost, b: VariantCost, horizon_months: float) -> float | None:
    """Monthly volume V at which TCO_A(V) = TCO_B(V), when that V is positive.

    TCO_X(V) = setup_X + H*fixed_X + H*V*per_query_X, so
    V = ((setup_B + H*fixed_B) - (setup_A + H*fixed_A)) / (H * (per_query_A - per_query_B)).
    """
    d_per_query = a.per_query_usd - b.per_query_usd
    if not math.isfinite(d_per_query) or d_per_query == 0:
        return None
    d_fixed = (b.setup_usd + horizon_months * b.fixed_monthly_usd) - \
              (a.setup_usd + horizon_months * a.fixed_monthly_usd)
    v = d_fixed / (horizon_months * d_per_query)
    return v if v > 0 else None


# ---- the assumptions a verdict rests on ------------------------------------------------------

def _kind_keys(kinds: list[RungKind]) -> list[str]:
    keys = ["queries_per_month", "horizon_months", "value_per_correct_usd",
            "non_inferiority_margin", "hourly_rate_usd", "prompt_hours",
            "prompt_upkeep_hours_per_month"]
    if any(k.few_shot for k in kinds):
        keys += ["few_shot_hours", "few_shot_upkeep_hours_per_month"]
    if any(k.retrieves for k in kinds):
        keys += ["rag_hours", "rag_upkeep_hours_per_month", "compute_usd_per_hour"]
    if any(k.fine_tuned for k in kinds):
        keys += ["fine_tune_hours", "fine_tune_retrain_months", "fine_tune_retrain_hours"]
    if any(k.self_hosted for k in kinds):
        keys += ["self_hosted_usd_per_month"]
    return keys


def assumptions(econ: Economics, kinds: list[RungKind]) -> list[dict[str, Any]]:
    """Every economics input the run's verdicts used, with its source (`default`/`config`):
    the section's keys that apply to the rung kinds present, then each per-variant setting."""
    out = [{"key": k, "value": getattr(econ, k), "source": econ.source(k)}
           for k in _kind_keys(kinds)]
    for name, v in econ.variants.items():
        for key in VARIANT_KEYS:
            value = getattr(v, key)
            if value is not None and not (key == "other_setup_usd" and value == 0):
                out.append({"key": f"variants.{name}.{key}", "value": value,
                            "source": "config"})
    return out


def _h(x: float) -> str:
    return f"{x:g} h"


def assumption_line(items: list[dict[str, Any]], *, usd) -> str:
    """One line for the console and the report, e.g. "assumed: 10,000 queries/month, 12
    months, $0.05 per correct answer, ... (defaults — set them in economics:)"."""
    v = {i["key"]: i["value"] for i in items}
    parts = [f"{v['queries_per_month']:,.0f} queries/month", f"{v['horizon_months']:g} months",
             f"{usd(v['value_per_correct_usd'])} per correct answer",
             f"{v['non_inferiority_margin'] * 100:g}-pt margin",
             f"people at {usd(v['hourly_rate_usd'])}/h",
             f"prompt work {_h(v['prompt_hours'])} + "
             f"{_h(v['prompt_upkeep_hours_per_month'])}/month"]
    if "few_shot_hours" in v:
        parts.append(f"few-shot curation {_h(v['few_shot_hours'])} + "
                     f"{_h(v['few_shot_upkeep_hours_per_month'])}/month")
    if "rag_hours" in v:
        parts.append(f"RAG indexing {_h(v['rag_hours'])} + corpus upkeep "
                     f"{_h(v['rag_upkeep_hours_per_month'])}/month")
    if "fine_tune_hours" in v:
        parts.append(f"fine-tune setup {_h(v['fine_tune_hours'])}, re-trained every "
                     f"{v['fine_tune_retrain_months']:g} months "
                     f"({_h(v['fine_tune_retrain_hours'])})")
    if "self_hosted_usd_per_month" in v:
        parts.append(f"self-hosting {usd(v['self_hosted_usd_per_month'])}/month")
    configured = [i["key"] for i in items if i["source"] == "config"]
    if not configured:
        tail = "defaults \u2014 set them in economics:"
    else:
        tail = (f"from the config: {', '.join(configured)}; the rest are defaults \u2014 set "
                f"them in economics:")
    return f"assumed: {', '.join(parts)} ({tail})"

"""What a variant costs to own, and what a step up the ladder costs per extra correct answer.

The `economics:` section of the experiment config (every key optional; defaults below):

```yaml
economics:
  queries_per_month: 10000       # V: production volume the decision is for
  horizon_months: 12             # H: how long the variant would run before being revisited
  value_per_correct_usd: 0.05    # what one more correct answer is worth to you
  non_inferiority_margin: 0.02   # quality loss (metric units, 0.02 = 2 points) you would accept
  hourly_rate_usd: 60            # default rate for people's hours
  compute_usd_per_hour: 0.10     # prices measured compute time (indexing) when not given in $
  variants:                      # per variant, by name; all optional
    fine-tuned:
      training_usd: 25           # default: run.json setup.fine_tune.training_cost_usd
      indexing_usd: 0            # default (RAG): run.json setup.retrieval.indexing_usd for an
                                 # embedding index, else setup.indexing_time_s x compute rate
      hours: {writing_examples: 6, reviewing: 2}   # people's hours, priced at the rate below
      hourly_rate_usd: 80        # default: the section's hourly_rate_usd
      other_setup_usd: 0
      fixed_monthly_usd: 40      # hosting; default 0
```

The defaults for people's hours and hosting are 0 because evalkit cannot know them; the
summary lists every setup item with where its number came from, so a 0 is visible as a default.

Per variant, with volume V a month over H months: TCO = setup + H * (fixed + V * per_query),
where per_query is the measured mean cost of a call plus, for retrieving variants with an
embedding index, run.json's setup.retrieval.query_usd_per_query (queries are embedded apart).
Per step A -> B: delta TCO = TCO_B - TCO_A; cost per extra correct answer =
delta TCO / (delta quality * V * H); break-even volume = the V at which the two TCOs are equal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.config import ConfigError

DEFAULTS: dict[str, float] = {
    "queries_per_month": 10_000.0,
    "horizon_months": 12.0,
    "value_per_correct_usd": 0.05,
    "non_inferiority_margin": 0.02,
    "hourly_rate_usd": 60.0,
    "compute_usd_per_hour": 0.10,  # the local provider's notional CPU price (finetune.py)
}
POSITIVE = ("queries_per_month", "horizon_months")  # a zero here makes every step moot
VARIANT_KEYS = ("training_usd", "indexing_usd", "hours", "hourly_rate_usd", "other_setup_usd",
                "fixed_monthly_usd")


@dataclass(frozen=True)
class VariantEconomics:
    """What the config says about one variant; None means "use the default"."""

    training_usd: float | None = None
    indexing_usd: float | None = None
    hours: dict[str, float] = field(default_factory=dict)
    hourly_rate_usd: float | None = None
    other_setup_usd: float = 0.0
    fixed_monthly_usd: float = 0.0


@dataclass(frozen=True)
class Economics:
    """The parsed `economics:` section."""

    queries_per_month: float = DEFAULTS["queries_per_month"]
    horizon_months: float = DEFAULTS["horizon_months"]
    value_per_correct_usd: float = DEFAULTS["value_per_correct_usd"]
    non_inferiority_margin: float = DEFAULTS["non_inferiority_margin"]
    hourly_rate_usd: float = DEFAULTS["hourly_rate_usd"]
    compute_usd_per_hour: float = DEFAULTS["compute_usd_per_hour"]
    variants: dict[str, VariantEconomics] = field(default_factory=dict)

    def for_variant(self, name: str) -> VariantEconomics:
        return self.variants.get(name, VariantEconomics())

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
    return Economics(**top, variants=variants)


def _parse_variant(path, where: str, raw: Any) -> VariantEconomics:
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(path, "must be a mapping", field=where)
    for key in raw:
        if key not in VARIANT_KEYS:
            raise ConfigError(path, f"unknown key; known: {', '.join(VARIANT_KEYS)}",
                              field=f"{where}.{key}")
    hours_raw = raw.get("hours") or {}
    if not isinstance(hours_raw, Mapping):
        raise ConfigError(path, "must be a mapping of activity to hours, e.g. "
                          "{writing_examples: 6}", field=f"{where}.hours")
    hours = {str(k): _number(path, f"{where}.hours.{k}", v) for k, v in hours_raw.items()}

    def opt(key: str) -> float | None:
        v = raw.get(key)
        return None if v is None else _number(path, f"{where}.{key}", v)

    return VariantEconomics(
        training_usd=opt("training_usd"), indexing_usd=opt("indexing_usd"), hours=hours,
        hourly_rate_usd=opt("hourly_rate_usd"), other_setup_usd=opt("other_setup_usd") or 0.0,
        fixed_monthly_usd=opt("fixed_monthly_usd") or 0.0)


@dataclass(frozen=True)
class SetupItem:
    """One line of a variant's setup cost, with where its number came from."""

    item: str
    usd: float
    source: str
    hours: float | None = None
    rate_usd: float | None = None


@dataclass(frozen=True)
class VariantCost:
    per_query_usd: float  # measured calls + query embeddings (retrieving variants)
    setup_usd: float
    fixed_monthly_usd: float
    tco_usd: float
    setup_items: tuple[SetupItem, ...]
    per_query_retrieval_usd: float = 0.0  # the query-embedding part of per_query_usd


def retrieval_per_query_usd(run_setup: Mapping[str, Any]) -> float:
    """Embedding one query (embedding retrievers), which the completions' costs do not hold."""
    return float((run_setup.get("retrieval") or {}).get("query_usd_per_query") or 0.0)


def setup_items(name: str, econ: Economics, *, fine_tuned: bool, retrieves: bool,
                run_setup: Mapping[str, Any]) -> list[SetupItem]:
    """A variant's setup costs: training, indexing, people's hours and anything else."""
    v = econ.for_variant(name)
    where = f"economics.variants.{name}"
    items: list[SetupItem] = []
    if v.training_usd is not None:
        items.append(SetupItem("training", v.training_usd, f"config {where}.training_usd"))
    elif fine_tuned:
        cost = (run_setup.get("fine_tune") or {}).get("training_cost_usd")
        items.append(SetupItem("training", float(cost or 0.0),
                               "run.json setup.fine_tune.training_cost_usd" if cost is not None
                               else "default 0 (run.json records no training cost)"))
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
    for activity, hours in v.hours.items():
        items.append(SetupItem(f"people: {activity}", hours * rate,
                               f"config {where}.hours.{activity}", hours=hours, rate_usd=rate))
    if v.other_setup_usd:
        items.append(SetupItem("other", v.other_setup_usd, f"config {where}.other_setup_usd"))
    return items


def tco(setup_usd: float, fixed_monthly_usd: float, per_query_usd: float, *,
        queries_per_month: float, horizon_months: float) -> float:
    """Total cost of ownership: setup + H * (fixed + V * per_query)."""
    return setup_usd + horizon_months * (fixed_monthly_usd + queries_per_month * per_query_usd)


def variant_cost(name: str, measured_per_query_usd: float, econ: Economics, *,
                 fine_tuned: bool, retrieves: bool, run_setup: Mapping[str, Any]) -> VariantCost:
    """A variant's costs from its measured per-query cost, the run's setup and the config."""
    items = setup_items(name, econ, fine_tuned=fine_tuned, retrieves=retrieves,
                        run_setup=run_setup)
    setup = sum(i.usd for i in items)
    fixed = econ.for_variant(name).fixed_monthly_usd
    retrieval = retrieval_per_query_usd(run_setup) if retrieves else 0.0
    per_query = measured_per_query_usd + retrieval
    total = tco(setup, fixed, per_query, queries_per_month=econ.queries_per_month,
                horizon_months=econ.horizon_months)
    return VariantCost(per_query, setup, fixed, total, tuple(items), retrieval)


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

"""Prices: what a model's tokens cost, from `genai-prices` or the experiment config.

A `PriceBook` answers "what does this usage cost on this model?". Lookup order per model:
1. the config's `pricing.models` (exact name, then shell-style patterns in file order) — for
   fine-tunes, self-hosted models, negotiated prices;
2. `genai-prices` under `pricing.provider_id` (default "openai", since every call goes through
   the OpenAI API shape), then under any provider whose model list matches the name;
3. otherwise `UnknownPrice` (or a zero price when `on_unknown: zero`), raised before the call
   is made, so nothing is paid for an answer whose cost cannot be counted.

Token convention (OpenAI's and genai-prices'): `input_tokens` counts every prompt token,
`cached_input_tokens` is the part of them served from the provider's prompt cache and is priced
apart at the cached rate. Config section:

    pricing:
      provider_id: openai          # genai-prices provider for known models
      on_unknown: error            # or zero
      models:
        "ft:gpt-4o-mini-2024-07-18:acme::*":      # per-million-token prices
          {input_per_mtok: 0.30, cached_input_per_mtok: 0.15, output_per_mtok: 1.20}
        my-lora:                                  # a self-hosted GPU: $/hour at measured speed
          {usd_per_gpu_hour: 1.20, tokens_per_second: 2500}
      training_per_mtok:            # fine-tuning price per million trained tokens
        gpt-4o-mini-2024-07-18: 3.0
      batch_price_factor: 0.5       # Batch API answers cost this share of the live price

`batch_price_factor` defaults to 0.5: OpenAI's Batch API charges half the live price
(https://platform.openai.com/docs/guides/batch); set it for a server with another discount
(1.0 for a self-hosted vLLM batch runner billed by the GPU-hour, priced in `models`).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.config import ConfigError
from evalkit.providers.base import Usage

log = logging.getLogger(__name__)

# OpenAI's published supervised fine-tuning prices, USD per 1M trained tokens (trained tokens
# already count every epoch). genai-prices has no training prices; override in the config.
TRAINING_PER_MTOK = {
    "gpt-4o-mini-2024-07-18": 3.00,
    "gpt-4o-2024-08-06": 25.00,
    "gpt-4.1-2025-04-14": 25.00,
    "gpt-4.1-mini-2025-04-14": 5.00,
    "gpt-4.1-nano-2025-04-14": 1.50,
    "gpt-3.5-turbo-0125": 8.00,
}

DEFAULT_BATCH_PRICE_FACTOR = 0.5  # OpenAI Batch API: 50 % of the live price
_TOKEN_PRICE_KEYS = {"input_per_mtok", "cached_input_per_mtok", "output_per_mtok"}
_GPU_KEYS = {"usd_per_gpu_hour", "tokens_per_second", "cached_input_per_mtok"}


class UnknownPrice(LookupError):
    """No price is known for a model; the message says how to give one."""


@dataclass(frozen=True)
class Price:
    """Per-million-token prices for one model, and where they came from."""

    model: str
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float
    source: str
    _genai: Any = None  # genai-prices ModelPrice, for tiered prices it knows how to apply
    # genai-prices' general unit machinery takes ~0.3 ms a call; token counts repeat a lot
    _memo: dict[tuple[int, int, int], float] = field(default_factory=dict, compare=False,
                                                     repr=False)
    # [per-token Decimal rates (input, cached-input delta, output)] of a flat genai price, or
    # [None] when its price is tiered or not linear; [] until first asked
    _rates: list = field(default_factory=list, compare=False, repr=False)

    def cost(self, usage: Usage) -> float:
        cached = min(max(usage.cached_input_tokens, 0), usage.input_tokens)
        if self._genai is not None:
            key = (usage.input_tokens, cached, usage.output_tokens)
            total = self._memo.get(key)
            if total is None:
                if not self._rates:
                    self._rates.append(_linear_rates(self._genai))
                rates = self._rates[0]
                if rates is not None:  # the same Decimal sum genai-prices makes, ~70x faster
                    a, b, d = rates
                    total = float(usage.input_tokens * a + cached * b
                                  + usage.output_tokens * d)
                else:
                    total = float(_genai_total(self._genai, *key))
                if len(self._memo) < 65536:
                    self._memo[key] = total
            return total
        return ((usage.input_tokens - cached) * self.input_per_mtok
                + cached * self.cached_input_per_mtok
                + usage.output_tokens * self.output_per_mtok) / 1e6


class PriceBook:
    """Prices for every model a run may call. Build with `PriceBook.from_section(...)`."""

    def __init__(self, models: Mapping[str, Price] | None = None, *,
                 provider_id: str | None = "openai", on_unknown: str = "error",
                 training_per_mtok: Mapping[str, float] | None = None,
                 batch_price_factor: float = DEFAULT_BATCH_PRICE_FACTOR,
                 path: Path | str | None = None):
        if on_unknown not in ("error", "zero"):
            raise ConfigError(path, "must be 'error' or 'zero'", field="pricing.on_unknown")
        self.models = dict(models or {})
        self.provider_id = provider_id
        self.on_unknown = on_unknown
        self.training = {**TRAINING_PER_MTOK, **(training_per_mtok or {})}
        self.batch_price_factor = batch_price_factor
        self.path = path
        self._resolved: dict[str, Price] = {}

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | None, *,
                     path: Path | str | None = None) -> PriceBook:
        """Validate the config's `pricing:` section; errors name the file and the field."""
        section = dict(section or {})
        unknown = set(section) - {"provider_id", "on_unknown", "models", "training_per_mtok",
                                  "batch_price_factor"}
        if unknown:
            raise ConfigError(path, "unknown key", field=f"pricing.{sorted(unknown)[0]}")
        models = section.get("models") or {}
        if not isinstance(models, Mapping):
            raise ConfigError(path, "must be a mapping of model name to prices",
                              field="pricing.models")
        parsed = {str(name): _parse_model_price(str(name), spec, path)
                  for name, spec in models.items()}
        training = section.get("training_per_mtok") or {}
        if not isinstance(training, Mapping):
            raise ConfigError(path, "must map base model to USD per 1M trained tokens",
                              field="pricing.training_per_mtok")
        training = {str(k): _number(v, path, f"pricing.training_per_mtok.{k}")
                    for k, v in training.items()}
        factor = _number(section.get("batch_price_factor", DEFAULT_BATCH_PRICE_FACTOR), path,
                         "pricing.batch_price_factor")
        return cls(parsed, provider_id=section.get("provider_id", "openai"),
                   on_unknown=section.get("on_unknown", "error"),
                   training_per_mtok=training, batch_price_factor=factor, path=path)

    def price(self, model: str) -> Price:
        """The price of `model`, resolved once and remembered."""
        if model not in self._resolved:
            self._resolved[model] = self._lookup(model)
        return self._resolved[model]

    def cost(self, model: str, usage: Usage) -> float:
        return self.price(model).cost(usage)

    def training_price(self, base_model: str) -> float | None:
        """USD per 1M trained tokens for fine-tuning `base_model`, or None if unknown."""
        if base_model in self.training:
            return self.training[base_model]
        for pattern, value in self.training.items():
            if fnmatch.fnmatchcase(base_model, pattern):
                return value
        return None

    def _lookup(self, model: str) -> Price:
        if model in self.models:
            return _renamed(self.models[model], model)
        for pattern, price in self.models.items():
            if fnmatch.fnmatchcase(model, pattern):
                return _renamed(price, model)
        found = _from_genai_prices(model, self.provider_id)
        if found is not None:
            return found
        if self.on_unknown == "zero":
            log.warning("no price known for model %r; counting it as free (on_unknown: zero)",
                        model)
            return Price(model, 0.0, 0.0, 0.0, source="unknown:zero")
        where = f"{self.path}: " if self.path else "the experiment config: "
        raise UnknownPrice(
            f"no price known for model {model!r}; add it to {where}pricing.models, e.g. "
            f"{model!r}: {{input_per_mtok: 0.5, output_per_mtok: 1.5}} or "
            f"{{usd_per_gpu_hour: 1.2, tokens_per_second: 2000}}, or set pricing.on_unknown: zero")


def _renamed(price: Price, model: str) -> Price:
    return Price(model, price.input_per_mtok, price.output_per_mtok,
                 price.cached_input_per_mtok, price.source)


def _number(value: Any, path, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(path, f"must be a number >= 0, got {value!r}", field=field)
    return float(value)


def _parse_model_price(name: str, spec: Any, path) -> Price:
    field = f"pricing.models.{name}"
    if not isinstance(spec, Mapping):
        raise ConfigError(path, "must be a mapping of prices", field=field)
    keys = set(spec)
    if "usd_per_gpu_hour" in keys:
        extra = keys - _GPU_KEYS
        if extra or "tokens_per_second" not in keys:
            raise ConfigError(path, "a GPU-hour price needs usd_per_gpu_hour and "
                              "tokens_per_second (measured throughput) and nothing else but "
                              "cached_input_per_mtok", field=field)
        hourly = _number(spec["usd_per_gpu_hour"], path, f"{field}.usd_per_gpu_hour")
        tps = _number(spec["tokens_per_second"], path, f"{field}.tokens_per_second")
        if tps <= 0:
            raise ConfigError(path, "must be > 0", field=f"{field}.tokens_per_second")
        per_mtok = hourly / 3600.0 / tps * 1e6
        cached = spec.get("cached_input_per_mtok", per_mtok)
        return Price(name, per_mtok, per_mtok,
                     _number(cached, path, f"{field}.cached_input_per_mtok"),
                     source=f"config:gpu-hour ${hourly}/h at {tps:g} tok/s")
    extra = keys - _TOKEN_PRICE_KEYS
    if extra:
        raise ConfigError(path, f"unknown key; known: {', '.join(sorted(_TOKEN_PRICE_KEYS))} "
                          f"or usd_per_gpu_hour + tokens_per_second", field=f"{field}.{min(extra)}")
    for required in ("input_per_mtok", "output_per_mtok"):
        if required not in keys:
            raise ConfigError(path, "is required", field=f"{field}.{required}")
    inp = _number(spec["input_per_mtok"], path, f"{field}.input_per_mtok")
    cached = spec.get("cached_input_per_mtok", inp)
    return Price(name, inp, _number(spec["output_per_mtok"], path, f"{field}.output_per_mtok"),
                 _number(cached, path, f"{field}.cached_input_per_mtok"), source="config")


def _genai_total(model_price: Any, input_tokens: int, cached: int, output_tokens: int) -> Any:
    """genai-prices' total (a Decimal) for one usage (its unit machinery: ~70 us a call)."""
    from genai_prices import Usage as GUsage

    return model_price.calc_price(GUsage(input_tokens=input_tokens, cache_read_tokens=cached,
                                         output_tokens=output_tokens))["total_price"]


# usages at which a linear price must give genai-prices' own total, to the last digit
_LINEAR_PROBES = ((0, 0, 0), (1000, 0, 0), (1000, 300, 50), (7, 3, 11), (123457, 99999, 4097),
                  (2_000_000, 1, 65_537))


def _linear_rates(model_price: Any) -> tuple[Any, Any, Any] | None:
    """Per-token rates (input, cached input minus input, output) of a flat price, or None.

    A flat price (no tiers) is, in genai-prices, a sum of Decimal price x count / per per
    unit: exact, and linear in the token counts. The rates are read from genai-prices itself
    at one token each, and kept only if they reproduce its totals exactly at every probe
    (else every cost goes through genai-prices, as before)."""
    from genai_prices.types import TieredPrices

    if any(isinstance(v, TieredPrices) for v in vars(model_price).values()):
        return None
    try:
        a = _genai_total(model_price, 1, 0, 0)
        b = _genai_total(model_price, 1, 1, 0) - a
        d = _genai_total(model_price, 0, 0, 1)
        for i, c, o in _LINEAR_PROBES:
            if i * a + c * b + o * d != _genai_total(model_price, i, c, o):
                return None
    except Exception:  # anything unexpected: keep asking genai-prices
        return None
    return a, b, d


def _from_genai_prices(model: str, provider_id: str | None) -> Price | None:
    from genai_prices import Usage as GUsage
    from genai_prices import calc_price

    probe = GUsage(input_tokens=1, output_tokens=1)
    attempts = ([{"provider_id": provider_id}] if provider_id else []) + [{}]
    for kwargs in attempts:
        try:
            calc = calc_price(probe, model, **kwargs)
        except LookupError:
            continue
        mp = calc.model_price
        inp = _flat(getattr(mp, "input_mtok", None)) or 0.0
        out = _flat(getattr(mp, "output_mtok", None)) or 0.0
        cached = _flat(getattr(mp, "cache_read_mtok", None))
        source = f"genai-prices:{calc.provider.id}/{calc.model.id}"
        if not kwargs:
            log.warning("price for %r guessed from genai-prices provider %r (%s); set "
                        "pricing.models in the config if that is not who serves it",
                        model, calc.provider.id, calc.model.id)
        return Price(model, inp, out, inp if cached is None else cached, source=source,
                     _genai=mp)
    return None


def _flat(value: Any) -> float | None:
    """A flat Decimal price as float; tiered prices report their base tier."""
    if value is None:
        return None
    base = getattr(value, "base", value)
    try:
        return float(base)
    except (TypeError, ValueError):
        return None

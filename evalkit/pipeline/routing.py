"""Which provider answers each variant: one run can put a local model beside OpenAI's.

A variant may name its own `provider`, `base_url` and generation parameters (temperature,
max_tokens, seed); each distinct combination is built once through the provider registry
(`build_provider`), and variants that ask for nothing special share the run's provider. The
cache key holds the provider's name and its generation parameters, so two variants that differ
in any of them never share an answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from evalkit.config import ConfigError, ExperimentConfig
from evalkit.providers import Provider, ProviderSetup, build_provider, provider_class
from evalkit.providers.base import Generation
from evalkit.strategies.variants import Variant


@dataclass(frozen=True)
class Route:
    """The provider settings of one variant: its provider, server and generation."""

    provider: str
    base_url: str | None
    generation: Generation


def fine_tune_provider(variants: Iterable[Variant], default: str) -> str | None:
    """The provider whose recorded (or locally trained) fine-tune the run's fine-tuned rungs
    call: the one those rungs are routed to (a declared variant may name its own provider),
    else the run's; None when no rung needs one. The run and its pre-flight both ask, so the
    fine-tune looked up is the one the rung's provider will be handed. A ValueError when
    they name two providers: a run carries one recorded fine-tune."""
    variants = list(variants)
    names = sorted({v.provider or default for v in variants if v.needs_recorded_fine_tune})
    if len(names) > 1:
        rungs = ", ".join(sorted(v.name for v in variants if v.needs_recorded_fine_tune))
        raise ValueError(f"the fine-tuned rungs ({rungs}) run on {' and '.join(names)}: one "
                         f"run uses one provider's recorded fine-tune; give all but one of "
                         f"them its model as fine_tuned_model: in the experiment config")
    return names[0] if names else None


@dataclass
class Providers:
    """The providers of a run, one per distinct Route, built on first use."""

    default: str
    options: dict[str, Any]
    config: ExperimentConfig
    fine_tune: dict[str, Any] | None = None
    finetune_dir: str = "finetunes"
    built: dict[Route, Provider] = field(default_factory=dict)

    def route(self, variant: Variant, epoch: int = 0) -> Route:
        name = variant.provider or self.default
        cls = provider_class(name)
        if not cls.takes_server_options and (variant.base_url or variant.model):
            decl = self.config.variant(variant.name)
            raise ConfigError(self.config.path, f"variant {variant.name!r}: the {name} "
                              f"provider has no server or models to choose; model and "
                              f"base_url are for a server-backed provider (provider: openai)",
                              field="variants", line=decl.line if decl else None)
        # a deterministic provider answers every epoch alike: one instance serves them all
        return Route(name, variant.base_url, Generation(
            variant.temperature, variant.max_tokens, variant.seed,
            epoch=epoch if cls.samples else 0))

    def for_variant(self, variant: Variant, epoch: int = 0) -> Provider:
        """The provider of `variant` in `epoch` (its seed moved on by the epoch)."""
        route = self.route(variant, epoch)
        if route not in self.built:
            self.built[route] = build_provider(route.provider, self._setup(route))
        return self.built[route]

    def _setup(self, route: Route) -> ProviderSetup:
        # the run's flags (--base-url, --model) belong to the run's provider only
        options = dict(self.options) if route.provider == self.default else {}
        if route.base_url:
            options["base_url"] = route.base_url
        return ProviderSetup(options=options, config=self.config, generation=route.generation,
                             fine_tune=self.fine_tune, finetune_dir=self.finetune_dir)

    def all(self) -> list[Provider]:
        return list(self.built.values())

    @property
    def notional(self) -> bool:
        """No provider of the run bills anybody (all local)."""
        return all(p.cost_is_notional for p in self.built.values())

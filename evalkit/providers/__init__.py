"""Providers answer Requests. `get_provider(name, **options)` builds one by name.

`PROVIDERS` maps a name to a loader of the provider's class: the class's module (and the SDK
it needs) is imported only when that provider is used, so `evalkit --help` or a local run
never imports the OpenAI SDK. A new provider is one module with a `Provider` subclass plus one
`register_provider` call (here for a built-in, anywhere for a plug-in).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evalkit.providers.base import Completion, FineTuneOptions, Provider, ProviderSetup, Usage
from evalkit.registry import Registry

__all__ = ["PROVIDERS", "Completion", "FineTuneOptions", "Provider", "ProviderSetup", "Usage",
           "build_provider", "get_provider", "provider_class", "register_provider"]

PROVIDERS: Registry[Callable[[], type[Provider]]] = Registry("provider")


def register_provider(name: str, loader: Callable[[], type[Provider]], *,
                      replace: bool = False) -> None:
    """File a provider class under `name`; `loader` returns the class (import inside it)."""
    PROVIDERS.register(name, loader, replace=replace)


def provider_class(name: str) -> type[Provider]:
    """The class registered under `name`; an unknown name's error lists the known ones."""
    try:
        return PROVIDERS.get(name)()
    except KeyError as exc:
        raise ValueError(str(exc)) from None


def get_provider(name: str, **options: Any) -> Provider:
    """Build the provider `name` from keyword options alone (no experiment config)."""
    return provider_class(name)(**options)


def build_provider(name: str, setup: ProviderSetup) -> Provider:
    """Build the provider `name` for a run: its `from_config` reads the options, the
    experiment config and the fine-tune record as that provider needs."""
    return provider_class(name).from_config(setup)


def _local() -> type[Provider]:
    from evalkit.providers.local import LocalProvider
    return LocalProvider


def _openai() -> type[Provider]:  # OpenAI and any OpenAI-compatible server (vLLM, Ollama, ...)
    from evalkit.providers.openai import OpenAIProvider
    return OpenAIProvider


register_provider("local", _local)
register_provider("openai", _openai)

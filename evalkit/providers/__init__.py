"""Providers answer Requests. `get_provider(name, **options)` builds one by name."""

from __future__ import annotations

from typing import Any

from evalkit.providers.base import Completion, Provider, Usage

__all__ = ["Completion", "Provider", "Usage", "get_provider"]


def get_provider(name: str, **options: Any) -> Provider:
    if name == "local":
        from evalkit.providers.local import LocalProvider
        return LocalProvider(**options)
    if name == "openai":  # OpenAI and any OpenAI-compatible server (vLLM, Ollama, llama.cpp)
        from evalkit.providers.openai import OpenAIProvider
        return OpenAIProvider(**options)
    raise ValueError(f"unknown provider {name!r}; known: local, openai")

"""What every provider returns, and the interface the runner calls.

Providers never import the runner: they take one Request and return one Completion.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from evalkit.strategies.request import Request


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0


@dataclass(frozen=True)
class Completion:
    """One answer. `cost_usd` is notional: a cache hit keeps the cost it had when it was paid."""

    text: str
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    cost_usd: float = 0.0
    model: str = ""
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        """`dataclasses.asdict(self)` without its generic deep copy (once per fresh answer)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["usage"] = {f.name: getattr(self.usage, f.name) for f in fields(self.usage)}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Completion:
        return cls(**{**d, "usage": Usage(**d.get("usage", {}))})


class Provider(Protocol):
    name: str
    cost_is_notional: bool  # True: nobody is billed (offline); its costs are for comparison

    def model_for(self, request: Request) -> str:
        """The model that will answer this request (the request may pin one)."""

    def cache_params(self) -> dict[str, Any]:
        """Generation parameters that change the answer, for the cache key. Never secrets."""

    async def complete(self, request: Request) -> Completion:
        """Answer one request; raise on failure (the runner records it per item)."""

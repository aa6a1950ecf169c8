"""A table of named plug-ins: task types, metrics, providers, local answerers.

Every seam of the flow has one `Registry`, so adding a task type, a metric or a provider is one
module plus one `register` call, and no caller compares a name to a string literal. Modelled on
scikit-learn's scorer table (`get_scorer_names()`; an unknown name's error lists the valid
ones) and Inspect AI's `@metric`/`@scorer` registry (a decorator that files the plug-in under
its name). Stage 0: it imports nothing from evalkit, so every stage can hold one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownName(KeyError):
    """A name no plug-in is registered under; the message lists the registered ones."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class Registry(Generic[T]):
    """Name -> plug-in, in registration order. `kind` names the seam in error messages."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T, *, replace: bool = False) -> T:
        """File `item` under `name`; a second plug-in under one name is an error unless
        `replace` (two modules silently fighting over a name would be worse)."""
        if name in self._items and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def decorator(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """`@registry.decorator("name")` over a function or class registers it."""
        return lambda item: self.register(name, item, replace=replace)

    def unregister(self, name: str) -> T:
        """Remove and return a plug-in (tests that register their own undo it this way)."""
        if name not in self._items:
            raise self.unknown(name)
        return self._items.pop(name)

    def get(self, name: str) -> T:
        if name not in self._items:
            raise self.unknown(name)
        return self._items[name]

    def find(self, name: str) -> T | None:
        """The plug-in, or None when nothing is registered under `name`."""
        return self._items.get(name)

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def unknown(self, name: str) -> UnknownName:
        """The error for an unregistered name, with a did-you-mean and the valid names."""
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return UnknownName(f"unknown {self.kind} {name!r}; {hint}known: "
                           f"{', '.join(self.names()) or '(none)'}")

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def values(self) -> tuple[T, ...]:
        return tuple(self._items.values())

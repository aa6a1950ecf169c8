"""The response cache: SQLite, keyed on provider, model, rendered messages and parameters.

The key is a SHA-256 of exactly what determines an answer. Credentials are never part of it,
and nothing but the Completion is stored. A hit returns the Completion with `cached=True` and
the notional cost it had when it was paid, so cached and fresh variants compare like for like.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from evalkit.providers.base import Completion, Usage
from evalkit.providers.sqlite_store import SqliteStore


def cache_key(*, provider: str, model: str, messages: list[dict[str, str]],
              params: dict[str, Any]) -> str:
    payload = json.dumps({"provider": provider, "model": model, "messages": messages,
                          "params": params}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def request_key(provider: Any, request: Any) -> str:
    """The cache key of `request` as `provider` would answer it (runner and estimate agree).

    The task type is part of it: the local provider answers the same messages differently
    for a classification and a QA task.
    """
    params = {**provider.cache_params(), "task_type": request.task_type}
    if request.response_format is not None:  # absent otherwise: older cache keys still hit
        params["response_format"] = request.response_format
    return cache_key(provider=provider.name, model=provider.model_for(request),
                     messages=request.messages(), params=params)


def completion_from_row(text: str) -> Completion | None:
    """The cached Completion in `text`, or None if it is not one (bad JSON, types, fields).

    A row that does not parse is a miss: the call is made again and the row overwritten,
    rather than letting e.g. `{"text": 5}` into the journal.
    """
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        return None
    usage = data.get("usage", {})
    if not isinstance(usage, dict) or any(type(v) is not int for v in usage.values()):
        return None
    for name in ("latency_s", "cost_usd"):
        if name in data and (type(data[name]) not in (int, float)):
            return None
    if not isinstance(data.get("model", ""), str):
        return None
    try:
        return Completion(**{**data, "usage": Usage(**usage), "cached": True})
    except TypeError:  # unknown or missing fields
        return None


class ResponseCache:
    """A small SQLite key-value store of Completions. Safe to share across asyncio tasks.

    Damage never crashes a run (see `SqliteStore`): a damaged file is moved aside, a lock
    held too long or a bad row is a miss.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._store = SqliteStore(self.path, schema="CREATE TABLE IF NOT EXISTS responses "
                                  "(key TEXT PRIMARY KEY, completion TEXT NOT NULL)")

    def get(self, key: str) -> Completion | None:
        row = self._store.fetchone("SELECT completion FROM responses WHERE key = ?", (key,))
        return None if row is None else completion_from_row(row[0])

    def put(self, key: str, completion: Completion) -> None:
        data = completion.to_dict()
        data["cached"] = False
        self._store.execute("INSERT OR REPLACE INTO responses VALUES (?, ?)",
                            (key, json.dumps(data)))

    def close(self) -> None:
        self._store.close()

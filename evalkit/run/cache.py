"""The response cache: SQLite, keyed on provider, model, rendered messages and parameters.

The key is a SHA-256 of exactly what determines an answer. Credentials are never part of it,
and nothing but the Completion is stored. A hit returns the Completion with `cached=True` and
the notional cost it had when it was paid, so cached and fresh variants compare like for like.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from evalkit.providers.base import Completion


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
    return cache_key(provider=provider.name, model=provider.model_for(request),
                     messages=request.messages(),
                     params={**provider.cache_params(), "task_type": request.task_type})


class ResponseCache:
    """A small SQLite key-value store of Completions. Safe to share across asyncio tasks."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS responses "
                         "(key TEXT PRIMARY KEY, completion TEXT NOT NULL)")

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute("SELECT completion FROM responses WHERE key = ?",
                                   (key,)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        data["cached"] = True
        return Completion.from_dict(data)

    def put(self, key: str, completion: Completion) -> None:
        data = completion.to_dict()
        data["cached"] = False
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?)",
                             (key, json.dumps(data)))

    def close(self) -> None:
        with self._lock:
            self._db.close()

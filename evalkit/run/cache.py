"""The response cache: SQLite, keyed on provider, model, rendered messages and parameters.

The key is a SHA-256 of exactly what determines an answer. Credentials are never part of it,
and nothing but the Completion is stored. A hit returns the Completion with `cached=True` and
the notional cost it had when it was paid, so cached and fresh variants compare like for like.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from pathlib import Path
from typing import Any

from evalkit.providers.base import Completion, Usage
from evalkit.providers.sqlite_store import SqliteStore


def cache_key(*, provider: str, model: str, messages: list[dict[str, str]],
              params: dict[str, Any]) -> str:
    payload = _dumps({"provider": provider, "model": model, "messages": messages,
                      "params": params})
    return hashlib.sha256(payload.encode()).hexdigest()


def request_key(provider: Any, request: Any, *, epoch: int = 0) -> str:
    """The cache key of `request` as `provider` would answer it (runner and estimate agree).

    The task type is part of it: the local provider answers the same messages differently
    for a classification and a QA task. So is the epoch from the second on (`--epochs`):
    each repetition is a fresh sample, never the first one's answer served again; epoch 0
    keeps the key it always had, so existing caches still hit.
    """
    return KeyMaker().key(provider, request, epoch=epoch)


class KeyMaker:
    """`request_key` for one session: the same keys, with the part that is the same for
    every request of a provider, model, task type and epoch serialised once.

    The key hashes `cache_key`'s JSON, whose keys are sorted: `{"messages": ..., "model":
    ..., "params": ..., "provider": ...}`. Only the messages differ from item to item, so
    the rest (the provider's `cache_params()`, which builds dicts and parses URLs on every
    call) is written once as the JSON's tail; the provider's parameters are taken as fixed
    for the session, as the runner already assumes. Requests with a `response_format` (a
    dict) are keyed in full each time."""

    def __init__(self):
        self._tails: dict[tuple[int, str, str, int], tuple[Any, str]] = {}

    def key(self, provider: Any, request: Any, *, epoch: int = 0) -> str:
        model = provider.model_for(request)
        if request.response_format is not None:
            return cache_key(provider=provider.name, model=model,
                             messages=request.messages(), params=_params(provider, request,
                                                                          epoch))
        memo = (id(provider), model, request.task_type, epoch)
        held = self._tails.get(memo)
        if held is None or held[0] is not provider:
            tail = _dumps({"model": model, "params": _params(provider, request, epoch),
                           "provider": provider.name})
            # '{"model": ...}' -> ', "model": ...}': what follows the messages
            held = self._tails[memo] = (provider, ", " + tail[1:])
        messages = request.messages_json()  # == _dumps(request.messages()), made once
        return hashlib.sha256(f'{{"messages": {messages}{held[1]}'.encode()).hexdigest()


def _params(provider: Any, request: Any, epoch: int) -> dict[str, Any]:
    params = {**provider.cache_params(), "task_type": request.task_type}
    if request.response_format is not None:  # absent otherwise: older cache keys still hit
        params["response_format"] = request.response_format
    if epoch:
        params["epoch"] = epoch
    return params


def _dumps(value: Any) -> str:
    """`cache_key`'s serialisation (sorted keys, the default separators)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


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


_ROW_ENCODER = json.JSONEncoder()  # json.dumps(row), without an encoder built per row
_ascii_string = json.encoder.encode_basestring_ascii  # a JSON string literal, as it writes one


def cache_row(c: Completion) -> str:
    """`_ROW_ENCODER.encode` of `c` as stored (`cached` false), byte for byte, written out
    directly when its fields have their usual types (one f-string instead of a dict and the
    encoder, per fresh answer); anything else goes the general way."""
    u = c.usage
    if not (type(c.text) is str and type(c.model) is str and type(u.input_tokens) is int
            and type(u.output_tokens) is int and type(u.cached_input_tokens) is int
            and type(c.latency_s) is float and c.latency_s - c.latency_s == 0.0
            and type(c.cost_usd) is float and c.cost_usd - c.cost_usd == 0.0):
        data = c.to_dict()
        data["cached"] = False
        return _ROW_ENCODER.encode(data)
    return (f'{{"text": {_ascii_string(c.text)}, "usage": {{"input_tokens": '
            f'{u.input_tokens!r}, "output_tokens": {u.output_tokens!r}, '
            f'"cached_input_tokens": {u.cached_input_tokens!r}}}, '
            f'"latency_s": {c.latency_s!r}, "cost_usd": {c.cost_usd!r}, '
            f'"model": {_ascii_string(c.model)}, "cached": false}}')


class ResponseCache:
    """A small SQLite key-value store of Completions. Safe to share across asyncio tasks.

    Writes leave the event loop: `put` only queues the Completion, and one writer thread
    encodes the queue (`cache_row`) and commits it in a single transaction every `flush_s`
    (or at `close`), so no call waits for SQLite, and the rows are encoded together rather
    than one between each call's other work. Until then `get` answers from the queue, so a
    repeat of a just-answered request is a hit. A kill loses at most the last `flush_s` of
    cache rows — never an answer: the journal, not the cache, is what `--resume` trusts.

    Damage never crashes a run (see `SqliteStore`): a damaged file is moved aside, a lock
    held too long or a bad row is a miss.
    """

    def __init__(self, path: Path | str, *, flush_s: float = 0.05):
        self.path = Path(path)
        self._store = SqliteStore(self.path, schema="CREATE TABLE IF NOT EXISTS responses "
                                  "(key TEXT PRIMARY KEY, completion TEXT NOT NULL)")
        self._pending: dict[str, Completion] = {}  # put, not yet taken by the writer
        self._writing: dict[str, Completion] = {}  # what the writer is committing now
        # `prefetch`ed rows not yet asked for: key -> row (or the Completion put since), or
        # None (not in the store then)
        self._ahead: dict[str, str | Completion | None] = {}
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._said_unencodable = False  # an answer that would not encode: warned of once
        self._flush_s = flush_s
        self._writer = threading.Thread(target=self._write_loop, name="evalkit-cache-writer",
                                        daemon=True)
        self._writer.start()

    def get(self, key: str) -> Completion | None:
        with self._pending_lock:
            queued = self._pending.get(key) or self._writing.get(key)
        if queued is not None:
            return _from_queue(queued)
        if key in self._ahead:  # looked up with its batch: no SELECT of its own
            ahead = self._ahead.pop(key)
            if ahead is None:
                return None
            return completion_from_row(ahead) if type(ahead) is str else _from_queue(ahead)
        row = self._store.fetchone("SELECT completion FROM responses WHERE key = ?", (key,))
        return None if row is None else completion_from_row(row[0])

    def put(self, key: str, completion: Completion) -> None:
        with self._pending_lock:
            self._pending[key] = completion
        if key in self._ahead:  # a prefetched miss answered since: the next get must hit,
            self._ahead[key] = completion  # even once the writer has committed it

    def prefetch(self, keys: list[str]) -> None:
        """Look `keys` up now, in one SELECT per 500, so that each one's `get` is a dict
        look-up instead of a query on the event loop. A key's answer is as of this call, or
        newer: a `put` since updates it. Each `get` drops its key, so what is held is the
        batch not yet asked for. A row still in the writer's queue is taken from there: the
        SELECT cannot see it, and once the writer commits it `get` no longer finds it queued."""
        unique = [key for key in dict.fromkeys(keys) if key not in self._ahead]
        with self._pending_lock:
            queued = {key: c for key in unique
                      if (c := self._pending.get(key) or self._writing.get(key)) is not None}
        self._ahead.update(queued)
        unique = [key for key in unique if key not in queued]
        self._ahead.update(dict.fromkeys(unique))
        for i in range(0, len(unique), 500):
            part = unique[i:i + 500]
            marks = ", ".join("?" * len(part))
            for key, row in self._store.fetchall(
                    f"SELECT key, completion FROM responses WHERE key IN ({marks})",
                    tuple(part)):
                self._ahead[key] = row

    def flush(self) -> None:
        """Commit every queued row now (one transaction)."""
        with self._pending_lock:
            # the rows stay visible to `get` and `prefetch` (in `_writing`) until committed:
            # taken out of the queue before that, a repeat asked meanwhile was a miss
            self._writing, self._pending = self._pending, {}
        self._store.insert_many("responses", self._rows(self._writing))
        with self._pending_lock:
            self._writing = {}

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._writer.join()
        self.flush()
        self._store.close()

    def _rows(self, queued: dict[str, Completion]) -> list[tuple[str, str]]:
        """(key, row) for each queued answer that encodes; one that cannot (a provider's odd
        field type) is left out, a miss later, said once, rather than ending the writer."""
        rows = []
        for key, completion in queued.items():
            try:
                rows.append((key, cache_row(completion)))
            except (TypeError, ValueError) as exc:
                if not self._said_unencodable:
                    self._said_unencodable = True
                    print(f"evalkit: warning: an answer could not be stored in the cache "
                          f"({exc}); it will be asked again next time", file=sys.stderr,
                          flush=True)
        return rows

    def _write_loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._flush_s)
            self.flush()


def _from_queue(completion: Completion) -> Completion | None:
    """A queued answer as `get` would read it back once stored: through its row, so a hit
    is the same whether the writer has committed it yet or not."""
    try:
        return completion_from_row(cache_row(completion))
    except (TypeError, ValueError):
        return None


"""The run journal, `predictions.jsonl`: one line per finished (variant, item), appended.

Each line reaches the kernel as soon as its item finishes: `append` writes it at once, or,
with `defer=True`, at the caller's next `flush`. The runner defers, and flushes before it
sends any call (and at the end of each turn of its event loop), so the lines of a turn go out
in one write and a killed run loses at most the items in flight, whose calls are open in the
call ledger and so counted. `--resume` reads the journal back and skips what it holds. A torn
last line (the process died mid-write) is ignored on read rather than failing the resume.

A line's `prompt` names the messages its request carried, kept once each in `messages.jsonl`
beside the journal (evalkit/run/sent.py); `append(..., messages=...)` records them first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from evalkit.run.appender import Appender
from evalkit.run.sent import SentLog, sent_path
from evalkit.secrets import key_values, scrub


@dataclass
class Prediction:
    variant: str
    item_id: str
    output: str | None
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    latency_s: float = 0.0
    # client-side wait of a call: from the runner taking the job to the request being sent
    # (building, cache lookup, connection and retry waits); None when no call was made
    queue_s: float | None = None
    cost_usd: float = 0.0
    cached: bool = False
    error_class: str | None = None
    error: str | None = None
    retrieved: list[str] = field(default_factory=list)  # doc ids of passages, in rank order
    passages: list[list] = field(default_factory=list)  # [doc_id, chunk] per passage shown
    epoch: int = 0  # which repetition (`--epochs`); 0 is not written, so old journals match
    prompt: str = ""  # the messages sent, by id in messages.jsonl; "" (not written): none


class Journal:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._out = Appender(self.path)
        self._lines: list[str] = []  # appended, not yet written (`flush`)
        self.sent = SentLog(sent_path(self.path))

    def read(self) -> list[Prediction]:
        if not self.path.is_file():
            return []
        out = []
        with self.path.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    continue  # unfinished last line: the next append cuts it, so it is redone
                try:
                    out.append(Prediction(**json.loads(line)))
                except (json.JSONDecodeError, TypeError):
                    continue  # torn final line of a killed run
        return out

    def record_messages(self, messages: list[dict[str, str]]) -> str:
        """Store `messages` in messages.jsonl (what is new of them), durable before any
        journal line can name them; return their prompt id."""
        pid = self.sent.record(messages)
        self.sent.flush()
        return pid

    def append(self, prediction: Prediction, *,
               messages: list[dict[str, str]] | None = None, defer: bool = False) -> None:
        """Journal `prediction`; with `messages` (what its request sent), record them and set
        its `prompt`. `defer`: leave the line for the caller's next `flush` instead of
        flushing it now (the runner flushes once per turn of its event loop)."""
        if messages is not None:
            prediction.prompt = self.sent.record(messages)
        self._lines.append(journal_line(prediction) + "\n")
        if not defer:
            self.flush()

    def flush(self) -> None:
        """Every line appended so far into the kernel, in one write: the messages they name
        first (messages.jsonl), so no line reaches disk before its prompt does."""
        if not self._lines:
            return
        self.sent.flush()
        self._out.write("".join(self._lines))  # on a failure the lines stay, unwritten
        self._lines = []

    def close(self) -> None:
        self.flush()
        self.sent.close()
        self._out.close(fsync=True)


_FIELDS = tuple(f.name for f in fields(Prediction))
# json.dumps(..., ensure_ascii=False) builds an encoder per call; the journal's is made once
_ENCODER = json.JSONEncoder(ensure_ascii=False)


_string = json.encoder.encode_basestring  # a JSON string literal, non-ASCII kept (as _ENCODER)


def journal_line(p: Prediction) -> str:
    """`_ENCODER.encode(as_record(p))`, byte for byte, written out directly when every field
    has its usual type (an f-string instead of a dict copy, three scrubs and the encoder: the
    journal line was the largest of evalkit's own costs per call); anything else goes the
    general way (floats that are NaN or infinite too: `x - x == 0.0` holds only for finite
    ones). tests/test_hot_path.py holds the two to the same bytes."""
    if not (tuple(p.__dict__) == _FIELDS and type(p.variant) is str
            and type(p.item_id) is str and (p.output is None or type(p.output) is str)
            and type(p.model) is str and type(p.input_tokens) is int
            and type(p.output_tokens) is int and type(p.cached_input_tokens) is int
            and type(p.latency_s) is float and type(p.cost_usd) is float
            and p.latency_s - p.latency_s + p.cost_usd - p.cost_usd == 0.0
            and (p.queue_s is None or type(p.queue_s) is float and p.queue_s - p.queue_s == 0.0)
            and type(p.cached) is bool
            and (p.error_class is None or type(p.error_class) is str)
            and (p.error is None or type(p.error) is str) and type(p.epoch) is int
            and type(p.prompt) is str and type(p.retrieved) is list
            and type(p.passages) is list and not p.passages):
        return _ENCODER.encode(as_record(p))
    keys = key_values()
    output = "null" if p.output is None else _string(scrub(p.output, keys=keys))
    error = "null" if p.error is None else _string(scrub(p.error, keys=keys))
    line = (f'{{"variant": {_string(p.variant)}, "item_id": {_string(p.item_id)}, '
            f'"output": {output}, "model": {_model(p.model, keys)}, '
            f'"input_tokens": {p.input_tokens!r}, "output_tokens": {p.output_tokens!r}, '
            f'"cached_input_tokens": {p.cached_input_tokens!r}, '
            f'"latency_s": {p.latency_s!r}, '
            f'"queue_s": {"null" if p.queue_s is None else repr(p.queue_s)}, '
            f'"cost_usd": {p.cost_usd!r}, "cached": {"true" if p.cached else "false"}, '
            f'"error_class": '
            f'{"null" if p.error_class is None else _string(p.error_class)}, '
            f'"error": {error}, "retrieved": '
            f'{_ENCODER.encode(p.retrieved) if p.retrieved else "[]"}, "passages": []')
    if p.epoch:
        line += f', "epoch": {p.epoch!r}'
    if p.prompt:
        line += f', "prompt": {_string(p.prompt)}'
    return line + "}"


def _model(model: str, keys: tuple[str, ...]) -> str:
    """`_string(scrub(model))`, remembered: a run names one model or a few, line after line."""
    held = _MODELS.get(model)
    if held is None or held[0] is not keys:
        if len(_MODELS) >= 64:
            _MODELS.clear()
        held = _MODELS[model] = (keys, _string(scrub(model, keys=keys)))
    return held[1]


_MODELS: dict[str, tuple[tuple[str, ...], str]] = {}  # model -> (the keys then, its JSON)


def as_record(p: Prediction) -> dict[str, Any]:
    """`dataclasses.asdict(p)` without its generic deep copy (a tenth of the time per line)."""
    record = p.__dict__.copy()  # the fields, in order (dataclass __init__ sets them so)
    if len(record) != len(_FIELDS):  # an attribute set besides the fields: take just those
        record = {name: getattr(p, name) for name in _FIELDS}
    record["retrieved"] = list(p.retrieved)
    record["passages"] = [list(x) for x in p.passages]
    if not p.epoch:
        del record["epoch"]
    if not p.prompt:
        del record["prompt"]
    keys = key_values()  # the last line of defence before disk
    for name in ("output", "error", "model"):
        if isinstance(record[name], str):
            record[name] = scrub(record[name], keys=keys)
    return record


def shown(passages: Any) -> dict[str, list]:
    """What the journal keeps of the passages a request showed: the documents, ranked (for
    recall@k and MRR), and each passage as [doc_id, chunk], so scoring can find its text again
    (groundedness) without copying every passage into every line."""
    if not passages:  # most requests: nothing to walk
        return {"retrieved": [], "passages": []}
    return {"retrieved": list(dict.fromkeys(p.doc_id for p in passages)),
            "passages": [[p.doc_id, p.chunk] for p in passages]}


def latest(preds: list[Prediction]) -> list[Prediction]:
    """One prediction per (variant, item, epoch): the last one journaled (a retry replaces an
    error)."""
    last: dict[tuple[str, str, int], Prediction] = {}
    for p in preds:
        last[(p.variant, p.item_id, p.epoch)] = p
    return list(last.values())

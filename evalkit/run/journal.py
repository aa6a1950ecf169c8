"""The run journal, `predictions.jsonl`: one line per finished (variant, item), appended.

Each line is flushed as soon as the item finishes, so a killed run loses at most the items in
flight; `--resume` reads the journal back and skips what it holds. A torn last line (the
process died mid-write) is ignored on read rather than failing the resume.

A line's `prompt` names the messages its request carried, kept once each in `messages.jsonl`
beside the journal (evalkit/run/sent.py); `append(..., messages=...)` records them first.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from evalkit.run.sent import SentLog, sent_path
from evalkit.secrets import scrub


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
        self._fh = None
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
               messages: list[dict[str, str]] | None = None) -> None:
        """Journal `prediction`; with `messages` (what its request sent), record them and set
        its `prompt`."""
        if messages is not None:
            prediction.prompt = self.record_messages(messages)
        if self._fh is None:
            self._repair_tail()
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(_ENCODER.encode(as_record(prediction)) + "\n")
        self._fh.flush()

    def _repair_tail(self) -> None:
        """Cut a torn last line so the next append starts on a line of its own."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb+") as fh:
            data = fh.read()
            if not data.endswith(b"\n"):
                fh.truncate(data.rfind(b"\n") + 1)

    def close(self) -> None:
        self.sent.close()
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None


_FIELDS = tuple(f.name for f in fields(Prediction))
# json.dumps(..., ensure_ascii=False) builds an encoder per call; the journal's is made once
_ENCODER = json.JSONEncoder(ensure_ascii=False)


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
    for name in ("output", "error", "model"):  # the last line of defence before disk
        if isinstance(record[name], str):
            record[name] = scrub(record[name])
    return record


def shown(passages: Any) -> dict[str, list]:
    """What the journal keeps of the passages a request showed: the documents, ranked (for
    recall@k and MRR), and each passage as [doc_id, chunk], so scoring can find its text again
    (groundedness) without copying every passage into every line."""
    return {"retrieved": list(dict.fromkeys(p.doc_id for p in passages)),
            "passages": [[p.doc_id, p.chunk] for p in passages]}


def latest(preds: list[Prediction]) -> list[Prediction]:
    """One prediction per (variant, item, epoch): the last one journaled (a retry replaces an
    error)."""
    last: dict[tuple[str, str, int], Prediction] = {}
    for p in preds:
        last[(p.variant, p.item_id, p.epoch)] = p
    return list(last.values())

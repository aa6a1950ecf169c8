"""The messages each journaled request carried, recorded at run time (`messages.jsonl`).

The report shows, per item and variant, the chat messages that variant's request rendered to
(`Request.messages()`, exactly what the openai provider puts in its request body and what the
cache key hashes). Rebuilding them afterwards from the test set cannot be exact for every run
(a config-declared instruction file edited since, an embedding index, a template changed by a
later evalkit), so they are recorded as the run makes them, and the report shows recorded
messages or none.

Layout, kept small because every item has a prompt and most texts repeat:
- `messages.jsonl` beside the journal (`sent_path`) holds two kinds of line, each written once:
  `{"t": TID, "x": TEXT}` a message text, and `{"p": PID, "m": [[ROLE, TID], ...]}` a
  prompt, its messages in order (ROLE is s/u/a for system/user/assistant);
- the journal line holds only `"prompt": PID` (about 30 bytes), so `--resume` reads no more.
TID and PID are content hashes (BLAKE2b, 80 bits, hex): equal texts and prompts share one
record across variants, epochs and sessions, and a resume needs no numbering state. A text
or prompt line always precedes the first line that names it, and the log is flushed before
the journal line is written: a kill leaves at most unreferenced records, never a journal line
whose prompt is missing (a torn last line is cut before the next append, as the journal does).

Cost on the hot path (benchmarks/bench_sent.py: 1,000 synthetic items, the same answers
journaled with and without their messages, median of 7 interleaved rounds, 2-core box):
| rung | messages | CPU added per item | journal line | messages.jsonl per item |
|---|---|---|---|---|
| prompt-only | 2 | 5.6 µs (3.1 % of evalkit's 0.18 ms per item on the wire) | +34 B | 283 B |
| few-shot, k = 4 | 10 | 9.4 µs (5.2 %) | +34 B | 574 B |
Most of it is the one new text per item (the user message: scrubbed, hashed, escaped); the
runner records a batch of prepared requests together, so messages.jsonl gets one write per
batch, not one per journal line. Before `secrets.scrub` learned to skip texts holding none of
the literals its patterns need, its regexes alone were 12 µs on such a text. Texts already
seen are found by a dict lookup on the string (the system prompt and the few-shot examples are
the same str objects item after item, so Python's cached hash makes that nearly free); the
dict is bounded (`MEMO`) and cleared when full, so a 100,000-item run keeps its RSS flat, and
a text seen again after a clear is only written twice, never shown wrong.
"""

from __future__ import annotations

import json
from hashlib import blake2b
from pathlib import Path

from evalkit.run.appender import Appender
from evalkit.secrets import key_values, scrub

ROLES = {"system": "s", "user": "u", "assistant": "a"}
MEMO = 8192  # texts (and prompts) remembered as already written; cleared when full


def sent_path(journal: Path | str) -> Path:
    """Where a journal's messages live: `messages.jsonl` beside a run's predictions.jsonl,
    `<stem>.messages.jsonl` beside any other journal (the judge's keeps its own)."""
    journal = Path(journal)
    if journal.name == "predictions.jsonl":
        return journal.with_name("messages.jsonl")
    return journal.with_name(f"{journal.stem}.messages.jsonl")


# a JSON string literal (json.dumps(s, ensure_ascii=False) without its Python-level overhead);
# the lines are assembled around it, since ids are hex and roles are escaped like any text
_string = json.encoder.encode_basestring


def digest(text: str) -> str:
    return blake2b(text.encode("utf-8", "surrogatepass"), digest_size=10).hexdigest()


def prompt_id(refs: list[tuple[str, str]]) -> str:
    return digest("\n".join([r + ":" + t for r, t in refs]))


class SentLog:
    """Append-only store of message texts and prompts; `record` returns a prompt's id."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._out = Appender(self.path)
        self._texts: dict[str, str] = {}    # text -> TID already written this session
        self._prompts: set[str] = set()     # PIDs already written this session
        self._pending: list[str] = []       # lines recorded, not yet written (`flush`)

    def record(self, messages: list[dict[str, str]]) -> str:
        """Write what is new of `messages` and return their prompt id (PID)."""
        refs = []
        lines = ""
        new: list[tuple[str, str]] = []  # (text, TID) written by this call, remembered last
        keys = None  # the key values, read once for this prompt's new texts
        for m in messages:
            text = m["content"]
            tid = self._texts.get(text)
            if tid is None:
                if keys is None:
                    keys = key_values()
                stored = scrub(text, keys=keys)  # as the journal does: no key reaches disk
                tid = digest(stored)
                lines += f'{{"t":"{tid}","x":{_string(stored)}}}\n'
                new.append((text, tid))
            role = m["role"]
            refs.append((ROLES.get(role) or role, tid))
        pid = prompt_id(refs)
        known = pid in self._prompts
        if not known:
            pairs = ",".join([f'[{_string(r)},"{t}"]' for r, t in refs])
            lines += f'{{"p":"{pid}","m":[{pairs}]}}\n'
        if lines:
            self._write(lines)
        for text, tid in new:  # only once its line is queued: a failure above forgets it
            if len(self._texts) >= MEMO:
                self._texts.clear()
            self._texts[text] = tid
        if not known:
            if len(self._prompts) >= MEMO:
                self._prompts.clear()
            self._prompts.add(pid)
        return pid

    def flush(self) -> None:
        """Before the journal line that names a prompt recorded since the last flush."""
        if self._pending:
            self._out.write("".join(self._pending))  # on a failure they stay, unwritten
            self._pending = []

    def _write(self, line: str) -> None:
        self._pending.append(line)

    def close(self) -> None:
        self.flush()
        self._out.close()


def read_sent(path: Path | str) -> tuple[dict[str, str], dict[str, list[tuple[str, str]]]]:
    """(texts by TID, prompts by PID as [(role, TID), ...]) from a messages.jsonl. Every
    record is checked against its own hash: a damaged or edited line is dropped, and a prompt
    whose texts are not all there is then not shown, rather than shown wrong."""
    texts: dict[str, str] = {}
    prompts: dict[str, list[tuple[str, str]]] = {}
    path = Path(path)
    if not path.is_file():
        return texts, prompts
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(rec, dict):
                continue
            if isinstance(rec.get("t"), str) and isinstance(rec.get("x"), str):
                if rec["t"] not in texts and digest(rec["x"]) == rec["t"]:
                    texts[rec["t"]] = rec["x"]
            elif isinstance(rec.get("p"), str) and isinstance(rec.get("m"), list):
                try:
                    refs = [(str(r), str(t)) for r, t in rec["m"]]
                except (TypeError, ValueError):
                    continue
                if prompt_id(refs) == rec["p"]:
                    prompts[rec["p"]] = refs
    return texts, prompts

"""The call ledger, `calls.jsonl`: every provider call is written down before it is made.

A line `{"s": session, "n": call, "key": cache key, "worst_usd": ...}` goes out (flushed)
before the call, and `{"s": session, "n": call, "cost_usd": ...}` once its answer or error is
journaled (the runner holds these back, `defer=True`, and writes them after the journal's
lines, with the next call's open line or at the end of the loop's turn: a close never reaches
disk before the line it closes for). A call opened and never closed was in flight when its
session was killed: it may have been paid without reaching the journal. The next session
counts such calls as spent — at the cost of the answer if the response cache holds it (the
provider's usage), else at the worst case that was reserved for it — so neither
`--max-cost-usd` nor run.json's totals forget them. Those figures are labelled as estimates.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evalkit.run.appender import Appender


@dataclass(frozen=True)
class OpenCall:
    session: int
    key: str
    worst_usd: float


@dataclass(frozen=True)
class Unjournaled:
    """Calls of earlier sessions paid (perhaps) but never journaled, and what they cost."""

    calls: int = 0
    usd: float = 0.0            # from the cached answer's usage where known, else worst case
    from_usage: int = 0         # how many of `calls` were priced from a cached answer


_string = json.encoder.encode_basestring  # a JSON string literal


def _number(value: float) -> str:
    """`value` as json.dumps writes it (repr for finite floats; Infinity/NaN otherwise)."""
    if type(value) is float and value - value == 0.0:  # finite: the usual case, at once
        return repr(value)
    value = float(value)
    return repr(value) if math.isfinite(value) else json.dumps(value)


class CallLedger:
    """Writes the ledger's lines. Two per call, so they are assembled as strings (what
    json.dumps would write, read back by json.loads) rather than through an encoder. The
    runner defers both (`defer=True`) and flushes them itself (`_Run.open_call`, `_Run.flush`)."""

    def __init__(self, path: Path | str, session: int):
        self.path = Path(path)
        self.session = session
        self._n = 0
        self._out = Appender(self.path)
        self._deferred: list[str] = []  # lines held for `flush`, in order
        self._prefix = f'{{"s":{int(session)},"n":'  # how every line of this session starts

    def open_call(self, key: str, worst_usd: float, *, defer: bool = False) -> int:
        """Number the call about to be made and write it down. `defer`: hold the line for
        `flush`, which the caller must make before it sends the call."""
        self._n += 1
        self._line(f'{self._prefix}{self._n},"key":{_string(key)},'
                   f'"worst_usd":{_number(worst_usd)}}}', defer)
        return self._n

    def close_call(self, n: int, cost_usd: float, *, defer: bool = False) -> None:
        """Call `n` ended, costing `cost_usd`. `defer`: hold the line for `flush`, which the
        caller makes after the journal line it answers is flushed."""
        self._line(f'{self._prefix}{int(n)},"cost_usd":{_number(cost_usd)}}}', defer)

    def flush(self) -> None:
        """Write the deferred lines, in their order, in one write."""
        if self._deferred:
            lines, self._deferred = self._deferred, []
            self._write("\n".join(lines))

    def _line(self, line: str, defer: bool) -> None:
        if defer:
            self._deferred.append(line)
        else:  # now, ahead of any deferred line (a close waits for its journal line; the
            self._write(line)  # reader pairs lines by call, not by their order)

    def _write(self, line: str) -> None:
        self._out.write(line + "\n")  # in the kernel before the call goes out

    def close(self) -> None:
        self.flush()
        self._out.close()


def open_calls(path: Path | str) -> list[OpenCall]:
    """Calls opened and never closed, from every session so far (a torn line is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    opened: dict[tuple[int, int], OpenCall] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
                ident = (int(rec["s"]), int(rec["n"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            if "worst_usd" in rec:
                opened[ident] = OpenCall(ident[0], str(rec.get("key", "")),
                                         float(rec["worst_usd"]))
            else:
                opened.pop(ident, None)
    return list(opened.values())


def unjournaled(calls: list[OpenCall], cached_cost: Callable[[str], float | None]
                ) -> Unjournaled:
    """Price open calls: the cached answer's cost if the cache has it, else the worst case."""
    usd, known = 0.0, 0
    for call in calls:
        cost = cached_cost(call.key) if call.key else None
        if cost is None:
            usd += call.worst_usd
        else:
            usd += cost
            known += 1
    return Unjournaled(len(calls), usd, known)

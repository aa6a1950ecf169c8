"""The chat messages each variant sent, for the explorer: read from what the run recorded.

A run records every request's messages as it journals the answer (evalkit/run/sent.py:
`messages.jsonl`, each text once, and a prompt id on the journal line), so the report never
rebuilds a prompt — a rebuild could not be exact for a declared variant whose instruction
file changed since, an embedding retriever, or a template a later evalkit renders otherwise.
A cell shows the recorded messages of its (variant, item), or nothing:
- a run folder without messages.jsonl (a run from before recording) shows none, and says so;
- a journal line without a prompt (a call refused before anything was built) shows none;
- a prompt or text whose record is missing or fails its own hash check shows none.

With `--epochs`, every epoch sends the same messages (only the seed differs); the first
epoch's are shown. `sent[v]` tells the page whether variant v's provider sent these as chat
messages (an LLM server) or read the Request's fields directly (the local provider, whose
"messages" are the same Request rendered as an LLM would have received it): run.json
`messages.sent`, from each provider's `sends_messages`.

Texts are stored once in the page (a system prompt or a few-shot turn repeats across items)
and the page stops adding items past `BUDGET_CHARS`, saying for how many items messages are
shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.run.journal import Prediction
from evalkit.run.sent import read_sent, sent_path

BUDGET_CHARS = 3_000_000  # about 3 MB of prompt text at most in one page


@dataclass
class Messages:
    """`by[i][v]`: item i's messages for variant v as [role, text index] pairs, or 0;
    `sent[v]`: whether variant v's provider sent them as chat messages."""

    texts: list[str] = field(default_factory=list)
    by: list[list[Any]] = field(default_factory=list)
    sent: list[bool] = field(default_factory=list)
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"texts": self.texts, "by": self.by, "sent": self.sent, "note": self.note}


def _first_epoch_prompts(preds: list[Prediction]) -> dict[tuple[str, str], str]:
    """(variant, item id) -> prompt id of its lowest epoch that has one."""
    best: dict[tuple[str, str], tuple[int, str]] = {}
    for p in preds:
        if not p.prompt:
            continue
        key = (p.variant, p.item_id)
        if key not in best or p.epoch < best[key][0]:
            best[key] = (p.epoch, p.prompt)
    return {k: pid for k, (_, pid) in best.items()}


def recorded(run_dir: Path, run: dict[str, Any], ladder: list[str], items: list[dict],
             preds: list[Prediction], *, budget_chars: int = BUDGET_CHARS) -> Messages:
    """The recorded messages per (item, variant), exact or absent (see the module docstring)."""
    path = sent_path(Path(run_dir) / "predictions.jsonl")
    if not path.is_file():
        return Messages(note="messages not shown: the run folder has no messages.jsonl (the run "
                             "was made before evalkit recorded the messages it sends)")
    texts, prompts = read_sent(path)
    sent_by = (run.get("messages") or {}).get("sent") or {}
    out = Messages(sent=[bool(sent_by.get(v, True)) for v in ladder])
    pid_of = _first_epoch_prompts(preds)
    index: dict[str, int] = {}
    used = missing = 0
    for n, row in enumerate(items):
        if used > budget_chars:
            out.note = f"messages shown for the first {n} of {len(items)} items (size cap)"
            break
        cells: list[Any] = []
        for v in ladder:
            refs = prompts.get(pid_of.get((v, row["id"]), ""))
            if refs is None or any(t not in texts for _, t in refs):
                missing += refs is not None or (v, row["id"]) in pid_of
                cells.append(0)
                continue
            pairs = []
            for role, tid in refs:
                if tid not in index:
                    index[tid] = len(out.texts)
                    out.texts.append(texts[tid])
                    used += len(texts[tid])
                pairs.append([role, index[tid]])
            cells.append(pairs)
        out.by.append(cells)
    if missing and not out.note:
        out.note = (f"messages not shown for {missing} answers: their record in messages.jsonl "
                    "is missing or damaged")
    return out

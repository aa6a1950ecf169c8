"""The chat messages each variant sent, rebuilt for the explorer from the run's test set.

The journal does not keep prompts (they would multiply its size); a request is a pure function
of the test set and the rung (`Variant.build`: few-shot examples by TF-IDF similarity with a
fixed seed, passages from the index), so the report rebuilds it with the same code the run
used and renders it with the same templates (`Request.messages()`). It does so only when that
is exact:
- the test-set folder recorded in run.json is found and its content hash equals the run's;
- the rung is a built-in one (`default_variant`) and retrieval was TF-IDF (an embedding
  retriever's index is not rebuilt here);
- for a retrieving rung, the rebuilt passages' doc ids equal the journal's `retrieved` for
  that item; a cell that differs is left without messages rather than shown wrong.

Texts are stored once (a system prompt or a few-shot turn repeats across items) and the page
stops adding items past `BUDGET_CHARS`, saying for how many items messages are shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.data.testset import load_testset
from evalkit.run.journal import Prediction
from evalkit.strategies.variants import VariantContext, default_variant

BUDGET_CHARS = 3_000_000  # about 3 MB of prompt text at most in one page
ROLES = {"system": "s", "user": "u", "assistant": "a"}


@dataclass
class Messages:
    """`by[i][v]`: item i's messages for variant v as [role, text index] pairs, or 0."""

    texts: list[str] = field(default_factory=list)
    by: list[list[Any]] = field(default_factory=list)
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"texts": self.texts, "by": self.by, "note": self.note}


def _testset(run: dict[str, Any]):
    recorded = run.get("testset") or {}
    path = recorded.get("path") or (run.get("config") or {}).get("testset")
    if not path or not Path(path).is_dir():
        return None, f"messages not shown: the test set folder {path!r} is not here"
    try:
        testset = load_testset(path)
    except (ValueError, OSError) as exc:
        return None, f"messages not shown: the test set does not load ({exc})"
    if testset.hash != recorded.get("hash"):
        return None, "messages not shown: the test set changed since the run (hash differs)"
    return testset, ""


def rebuild(run: dict[str, Any], ladder: list[str], items: list[dict],
            preds: list[Prediction], *, budget_chars: int = BUDGET_CHARS) -> Messages:
    """The messages per (item, variant), exact or absent (see the module docstring)."""
    testset, note = _testset(run)
    if testset is None:
        return Messages(note=note)
    if (run.get("setup") or {}).get("retrieval"):
        return Messages(note="messages not shown: the run retrieved with embeddings")
    variants = []
    for name in ladder:
        try:
            variants.append(default_variant(name, testset))
        except ValueError:
            variants.append(None)  # a rung this evalkit does not define: nothing to rebuild
    by_id = {it.id: it for it in testset.test}
    retrieved = {(p.variant, p.item_id): list(p.retrieved) for p in preds}
    ctx = VariantContext(testset)
    out, index, used = Messages(), {}, 0
    for n, row in enumerate(items):
        item = by_id.get(row["id"])
        if used > budget_chars:
            out.note = f"messages shown for the first {n} of {len(items)} items (size cap)"
            break
        cells: list[Any] = []
        for k, variant in enumerate(variants):
            if variant is None or item is None:
                cells.append(0)
                continue
            try:
                request = variant.build(item, ctx)
            except ValueError:  # no train split, no corpus: the run could not have built it
                variants[k] = None
                cells.append(0)
                continue
            got = list(dict.fromkeys(p.doc_id for p in request.passages))
            if variant.rag_k and got != retrieved.get((variant.name, item.id)):
                cells.append(0)  # not what the run retrieved: show nothing rather than a guess
                continue
            pairs = []
            for m in request.messages():
                text = m["content"]
                if text not in index:
                    index[text] = len(out.texts)
                    out.texts.append(text)
                    used += len(text)
                pairs.append([ROLES.get(m["role"], m["role"]), index[text]])
            cells.append(pairs)
        out.by.append(cells)
    return out

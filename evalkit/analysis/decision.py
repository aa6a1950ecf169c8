"""One recommendation from a ladder's steps: which variant to ship, in one sentence, and why.

The variant is the incumbent the ladder ends with (the last rung whose step was accepted, see
verdicts.py). The sentence names the strongest rung that did not displace it — the largest
gain among the steps judged against it that were not accepted — and what held that rung back
(the interval, the items that would settle it, the money); when every later rung is worse or
no different, it quotes the step that made the incumbent; when every step against it had
fewer items than a verdict needs, it says first that the incumbent is the first rung by
default (a 12-item run shows nothing worth shipping on, and "no rung was shown to be better"
would read as a finding; "Ship prompt-only: few-shot is +80 pts better on 15 items,
inconclusive" read as a ship call against the run's only evidence), then the strongest
rival's numbers. `reasons` lists those steps'
sentences, so the report can show the evidence under the recommendation.
"""

from __future__ import annotations

import math
from typing import Any

from evalkit.analysis.economics import Economics
from evalkit.analysis.verdicts import (
    ACCEPTED,
    INCONCLUSIVE,
    MIN_PAIRED_ITEMS,
    NO_CHANGE,
    about,
    pts,
    usd,
)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def recommend(steps: list[dict[str, Any]], incumbent: str, ladder: list[str],
              econ: Economics) -> dict[str, Any]:
    """`{variant, sentence, reasons}` for summary.json (steps as `_step` writes them)."""
    against = [s for s in steps if s["from"] == incumbent]
    won = [s for s in steps if s["to"] == incumbent and s["verdict"] in ACCEPTED]
    rivals = [s for s in against if s["verdict"] not in (*ACCEPTED, NO_CHANGE)
              and _finite(s["delta"]) and s["delta"] > 0]
    rival = _rival(max(rivals, key=lambda s: s["delta"]), econ) if rivals else None
    if not won and against and all(s["n"] < MIN_PAIRED_ITEMS for s in against):
        n = max(s["n"] for s in against)
        why = (f"on {n:,} items no step up the ladder can be judged (a verdict needs "
               f"{MIN_PAIRED_ITEMS} paired items), so it is the first rung by default, not a "
               f"finding") + (f"; {rival}" if rival else "")
    elif rival:
        why = rival
    elif won:
        why = _winning_step(won[-1])
    elif len(ladder) < 2:
        why = "the only variant in this run"
    else:
        why = "no rung above it was shown to be better at a price worth paying"
    return {"variant": incumbent, "sentence": f"Ship {incumbent}: {why}.",
            "reasons": [s["reason"] for s in (*won, *against)]}


def _rival(s: dict[str, Any], econ: Economics) -> str:
    """'fine-tuned is +2.1 pts accuracy [-0.4, +4.6] better on 392 items, inconclusive ...'"""
    head = (f"{s['to']} is {pts(s['delta'])} pts {s['metric']} [{pts(s['ci_low'])}, "
            f"{pts(s['ci_high'])}] better on {s['n']:,} items")
    d_tco = s.get("delta_tco_usd")
    horizon = f"over {econ.horizon_months:g} months"
    money = ("" if not _finite(d_tco) else
             f"costs {usd(d_tco)} more {horizon}" if d_tco > 0 else
             f"saves {usd(-d_tco)} {horizon}")
    if s["verdict"] == INCONCLUSIVE:
        needed = s.get("items_needed")
        settle = f" (about {about(needed)} items would settle it)" if needed else ""
        return f"{head}, inconclusive{settle}" + (f", and {money}" if money else "")
    per = s.get("usd_per_extra_correct")
    if _finite(per) and _finite(s["ci_low"]) and s["ci_low"] > 0:
        return (f"{head}, but {money} ({usd(per)} per extra correct answer, more than the "
                f"{usd(econ.value_per_correct_usd)} one is worth)")
    return f"{head}, but {money}, more than even the interval's high end would be worth"


def _winning_step(s: dict[str, Any]) -> str:
    """'+15.6 pts accuracy [+10.5, +20.6] over prompt-only on 392 items; $0.00007 per ...'"""
    why = s["sentence"].split("; ", 1)[1] if "; " in s["sentence"] else s["verdict"]
    return (f"{pts(s['delta'])} pts {s['metric']} [{pts(s['ci_low'])}, {pts(s['ci_high'])}] "
            f"over {s['from']} on {s['n']:,} items; {why}")
